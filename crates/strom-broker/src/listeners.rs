//! Listeners in Kafka's form: `listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://:9094`, named
//! listeners mapped to a protocol by `listener.security.protocol.map`, and the addresses
//! clients are told to use in `advertised.listeners`. Without `listeners`, `listen` is one
//! PLAINTEXT listener (and `advertised.listener` its advertised address).

use std::collections::HashMap;
use std::net::SocketAddr;

/// How a listener secures its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            other => Err(format!(
                "unknown security protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// One listener: where it binds, how it is secured, what clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name (`PLAINTEXT`, `SASL_SSL`, or a named one such as `CLIENT`).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
}

/// `NAME://host:port`; an empty host means every interface, as in Kafka.
fn parse_endpoint(s: &str) -> Result<(String, String, u16), String> {
    let (name, rest) = s
        .trim()
        .split_once("://")
        .ok_or_else(|| format!("expected NAME://HOST:PORT, got {s:?}"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("expected NAME://HOST:PORT, got {s:?}"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in {s:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((name.to_ascii_uppercase(), host.to_string(), port))
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// The protocol of each listener name: the four protocol names map to themselves, and
/// `listener.security.protocol.map` (`NAME:PROTOCOL,...`) adds or overrides names.
fn protocol_map(map: &str) -> Result<HashMap<String, SecurityProtocol>, String> {
    let mut out: HashMap<String, SecurityProtocol> = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ]
    .into_iter()
    .map(|p| (p.name().to_string(), p))
    .collect();
    for entry in split_list(map) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| format!("expected NAME:PROTOCOL, got {entry:?}"))?;
        out.insert(
            name.trim().to_ascii_uppercase(),
            SecurityProtocol::parse(protocol)?,
        );
    }
    Ok(out)
}

/// Resolves `listeners`, `listener.security.protocol.map` and `advertised.listeners`.
pub fn resolve(
    listeners: &str,
    protocol_map_setting: &str,
    advertised: &str,
) -> Result<Vec<Listener>, String> {
    let protocols = protocol_map(protocol_map_setting)?;
    let mut advertised_by_name = HashMap::new();
    for entry in split_list(advertised) {
        let (name, host, port) = parse_endpoint(entry)?;
        advertised_by_name.insert(name, (host, port));
    }
    let mut out: Vec<Listener> = Vec::new();
    for entry in split_list(listeners) {
        let (name, host, port) = parse_endpoint(entry)?;
        let protocol = *protocols.get(&name).ok_or_else(|| {
            format!("listener {name} has no protocol in listener.security.protocol.map")
        })?;
        if out.iter().any(|l| l.name == name) {
            return Err(format!("listener name {name} appears twice"));
        }
        let bind_host = if host.is_empty() { "0.0.0.0" } else { &host };
        let bind: SocketAddr = format!("{bind_host}:{port}")
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&(bind_host, port))
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or(())
            })
            .map_err(|()| format!("cannot resolve listener address {entry:?}"))?;
        let (advertised_host, advertised_port) = match advertised_by_name.remove(&name) {
            Some((h, p)) => (h, p as i32),
            None => (bind.ip().to_string(), port as i32),
        };
        out.push(Listener {
            name,
            protocol,
            bind,
            advertised_host,
            advertised_port,
        });
    }
    if let Some(name) = advertised_by_name.keys().next() {
        return Err(format!(
            "advertised.listeners names {name}, which is not in listeners"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_listeners_resolve_with_named_protocols_and_advertised_addresses() {
        let l = resolve(
            "PLAINTEXT://127.0.0.1:9092, CLIENT://127.0.0.1:9094",
            "CLIENT:SASL_SSL",
            "CLIENT://broker.example:19094",
        )
        .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(
            (l[0].advertised_host.as_str(), l[0].advertised_port),
            ("127.0.0.1", 9092)
        );
        assert_eq!(l[1].name, "CLIENT");
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            (l[1].advertised_host.as_str(), l[1].advertised_port),
            ("broker.example", 19094)
        );
    }

    #[test]
    fn bad_listeners_are_refused_with_a_reason() {
        assert!(resolve("FOO://127.0.0.1:1", "", "")
            .unwrap_err()
            .contains("FOO"));
        assert!(resolve("PLAINTEXT://127.0.0.1", "", "").is_err());
        assert!(resolve("PLAINTEXT://127.0.0.1:1", "", "SSL://h:2")
            .unwrap_err()
            .contains("SSL"));
        assert!(resolve("PLAINTEXT://127.0.0.1:1,PLAINTEXT://127.0.0.1:2", "", "").is_err());
        assert!(resolve("X://127.0.0.1:1", "X:NOPE", "").is_err());
    }
}
