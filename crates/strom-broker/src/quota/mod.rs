//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-219, KIP-612): byte rates for produce and
//! fetch and a share of handler time per user / client id, and connection limits per IP.
//!
//! Layout: [`entity`] (entities, keys, Kafka's validation and precedence), [`store`] (the
//! durable table), [`rate`] (the windowed rate and the throttle time it implies),
//! [`connections`] (`max.connections.per.ip` and `connection_creation_rate`).
//!
//! A request's cost is recorded in the sensor of the entity whose quota applies (one sensor
//! per user / client-id pair the entity covers, as Kafka's metric tags); if the rate is then
//! over the bound, the answer is the throttle time, which the response carries and the
//! connection honours by not reading the next request for that long (KIP-219).
//!
//! Cost when no quota of a kind is set: one relaxed atomic load per request. With quotas, a
//! read lock on the table and one lock on the sensors of that kind.

pub mod connections;
pub mod entity;
pub mod rate;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};

use entity::{Entity, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE};
use rate::Rate;
use store::{QuotaStore, QuotaStoreError, Table};

/// Sensors kept per quota kind; past it, idle ones are forgotten first (Kafka expires a
/// sensor after an hour without use).
pub const QUOTA_SENSORS_MAX: usize = 100_000;

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Bytes of produce requests per second (`producer_byte_rate`).
    Produce,
    /// Bytes of fetch responses per second (`consumer_byte_rate`).
    Fetch,
    /// Handler time as a percentage of one second (`request_percentage`).
    Request,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Produce, Kind::Fetch, Kind::Request];

    pub fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }

    /// The name Kafka's sensors and our metric label use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Fetch => "fetch",
            Kind::Request => "request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Milliseconds since the epoch, the clock the sensors run on.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The user a principal's quotas are looked up by: `User:alice` is `alice`.
pub fn quota_user(principal: &str) -> &str {
    principal.strip_prefix("User:").unwrap_or(principal)
}

/// A sensor: the (user, client id) tags of the applying entity, as Kafka's metric tags (an
/// entity without a user part shares one sensor over all users, and so on).
type SensorKey = (String, String);

pub struct Quotas {
    store: QuotaStore,
    table: RwLock<Arc<Table>>,
    /// Whether any entity sets each kind's key; off means the hot path does nothing.
    active: [AtomicBool; 3],
    sensors: [Mutex<HashMap<SensorKey, Rate>>; 3],
    window_num: u32,
    window_ms: u64,
    /// Serializes `alter`s: each rebuilds the table from the one before.
    alter_lock: Mutex<()>,
    pub connections: connections::ConnectionQuotas,
}

/// A change to one entity: a key set to a value, or removed (`None`).
pub type Change = (Entity, Vec<(String, Option<f64>)>);

impl Quotas {
    pub fn open(
        meta_dir: &Path,
        config: &crate::config::BrokerConfig,
    ) -> Result<Quotas, QuotaStoreError> {
        let (store, table) = QuotaStore::open(meta_dir)?;
        let window_ms = u64::from(config.quota_window_size_seconds) * 1000;
        let quotas = Quotas {
            store,
            table: RwLock::new(Arc::new(Table::new())),
            active: Default::default(),
            sensors: Default::default(),
            window_num: config.quota_window_num,
            window_ms,
            alter_lock: Mutex::new(()),
            connections: connections::ConnectionQuotas::new(config, window_ms),
        };
        quotas.install(table);
        Ok(quotas)
    }

    fn install(&self, table: Table) {
        for kind in Kind::ALL {
            let any = table.values().any(|v| v.contains_key(kind.key()));
            self.active[kind.index()].store(any, Relaxed);
        }
        self.connections.set_rates(&table);
        *self.table.write() = Arc::new(table);
    }

    /// The whole table, for DescribeClientQuotas.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().clone()
    }

    /// Applies `changes` (already validated) and writes them durably; with `validate_only`
    /// nothing changes.
    pub fn alter(&self, changes: Vec<Change>) -> Result<(), QuotaStoreError> {
        let _one_writer = self.alter_lock.lock();
        let mut table: Table = (**self.table.read()).clone();
        for (entity, ops) in changes {
            let values = table.entry(entity.clone()).or_default();
            for (key, value) in ops {
                match value {
                    Some(v) => values.insert(key, v),
                    None => values.remove(&key),
                };
            }
            if values.is_empty() {
                table.remove(&entity);
            }
        }
        self.store.write(&table)?;
        self.install(table);
        Ok(())
    }

    /// Reads the file again (cluster mode: another node's change was written to it).
    pub fn reload(&self) -> Result<(), QuotaStoreError> {
        let _one_writer = self.alter_lock.lock();
        let table = self.store.read()?;
        self.install(table);
        Ok(())
    }

    /// The length of one sample window.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Whether any quota of `kind` is set (the only check made while none is).
    pub fn active(&self, kind: Kind) -> bool {
        self.active[kind.index()].load(Relaxed)
    }

    /// The quota of `kind` that applies to `user` with `client_id`, and the sensor it is
    /// measured in.
    fn applying(&self, kind: Kind, user: &str, client_id: &str) -> Option<(f64, SensorKey)> {
        let table = self.table.read().clone();
        entity::precedence(user, client_id)
            .into_iter()
            .find_map(|e| {
                let bound = *table.get(&e)?.get(kind.key())?;
                let tag = |part: &Option<entity::Name>, actual: &str| {
                    if part.is_some() {
                        actual.to_string()
                    } else {
                        String::new()
                    }
                };
                Some((bound, (tag(&e.user, user), tag(&e.client_id, client_id))))
            })
    }

    /// The bound of `kind` for this client, if one applies.
    pub fn bound(&self, kind: Kind, user: &str, client_id: &str) -> Option<f64> {
        self.applying(kind, user, client_id).map(|(b, _)| b)
    }

    /// The most a fetch may return so one quota window is not overrun at once (Kafka's
    /// `getMaxValueInQuotaWindow`).
    pub fn max_bytes_in_window(&self, user: &str, client_id: &str) -> Option<usize> {
        let bound = self.bound(Kind::Fetch, user, client_id)?;
        Some((bound * (self.window_ms as f64 / 1000.0)) as usize)
    }

    /// Records `value` against the applying quota of `kind` and returns how long to
    /// throttle the client (0 when within it or when no quota applies).
    pub fn record(&self, kind: Kind, user: &str, client_id: &str, value: f64) -> u64 {
        let Some((bound, key)) = self.applying(kind, user, client_id) else {
            return 0;
        };
        let now = now_ms();
        let mut sensors = self.sensors[kind.index()].lock();
        if sensors.len() >= QUOTA_SENSORS_MAX && !sensors.contains_key(&key) {
            let span = self.window_ms * u64::from(self.window_num);
            sensors.retain(|_, r| r.last_sample_ms() + span > now);
            if sensors.len() >= QUOTA_SENSORS_MAX {
                sensors.clear();
            }
        }
        let rate = sensors
            .entry(key)
            .or_insert_with(|| Rate::new(self.window_num, self.window_ms, now));
        rate.record(value, now);
        rate.throttle_ms(bound, now)
    }

    /// Takes back a recorded value (a throttled fetch returns no data, as Kafka's
    /// `unrecordQuotaSensor`).
    pub fn unrecord(&self, kind: Kind, user: &str, client_id: &str, value: f64) {
        let Some((_, key)) = self.applying(kind, user, client_id) else {
            return;
        };
        if let Some(rate) = self.sensors[kind.index()].lock().get_mut(&key) {
            rate.unrecord(value);
        }
    }
}

/// Describe's filter over the table (KIP-546): each component matches an entity part by exact
/// name, the default, or any name; `strict` also excludes entities with other parts.
pub struct Filter {
    pub components: Vec<(String, Match)>,
    pub strict: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Exact(String),
    Default,
    Any,
}

impl Filter {
    pub fn matches(&self, e: &Entity) -> bool {
        let part = |kind: &str| match kind {
            entity::USER => e.user.as_ref(),
            entity::CLIENT_ID => e.client_id.as_ref(),
            _ => e.ip.as_ref(),
        };
        let each = self
            .components
            .iter()
            .all(|(kind, m)| match (part(kind), m) {
                (None, _) => false,
                (Some(_), Match::Any) => true,
                (Some(name), Match::Default) => name.is_none(),
                (Some(name), Match::Exact(want)) => name.as_deref() == Some(want.as_str()),
            });
        let only = !self.strict
            || e.parts()
                .iter()
                .all(|(kind, _)| self.components.iter().any(|(k, _)| k == kind));
        each && only
    }
}

/// The entities `filter` selects, with their values.
pub fn describe(table: &Table, filter: &Filter) -> Vec<(Entity, BTreeMap<String, f64>)> {
    table
        .iter()
        .filter(|(e, _)| filter.matches(e))
        .map(|(e, v)| (e.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(dir: &Path) -> Quotas {
        Quotas::open(dir, &crate::config::BrokerConfig::default()).unwrap()
    }

    fn user(u: Option<&str>) -> Option<entity::Name> {
        Some(u.map(str::to_string))
    }

    #[test]
    fn the_most_specific_entity_wins_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let q = quotas(dir.path());
        assert!(!q.active(Kind::Produce));
        q.alter(vec![
            (
                Entity::user_client(user(None), None),
                vec![(PRODUCER_BYTE_RATE.into(), Some(100.0))],
            ),
            (
                Entity::user_client(user(Some("alice")), None),
                vec![(PRODUCER_BYTE_RATE.into(), Some(200.0))],
            ),
            (
                Entity::user_client(None, user(Some("app"))),
                vec![
                    (PRODUCER_BYTE_RATE.into(), Some(300.0)),
                    (CONSUMER_BYTE_RATE.into(), Some(400.0)),
                ],
            ),
        ])
        .unwrap();
        assert!(q.active(Kind::Produce) && q.active(Kind::Fetch) && !q.active(Kind::Request));
        assert_eq!(q.bound(Kind::Produce, "alice", "app"), Some(200.0));
        assert_eq!(q.bound(Kind::Produce, "bob", "app"), Some(100.0));
        // No user entity sets consumer_byte_rate, so the client-id one applies.
        assert_eq!(q.bound(Kind::Fetch, "alice", "app"), Some(400.0));
        assert_eq!(q.bound(Kind::Fetch, "alice", "other"), None);
        // Both users share the <default> user's bound but not its sensor.
        assert_eq!(
            q.applying(Kind::Produce, "bob", "x").unwrap().1,
            ("bob".to_string(), String::new())
        );
        // Removing the last key removes the entity, and a reopen sees the same table.
        q.alter(vec![(
            Entity::user_client(user(Some("alice")), None),
            vec![(PRODUCER_BYTE_RATE.into(), None)],
        )])
        .unwrap();
        assert_eq!(q.bound(Kind::Produce, "alice", "app"), Some(100.0));
        assert_eq!(quotas(dir.path()).table(), q.table());
        assert_eq!(q.table().len(), 2);
    }

    #[test]
    fn filters_follow_kip_546() {
        let e = |u: Option<Option<&str>>, c: Option<Option<&str>>| {
            Entity::user_client(
                u.map(|n| n.map(str::to_string)),
                c.map(|n| n.map(str::to_string)),
            )
        };
        let alice_app = e(Some(Some("alice")), Some(Some("app")));
        let default_user = e(Some(None), None);
        let users_any = Filter {
            components: vec![("user".into(), Match::Any)],
            strict: false,
        };
        assert!(users_any.matches(&alice_app) && users_any.matches(&default_user));
        let strict = Filter {
            strict: true,
            ..users_any
        };
        assert!(!strict.matches(&alice_app) && strict.matches(&default_user));
        let default = Filter {
            components: vec![("user".into(), Match::Default)],
            strict: false,
        };
        assert!(!default.matches(&alice_app) && default.matches(&default_user));
        let exact = Filter {
            components: vec![("client-id".into(), Match::Exact("app".into()))],
            strict: false,
        };
        assert!(exact.matches(&alice_app) && !exact.matches(&default_user));
    }
}
