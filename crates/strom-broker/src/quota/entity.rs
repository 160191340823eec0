//! Quota entities and keys as KIP-55 and KIP-546 define them. An entity names a user, a
//! client id, both, or an IP address; each part is a specific name or the default (`<default>`,
//! a null name on the wire). Which entity's quota applies to a connection follows Kafka's
//! precedence ([`precedence`]), one quota key at a time.

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// The value type of a key, which decides what values it accepts (Kafka's `QuotaConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Long,
    Int,
    Double,
}

/// The keys a user / client-id entity may carry.
const CLIENT_KEYS: &[(&str, KeyType)] = &[
    (PRODUCER_BYTE_RATE, KeyType::Long),
    (CONSUMER_BYTE_RATE, KeyType::Long),
    (REQUEST_PERCENTAGE, KeyType::Double),
    (CONTROLLER_MUTATION_RATE, KeyType::Double),
];
/// The keys an IP entity may carry.
const IP_KEYS: &[(&str, KeyType)] = &[(CONNECTION_CREATION_RATE, KeyType::Int)];

/// One part of an entity: a specific name, or `None` for the default entity.
pub type Name = Option<String>;

/// A quota entity. `None` in a field means the entity has no such part; `Some(None)` is the
/// default entity of that type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Entity {
    pub user: Option<Name>,
    pub client_id: Option<Name>,
    pub ip: Option<Name>,
}

impl Entity {
    pub fn user_client(user: Option<Name>, client_id: Option<Name>) -> Entity {
        Entity {
            user,
            client_id,
            ip: None,
        }
    }

    /// The parts, as (entity type, name) pairs in Kafka's order.
    pub fn parts(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        if let Some(n) = &self.user {
            out.push((USER, n.as_deref()));
        }
        if let Some(n) = &self.client_id {
            out.push((CLIENT_ID, n.as_deref()));
        }
        if let Some(n) = &self.ip {
            out.push((IP, n.as_deref()));
        }
        out
    }

    /// Builds an entity from wire parts with `ClientQuotaControlManager.validateEntity`'s
    /// checks; the error is Kafka's (code, message).
    pub fn from_parts(parts: &[(String, Option<String>)]) -> Result<Entity, (Invalid, String)> {
        if parts.is_empty() {
            return Err((Invalid::Request, "Invalid empty client quota entity".into()));
        }
        let mut e = Entity::default();
        for (kind, name) in parts {
            let slot = match kind.as_str() {
                USER => &mut e.user,
                CLIENT_ID => &mut e.client_id,
                IP => &mut e.ip,
                other => {
                    return Err((
                        Invalid::Unsupported,
                        format!("Unhandled client quota entity type: {other}"),
                    ))
                }
            };
            if slot.is_some() {
                return Err((
                    Invalid::Request,
                    format!("Invalid empty client quota entity, duplicate entity entry {kind}"),
                ));
            }
            if kind == IP {
                if let Some(ip) = name {
                    if ip.parse::<std::net::IpAddr>().is_err() {
                        return Err((Invalid::Request, format!("Unable to resolve address {ip}")));
                    }
                }
            }
            if name.as_deref() == Some("") {
                return Err((Invalid::Request, format!("Empty {kind} not supported")));
            }
            *slot = Some(name.clone());
        }
        if e.ip.is_some() && (e.user.is_some() || e.client_id.is_some()) {
            return Err((
                Invalid::Request,
                "Invalid quota entity combination, IP entity should not be used with user/client ID entity.".into(),
            ));
        }
        Ok(e)
    }

    /// Kafka's `validateQuotaKeyValue` for a value to set on this entity.
    pub fn check_value(&self, key: &str, value: f64) -> Result<(), String> {
        let keys = if self.ip.is_some() {
            IP_KEYS
        } else {
            CLIENT_KEYS
        };
        let Some((_, kind)) = keys.iter().find(|(k, _)| *k == key) else {
            return Err(format!("Invalid configuration key {key}"));
        };
        if value.is_nan() || value <= 0.0 {
            return Err(format!("Quota {key} must be greater than 0"));
        }
        let max = match kind {
            KeyType::Double => return Ok(()),
            KeyType::Int => i32::MAX as f64,
            KeyType::Long => i64::MAX as f64,
        };
        if value > max {
            let kind = if *kind == KeyType::Int { "INT" } else { "LONG" };
            return Err(format!(
                "Proposed value for {key} is too large for a {kind}."
            ));
        }
        if (value % 1.0).abs() > 1e-6 {
            return Err(format!("{key} cannot be a fractional value."));
        }
        Ok(())
    }
}

/// Which Kafka error an invalid entity gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// INVALID_REQUEST
    Request,
    /// UNSUPPORTED_VERSION (an entity type Kafka does not know)
    Unsupported,
}

/// The entities whose quota may apply to `user` with `client_id`, most specific first
/// (KIP-55's order, as `DefaultQuotaCallback` searches it).
pub fn precedence(user: &str, client_id: &str) -> [Entity; 8] {
    let u = || Some(Some(user.to_string()));
    let c = || Some(Some(client_id.to_string()));
    let d = || Some(None);
    [
        Entity::user_client(u(), c()),
        Entity::user_client(u(), d()),
        Entity::user_client(u(), None),
        Entity::user_client(d(), c()),
        Entity::user_client(d(), d()),
        Entity::user_client(d(), None),
        Entity::user_client(None, c()),
        Entity::user_client(None, d()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        p.iter()
            .map(|(k, n)| (k.to_string(), n.map(str::to_string)))
            .collect()
    }

    #[test]
    fn entities_are_checked_as_kafka_does() {
        let ok = Entity::from_parts(&parts(&[("user", Some("alice")), ("client-id", None)]));
        assert_eq!(
            ok.unwrap(),
            Entity::user_client(Some(Some("alice".into())), Some(None))
        );
        for (bad, kind) in [
            (vec![], Invalid::Request),
            (
                vec![("user", Some("a")), ("user", Some("b"))],
                Invalid::Request,
            ),
            (vec![("user", Some(""))], Invalid::Request),
            (vec![("ip", Some("not-an-ip"))], Invalid::Request),
            (
                vec![("ip", Some("127.0.0.1")), ("user", None)],
                Invalid::Request,
            ),
            (vec![("group", Some("g"))], Invalid::Unsupported),
        ] {
            assert_eq!(
                Entity::from_parts(&parts(&bad)).unwrap_err().0,
                kind,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn values_are_checked_by_key_type() {
        let user = Entity::user_client(Some(None), None);
        let ip = Entity {
            ip: Some(None),
            ..Entity::default()
        };
        assert!(user.check_value(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(user.check_value(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(user.check_value(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(user.check_value(PRODUCER_BYTE_RATE, 0.0).is_err());
        assert!(user.check_value("bogus", 1.0).is_err());
        assert!(user.check_value(CONNECTION_CREATION_RATE, 1.0).is_err());
        assert!(ip.check_value(CONNECTION_CREATION_RATE, 10.0).is_ok());
        assert!(ip.check_value(CONNECTION_CREATION_RATE, 3e9).is_err());
        assert!(ip.check_value(PRODUCER_BYTE_RATE, 10.0).is_err());
    }
}
