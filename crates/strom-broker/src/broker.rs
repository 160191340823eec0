//! The [`Broker`]: owns the topic registry, the group coordinator, the flusher and the
//! background tasks, and turns one request frame into one [`Reply`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use strom_group::{GroupConfig, GroupCoordinator};
use strom_protocol::header::{decode_header, HeaderError};
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::flusher::Flusher;
use crate::meta::BrokerMeta;
use crate::topics::{Topics, META_DIR, OFFSETS_DIR};

/// What the connection should do with a request's outcome.
pub enum Reply {
    /// No response (a produce with acks=0).
    None,
    /// The response, ready to write.
    Ready(BytesMut),
    /// The request's ordered part is done (e.g. its batches are appended); the response comes
    /// when this future finishes (e.g. after the fsync). Responses still go out in order.
    Deferred(Pin<Box<dyn Future<Output = Option<BytesMut>> + Send>>),
    /// A broken or unsupported frame: log it and close the connection, as Kafka does.
    Close(String),
}

/// Who sent a request, for logs, group membership and authorization.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub client_host: String,
    /// Kafka's principal, `User:alice`; `User:ANONYMOUS` on a listener without authentication.
    pub principal: Arc<str>,
    /// The advertised address of the listener the request came in on (Metadata answers
    /// with it); `None` uses the first listener's.
    pub advertised: Option<(String, i32)>,
    /// How long the connection should stop reading after this request's response (a quota
    /// throttle, KIP-219); set by the handlers, taken by the connection.
    pub mute_ms: Arc<AtomicU64>,
}

impl RequestContext {
    /// An unauthenticated client at `client_host`.
    pub fn anonymous(client_host: impl Into<String>) -> RequestContext {
        RequestContext {
            client_host: client_host.into(),
            principal: crate::security::session::ANONYMOUS.into(),
            advertised: None,
            mute_ms: Arc::default(),
        }
    }

    /// Asks the connection to stop reading for `ms` after this response (the longest of
    /// several throttles wins).
    pub fn throttle(&self, ms: u64) {
        self.mute_ms.fetch_max(ms, Relaxed);
    }

    /// The throttle set by the last request, cleared.
    pub fn take_mute_ms(&self) -> u64 {
        self.mute_ms.swap(0, Relaxed)
    }
}

/// Cluster mode: where (inside the meta dir) the node-local group coordinator keeps its file.
const LOCAL_GROUPS_DIR: &str = "local_groups";

/// Producer ids of a cluster interleave this many nodes' counters (node ids below it).
pub const CLUSTER_NODE_IDS: i64 = 1024;

pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub topics: Arc<Topics>,
    pub groups: Arc<GroupCoordinator>,
    pub flusher: Flusher,
    pub meta: BrokerMeta,
    /// SCRAM credentials (SASL PLAIN and SCRAM check against them).
    pub users: Arc<crate::security::users::UserStore>,
    /// ACLs and the decision whether a principal may do something.
    pub authorizer: Arc<crate::security::authorizer::Authorizer>,
    /// The transaction coordinator of a single node (`None` in cluster mode, see
    /// `txn_shards`).
    pub txn: Option<Arc<crate::txn::TxnCoordinator>>,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: crate::fetch_sessions::FetchSessions,
    /// Client quotas and per-address connection limits.
    pub quotas: Arc<crate::quota::Quotas>,
    /// Cluster mode only (`controller.quorum.voters` set), once started.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// Cluster mode: the coordinators of the `__consumer_offsets` partitions this node leads.
    /// `groups` above then serves only the JSON protocol's consumer positions.
    pub group_shards: Arc<crate::cluster::groups::GroupShards>,
    /// Cluster mode: the coordinators of the `__transaction_state` partitions this node leads.
    pub txn_shards: crate::cluster::txns::TxnShards,
    group_config: GroupConfig,
    shutdown: watch::Sender<bool>,
}

struct Catalog(Arc<Topics>);

/// Committed offsets are kept per topic name: a deleted topic's go with it, and a new topic
/// never starts with offsets an earlier one of its name left (a crash mid-delete).
struct OffsetsFollowTopics(
    Arc<GroupCoordinator>,
    Arc<crate::cluster::groups::GroupShards>,
);

impl OffsetsFollowTopics {
    /// Drops `name`'s offsets in the local coordinator and every loaded shard.
    fn drop_offsets(&self, name: &str) -> Result<usize, strom_group::GroupError> {
        let mut dropped = self.0.on_topic_deleted(name)?;
        for shard in self.1.all() {
            dropped += shard.on_topic_deleted(name)?;
        }
        Ok(dropped)
    }
}

impl crate::topics::TopicHooks for OffsetsFollowTopics {
    fn before_create(&self, name: &str) -> Result<(), String> {
        match self.drop_offsets(name) {
            Ok(0) => Ok(()),
            Ok(n) => {
                tracing::info!(
                    topic = name,
                    offsets = n,
                    "dropped committed offsets an earlier topic of this name left"
                );
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
    fn after_delete(&self, name: &str) -> Result<(), String> {
        self.drop_offsets(name)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl strom_group::TopicCatalog for Catalog {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.0.get(topic).map(|t| t.partition_count())
    }
    fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.0.get(topic).map(|t| t.id())
    }
    fn topic_names(&self) -> Vec<String> {
        self.0.all().iter().map(|t| t.name()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open data dir {dir}: {reason}")]
    DataDir { dir: String, reason: String },
}

impl Broker {
    /// Opens the data dir (recovering every partition), the committed offsets and starts the
    /// background tasks. Must run inside a tokio runtime.
    pub fn open(config: BrokerConfig) -> Result<Arc<Broker>, OpenError> {
        let config = Arc::new(config);
        let dir_err = |reason: String| OpenError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| dir_err(e.to_string()))?;
        let meta = BrokerMeta::open(&config.data_dir.join(META_DIR))
            .map_err(|e| dir_err(e.to_string()))?;
        let users = Arc::new(
            crate::security::users::UserStore::open(&config.data_dir.join(META_DIR))
                .map_err(|e| dir_err(e.to_string()))?,
        );
        let authorizer = Arc::new(
            crate::security::authorizer::Authorizer::open(
                &config.data_dir.join(META_DIR),
                &config.security,
            )
            .map_err(|e| dir_err(e.to_string()))?,
        );
        let quotas = Arc::new(
            crate::quota::Quotas::open(&config.data_dir.join(META_DIR), &config)
                .map_err(|e| dir_err(e.to_string()))?,
        );
        let topics = Arc::new(Topics::load(config.clone()).map_err(|e| dir_err(e.to_string()))?);
        let group_config = GroupConfig {
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            offsets_retention_ms: config.offsets_retention_minutes * 60_000,
            offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            fsync: config.fsync != crate::config::FsyncPolicy::Never,
            consumer_heartbeat_interval_ms: config.group_consumer_heartbeat_interval_ms,
            consumer_session_timeout_ms: config.group_consumer_session_timeout_ms,
            consumer_assignors: config.group_consumer_assignors.clone(),
            consumer_max_size: usize::try_from(config.group_consumer_max_size)
                .unwrap_or(usize::MAX),
            consumer_migration_policy: config.group_consumer_migration_policy,
            ..GroupConfig::default()
        };
        // In cluster mode `__consumer_offsets` is a replicated topic of that name, so the
        // node-local coordinator keeps its file elsewhere.
        let local_groups_dir = if config.clustered() {
            config.data_dir.join(META_DIR).join(LOCAL_GROUPS_DIR)
        } else {
            config.data_dir.join(OFFSETS_DIR)
        };
        let groups = GroupCoordinator::open(
            &local_groups_dir,
            group_config.clone(),
            Arc::new(Catalog(topics.clone())),
            Arc::new(strom_group::SystemClock),
        )
        .map_err(|e| dir_err(format!("consumer offsets: {e}")))?;
        let group_shards = Arc::new(crate::cluster::groups::GroupShards::new(
            crate::cluster::groups::OFFSETS_TOPIC,
        ));
        topics.set_hooks(Arc::new(OffsetsFollowTopics(
            groups.clone(),
            group_shards.clone(),
        )));
        // In cluster mode `__transaction_state` is a replicated topic of that name.
        let txn = if config.clustered() {
            None
        } else {
            let coordinator = crate::txn::TxnCoordinator::open(
                &config.data_dir,
                config.fsync != crate::config::FsyncPolicy::Never,
                txn_config(&config),
            )
            .map_err(|e| dir_err(format!("transaction log: {e}")))?;
            Some(Arc::new(coordinator))
        };
        let flusher = Flusher::start(Duration::from_millis(config.group_commit_ms));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let fetch_sessions = crate::fetch_sessions::FetchSessions::new(
            config.fetch_session_cache_slots,
            config.fetch_session_eviction_ms,
        );
        let broker = Arc::new(Broker {
            fetch_sessions,
            config,
            topics,
            groups,
            flusher,
            meta,
            users,
            authorizer,
            txn,
            quotas,
            cluster: std::sync::OnceLock::new(),
            group_shards,
            txn_shards: crate::cluster::txns::TxnShards::new(crate::cluster::txns::TXN_TOPIC),
            group_config,
            shutdown,
        });
        if let Some(txn) = &broker.txn {
            tokio::spawn(
                txn.clone()
                    .run_background(broker.clone(), shutdown_rx.clone()),
            );
        }
        tokio::spawn(broker.groups.clone().run_background(shutdown_rx.clone()));
        crate::background::spawn(broker.clone(), shutdown_rx);
        Ok(broker)
    }

    /// Handles one frame body (without its size prefix).
    pub async fn handle(self: &Arc<Self>, frame: Bytes, ctx: &RequestContext) -> Reply {
        match decode_header(frame) {
            Ok(req) => crate::handlers::dispatch(self, req, ctx).await,
            Err(HeaderError::UnsupportedVersion {
                api_key: ApiKey::ApiVersions,
                correlation_id,
                ..
            }) => crate::handlers::api_versions::unsupported_version_reply(correlation_id),
            Err(e) => Reply::Close(e.to_string()),
        }
    }

    /// The first step of a graceful shutdown: stops background tasks and answers parked
    /// long-poll fetches now with what they have, so connections can finish promptly.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A receiver that turns true at shutdown (for background loops).
    pub fn shutdown_receiver(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The settings every group coordinator of this broker runs with.
    pub fn group_config(&self) -> GroupConfig {
        self.group_config.clone()
    }

    /// What group coordinators check commits against: the topics of this broker.
    pub fn group_catalog(&self) -> Arc<dyn strom_group::TopicCatalog> {
        Arc::new(Catalog(self.topics.clone()))
    }

    /// The coordinator of `group_id`, or the Kafka error code to answer with: on a single node
    /// always this broker's; in cluster mode the one of the group's `__consumer_offsets`
    /// partition if this node leads it.
    pub fn coordinator_for(&self, group_id: &str) -> Result<Arc<GroupCoordinator>, i16> {
        if self.cluster.get().is_none() {
            return Ok(self.groups.clone());
        }
        self.group_shards.for_key(self, group_id)
    }

    /// The transaction coordinator of `transactional_id`, or the Kafka error code to answer
    /// with: a single node's own, or (cluster mode) the one of the id's
    /// `__transaction_state` partition if this node leads it.
    pub fn txn_for(&self, transactional_id: &str) -> Result<Arc<crate::txn::TxnCoordinator>, i16> {
        match &self.txn {
            Some(txn) => Ok(txn.clone()),
            None => self.txn_shards.for_key(self, transactional_id),
        }
    }

    /// Every transaction coordinator on this node (ListTransactions).
    pub fn txn_coordinators(&self) -> Vec<Arc<crate::txn::TxnCoordinator>> {
        match &self.txn {
            Some(txn) => vec![txn.clone()],
            None => self.txn_shards.all(),
        }
    }

    /// The produce path's check (KIP-890 part 1): may this producer write transactional
    /// batches to this partition now? In cluster mode only a coordinator on this node can
    /// answer; a producer coordinated elsewhere is let through unverified, as Kafka's brokers
    /// did before KIP-890.
    pub fn partition_in_txn(&self, producer_id: i64, epoch: i16, topic: &str, index: i32) -> bool {
        if let Some(txn) = &self.txn {
            return txn
                .partition_in_txn(producer_id, epoch, topic, index)
                .unwrap_or(false);
        }
        self.txn_shards
            .all()
            .iter()
            .find_map(|c| c.partition_in_txn(producer_id, epoch, topic, index))
            .unwrap_or(true)
    }

    /// The settings every transaction coordinator of this broker runs with.
    pub fn txn_config(&self) -> crate::txn::TxnConfig {
        txn_config(&self.config)
    }

    /// Every group coordinator on this node: the one of a single node, or those of the
    /// offsets partitions this node leads.
    pub fn group_coordinators(&self) -> Vec<Arc<GroupCoordinator>> {
        if self.cluster.get().is_some() {
            self.group_shards.all()
        } else {
            vec![self.groups.clone()]
        }
    }

    /// A read-only copy of every group this node coordinates.
    pub fn group_summaries(&self) -> Vec<strom_group::GroupSummary> {
        let mut all: Vec<_> = self
            .group_coordinators()
            .iter()
            .flat_map(|c| c.summaries())
            .collect();
        all.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        all
    }

    /// Resolves once [`Broker::begin_shutdown`] has been called.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Stops background tasks and fsyncs every partition and the committed offsets.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        for topic in self.topics.all() {
            let partitions = topic.partitions.read().clone();
            for p in partitions {
                if let Some(Err(e)) = p.with_log(|log| log.flush()) {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush at shutdown failed");
                }
                if let Err(e) = p.snapshot_producers() {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "producer snapshot at shutdown failed");
                }
            }
        }
        // Everything flushed is now a recovery point: the next start trusts it all.
        if let Err(e) = self.topics.checkpoint_recovery_points() {
            tracing::error!(error = %e, "writing the recovery-point checkpoint at shutdown failed");
        }
        if let Err(e) = self.groups.flush() {
            tracing::error!(error = %e, "flushing committed offsets at shutdown failed");
        }
    }

    /// The cluster id clients see: this data dir's, or (cluster mode) one derived from the
    /// quorum's voter ids, so every node answers the same (even one that reaches a voter
    /// through another address).
    pub fn cluster_id(&self) -> String {
        if self.config.clustered() {
            let ids: Vec<String> =
                strom_cluster::settings::parse_voters(&self.config.controller_quorum_voters)
                    .map(|v| v.keys().map(|id| id.to_string()).collect())
                    .unwrap_or_default();
            let crc = crc32c::crc32c(ids.join(",").as_bytes());
            return format!("strom-cluster-{crc:08x}");
        }
        self.meta.cluster_id.clone()
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// A new producer id from the persisted counter. Cluster mode: each node allocates from
    /// its own counter, so ids carry the node id in their low bits and never collide across
    /// nodes (a producer moves between leaders).
    pub fn allocate_producer_id(&self) -> std::io::Result<i64> {
        let id = self.meta.next_producer_id()?;
        Ok(if self.cluster.get().is_some() {
            id * CLUSTER_NODE_IDS + i64::from(self.node_id()).rem_euclid(CLUSTER_NODE_IDS)
        } else {
            id
        })
    }
}

fn txn_config(config: &BrokerConfig) -> crate::txn::TxnConfig {
    crate::txn::TxnConfig {
        max_timeout_ms: config.transaction_max_timeout_ms,
        cleanup_interval_ms: config.transaction_cleanup_interval_ms,
        id_expiration_ms: config.transactional_id_expiration_ms,
        remove_expired_interval_ms: config.transaction_remove_expired_interval_ms,
        end_waits_for_markers: config.transaction_end_waits_for_markers,
    }
}
