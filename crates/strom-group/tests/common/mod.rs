//! Shared test scaffolding: a temp dir, a fixed topic catalog, a manual clock, request builders.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use strom_group::{GroupConfig, GroupCoordinator, ManualClock, TopicCatalog};

pub const T0_MS: i64 = 1_700_000_000_000;
pub const SESSION_MS: i32 = 10_000;
pub const REBALANCE_MS: i32 = 30_000;

/// A directory removed on drop (no tempfile crate needed).
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "strom-group-test-{}-{}-{}",
            std::process::id(),
            n,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Topics "t" (3 partitions) and "u" (1 partition).
pub struct Catalog;

impl TopicCatalog for Catalog {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        match topic {
            "t" => Some(3),
            "u" => Some(1),
            _ => None,
        }
    }
    fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.partition_count(topic)?;
        Some(topic_id(topic))
    }
    fn topic_names(&self) -> Vec<String> {
        vec!["t".into(), "u".into()]
    }
}

/// The fixed id of a catalog topic.
pub fn topic_id(topic: &str) -> uuid::Uuid {
    uuid::Uuid::from_u128(topic.bytes().fold(7u128, |h, b| h * 31 + u128::from(b)))
}

pub struct Env {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub coord: Arc<GroupCoordinator>,
    pub config: GroupConfig,
}

pub fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 0,
        fsync: false,
        ..GroupConfig::default()
    }
}

impl Env {
    pub fn new(config: GroupConfig) -> Self {
        let dir = TempDir::new();
        let clock = Arc::new(ManualClock::new(T0_MS));
        let coord =
            GroupCoordinator::open(dir.path(), config.clone(), Arc::new(Catalog), clock.clone())
                .unwrap();
        Env {
            dir,
            clock,
            coord,
            config,
        }
    }

    /// Drops the coordinator and opens a new one on the same directory.
    pub fn reopen(&mut self) {
        self.coord.flush().unwrap();
        self.coord = GroupCoordinator::open(
            self.dir.path(),
            self.config.clone(),
            Arc::new(Catalog),
            self.clock.clone(),
        )
        .unwrap();
    }

    pub fn advance(&self, ms: i64) {
        self.clock.advance_ms(ms);
        self.coord.tick();
    }
}

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

/// ConsumerProtocolSubscription v1 metadata subscribing to `topics`.
pub fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
    b.extend_from_slice(&0i32.to_be_bytes()); // owned partitions: none
    Bytes::from(b)
}

pub fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    topics: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(SESSION_MS)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(topics))])
}

pub fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        )
}

pub fn hb_req(group: &str, member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
}

/// Lets spawned tasks run until they park on their oneshot receivers.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

pub fn spawn_join(
    coord: &Arc<GroupCoordinator>,
    req: JoinGroupRequest,
    version: i16,
) -> tokio::task::JoinHandle<JoinGroupResponse> {
    let c = Arc::clone(coord);
    tokio::spawn(async move { c.join_group(req, version, "client", "/127.0.0.1").await })
}

pub fn spawn_sync(
    coord: &Arc<GroupCoordinator>,
    req: SyncGroupRequest,
    version: i16,
) -> tokio::task::JoinHandle<SyncGroupResponse> {
    let c = Arc::clone(coord);
    tokio::spawn(async move { c.sync_group(req, version).await })
}
