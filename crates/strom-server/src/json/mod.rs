//! The seed's JSON-over-TCP protocol (`strom serve --json-listen HOST:PORT`): newline-delimited
//! JSON, one request object per line, one response object per line, in the same order.
//! The protocol is documented for users in `docs/json-protocol.md`.
//!
//! Layout, as in mini-redis:
//! - `framing`: finds whole lines in the read buffer and enforces `json.max.line.bytes`.
//! - `request`: parses a line into a [`request::Request`] (no I/O).
//! - `response`: the response wire types and the error kinds.
//! - `handler`: runs a request through [`strom_broker::local`], the broker's in-process API,
//!   so JSON and Kafka clients share one log and one set of committed offsets.
//! - `session`: who the connection is (`authenticate` on a SASL listener, the TLS client
//!   certificate, or `User:ANONYMOUS`); `access`: the ACL check of each request, as the Kafka
//!   API doing the same thing would make it.
//! - this file: the listener and the per-connection loop.
//!
//! Bounds: at most `max.connections` JSON connections (a connection beyond it gets one error
//! line and is closed); a connection that sends no complete line for `connections.max.idle.ms`
//! is closed; lines of at most `json.max.line.bytes` (a longer line gets an error
//! response, the rest of it is discarded, and the connection stays usable); a consume returns
//! at most 10,000 messages and reads at most 4 MiB of batches. Requests on one connection run
//! one at a time, which keeps the responses in order.

mod access;
mod framing;
mod handler;
mod request;
mod response;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strom_broker::listeners::SecurityProtocol;
use strom_broker::local::Local;
use strom_broker::Broker;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Shutdown;
use access::Access;
use framing::{Frame, LineBuffer};
use request::{ParseError, Request};
use response::{code, Body};
use session::Session;

/// How much a connection reads at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_line_bytes: usize,
    /// `connections.max.idle.ms`: a connection that sends no complete line for this long is
    /// closed, so a silent or stalled client cannot hold a connection slot forever.
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_broker(broker: &Broker) -> Limits {
        Limits {
            max_connections: broker.config.max_connections,
            max_line_bytes: broker.config.json_max_line_bytes,
            idle_timeout: Duration::from_millis(broker.config.connections_max_idle_ms),
        }
    }
}

/// How the `json.listen` listener is secured (`json.listener.security.protocol`).
#[derive(Clone)]
pub struct ListenerSecurity {
    pub protocol: SecurityProtocol,
    /// The broker's acceptor; required when `protocol` uses TLS.
    pub tls: Option<Arc<crate::tls_reload::ReloadableAcceptor>>,
    /// `ssl.handshake.timeout.ms`
    pub handshake_timeout: Duration,
}

impl ListenerSecurity {
    pub fn plaintext() -> ListenerSecurity {
        ListenerSecurity {
            protocol: SecurityProtocol::Plaintext,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves JSON requests until shutdown, in plaintext.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: Shutdown) {
    let limits = Limits::from_broker(&broker);
    let local = Arc::new(Local::new(broker));
    serve_with(
        listener,
        local,
        limits,
        ListenerSecurity::plaintext(),
        shutdown,
    )
    .await
}

/// [`serve`] with explicit limits and security, over an existing [`Local`].
pub async fn serve_with(
    listener: TcpListener,
    local: Arc<Local>,
    limits: Limits,
    security: ListenerSecurity,
    shutdown: Shutdown,
) {
    let refuse = |socket: &TcpStream| {
        // Best effort and never blocking: the socket's send buffer is empty.
        let line = Body::error(
            code::TOO_MANY_CONNECTIONS,
            format!(
                "too many connections (max.connections = {})",
                limits.max_connections
            ),
        )
        .into_line(None);
        let _ = socket.try_write(&line);
    };
    crate::accept::accept_loop(
        listener,
        "json",
        limits.max_connections,
        shutdown,
        refuse,
        |socket, peer, shutdown| {
            let local = local.clone();
            let security = security.clone();
            async move {
                let _ = socket.set_nodelay(true);
                let sasl = security.protocol.uses_sasl();
                let host = peer.ip().to_string();
                // The certificate of the moment: a reload affects only later connections.
                let tls = security.tls.as_ref().filter(|_| security.protocol.uses_tls());
                let ended = match tls.map(|t| t.current()) {
                    None => {
                        let session = Session::new(sasl, None, host);
                        serve_stream(socket, peer, &local, limits, shutdown, session).await
                    }
                    Some(tls) => {
                        let accepted =
                            tokio::time::timeout(security.handshake_timeout, tls.accept(socket));
                        let stream = match accepted.await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::warn!(%peer, error = %e, "closing JSON connection: TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::warn!(%peer, "closing JSON connection: TLS handshake not done in time (ssl.handshake.timeout.ms)");
                                return;
                            }
                        };
                        let certificate = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| crate::tls::certificate_subject(c.as_ref()));
                        let principal = match certificate {
                            None => None,
                            Some(Some(subject)) => match local.broker().config.security.principal_mapper.name(&subject) {
                                Ok(name) => Some(format!("User:{name}")),
                                Err(e) => {
                                    tracing::warn!(%peer, error = %e, "closing JSON connection: no ssl.principal.mapping.rules rule applies to the client certificate");
                                    return;
                                }
                            },
                            Some(None) => {
                                tracing::warn!(%peer, "closing JSON connection: unreadable client certificate subject");
                                return;
                            }
                        };
                        let session = Session::new(sasl, principal, host);
                        serve_stream(stream, peer, &local, limits, shutdown, session).await
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "JSON connection ended");
                }
            }
        },
    )
    .await
}

/// Serves one plaintext JSON connection as `User:ANONYMOUS`: the Kafka listener hands over
/// connections whose first byte is `{` here.
pub async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    local: &Arc<Local>,
    limits: Limits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let session = Session::new(false, None, peer.ip().to_string());
    serve_stream(socket, peer, local, limits, shutdown, session).await
}

/// Serves one JSON connection until the client closes it, it idles out, a failed
/// authentication closes it, or shutdown.
async fn serve_stream<S: AsyncRead + AsyncWrite>(
    stream: S,
    peer: SocketAddr,
    local: &Arc<Local>,
    limits: Limits,
    mut shutdown: Shutdown,
    mut session: Session,
) -> std::io::Result<()> {
    let (mut reader, writer) = tokio::io::split(stream);
    let mut writer = BufWriter::new(writer);
    let mut lines = LineBuffer::new(limits.max_line_bytes);
    let mut eof = false;
    let mut idle_deadline = tokio::time::Instant::now() + limits.idle_timeout;
    loop {
        // Answer every whole line already buffered, in order, then flush once.
        loop {
            let frame = match lines.next_frame() {
                Some(f) => f,
                None if eof => match lines.finish() {
                    Some(f) => f,
                    None => break,
                },
                None => break,
            };
            if let Some(response) = respond(local, frame, peer, limits, &mut session).await {
                writer.write_all(&response).await?;
            }
            if session.close {
                writer.flush().await?;
                return writer.shutdown().await;
            }
            idle_deadline = tokio::time::Instant::now() + limits.idle_timeout;
        }
        writer.flush().await?;
        if eof || shutdown.is_shutdown() {
            break;
        }
        let buf = lines.buf_mut();
        buf.reserve(READ_CHUNK_BYTES);
        let read = tokio::select! {
            r = tokio::time::timeout_at(idle_deadline, reader.read_buf(buf)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    tracing::info!(%peer, idle = ?limits.idle_timeout, "closing idle JSON connection (connections.max.idle.ms)");
                    break;
                }
            },
            _ = shutdown.wait() => break,
        };
        if read == 0 {
            eof = true;
        }
    }
    writer.shutdown().await
}

/// The response line for one frame; `None` for a blank line (no request, no response).
async fn respond(
    local: &Arc<Local>,
    frame: Frame,
    peer: SocketAddr,
    limits: Limits,
    session: &mut Session,
) -> Option<Vec<u8>> {
    let line = match frame {
        Frame::TooLong => {
            tracing::debug!(%peer, max = limits.max_line_bytes, "JSON request line too long");
            return Some(
                Body::error(
                    code::LINE_TOO_LONG,
                    format!(
                        "request line longer than json.max.line.bytes ({} bytes); the line was discarded",
                        limits.max_line_bytes
                    ),
                )
                .into_line(None),
            );
        }
        Frame::Line(line) => line,
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let parsed = request::parse(&line);
    let body = match parsed.request {
        Ok(Request::Authenticate {
            mechanism,
            username,
            password,
        }) => {
            session
                .authenticate(local.broker(), &mechanism, &username, &password.0)
                .await
        }
        Ok(req) => match session.refuse_unauthenticated() {
            Some(refusal) => refusal,
            None => {
                let access = Access::new(local.broker(), &session.principal, &session.host);
                match access.check(local, &req) {
                    Ok(()) => handler::handle(local, req, &session.host, &access).await,
                    Err(denied) => denied,
                }
            }
        },
        Err(ParseError::BadJson(m)) => Body::error(code::BAD_JSON, m),
        Err(ParseError::BadRequest(m)) => Body::error(code::BAD_REQUEST, m),
    };
    Some(body.into_line(parsed.id.as_ref()))
}
