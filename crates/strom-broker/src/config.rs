//! Broker settings: one table of every setting with its Kafka-style name, default and parser.
//!
//! Sources, later ones winning: built-in defaults, a TOML file (`--config`), environment
//! variables `STROM_<NAME>` (the name upper-cased, dots as underscores), and `--set name=value`.
//! An unknown name or a bad value stops startup with a message that names it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::security::settings::{
    optional_string, parse_authorizer, parse_http_protocol, parse_mechanisms,
    parse_reauth_override_name, parse_super_users,
};

/// When a produce is acknowledged relative to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// acks=all waits for fsync (group commit); acks=1 waits for the page cache. The default.
    AcksAll,
    /// acks=1 waits for fsync too.
    Always,
    /// Never fsync on the produce path: Kafka's own behaviour, relying on the OS.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "acks-all" | "acks_all" | "all" => Ok(Self::AcksAll),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("expected acks-all, always or never, got {s:?}")),
        }
    }
}

/// Every broker setting, typed. Field docs name the setting.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `listen`: address of the Kafka listener.
    pub listen: SocketAddr,
    /// `advertised.listener`: host:port given to clients in Metadata (default: `listen`).
    pub advertised_listener: Option<String>,
    /// `data.dir`: where topics live.
    pub data_dir: PathBuf,
    /// `json.listen`: address of the JSON-over-TCP listener (off unless set).
    pub json_listen: Option<SocketAddr>,
    /// `http.listen`: address of the HTTP listener (metrics, health, JSON API, console); `None`
    /// when set to an empty value.
    pub http_listen: Option<SocketAddr>,
    /// Whether `http.listen` was given by the user. A default address that is taken only
    /// warns (several brokers on one machine); an explicit one that cannot be bound is fatal.
    pub http_listen_explicit: bool,
    /// `http.max.connections`: concurrent HTTP connections.
    pub http_max_connections: usize,
    /// `metrics.enabled`: count requests, bytes and latencies on the request path.
    pub metrics_enabled: bool,
    /// `json.max.line.bytes`: longest JSON request line accepted.
    pub json_max_line_bytes: usize,
    /// `json.listener.security.protocol`: TLS (with the `ssl.*` keystore) and/or a required
    /// `authenticate` request on the `json.listen` listener.
    pub json_security_protocol: crate::listeners::SecurityProtocol,
    /// `node.id`
    pub node_id: i32,
    /// `num.partitions`: partitions of auto-created topics.
    pub num_partitions: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `log.segment.bytes`
    pub log_segment_bytes: u64,
    /// `log.roll.ms`
    pub log_roll_ms: i64,
    /// `log.retention.ms` (-1: forever)
    pub log_retention_ms: i64,
    /// `log.retention.bytes` (-1: unlimited)
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `log.index.interval.bytes`
    pub log_index_interval_bytes: u32,
    /// `log.cleaner.enable`: run the log cleaner for topics with `cleanup.policy=compact`.
    pub log_cleaner_enable: bool,
    /// `log.cleaner.threads`: cleaner tasks, each owning a share of the partitions (0: none).
    pub log_cleaner_threads: usize,
    /// `log.cleaner.backoff.ms`: the cleaner's pause when no partition needed cleaning.
    pub log_cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: most memory the cleaners' key maps take together
    /// (each thread gets its share, as Kafka).
    pub log_cleaner_dedupe_buffer_size: usize,
    /// `log.cleaner.min.cleanable.ratio`: default of `min.cleanable.dirty.ratio`.
    pub log_cleaner_min_cleanable_ratio: f64,
    /// `log.cleaner.delete.retention.ms`: default of `delete.retention.ms`.
    pub log_cleaner_delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`: default of `min.compaction.lag.ms`.
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// `log.cleaner.max.compaction.lag.ms`: default of `max.compaction.lag.ms`.
    pub log_cleaner_max_compaction_lag_ms: i64,
    /// `message.max.bytes`: largest record batch accepted.
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes`: largest request frame accepted.
    pub socket_request_max_bytes: usize,
    /// `decompressed.batch.max.bytes`: most bytes the records of one stored batch may
    /// decompress to when the broker decodes them (the JSON front end's reads). A batch that
    /// expands past it (a compression bomb) is refused with an error instead of exhausting
    /// memory.
    pub decompressed_batch_max_bytes: usize,
    /// `log.flush.interval.messages`: fsync a partition after this many messages (-1: never).
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms`: fsync every partition this often (-1: never).
    pub log_flush_interval_ms: i64,
    /// `log.fsync`: acks-all (default), always or never.
    pub fsync: FsyncPolicy,
    /// `log.flush.offset.checkpoint.interval.ms`: how often the recovery points (the flushed
    /// offset of every partition) are written to the checkpoint file.
    pub recovery_point_checkpoint_interval_ms: u64,
    /// `producer.id.expiration.ms`: idempotent-producer state of a producer that wrote nothing
    /// to a partition for this long is forgotten.
    pub producer_id_expiration_ms: i64,
    /// `producer.state.max.producers.per.partition`: most producers whose state one
    /// partition keeps; beyond it the least recently active is forgotten.
    pub producer_state_max_producers: usize,
    /// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a transactional
    /// producer may ask for (INVALID_TRANSACTION_TIMEOUT beyond it).
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often open
    /// transactions past their timeout are aborted.
    pub transaction_cleanup_interval_ms: u64,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction open and no
    /// change for this long is forgotten.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`: how often expired
    /// transactional ids are looked for.
    pub transaction_remove_expired_interval_ms: u64,
    /// `transaction.end.wait.for.markers` (Strom's): EndTxn answers once the markers are
    /// written (true), or once the decision is durable, as Kafka's coordinator does (false).
    pub transaction_end_waits_for_markers: bool,
    /// `log.fsync.group.commit.ms`: how long the flusher waits to gather more requests into one
    /// fsync round.
    pub group_commit_ms: u64,
    /// `max.connections`: concurrent client connections per listener.
    pub max_connections: usize,
    /// `max.connections.per.ip`: concurrent client connections from one address, over all
    /// listeners (Kafka's default, 2147483647, is no bound in practice).
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `ip:count,...`, a bound per address that replaces
    /// `max.connections.per.ip` for it.
    pub max_connections_per_ip_overrides: Vec<(std::net::IpAddr, usize)>,
    /// `quota.window.num`: how many samples a client quota's rate is measured over.
    pub quota_window_num: u32,
    /// `quota.window.size.seconds`: the length of one such sample.
    pub quota_window_size_seconds: u32,
    /// `queued.max.requests`: requests read ahead but not yet answered, per connection.
    pub queued_max_requests: usize,
    /// `queued.max.request.bytes`: bytes of requests read ahead but not yet answered, over all
    /// connections; 0 means no bound (Kafka's -1). When reached, connections stop reading
    /// their sockets until replies go out, so producers waiting on fsync cannot fill memory.
    pub queued_max_request_bytes: usize,
    /// `fetch.max.bytes`: upper bound on one fetch response.
    pub fetch_max_bytes: usize,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions kept (KIP-227); 0 keeps none.
    pub fetch_session_cache_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`: how long a session is safe from eviction.
    pub fetch_session_eviction_ms: i64,
    /// `group.initial.rebalance.delay.ms`
    pub group_initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups)
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups)
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.assignors`: the server assignors, the first being the default
    pub group_consumer_assignors: Vec<String>,
    /// `group.consumer.max.size`
    pub group_consumer_max_size: i32,
    /// `group.consumer.migration.policy`: online conversion of live groups between protocols
    pub group_consumer_migration_policy: strom_group::MigrationPolicy,
    /// `offsets.retention.minutes`
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `shutdown.timeout.ms`: how long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    /// `connections.max.idle.ms`: a connection that completes no request for this long is
    /// closed, so a stalled or half-sent frame cannot hold a connection slot forever.
    pub connections_max_idle_ms: u64,
    /// `listeners`, `listener.security.protocol.map`, `advertised.listeners` as given.
    pub listeners_setting: String,
    pub listener_protocol_map_setting: String,
    pub advertised_listeners_setting: String,
    /// Every listener, resolved by `build` (one PLAINTEXT listener at `listen` without
    /// `listeners`).
    pub listeners: Vec<crate::listeners::Listener>,
    /// TLS, SASL and authorizer settings.
    pub security: crate::security::settings::SecuritySettings,
    /// `controller.quorum.voters`: `id@host:port,...`; empty (the default) runs a single node
    /// with no network consensus.
    pub controller_quorum_voters: String,
    /// `controller.listen`: where the inter-node RPC (raft and replication) listens.
    pub controller_listen: Option<SocketAddr>,
    /// `default.replication.factor`: replicas of topics created without one.
    pub default_replication_factor: i16,
    /// `min.insync.replicas`: acks=all is refused with NOT_ENOUGH_REPLICAS below this ISR size.
    pub min_insync_replicas: i32,
    /// `offsets.topic.replication.factor`: cluster mode's replicas of each `__consumer_offsets`
    /// partition (fewer live brokers: FindCoordinator answers COORDINATOR_NOT_AVAILABLE, as
    /// Kafka does). Ignored on a single node.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.num.partitions`: cluster mode's `__consumer_offsets` partitions, fixed
    /// when the topic is first made. Kafka's default is 50; ours is 10 because each follower
    /// partition runs its own fetch loop today.
    pub offsets_topic_num_partitions: i32,
    /// `transaction.state.log.replication.factor`: cluster mode's replicas of each
    /// `__transaction_state` partition. Ignored on a single node.
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.num.partitions`: cluster mode's `__transaction_state`
    /// partitions, fixed when the topic is first made (Kafka's default is 50; ours is 10, as
    /// for the offsets topic).
    pub transaction_state_log_num_partitions: i32,
    /// `auto.leader.rebalance.enable`: cluster mode's controller moves leadership back to each
    /// partition's preferred replica (the first assigned) once it is in sync again.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`
    pub leader_imbalance_check_interval_seconds: u64,
    /// `leader.imbalance.per.broker.percentage`: a broker's share of preferred partitions it
    /// does not lead above which they move back.
    pub leader_imbalance_per_broker_percentage: u32,
    /// `broker.session.timeout.ms`: the controller fences a broker silent this long.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub broker_heartbeat_interval_ms: u64,
    /// `controller.quorum.election.timeout.ms`
    pub controller_quorum_election_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms`: deadline of one inter-node call.
    pub controller_quorum_request_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for new data.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.fetch.max.bytes`: bytes one follower fetch asks for.
    pub replica_fetch_max_bytes: u32,
}

impl BrokerConfig {
    /// Resolves the listeners from `listeners` (Kafka's form) or else `listen`.
    fn resolve_listeners(&mut self) -> Result<(), String> {
        use crate::listeners::{Listener, SecurityProtocol};
        self.listeners = if self.listeners_setting.trim().is_empty() {
            let (advertised_host, advertised_port) = self.advertised();
            vec![Listener {
                name: SecurityProtocol::Plaintext.name().to_string(),
                protocol: SecurityProtocol::Plaintext,
                bind: self.listen,
                advertised_host,
                advertised_port,
            }]
        } else {
            let listeners = crate::listeners::resolve(
                &self.listeners_setting,
                &self.listener_protocol_map_setting,
                &self.advertised_listeners_setting,
            )?;
            if listeners.is_empty() {
                return Err("no listener given".into());
            }
            // `listen` is the first listener, so code that needs one address keeps working.
            self.listen = listeners[0].bind;
            self.advertised_listener = Some(format!(
                "{}:{}",
                listeners[0].advertised_host, listeners[0].advertised_port
            ));
            listeners
        };
        Ok(())
    }

    pub fn advertised(&self) -> (String, i32) {
        match &self.advertised_listener {
            Some(a) => match a.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().unwrap_or(9092)),
                None => (a.clone(), 9092),
            },
            None => (self.listen.ip().to_string(), self.listen.port() as i32),
        }
    }

    /// Cluster mode: `controller.quorum.voters` is set.
    pub fn clustered(&self) -> bool {
        !self.controller_quorum_voters.is_empty()
    }

    pub fn retention_check_interval(&self) -> Duration {
        Duration::from_millis(self.log_retention_check_interval_ms.max(1))
    }
}

type Setter = fn(&mut BrokerConfig, &str) -> Result<(), String>;

fn parse<T: std::str::FromStr>(v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse::<T>().map_err(|e| format!("{e}"))
}

/// Stores a parsed value; keeps each row of the settings table one expression.
fn put<T>(slot: &mut T, value: T) -> Result<(), String> {
    *slot = value;
    Ok(())
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

/// `max.connections.per.ip.overrides`: `ip:count` pairs separated by commas (an IPv6
/// address is everything before the last colon).
fn parse_ip_overrides(v: &str) -> Result<Vec<(std::net::IpAddr, usize)>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (ip, count) = pair
                .rsplit_once(':')
                .ok_or_else(|| format!("expected ip:count, got {pair:?}"))?;
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let ip = ip
                .parse()
                .map_err(|_| format!("{ip:?} is not an IP address"))?;
            Ok((ip, parse(count)?))
        })
        .collect()
}

fn non_negative<T: PartialOrd + Default + std::fmt::Display>(v: T) -> Result<T, String> {
    if v >= T::default() {
        Ok(v)
    } else {
        Err(format!("must not be negative, got {v}"))
    }
}

fn positive<T: PartialOrd + Default + std::fmt::Display>(v: T) -> Result<T, String> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(format!("must be positive, got {v}"))
    }
}

/// Where the HTTP listener (metrics, health, console) listens unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9644";

/// The settings table: name, default (as text, parsed like user input), setter.
const SETTINGS: &[(&str, &str, Setter)] = &[
    ("listen", "127.0.0.1:9092", |c, v| {
        put(&mut c.listen, parse(v)?)
    }),
    ("advertised.listener", "", |c, v| {
        c.advertised_listener = (!v.is_empty()).then(|| v.to_string());
        if let Some(a) = &c.advertised_listener {
            let (_, port) = a.rsplit_once(':').ok_or("expected HOST:PORT")?;
            parse::<u16>(port)?;
        }
        Ok(())
    }),
    ("data.dir", "./kafka_data", |c, v| {
        put(&mut c.data_dir, PathBuf::from(v))
    }),
    ("json.listen", "", |c, v| {
        put(
            &mut c.json_listen,
            if v.is_empty() { None } else { Some(parse(v)?) },
        )
    }),
    ("http.listen", DEFAULT_HTTP_LISTEN, |c, v| {
        put(
            &mut c.http_listen,
            if v.is_empty() { None } else { Some(parse(v)?) },
        )
    }),
    ("http.max.connections", "256", |c, v| {
        put(&mut c.http_max_connections, positive(parse(v)?)?)
    }),
    ("http.authentication", "", |c, v| {
        put(
            &mut c.security.http.authentication,
            if v.trim().is_empty() {
                None
            } else {
                Some(parse(v)?)
            },
        )
    }),
    ("http.metrics.authentication.enable", "false", |c, v| {
        put(&mut c.security.http.metrics_authentication, parse_bool(v)?)
    }),
    ("http.listener.security.protocol", "PLAINTEXT", |c, v| {
        put(&mut c.security.http.tls, parse_http_protocol(v)?)
    }),
    ("http.authentication.cache.ms", "60000", |c, v| {
        put(&mut c.security.http.cache_ms, parse(v)?)
    }),
    ("http.authentication.cache.max.entries", "1000", |c, v| {
        put(&mut c.security.http.cache_max_entries, positive(parse(v)?)?)
    }),
    ("metrics.enabled", "true", |c, v| {
        put(&mut c.metrics_enabled, parse_bool(v)?)
    }),
    ("json.max.line.bytes", "1048576", |c, v| {
        put(&mut c.json_max_line_bytes, positive(parse(v)?)?)
    }),
    ("json.listener.security.protocol", "PLAINTEXT", |c, v| {
        put(
            &mut c.json_security_protocol,
            crate::listeners::SecurityProtocol::parse(v)?,
        )
    }),
    ("node.id", "1", |c, v| put(&mut c.node_id, parse(v)?)),
    ("num.partitions", "1", |c, v| {
        put(&mut c.num_partitions, positive(parse(v)?)?)
    }),
    ("auto.create.topics.enable", "true", |c, v| {
        put(&mut c.auto_create_topics, parse_bool(v)?)
    }),
    ("log.segment.bytes", "1073741824", |c, v| {
        let n: u64 = positive(parse(v)?)?;
        if n < 14 {
            return Err("must be at least 14".into());
        }
        put(&mut c.log_segment_bytes, n)
    }),
    ("log.roll.ms", "604800000", |c, v| {
        put(&mut c.log_roll_ms, positive(parse(v)?)?)
    }),
    ("log.retention.ms", "604800000", |c, v| {
        put(&mut c.log_retention_ms, parse(v)?)
    }),
    ("log.retention.bytes", "-1", |c, v| {
        put(&mut c.log_retention_bytes, parse(v)?)
    }),
    ("log.retention.check.interval.ms", "300000", |c, v| {
        put(&mut c.log_retention_check_interval_ms, positive(parse(v)?)?)
    }),
    ("log.index.interval.bytes", "4096", |c, v| {
        put(&mut c.log_index_interval_bytes, parse(v)?)
    }),
    ("log.cleaner.enable", "true", |c, v| {
        put(&mut c.log_cleaner_enable, parse_bool(v)?)
    }),
    ("log.cleaner.threads", "1", |c, v| {
        let threads: usize = parse(v)?;
        if threads > crate::metrics::CLEANER_THREADS_MAX {
            return Err(format!(
                "at most {} cleaner threads, got {threads}",
                crate::metrics::CLEANER_THREADS_MAX
            ));
        }
        put(&mut c.log_cleaner_threads, threads)
    }),
    ("log.cleaner.backoff.ms", "15000", |c, v| {
        put(&mut c.log_cleaner_backoff_ms, positive(parse(v)?)?)
    }),
    ("log.cleaner.dedupe.buffer.size", "134217728", |c, v| {
        put(&mut c.log_cleaner_dedupe_buffer_size, positive(parse(v)?)?)
    }),
    ("log.cleaner.min.cleanable.ratio", "0.5", |c, v| {
        let ratio: f64 = parse(v)?;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!("must be between 0 and 1, got {ratio}"));
        }
        put(&mut c.log_cleaner_min_cleanable_ratio, ratio)
    }),
    ("log.cleaner.delete.retention.ms", "86400000", |c, v| {
        put(
            &mut c.log_cleaner_delete_retention_ms,
            non_negative(parse(v)?)?,
        )
    }),
    ("log.cleaner.min.compaction.lag.ms", "0", |c, v| {
        put(
            &mut c.log_cleaner_min_compaction_lag_ms,
            non_negative(parse(v)?)?,
        )
    }),
    (
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        |c, v| {
            put(
                &mut c.log_cleaner_max_compaction_lag_ms,
                positive(parse(v)?)?,
            )
        },
    ),
    ("message.max.bytes", "1048588", |c, v| {
        put(&mut c.message_max_bytes, positive(parse(v)?)?)
    }),
    ("socket.request.max.bytes", "104857600", |c, v| {
        put(&mut c.socket_request_max_bytes, positive(parse(v)?)?)
    }),
    ("decompressed.batch.max.bytes", "67108864", |c, v| {
        put(&mut c.decompressed_batch_max_bytes, positive(parse(v)?)?)
    }),
    ("log.flush.interval.messages", "-1", |c, v| {
        put(&mut c.log_flush_interval_messages, parse(v)?)
    }),
    ("log.flush.interval.ms", "-1", |c, v| {
        put(&mut c.log_flush_interval_ms, parse(v)?)
    }),
    ("log.fsync", "acks-all", |c, v| put(&mut c.fsync, parse(v)?)),
    (
        "log.flush.offset.checkpoint.interval.ms",
        "60000",
        |c, v| {
            put(
                &mut c.recovery_point_checkpoint_interval_ms,
                positive(parse(v)?)?,
            )
        },
    ),
    ("producer.id.expiration.ms", "86400000", |c, v| {
        put(&mut c.producer_id_expiration_ms, positive(parse(v)?)?)
    }),
    (
        "producer.state.max.producers.per.partition",
        "10000",
        |c, v| put(&mut c.producer_state_max_producers, positive(parse(v)?)?),
    ),
    ("transaction.max.timeout.ms", "900000", |c, v| {
        put(&mut c.transaction_max_timeout_ms, positive(parse(v)?)?)
    }),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
        |c, v| put(&mut c.transaction_cleanup_interval_ms, positive(parse(v)?)?),
    ),
    ("transaction.end.wait.for.markers", "true", |c, v| {
        put(&mut c.transaction_end_waits_for_markers, parse_bool(v)?)
    }),
    ("transactional.id.expiration.ms", "604800000", |c, v| {
        put(&mut c.transactional_id_expiration_ms, positive(parse(v)?)?)
    }),
    (
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        "3600000",
        |c, v| {
            put(
                &mut c.transaction_remove_expired_interval_ms,
                positive(parse(v)?)?,
            )
        },
    ),
    ("log.fsync.group.commit.ms", "1", |c, v| {
        put(&mut c.group_commit_ms, parse(v)?)
    }),
    ("max.connections", "10000", |c, v| {
        put(&mut c.max_connections, positive(parse(v)?)?)
    }),
    ("max.connections.per.ip", "2147483647", |c, v| {
        put(&mut c.max_connections_per_ip, positive(parse(v)?)?)
    }),
    ("max.connections.per.ip.overrides", "", |c, v| {
        put(
            &mut c.max_connections_per_ip_overrides,
            parse_ip_overrides(v)?,
        )
    }),
    ("quota.window.num", "11", |c, v| {
        put(&mut c.quota_window_num, positive(parse(v)?)?)
    }),
    ("quota.window.size.seconds", "1", |c, v| {
        put(&mut c.quota_window_size_seconds, positive(parse(v)?)?)
    }),
    ("queued.max.requests", "500", |c, v| {
        put(&mut c.queued_max_requests, positive(parse(v)?)?)
    }),
    ("queued.max.request.bytes", "67108864", |c, v| {
        let bytes: i64 = parse(v)?;
        put(
            &mut c.queued_max_request_bytes,
            usize::try_from(bytes).unwrap_or(0),
        )
    }),
    ("fetch.max.bytes", "57671680", |c, v| {
        put(&mut c.fetch_max_bytes, positive(parse(v)?)?)
    }),
    (
        "max.incremental.fetch.session.cache.slots",
        "1000",
        |c, v| put(&mut c.fetch_session_cache_slots, parse(v)?),
    ),
    (
        "min.incremental.fetch.session.eviction.ms",
        "120000",
        |c, v| {
            let ms: i64 = parse(v)?;
            if ms < 0 {
                return Err("must be at least 0".into());
            }
            put(&mut c.fetch_session_eviction_ms, ms)
        },
    ),
    ("group.initial.rebalance.delay.ms", "3000", |c, v| {
        put(&mut c.group_initial_rebalance_delay_ms, parse(v)?)
    }),
    ("group.min.session.timeout.ms", "6000", |c, v| {
        put(&mut c.group_min_session_timeout_ms, parse(v)?)
    }),
    ("group.max.session.timeout.ms", "1800000", |c, v| {
        put(&mut c.group_max_session_timeout_ms, parse(v)?)
    }),
    ("group.consumer.heartbeat.interval.ms", "5000", |c, v| {
        put(
            &mut c.group_consumer_heartbeat_interval_ms,
            positive(parse(v)?)?,
        )
    }),
    ("group.consumer.session.timeout.ms", "45000", |c, v| {
        put(
            &mut c.group_consumer_session_timeout_ms,
            positive(parse(v)?)?,
        )
    }),
    ("group.consumer.assignors", "uniform,range", |c, v| {
        let names: Vec<String> = v
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = names
            .iter()
            .find(|n| !["uniform", "range"].contains(&n.as_str()))
        {
            return Err(format!(
                "unknown assignor {bad}: Strom has uniform and range"
            ));
        }
        if names.is_empty() {
            return Err("needs at least one assignor".into());
        }
        put(&mut c.group_consumer_assignors, names)
    }),
    ("group.consumer.max.size", "2147483647", |c, v| {
        put(&mut c.group_consumer_max_size, positive(parse(v)?)?)
    }),
    (
        "group.consumer.migration.policy",
        "bidirectional",
        |c, v| {
            let policy = strom_group::MigrationPolicy::parse(v.trim()).ok_or_else(|| {
                format!("unknown policy {v}: one of disabled, upgrade, downgrade, bidirectional")
            })?;
            put(&mut c.group_consumer_migration_policy, policy)
        },
    ),
    ("offsets.retention.minutes", "10080", |c, v| {
        put(&mut c.offsets_retention_minutes, positive(parse(v)?)?)
    }),
    ("offsets.retention.check.interval.ms", "600000", |c, v| {
        put(
            &mut c.offsets_retention_check_interval_ms,
            positive(parse(v)?)?,
        )
    }),
    ("shutdown.timeout.ms", "10000", |c, v| {
        put(&mut c.shutdown_timeout_ms, parse(v)?)
    }),
    ("connections.max.idle.ms", "600000", |c, v| {
        put(&mut c.connections_max_idle_ms, positive(parse(v)?)?)
    }),
    ("listeners", "", |c, v| {
        put(&mut c.listeners_setting, v.into())
    }),
    ("listener.security.protocol.map", "", |c, v| {
        put(&mut c.listener_protocol_map_setting, v.into())
    }),
    ("advertised.listeners", "", |c, v| {
        put(&mut c.advertised_listeners_setting, v.into())
    }),
    ("ssl.keystore.type", "PEM", |_, v| match v.trim() {
        "PEM" | "pem" => Ok(()),
        other => Err(format!("only PEM keystores are supported, got {other:?}")),
    }),
    ("ssl.keystore.location", "", |c, v| {
        put(
            &mut c.security.keystore_location,
            optional_string(v).map(PathBuf::from),
        )
    }),
    ("ssl.keystore.key", "", |c, v| {
        put(&mut c.security.keystore_key, optional_string(v))
    }),
    ("ssl.keystore.certificate.chain", "", |c, v| {
        put(
            &mut c.security.keystore_certificate_chain,
            optional_string(v),
        )
    }),
    ("ssl.key.password", "", |_, v| match v.trim() {
        "" => Ok(()),
        _ => Err("encrypted private keys are not supported; give an unencrypted PEM key".into()),
    }),
    ("ssl.truststore.type", "PEM", |_, v| match v.trim() {
        "PEM" | "pem" => Ok(()),
        other => Err(format!("only PEM truststores are supported, got {other:?}")),
    }),
    ("ssl.truststore.location", "", |c, v| {
        put(
            &mut c.security.truststore_location,
            optional_string(v).map(PathBuf::from),
        )
    }),
    ("ssl.truststore.certificates", "", |c, v| {
        put(&mut c.security.truststore_certificates, optional_string(v))
    }),
    ("ssl.client.auth", "none", |c, v| {
        put(&mut c.security.client_auth, parse(v)?)
    }),
    ("ssl.principal.mapping.rules", "DEFAULT", |c, v| {
        put(
            &mut c.security.principal_mapper,
            crate::security::principal_mapping::PrincipalMapper::parse(v)?,
        )
    }),
    ("ssl.reload.check.interval.ms", "5000", |c, v| {
        put(&mut c.security.reload_check_interval_ms, parse(v)?)
    }),
    ("ssl.handshake.timeout.ms", "10000", |c, v| {
        put(&mut c.security.handshake_timeout_ms, positive(parse(v)?)?)
    }),
    (
        "sasl.enabled.mechanisms",
        "SCRAM-SHA-256,SCRAM-SHA-512",
        |c, v| put(&mut c.security.sasl_mechanisms, parse_mechanisms(v)?),
    ),
    (
        "connection.failed.authentication.delay.ms",
        "100",
        |c, v| put(&mut c.security.failed_authentication_delay_ms, parse(v)?),
    ),
    ("connections.max.reauth.ms", "0", |c, v| {
        put(&mut c.security.connections_max_reauth_ms, parse(v)?)
    }),
    ("sasl.server.max.receive.size", "524288", |c, v| {
        put(&mut c.security.sasl_max_receive_size, positive(parse(v)?)?)
    }),
    ("authorizer.class.name", "", |c, v| {
        put(&mut c.security.authorizer_enabled, parse_authorizer(v)?)
    }),
    ("super.users", "", |c, v| {
        put(&mut c.security.super_users, parse_super_users(v)?)
    }),
    ("allow.everyone.if.no.acl.found", "false", |c, v| {
        put(
            &mut c.security.allow_everyone_if_no_acl_found,
            parse_bool(v)?,
        )
    }),
    ("controller.quorum.voters", "", |c, v| {
        strom_cluster::settings::parse_voters(v)?;
        put(&mut c.controller_quorum_voters, v.trim().to_string())
    }),
    ("controller.listen", "", |c, v| {
        put(
            &mut c.controller_listen,
            if v.is_empty() { None } else { Some(parse(v)?) },
        )
    }),
    ("default.replication.factor", "1", |c, v| {
        put(&mut c.default_replication_factor, positive(parse(v)?)?)
    }),
    ("min.insync.replicas", "1", |c, v| {
        put(&mut c.min_insync_replicas, positive(parse(v)?)?)
    }),
    ("offsets.topic.replication.factor", "3", |c, v| {
        put(
            &mut c.offsets_topic_replication_factor,
            positive(parse(v)?)?,
        )
    }),
    ("offsets.topic.num.partitions", "10", |c, v| {
        put(&mut c.offsets_topic_num_partitions, positive(parse(v)?)?)
    }),
    ("transaction.state.log.replication.factor", "3", |c, v| {
        put(
            &mut c.transaction_state_log_replication_factor,
            positive(parse(v)?)?,
        )
    }),
    ("transaction.state.log.num.partitions", "10", |c, v| {
        put(
            &mut c.transaction_state_log_num_partitions,
            positive(parse(v)?)?,
        )
    }),
    ("auto.leader.rebalance.enable", "true", |c, v| {
        put(&mut c.auto_leader_rebalance_enable, parse_bool(v)?)
    }),
    ("leader.imbalance.check.interval.seconds", "300", |c, v| {
        put(
            &mut c.leader_imbalance_check_interval_seconds,
            positive(parse(v)?)?,
        )
    }),
    ("leader.imbalance.per.broker.percentage", "10", |c, v| {
        let pct: u32 = parse(v)?;
        if pct > 100 {
            return Err(format!("must be between 0 and 100, got {pct}"));
        }
        put(&mut c.leader_imbalance_per_broker_percentage, pct)
    }),
    ("unclean.leader.election.enable", "false", |_, v| {
        if parse_bool(v)? {
            return Err("unclean leader election is not supported (only false)".into());
        }
        Ok(())
    }),
    ("broker.session.timeout.ms", "9000", |c, v| {
        put(&mut c.broker_session_timeout_ms, positive(parse(v)?)?)
    }),
    ("broker.heartbeat.interval.ms", "2000", |c, v| {
        put(&mut c.broker_heartbeat_interval_ms, positive(parse(v)?)?)
    }),
    ("controller.quorum.election.timeout.ms", "1000", |c, v| {
        put(
            &mut c.controller_quorum_election_timeout_ms,
            positive(parse(v)?)?,
        )
    }),
    ("controller.quorum.request.timeout.ms", "2000", |c, v| {
        put(
            &mut c.controller_quorum_request_timeout_ms,
            positive(parse(v)?)?,
        )
    }),
    ("replica.lag.time.max.ms", "30000", |c, v| {
        put(&mut c.replica_lag_time_max_ms, positive(parse(v)?)?)
    }),
    ("replica.fetch.wait.max.ms", "500", |c, v| {
        put(&mut c.replica_fetch_wait_max_ms, positive(parse(v)?)?)
    }),
    ("replica.fetch.max.bytes", "1048576", |c, v| {
        put(&mut c.replica_fetch_max_bytes, positive(parse(v)?)?)
    }),
];

/// Names of every setting, for `--help` and error messages.
pub fn setting_names() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|(n, _, _)| *n)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown setting {name:?} (from {source_name})")]
    Unknown { name: String, source_name: String },
    #[error("bad value {value:?} for setting {name:?} (from {source_name}): {reason}")]
    BadValue {
        name: String,
        value: String,
        source_name: String,
        reason: String,
    },
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Collects settings from every source, then builds the typed config.
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    /// name -> (value, where it came from); later inserts win.
    values: BTreeMap<String, (String, String)>,
}

impl ConfigBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets one value; `source_name` appears in error messages.
    pub fn set(&mut self, name: &str, value: &str, source_name: &str) -> Result<(), ConfigError> {
        let known = SETTINGS.iter().any(|(n, _, _)| *n == name)
            || parse_reauth_override_name(name).is_some();
        if !known {
            return Err(ConfigError::Unknown {
                name: name.into(),
                source_name: source_name.into(),
            });
        }
        self.values
            .insert(name.into(), (value.into(), source_name.into()));
        Ok(())
    }

    /// `name=value`, as given to `--set`.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (name, value) = pair.split_once('=').ok_or_else(|| ConfigError::BadValue {
            name: pair.into(),
            value: String::new(),
            source_name: "--set".into(),
            reason: "expected name=value".into(),
        })?;
        self.set(name.trim(), value.trim(), "--set")
    }

    /// Reads a TOML file: flat `"log.retention.ms" = 1000` keys, or nested tables whose
    /// dotted paths form the names (`[log] retention.ms = 1000`).
    pub fn load_toml_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let file_err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        let mut flat = Vec::new();
        flatten_toml("", &toml::Value::Table(table), &mut flat);
        let source = format!("config file {}", path.display());
        for (name, value) in flat {
            self.set(&name, &value, &source)?;
        }
        Ok(())
    }

    /// Reads `STROM_<NAME>` for every known setting.
    pub fn load_env(&mut self) -> Result<(), ConfigError> {
        for (name, _, _) in SETTINGS {
            let var = format!("STROM_{}", name.to_uppercase().replace('.', "_"));
            if let Ok(value) = std::env::var(&var) {
                self.set(name, &value, &format!("environment variable {var}"))?;
            }
        }
        Ok(())
    }

    pub fn build(&self) -> Result<BrokerConfig, ConfigError> {
        let mut config = placeholder();
        for (name, default, setter) in SETTINGS {
            let (value, source) = match self.values.get(*name) {
                Some((v, s)) => (v.as_str(), s.as_str()),
                None => (*default, "default"),
            };
            setter(&mut config, value).map_err(|reason| ConfigError::BadValue {
                name: name.to_string(),
                value: value.to_string(),
                source_name: source.to_string(),
                reason,
            })?;
        }
        for (name, (value, source)) in &self.values {
            let Some((listener, mechanism)) = parse_reauth_override_name(name) else {
                continue;
            };
            let ms = parse(value).map_err(|reason| ConfigError::BadValue {
                name: name.clone(),
                value: value.clone(),
                source_name: source.clone(),
                reason,
            })?;
            config
                .security
                .connections_max_reauth_ms_overrides
                .push((listener, mechanism, ms));
        }
        config
            .resolve_listeners()
            .map_err(|reason| ConfigError::BadValue {
                name: "listeners".into(),
                value: config.listeners_setting.clone(),
                source_name: self
                    .values
                    .get("listeners")
                    .map_or("default".into(), |(_, s)| s.clone()),
                reason,
            })?;
        config.http_listen_explicit = self.values.contains_key("http.listen");
        if config.security.http.metrics_authentication && !config.security.http_basic() {
            return Err(ConfigError::BadValue {
                name: "http.metrics.authentication.enable".into(),
                value: "true".into(),
                source_name: self
                    .values
                    .get("http.metrics.authentication.enable")
                    .map_or("default".into(), |(_, s)| s.clone()),
                reason: "needs http.authentication=basic (or authorizer.class.name set)".into(),
            });
        }
        if config.clustered() && config.controller_listen.is_none() {
            return Err(ConfigError::BadValue {
                name: "controller.listen".into(),
                value: String::new(),
                source_name: "default".into(),
                reason: "must be set when controller.quorum.voters is".into(),
            });
        }
        Ok(config)
    }
}

fn flatten_toml(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_toml(&name, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Every field is overwritten by `build` (each setting has a default); this only gives the
/// struct a starting value.
fn placeholder() -> BrokerConfig {
    BrokerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
        advertised_listener: None,
        data_dir: PathBuf::new(),
        json_listen: None,
        http_listen: None,
        http_listen_explicit: false,
        http_max_connections: 0,
        metrics_enabled: true,
        json_max_line_bytes: 0,
        json_security_protocol: crate::listeners::SecurityProtocol::Plaintext,
        node_id: 0,
        num_partitions: 0,
        auto_create_topics: false,
        log_segment_bytes: 0,
        log_roll_ms: 0,
        log_retention_ms: 0,
        log_retention_bytes: 0,
        log_retention_check_interval_ms: 0,
        log_index_interval_bytes: 0,
        log_cleaner_enable: false,
        log_cleaner_threads: 0,
        log_cleaner_backoff_ms: 0,
        log_cleaner_dedupe_buffer_size: 0,
        log_cleaner_min_cleanable_ratio: 0.0,
        log_cleaner_delete_retention_ms: 0,
        log_cleaner_min_compaction_lag_ms: 0,
        log_cleaner_max_compaction_lag_ms: 0,
        message_max_bytes: 0,
        socket_request_max_bytes: 0,
        decompressed_batch_max_bytes: 0,
        log_flush_interval_messages: 0,
        log_flush_interval_ms: 0,
        fsync: FsyncPolicy::AcksAll,
        recovery_point_checkpoint_interval_ms: 0,
        producer_id_expiration_ms: 0,
        producer_state_max_producers: 0,
        transaction_max_timeout_ms: 0,
        transaction_cleanup_interval_ms: 0,
        transactional_id_expiration_ms: 0,
        transaction_remove_expired_interval_ms: 0,
        transaction_end_waits_for_markers: true,
        group_commit_ms: 0,
        max_connections: 0,
        max_connections_per_ip: 0,
        max_connections_per_ip_overrides: Vec::new(),
        quota_window_num: 0,
        quota_window_size_seconds: 0,
        queued_max_requests: 0,
        queued_max_request_bytes: 0,
        fetch_max_bytes: 0,
        fetch_session_cache_slots: 0,
        fetch_session_eviction_ms: 0,
        group_initial_rebalance_delay_ms: 0,
        group_min_session_timeout_ms: 0,
        group_max_session_timeout_ms: 0,
        group_consumer_heartbeat_interval_ms: 0,
        group_consumer_session_timeout_ms: 0,
        group_consumer_assignors: Vec::new(),
        group_consumer_max_size: 0,
        group_consumer_migration_policy: strom_group::MigrationPolicy::Bidirectional,
        offsets_retention_minutes: 0,
        offsets_retention_check_interval_ms: 0,
        shutdown_timeout_ms: 0,
        connections_max_idle_ms: 0,
        listeners_setting: String::new(),
        listener_protocol_map_setting: String::new(),
        advertised_listeners_setting: String::new(),
        listeners: Vec::new(),
        security: Default::default(),
        controller_quorum_voters: String::new(),
        controller_listen: None,
        default_replication_factor: 0,
        min_insync_replicas: 0,
        offsets_topic_replication_factor: 0,
        offsets_topic_num_partitions: 0,
        transaction_state_log_replication_factor: 0,
        transaction_state_log_num_partitions: 0,
        auto_leader_rebalance_enable: false,
        leader_imbalance_check_interval_seconds: 0,
        leader_imbalance_per_broker_percentage: 0,
        broker_session_timeout_ms: 0,
        broker_heartbeat_interval_ms: 0,
        controller_quorum_election_timeout_ms: 0,
        controller_quorum_request_timeout_ms: 0,
        replica_lag_time_max_ms: 0,
        replica_fetch_wait_max_ms: 0,
        replica_fetch_max_bytes: 0,
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        ConfigBuilder::new()
            .build()
            .expect("built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_mirror_kafka() {
        let c = BrokerConfig::default();
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics);
        assert_eq!(c.log_segment_bytes, 1 << 30);
        assert_eq!(c.log_retention_ms, 7 * 24 * 3600 * 1000);
        assert_eq!(c.log_retention_bytes, -1);
        assert_eq!(c.socket_request_max_bytes, 100 * 1024 * 1024);
        assert_eq!(c.fsync, FsyncPolicy::AcksAll);
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(
            c.decompressed_batch_max_bytes,
            strom_protocol::records::DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES
        );
    }

    #[test]
    fn later_sources_win_and_bad_input_names_the_setting() {
        let mut b = ConfigBuilder::new();
        b.set("num.partitions", "3", "test").unwrap();
        b.set_pair("num.partitions=5").unwrap();
        assert_eq!(b.build().unwrap().num_partitions, 5);

        let err = b.set_pair("no.such.setting=1").unwrap_err().to_string();
        assert!(err.contains("no.such.setting"), "{err}");
        b.set_pair("log.segment.bytes=lots").unwrap();
        let err = b.build().unwrap_err().to_string();
        assert!(
            err.contains("log.segment.bytes") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn log_cleaner_settings_mirror_kafka_and_refuse_bad_values() {
        let c = BrokerConfig::default();
        assert!(c.log_cleaner_enable);
        assert_eq!(c.log_cleaner_threads, 1);
        assert_eq!(c.log_cleaner_backoff_ms, 15_000);
        assert_eq!(c.log_cleaner_dedupe_buffer_size, 128 << 20);
        assert_eq!(c.log_cleaner_min_cleanable_ratio, 0.5);
        assert_eq!(c.log_cleaner_delete_retention_ms, 86_400_000);
        assert_eq!(c.log_cleaner_min_compaction_lag_ms, 0);
        assert_eq!(c.log_cleaner_max_compaction_lag_ms, i64::MAX);
        for bad in [
            "log.cleaner.threads=9",
            "log.cleaner.min.cleanable.ratio=1.5",
            "log.cleaner.backoff.ms=0",
            "log.cleaner.delete.retention.ms=-1",
        ] {
            let mut b = ConfigBuilder::new();
            b.set_pair(bad).unwrap();
            let name = bad.split('=').next().unwrap();
            let err = b.build().unwrap_err().to_string();
            assert!(err.contains(name), "{bad}: {err}");
        }
        let mut b = ConfigBuilder::new();
        b.set_pair("log.cleaner.threads=0").unwrap();
        assert_eq!(b.build().unwrap().log_cleaner_threads, 0);
    }

    #[test]
    fn toml_files_accept_flat_and_nested_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strom.toml");
        std::fs::write(
            &path,
            "\"num.partitions\" = 4\n[log.retention]\nms = 1000\n",
        )
        .unwrap();
        let mut b = ConfigBuilder::new();
        b.load_toml_file(&path).unwrap();
        let c = b.build().unwrap();
        assert_eq!(c.num_partitions, 4);
        assert_eq!(c.log_retention_ms, 1000);

        std::fs::write(&path, "bogus = 1\n").unwrap();
        let err = ConfigBuilder::new()
            .load_toml_file(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
