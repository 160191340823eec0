//! TLS for the SSL and SASL_SSL listeners, with rustls (no OpenSSL): the key and chain from
//! `ssl.keystore.location` (one PEM file, key and certificates) or the inline
//! `ssl.keystore.key` / `ssl.keystore.certificate.chain`; client certificates checked against
//! `ssl.truststore.location` (or `ssl.truststore.certificates`) when `ssl.client.auth` is
//! `requested` or `required`. TLS 1.2 and 1.3.
//!
//! The principal of a connection with a client certificate is `User:` and the name that
//! `ssl.principal.mapping.rules` makes of the certificate's subject in RFC 2253 form
//! (`CN=alice,OU=eng,O=Example`, unchanged under the DEFAULT rule).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use strom_broker::security::settings::{ClientAuth, SecuritySettings};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("an SSL listener needs ssl.keystore.location, or ssl.keystore.key with ssl.keystore.certificate.chain")]
    NoKeystore,
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("ssl.client.auth={0} needs ssl.truststore.location or ssl.truststore.certificates")]
    NoTruststore(&'static str),
    #[error("TLS setup: {0}")]
    Rustls(String),
}

fn read_pem(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| TlsSetupError::Read {
        what,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn certificates(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Pem {
            what,
            reason: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

/// Builds the acceptor every TLS listener shares.
pub fn acceptor(settings: &SecuritySettings) -> Result<TlsAcceptor, TlsSetupError> {
    let (key_pem, chain_pem) = match (
        &settings.keystore_location,
        &settings.keystore_key,
        &settings.keystore_certificate_chain,
    ) {
        (Some(path), _, _) => {
            let pem = read_pem("ssl.keystore.location", path)?;
            (pem.clone(), pem)
        }
        (None, Some(key), Some(chain)) => (key.clone().into_bytes(), chain.clone().into_bytes()),
        _ => return Err(TlsSetupError::NoKeystore),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsSetupError::Pem {
        what: "keystore private key",
        reason: e.to_string(),
    })?;
    let chain = certificates("keystore certificate chain", &chain_pem)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let name = if mode == ClientAuth::Required {
                "required"
            } else {
                "requested"
            };
            let trust_pem = match (
                &settings.truststore_location,
                &settings.truststore_certificates,
            ) {
                (Some(path), _) => read_pem("ssl.truststore.location", path)?,
                (None, Some(inline)) => inline.clone().into_bytes(),
                (None, None) => return Err(TlsSetupError::NoTruststore(name)),
            };
            let mut roots = RootCertStore::empty();
            for ca in certificates("truststore", &trust_pem)? {
                roots
                    .add(ca)
                    .map_err(|e| TlsSetupError::Rustls(format!("truststore: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))?,
            )
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The HTTPS listener's acceptor: the same key and chain, never asking for a client
/// certificate (browsers log in with a password; `ssl.client.auth` is the Kafka
/// listeners').
pub fn http_acceptor(settings: &SecuritySettings) -> Result<TlsAcceptor, TlsSetupError> {
    acceptor(&SecuritySettings {
        client_auth: ClientAuth::None,
        ..settings.clone()
    })
}

/// RFC 2253 keywords for the attribute types Java's `X500Principal.getName()` names.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let leading = i == 0 && (c == '#' || c == ' ');
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || leading {
            out.push('\\');
        }
        out.push(c);
    }
    if out.ends_with(' ') {
        out.insert(out.len() - 1, '\\');
    }
    out
}

/// A client certificate's subject in RFC 2253 form (the most specific RDN first, as Java's
/// `X500Principal.getName()` writes it): what the principal mapping rules apply to.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let value = attr
                        .as_str()
                        .map(escape)
                        .unwrap_or_else(|_| format!("#{}", hex(attr.attr_value().data)));
                    match keyword(&oid) {
                        Some(k) => format!("{k}={value}"),
                        None => format!("{oid}={value}"),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    let subject: Vec<String> = rdns.into_iter().rev().collect();
    Some(subject.join(","))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
