//! The security settings, by Kafka's names: TLS key material and client authentication,
//! SASL mechanisms, the authorizer and its super users. Parsed by the settings table in
//! [`crate::config`]; the server layer builds its TLS acceptor from them.

use std::path::PathBuf;

use super::principal_mapping::PrincipalMapper;

/// Kafka's class name for its authorizer; naming it (or our alias) turns enforcement on.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
/// Kafka's older ZooKeeper-era class name, accepted too so old `server.properties` work.
pub const ACL_AUTHORIZER: &str = "kafka.security.authorizer.AclAuthorizer";
/// Our short alias.
pub const AUTHORIZER_ALIAS: &str = "acl";

/// `ssl.client.auth`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "requested" => Ok(Self::Requested),
            "required" => Ok(Self::Required),
            other => Err(format!(
                "expected none, requested or required, got {other:?}"
            )),
        }
    }
}

/// A SASL mechanism Strom serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [Self::Plain, Self::ScramSha256, Self::ScramSha512];
    pub const SCRAM: [Mechanism; 2] = [Self::ScramSha256, Self::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Kafka's `ScramMechanism` type codes (DescribeUserScramCredentials and friends).
    pub fn scram_type(self) -> i8 {
        match self {
            Self::Plain => 0,
            Self::ScramSha256 => 1,
            Self::ScramSha512 => 2,
        }
    }

    pub fn from_scram_type(t: i8) -> Option<Self> {
        Self::SCRAM.into_iter().find(|m| m.scram_type() == t)
    }
}

/// `http.authentication`: how the HTTP API and console learn who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuthentication {
    /// Every caller is `User:ANONYMOUS` (ACLs still apply when the authorizer is on).
    None,
    /// HTTP Basic, checked against the SCRAM user store as SASL/PLAIN is.
    Basic,
}

impl std::str::FromStr for HttpAuthentication {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "basic" => Ok(Self::Basic),
            other => Err(format!("expected none or basic, got {other:?}")),
        }
    }
}

/// `http.listener.security.protocol`
pub fn parse_http_protocol(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Ok(false),
        "SSL" => Ok(true),
        other => Err(format!("expected PLAINTEXT or SSL, got {other:?}")),
    }
}

/// The HTTP listener's security, by names shaped like Kafka's listener settings.
#[derive(Debug, Clone)]
pub struct HttpSecurity {
    /// `http.authentication`; unset means `basic` when the authorizer is on, else `none`.
    pub authentication: Option<HttpAuthentication>,
    /// `http.metrics.authentication.enable`: `/metrics`, `/health` and `/ready` take the
    /// API's login too (and `/metrics` DESCRIBE on the cluster). Off by default, so scrapers
    /// and probes need no credentials.
    pub metrics_authentication: bool,
    /// `http.listener.security.protocol=SSL`: serve HTTPS with the `ssl.keystore.*` key.
    pub tls: bool,
    /// `http.authentication.cache.ms`: how long a verified user and password is remembered,
    /// so each request does not pay the PBKDF2 of a full check (0: check every request).
    pub cache_ms: u64,
    /// `http.authentication.cache.max.entries`: most users remembered at once.
    pub cache_max_entries: usize,
}

impl Default for HttpSecurity {
    fn default() -> Self {
        HttpSecurity {
            authentication: None,
            metrics_authentication: false,
            tls: false,
            cache_ms: 60_000,
            cache_max_entries: 1000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// `ssl.keystore.location`: a PEM file with the private key and the certificate chain.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.keystore.key`: the private key, inline PEM.
    pub keystore_key: Option<String>,
    /// `ssl.keystore.certificate.chain`: the certificate chain, inline PEM.
    pub keystore_certificate_chain: Option<String>,
    /// `ssl.truststore.location`: PEM CA certificates client certificates must chain to.
    pub truststore_location: Option<PathBuf>,
    /// `ssl.truststore.certificates`: the same, inline.
    pub truststore_certificates: Option<String>,
    /// `ssl.client.auth`
    pub client_auth: ClientAuth,
    /// `ssl.principal.mapping.rules`: certificate subject to principal name.
    pub principal_mapper: PrincipalMapper,
    /// `ssl.reload.check.interval.ms` (ours): how often the keystore and truststore files
    /// are checked for a change to reload (0: only on SIGHUP).
    pub reload_check_interval_ms: u64,
    /// `ssl.handshake.timeout.ms` (ours): a TLS handshake not done by then closes the
    /// connection, so a client that never finishes one cannot hold a slot.
    pub handshake_timeout_ms: u64,
    /// `sasl.enabled.mechanisms`
    pub sasl_mechanisms: Vec<Mechanism>,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication waits
    /// before it is answered and the connection closed.
    pub failed_authentication_delay_ms: u64,
    /// `connections.max.reauth.ms` (KIP-368): a SASL session lasts this long; the client
    /// must authenticate again on the same connection before then, or its next request
    /// closes the connection. 0: sessions never expire.
    pub connections_max_reauth_ms: u64,
    /// `listener.name.<listener>.<mechanism>.connections.max.reauth.ms`: the same for one
    /// mechanism on one listener (listener name in lower case), over the setting above.
    pub connections_max_reauth_ms_overrides: Vec<(String, Mechanism, u64)>,
    /// `sasl.server.max.receive.size`: the largest SASL token read before authentication.
    pub sasl_max_receive_size: usize,
    /// `authorizer.class.name` names Kafka's StandardAuthorizer (or `acl`).
    pub authorizer_enabled: bool,
    /// `super.users`: principals allowed everything, `;`-separated as in Kafka.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`
    pub allow_everyone_if_no_acl_found: bool,
    /// The `http.*` security settings.
    pub http: HttpSecurity,
}

/// The per-listener, per-mechanism form of `connections.max.reauth.ms`, as Kafka spells it.
pub const REAUTH_MS_SUFFIX: &str = ".connections.max.reauth.ms";

/// `listener.name.<listener>.<mechanism>.connections.max.reauth.ms` split into the listener
/// (lower case) and the mechanism (any case, as Kafka writes it lower-case); `None` when
/// `name` is not of that form or names no mechanism Strom knows.
pub fn parse_reauth_override_name(name: &str) -> Option<(String, Mechanism)> {
    let middle = name
        .strip_prefix("listener.name.")?
        .strip_suffix(REAUTH_MS_SUFFIX)?;
    let (listener, mechanism) = middle.split_once('.')?;
    let mechanism = Mechanism::ALL
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(mechanism))?;
    (!listener.is_empty()).then(|| (listener.to_ascii_lowercase(), mechanism))
}

impl SecuritySettings {
    /// The session lifetime for `mechanism` on the listener named `listener`: its own
    /// setting if given, else `connections.max.reauth.ms` (Kafka's
    /// `connectionsMaxReauthMsByMechanism`).
    pub fn connections_max_reauth_ms_for(
        &self,
        listener: Option<&str>,
        mechanism: Mechanism,
    ) -> u64 {
        listener
            .and_then(|l| {
                self.connections_max_reauth_ms_overrides
                    .iter()
                    .find(|(name, m, _)| *m == mechanism && name.eq_ignore_ascii_case(l))
            })
            .map_or(self.connections_max_reauth_ms, |(_, _, ms)| *ms)
    }

    /// Whether the HTTP API asks for a login: as set, else whenever ACLs are enforced.
    pub fn http_basic(&self) -> bool {
        let default = if self.authorizer_enabled {
            HttpAuthentication::Basic
        } else {
            HttpAuthentication::None
        };
        self.http.authentication.unwrap_or(default) == HttpAuthentication::Basic
    }
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            keystore_location: None,
            keystore_key: None,
            keystore_certificate_chain: None,
            truststore_location: None,
            truststore_certificates: None,
            client_auth: ClientAuth::None,
            principal_mapper: PrincipalMapper::default(),
            reload_check_interval_ms: 5_000,
            handshake_timeout_ms: 10_000,
            sasl_mechanisms: Mechanism::SCRAM.to_vec(),
            failed_authentication_delay_ms: 100,
            sasl_max_receive_size: 524_288,
            connections_max_reauth_ms: 0,
            connections_max_reauth_ms_overrides: Vec::new(),
            authorizer_enabled: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            http: HttpSecurity::default(),
        }
    }
}

pub fn optional_string(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

pub fn parse_mechanisms(v: &str) -> Result<Vec<Mechanism>, String> {
    let mut out = Vec::new();
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m = Mechanism::from_name(&name.to_ascii_uppercase()).ok_or_else(|| {
            format!("unsupported SASL mechanism {name:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

pub fn parse_authorizer(v: &str) -> Result<bool, String> {
    match v.trim() {
        "" => Ok(false),
        STANDARD_AUTHORIZER | ACL_AUTHORIZER | AUTHORIZER_ALIAS => Ok(true),
        other => Err(format!(
            "unknown authorizer {other:?}: use {STANDARD_AUTHORIZER} (or {AUTHORIZER_ALIAS})"
        )),
    }
}

pub fn parse_super_users(v: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for p in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if !p.contains(':') {
            return Err(format!(
                "expected PrincipalType:name (e.g. User:admin), got {p:?}"
            ));
        }
        out.push(p.to_string());
    }
    Ok(out)
}
