//! Cluster mode: this broker is one node of a metadata quorum (`strom-cluster`, on openraft)
//! and replicates partition data Kafka-style: followers fetch from the leader, the leader
//! tracks their log ends, the high watermark is the smallest among the ISR, acks=all waits for
//! it, and a leader change (decided in the metadata log) makes the old leader truncate to the
//! new one by leader epoch before it follows. See `docs/cluster.md`.
//!
//! Layout:
//! - [`state`]: a partition's replication state beside its log.
//! - [`reconcile`]: applies each new metadata image to local topics and roles.
//! - [`fetcher`]: a follower's fetch loop and its truncation by leader epoch.
//! - [`serve`]: the leader's side of replica fetches and epoch lookups.
//! - [`isr`]: the leader shrinks and expands its ISR through the quorum.
//! - [`epochs`]: where each leader epoch ends in a log.
//! - [`produce`]: the produce path's leader, ISR-size and replication waits.
//! - [`topics`]: topic creation through the quorum.
//! - [`leader_hints`]: KIP-951's new leader in Produce and Fetch refusals.
//! - [`shared_docs`]: SCRAM users, ACLs and client quotas replicated as whole files.
//! - [`groups`]: group coordinators on the `__consumer_offsets` partitions this node leads.
//! - [`txns`]: transaction coordinators on the `__transaction_state` partitions it leads.
//! - [`shards`], [`coordinator_log`]: what those two share (placement, load, the journal).
//! - [`txn_calls`]: markers and transactional offsets between nodes.
//! - [`group_calls`]: the JSON protocol's consumer positions at their group's coordinator.
//!
//! A single node (no `controller.quorum.voters`) never starts any of this.

pub mod coordinator_log;
pub mod epochs;
pub mod fetcher;
pub mod group_calls;
pub mod groups;
pub mod isr;
pub mod leader_hints;
pub mod produce;
pub mod reconcile;
pub mod serve;
pub mod shards;
pub mod shared_docs;
pub mod state;
pub mod topics;
pub mod txn_calls;
pub mod txns;

use std::sync::Arc;
use std::time::Duration;

use strom_cluster::settings::{parse_voters, ClusterSettings};
use strom_cluster::{ClusterNode, Command, CommandResult, MetadataImage};
use uuid::Uuid;

use crate::broker::Broker;
use crate::topics::META_DIR;

/// Cluster mode's internal topics (Metadata marks them internal; only the quorum makes them).
pub fn is_internal_topic(name: &str) -> bool {
    name == groups::OFFSETS_TOPIC || name == txns::TXN_TOPIC
}

pub struct Cluster {
    pub node: Arc<ClusterNode>,
}

impl Cluster {
    pub fn image(&self) -> Arc<MetadataImage> {
        self.node.image()
    }

    /// Creates a topic through the quorum with replicas spread over the live brokers, and
    /// waits (bounded) until this node has it locally.
    pub async fn create_topic(
        &self,
        broker: &Broker,
        name: &str,
        partitions: i32,
        replication_factor: usize,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<Uuid, CreateError> {
        let image = self.image();
        if image.topics.contains_key(name) {
            return Err(CreateError::Exists);
        }
        let assignments = strom_cluster::image::assign_replicas(
            &image.live_brokers(),
            partitions,
            replication_factor,
        )
        .map_err(CreateError::ReplicationFactor)?;
        self.create_topic_assigned(broker, name, assignments, configs)
            .await
    }

    /// Creates a topic through the quorum with the given replicas per partition (the first of
    /// each is its preferred leader), and waits (bounded) until this node has it locally.
    pub async fn create_topic_assigned(
        &self,
        broker: &Broker,
        name: &str,
        assignments: Vec<Vec<i32>>,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<Uuid, CreateError> {
        let topic_id = Uuid::new_v4();
        let command = Command::CreateTopic {
            name: name.to_string(),
            topic_id,
            configs,
            assignments,
        };
        match self.node.propose(command).await {
            Ok(CommandResult::Done) => {}
            Ok(CommandResult::Refused(_)) => return Err(CreateError::Exists),
            Err(e) => return Err(CreateError::Quorum(e.to_string())),
        }
        // The reconciler creates the local files; answer once they exist here.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if broker.topics.get(name).is_some_and(|t| t.id() == topic_id) {
                return Ok(topic_id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(topic_id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("topic exists")]
    Exists,
    #[error("{0}")]
    ReplicationFactor(String),
    #[error("metadata quorum unavailable: {0}")]
    Quorum(String),
}

/// Joins the quorum and starts replication. Must run inside the tokio runtime, after
/// [`Broker::open`].
pub async fn start(broker: &Arc<Broker>) -> Result<(), String> {
    let config = &broker.config;
    if !(0..crate::broker::CLUSTER_NODE_IDS).contains(&i64::from(config.node_id)) {
        return Err(format!(
            "node.id must be between 0 and {} in cluster mode",
            crate::broker::CLUSTER_NODE_IDS - 1
        ));
    }
    let voters = parse_voters(&config.controller_quorum_voters)?;
    let controller_listen = config
        .controller_listen
        .ok_or("controller.listen must be set in cluster mode")?;
    let (kafka_host, kafka_port) = config.advertised();
    let settings = ClusterSettings {
        node_id: config.node_id,
        voters,
        controller_listen,
        kafka_host,
        kafka_port,
        raft_dir: config.data_dir.join(META_DIR).join("raft"),
        election_timeout_ms: config.controller_quorum_election_timeout_ms,
        broker_heartbeat_interval_ms: config.broker_heartbeat_interval_ms,
        broker_session_timeout_ms: config.broker_session_timeout_ms,
        request_timeout_ms: config.controller_quorum_request_timeout_ms,
        leader_rebalance: config.auto_leader_rebalance_enable.then_some(
            strom_cluster::settings::LeaderRebalance {
                check_interval_ms: config.leader_imbalance_check_interval_seconds * 1000,
                imbalance_percent: config.leader_imbalance_per_broker_percentage,
            },
        ),
    };
    let node = ClusterNode::start(settings).await?;
    node.set_data_plane(Arc::new(serve::Plane(Arc::downgrade(broker))));
    if broker
        .cluster
        .set(Arc::new(Cluster { node: node.clone() }))
        .is_err()
    {
        return Err("cluster started twice".into());
    }
    tokio::spawn(reconcile::run(broker.clone()));
    tokio::spawn(isr::run(broker.clone()));
    Ok(())
}
