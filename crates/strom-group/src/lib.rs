//! strom-group: the consumer group coordinator (Kafka's classic rebalance protocol and the
//! consumer protocol of KIP-848) and the
//! durable store of committed offsets and group metadata (each group's last completed
//! generation, restored after a restart as Kafka does).
//!
//! The broker decodes Kafka requests with the `kafka-protocol` crate and hands the decoded
//! structs to [`GroupCoordinator`]; every handler returns the response struct to encode. The
//! coordinator never answers `COORDINATOR_NOT_AVAILABLE` or `NOT_COORDINATOR`: a single Strom
//! broker is the coordinator of every group.
//!
//! # Layout
//!
//! - `coordinator`: [`GroupCoordinator`], its open/flush/background loop and the shared state.
//! - `domain`: the domain calls (join, sync, heartbeat, leave, commit, committed) in domain
//!   types, with [`CoordinatorError`]; the Kafka handlers and the JSON front end both use them.
//! - `membership`: the JoinGroup, SyncGroup, Heartbeat and LeaveGroup handlers.
//! - `rebalance`: the state machine they share with the timers (session expiry, rebalance
//!   and sync deadlines, the initial rebalance delay).
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete and offsets retention.
//! - `consumer`: the consumer group protocol of KIP-848 (ConsumerGroupHeartbeat,
//!   ConsumerGroupDescribe, server-side assignors).
//! - `admin`: DescribeGroups, ListGroups, DeleteGroups.
//! - `overview`: a read-only copy of every group for metrics and the HTTP console.
//! - `group`: the in-memory domain model of one group (members, state, protocol choice).
//! - `store`: the append-only, CRC-checked log of commit and group metadata records (format
//!   in `docs/groups.md`).
//! - [`codes`]: the Kafka error codes this crate answers with.
//!
//! # Time
//!
//! All deadlines are computed from an injected [`Clock`]. [`GroupCoordinator::tick`] fires
//! every timer that is due at `clock.now_ms()`; [`GroupCoordinator::run_background`] calls it
//! when the next deadline arrives. Tests use [`ManualClock`] and call `tick` themselves, so
//! no test sleeps.
//!
//! # Waiting requests
//!
//! A JoinGroup that must wait for the rebalance and a SyncGroup from a follower that must wait
//! for the leader's assignment park a `tokio::sync::oneshot::Sender` in the member; whoever
//! completes the rebalance sends the answer. Each wait is also capped by a wall-clock timeout
//! (the rebalance timeout plus slack) so that a stopped background task can never hang a
//! connection.

pub mod codes;
mod coordinator;
mod domain;
mod error;
mod journal;

mod admin;
mod consumer;
mod group;
mod membership;
mod offsets;
mod overview;
mod rebalance;
mod store;

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod fault_tests;

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use coordinator::GroupCoordinator;
pub use domain::{Committer, CoordinatorError, JoinParams, Joined, NewOffset};
pub use error::GroupError;
pub use journal::{append_checkpoint, ReplicatedLog, ReplicationWait, CHECKPOINT_BATCH_BYTES};
pub use overview::{GroupSummary, MemberSummary};

/// Coordinator settings; the names follow Kafka's broker configs.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members before completing (extended by each new joiner, up to the rebalance
    /// timeout), so that a fleet of consumers starting together rebalances once.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`: smaller session timeouts get INVALID_SESSION_TIMEOUT.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: larger session timeouts get INVALID_SESSION_TIMEOUT.
    pub max_session_timeout_ms: i32,
    /// `offsets.retention.minutes` in ms: offsets of a group that has been Empty this long are
    /// deleted.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often the retention pass runs.
    pub offsets_retention_check_interval_ms: i64,
    /// Fsync the offsets log before answering an OffsetCommit (concurrent commits share one
    /// fsync). A single broker has no replicas, so this is the only durability there is.
    pub fsync: bool,
    /// `group.max.size`: joins beyond this many members get GROUP_MAX_SIZE_REACHED.
    pub max_group_size: usize,
    /// `offset.metadata.max.bytes`: larger commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// `group.consumer.heartbeat.interval.ms`: how often KIP-848 members heartbeat.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms`: a KIP-848 member silent this long is removed.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.assignors`: the server assignors members may name; the first is the
    /// default.
    pub consumer_assignors: Vec<String>,
    /// `group.consumer.max.size`: joins beyond this many KIP-848 members get
    /// GROUP_MAX_SIZE_REACHED.
    pub consumer_max_size: usize,
    /// `group.consumer.migration.policy`: whether live groups convert between the classic
    /// and the KIP-848 protocol.
    pub consumer_migration_policy: MigrationPolicy,
}

/// Kafka's `ConsumerGroupMigrationPolicy`: which online conversions of a live group are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    Disabled,
    Upgrade,
    Downgrade,
    Bidirectional,
}

impl MigrationPolicy {
    /// Parses Kafka's names, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "disabled" => Some(MigrationPolicy::Disabled),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            _ => None,
        }
    }

    /// A live classic group becomes a KIP-848 group when a consumer-protocol member joins.
    pub fn upgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    /// A KIP-848 group whose last consumer-protocol member leaves becomes classic again.
    pub fn downgrade(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            fsync: true,
            max_group_size: 10_000,
            offset_metadata_max_bytes: 4096,
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45_000,
            consumer_assignors: vec!["uniform".into(), "range".into()],
            consumer_max_size: i32::MAX as usize,
            consumer_migration_policy: MigrationPolicy::Bidirectional,
        }
    }
}

/// The broker tells the coordinator which topics/partitions exist (for
/// UNKNOWN_TOPIC_OR_PARTITION on commits and offset deletes).
pub trait TopicCatalog: Send + Sync + 'static {
    /// The number of partitions of `topic`, or `None` if the topic does not exist.
    fn partition_count(&self, topic: &str) -> Option<i32>;
    /// The topic's id (KIP-848 assignments name topics by id).
    fn topic_id(&self, _topic: &str) -> Option<uuid::Uuid> {
        None
    }
    /// Every topic's name (KIP-848 regular-expression subscriptions).
    fn topic_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Injected time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock {
            now_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}
