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
    pub txn: crate::txn::TxnCoordinator,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: crate::fetch_sessions::FetchSessions,
    /// Client quotas and per-address connection limits.
    pub quotas: Arc<crate::quota::Quotas>,
    /// Cluster mode only (`controller.quorum.voters` set), once started.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    shutdown: watch::Sender<bool>,
}

struct Catalog(Arc<Topics>);

/// Committed offsets are kept per topic name: a deleted topic's go with it, and a new topic
/// never starts with offsets an earlier one of its name left (a crash mid-delete).
struct OffsetsFollowTopics(Arc<GroupCoordinator>);

impl crate::topics::TopicHooks for OffsetsFollowTopics {
    fn before_create(&self, name: &str) -> Result<(), String> {
        match self.0.on_topic_deleted(name) {
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
        self.0
            .on_topic_deleted(name)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl strom_group::TopicCatalog for Catalog {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.0.get(topic).map(|t| t.partition_count())
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
            ..GroupConfig::default()
        };
        let groups = GroupCoordinator::open(
            &config.data_dir.join(OFFSETS_DIR),
            group_config,
            Arc::new(Catalog(topics.clone())),
            Arc::new(strom_group::SystemClock),
        )
        .map_err(|e| dir_err(format!("consumer offsets: {e}")))?;
        topics.set_hooks(Arc::new(OffsetsFollowTopics(groups.clone())));
        let txn = crate::txn::TxnCoordinator::open(
            &config.data_dir,
            config.fsync != crate::config::FsyncPolicy::Never,
            crate::txn::TxnConfig {
                max_timeout_ms: config.transaction_max_timeout_ms,
                cleanup_interval_ms: config.transaction_cleanup_interval_ms,
            },
        )
        .map_err(|e| dir_err(format!("transaction log: {e}")))?;
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
            shutdown,
        });
        tokio::spawn(crate::txn::TxnCoordinator::run_background(
            broker.clone(),
            shutdown_rx.clone(),
        ));
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
