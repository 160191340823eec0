//! How a client secures its connections: Kafka's `security.protocol` (PLAINTEXT, SSL,
//! SASL_PLAINTEXT, SASL_SSL), the TLS trust and client certificate, and the SASL mechanism
//! and credentials. One [`SecurityConfig`] applies to every connection a client opens
//! (bootstrap, partition leaders, coordinators).
//!
//! [`SecurityConfig::from_properties`] reads the property names kcat and librdkafka use
//! (`security.protocol`, `sasl.mechanisms`, `ssl.ca.location`, ...), so a `-X` line that
//! works with kcat works with `strom` too. The password never appears in `Debug` output or in
//! an error message.

use std::path::PathBuf;

use crate::error::{ClientError, Result};

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            other => Err(format!(
                "unknown security.protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )),
        }
    }
}

/// A SASL mechanism the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// The name SaslHandshake carries.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            other => Err(format!(
                "unsupported sasl.mechanisms {other:?} (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )),
        }
    }
}

/// How the broker's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerVerification {
    /// The chain must lead to a trusted CA and the certificate must name the host dialled.
    #[default]
    Full,
    /// The chain is checked, the host name is not (`ssl.endpoint.identification.algorithm=none`),
    /// for brokers reached by an address their certificate does not list.
    SkipHostname,
    /// Nothing is checked (`enable.ssl.certificate.verification=false`): encryption without
    /// knowing who is at the other end. For tests only.
    None,
}

/// TLS settings for the SSL and SASL_SSL protocols.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file of the CA certificates the broker's chain must lead to (`ssl.ca.location`).
    pub ca_location: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (`ssl.certificate.location`).
    pub certificate_location: Option<PathBuf>,
    /// PEM private key of the client certificate (`ssl.key.location`).
    pub key_location: Option<PathBuf>,
    pub verification: ServerVerification,
}

/// SASL credentials. `Debug` hides the password.
#[derive(Clone)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslSettings")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything about securing a client's connections.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    pub protocol: SecurityProtocol,
    pub tls: TlsSettings,
    /// Required by the SASL protocols, refused by the others.
    pub sasl: Option<SaslSettings>,
}

impl SecurityConfig {
    /// Builds the settings from kcat/librdkafka property names. An unknown name, a bad
    /// value, or a combination that cannot work (SASL_SSL without a username) is an error
    /// that names it.
    pub fn from_properties<'a>(
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<SecurityConfig> {
        let invalid = |m: String| ClientError::Invalid(m);
        let mut config = SecurityConfig::default();
        let mut mechanism = None;
        let mut username = None;
        let mut password = None;
        for (key, value) in properties {
            let value = value.trim();
            match key.trim() {
                "security.protocol" => config.protocol = value.parse().map_err(invalid)?,
                "sasl.mechanisms" | "sasl.mechanism" => {
                    mechanism = Some(value.parse::<SaslMechanism>().map_err(invalid)?)
                }
                "sasl.username" => username = Some(value.to_string()),
                "sasl.password" => password = Some(value.to_string()),
                "ssl.ca.location" => config.tls.ca_location = Some(value.into()),
                "ssl.certificate.location" => config.tls.certificate_location = Some(value.into()),
                "ssl.key.location" => config.tls.key_location = Some(value.into()),
                "enable.ssl.certificate.verification" => {
                    if !parse_bool(key, value)? {
                        config.tls.verification = ServerVerification::None;
                    }
                }
                "ssl.endpoint.identification.algorithm" => match value.to_ascii_lowercase().as_str()
                {
                    "none" | "" => {
                        if config.tls.verification == ServerVerification::Full {
                            config.tls.verification = ServerVerification::SkipHostname;
                        }
                    }
                    "https" => {}
                    other => {
                        return Err(invalid(format!(
                            "ssl.endpoint.identification.algorithm must be https or none, got {other:?}"
                        )))
                    }
                },
                other => {
                    return Err(invalid(format!(
                        "unknown property {other:?} (known: security.protocol, sasl.mechanisms, \
                         sasl.username, sasl.password, ssl.ca.location, ssl.certificate.location, \
                         ssl.key.location, enable.ssl.certificate.verification, \
                         ssl.endpoint.identification.algorithm)"
                    )))
                }
            }
        }
        if config.protocol.uses_sasl() {
            let (Some(username), Some(password)) = (username, password) else {
                return Err(invalid(
                    "security.protocol SASL_* needs sasl.username and sasl.password".into(),
                ));
            };
            config.sasl = Some(SaslSettings {
                // librdkafka's default mechanism.
                mechanism: mechanism.unwrap_or(SaslMechanism::Plain),
                username,
                password,
            });
        } else if mechanism.is_some() || username.is_some() || password.is_some() {
            return Err(invalid(
                "sasl.* properties need security.protocol SASL_PLAINTEXT or SASL_SSL".into(),
            ));
        }
        let tls = &config.tls;
        if !config.protocol.uses_tls()
            && (tls.ca_location.is_some()
                || tls.certificate_location.is_some()
                || tls.key_location.is_some())
        {
            return Err(invalid(
                "ssl.* properties need security.protocol SSL or SASL_SSL".into(),
            ));
        }
        Ok(config)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(ClientError::Invalid(format!(
            "{key} must be true or false, got {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcat_properties_make_a_sasl_ssl_config() {
        let c = SecurityConfig::from_properties([
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "s3cret"),
            ("ssl.ca.location", "/tmp/ca.pem"),
        ])
        .unwrap();
        assert_eq!(c.protocol, SecurityProtocol::SaslSsl);
        let sasl = c.sasl.as_ref().unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.username, "alice");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug never shows the password"
        );
    }

    #[test]
    fn bad_properties_are_named() {
        let err = |props: &[(&str, &str)]| {
            SecurityConfig::from_properties(props.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("security.protcol", "SSL")])
            .starts_with("unknown property \"security.protcol\""));
        assert_eq!(
            err(&[("security.protocol", "TLS")]),
            "unknown security.protocol \"TLS\" (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
        );
        assert_eq!(
            err(&[("security.protocol", "SASL_SSL"), ("sasl.username", "a")]),
            "security.protocol SASL_* needs sasl.username and sasl.password"
        );
        assert_eq!(
            err(&[("sasl.username", "a")]),
            "sasl.* properties need security.protocol SASL_PLAINTEXT or SASL_SSL"
        );
        assert_eq!(
            err(&[("security.protocol", "SSL"), ("sasl.mechanisms", "GSSAPI")]),
            "unsupported sasl.mechanisms \"GSSAPI\" (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
        );
    }
}
