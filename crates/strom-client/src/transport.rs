//! The byte stream under a [`crate::connection::Connection`]: TCP, with TLS on it for the SSL
//! protocols, and the SASL credentials the connection authenticates with once open. Built
//! once per client from its [`SecurityConfig`] (reading the certificate files then, so a bad
//! path is reported before any connection) and shared by every connection it opens.

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::{ClientError, Result};
use crate::security::{SaslSettings, SecurityConfig};

/// How to open and secure a connection. The default is plaintext without SASL.
#[derive(Clone, Default)]
pub struct Transport {
    tls: Option<TlsConnector>,
    sasl: Option<SaslSettings>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

type Halves = (
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
);

impl Transport {
    pub fn new(config: &SecurityConfig) -> Result<Transport> {
        let tls = if config.protocol.uses_tls() {
            Some(crate::tls::connector(&config.tls)?)
        } else {
            None
        };
        let sasl = if config.protocol.uses_sasl() {
            let sasl = config.sasl.clone().ok_or_else(|| {
                ClientError::Invalid(
                    "security.protocol SASL_* needs sasl.username and sasl.password".into(),
                )
            })?;
            Some(sasl)
        } else {
            None
        };
        Ok(Transport { tls, sasl })
    }

    pub fn sasl(&self) -> Option<&SaslSettings> {
        self.sasl.as_ref()
    }

    /// Connects to `addr` and, for the SSL protocols, completes the TLS handshake.
    pub async fn open(&self, addr: &str) -> Result<Halves> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ClientError::connect(addr, &e))?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            let (r, w) = stream.into_split();
            return Ok((Box::new(r), Box::new(w)));
        };
        let name = crate::tls::server_name(addr)?;
        let stream = tls
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Tls {
                addr: addr.to_string(),
                reason: tls_reason(&e),
            })?;
        let (r, w) = tokio::io::split(stream);
        Ok((Box::new(r), Box::new(w)))
    }
}

/// rustls wraps its error in an `io::Error`; show rustls's own words.
fn tls_reason(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(inner) => inner.to_string(),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the broker closed the connection during the handshake (is this a TLS port?)".into()
        }
        None => e.to_string(),
    }
}
