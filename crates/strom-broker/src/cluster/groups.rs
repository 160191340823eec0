//! Replicated group coordination, as Kafka does it: groups and their committed offsets live in
//! the partitions of the internal topic `__consumer_offsets` (`offsets.topic.num.partitions`,
//! replicated `offsets.topic.replication.factor` times), and a group's coordinator is the
//! leader of partition `abs(javaHash(group id)) % partitions`. When this node becomes that
//! leader it reads the partition back into a fresh [`GroupCoordinator`] (answering
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile); every commit is appended there and answered once
//! the ISR has it; when it stops leading, the coordinator is closed and its clients get
//! NOT_COORDINATOR, look the new coordinator up and rejoin.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use strom_group::{GroupCoordinator, ReplicatedLog, ReplicationWait};
use strom_log::validate_batches;
use strom_protocol::records::{decode_batch, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;
use crate::partition::Partition;
use crate::topics::now_ms;

/// The internal topic's name (Kafka's).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offsets.commit.timeout.ms`: how long a commit waits for the ISR.
const COMMIT_TIMEOUT_MS: u64 = 5000;
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// The `__consumer_offsets` partition of a group: Kafka's `partitionFor`, so a group lands
/// where a Kafka cluster with as many partitions would put it.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    // Kafka's `Utils.abs`: Integer.MIN_VALUE maps to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

enum Shard {
    /// This node leads the partition in `epoch` and is reading it back.
    Loading { epoch: i32 },
    Loaded {
        epoch: i32,
        coordinator: Arc<GroupCoordinator>,
    },
}

impl Shard {
    fn epoch(&self) -> i32 {
        match self {
            Shard::Loading { epoch } | Shard::Loaded { epoch, .. } => *epoch,
        }
    }
}

/// The coordinators of the `__consumer_offsets` partitions this node leads.
#[derive(Default)]
pub struct GroupShards {
    shards: RwLock<HashMap<i32, Shard>>,
    /// A creation of the offsets topic is under way (one at a time, however many clients ask).
    creating: AtomicBool,
}

/// FindCoordinator for a group in cluster mode (Kafka's `KafkaApis.getCoordinator`): the live
/// leader of the group's offsets partition as (node id, host, port). Without the topic yet,
/// its creation starts and the answer is COORDINATOR_NOT_AVAILABLE, which clients retry.
pub fn coordinator_node(broker: &Arc<Broker>, group_id: &str) -> Result<(i32, String, i32), E> {
    let Some(cluster) = broker.cluster.get() else {
        return Err(E::CoordinatorNotAvailable);
    };
    let image = cluster.image();
    let Some(topic) = image.topics.get(OFFSETS_TOPIC) else {
        create_offsets_topic(broker);
        return Err(E::CoordinatorNotAvailable);
    };
    let index = partition_for(group_id, topic.partitions.len() as i32);
    let leader = topic
        .partitions
        .get(index as usize)
        .map_or(strom_cluster::NO_LEADER, |p| p.leader);
    match image.brokers.get(&leader) {
        Some(b) if !b.fenced => Ok((leader, b.host.clone(), b.port)),
        _ => Err(E::CoordinatorNotAvailable),
    }
}

/// Starts making `__consumer_offsets` through the quorum (`offsets.topic.num.partitions`,
/// `offsets.topic.replication.factor`), unless that is already under way.
fn create_offsets_topic(broker: &Arc<Broker>) {
    if broker.group_shards.creating.swap(true, Ordering::AcqRel) {
        return;
    }
    let broker = broker.clone();
    tokio::spawn(async move {
        if let Some(cluster) = broker.cluster.get().cloned() {
            let config = &broker.config;
            // Commits must outlive any retention: they go when their group does.
            let configs = [("retention.ms".to_string(), "-1".to_string())].into();
            let made = cluster
                .create_topic(
                    &broker,
                    OFFSETS_TOPIC,
                    config.offsets_topic_num_partitions,
                    config.offsets_topic_replication_factor as usize,
                    configs,
                )
                .await;
            match made {
                Ok(_) | Err(crate::cluster::CreateError::Exists) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the offsets topic yet; group coordinators are not available")
                }
            }
        }
        broker.group_shards.creating.store(false, Ordering::Release);
    });
}

impl GroupShards {
    /// The coordinator of `partition`, or the Kafka error code to answer with.
    pub fn get(&self, partition: i32) -> Result<Arc<GroupCoordinator>, i16> {
        match self.shards.read().get(&partition) {
            Some(Shard::Loaded { coordinator, .. }) => Ok(coordinator.clone()),
            Some(Shard::Loading { .. }) => Err(E::CoordinatorLoadInProgress.code()),
            None => Err(E::NotCoordinator.code()),
        }
    }

    /// Every loaded coordinator on this node (ListGroups, metrics).
    pub fn all(&self) -> Vec<Arc<GroupCoordinator>> {
        self.shards
            .read()
            .values()
            .filter_map(|s| match s {
                Shard::Loaded { coordinator, .. } => Some(coordinator.clone()),
                Shard::Loading { .. } => None,
            })
            .collect()
    }

    /// The reconciler saw a new role for an offsets partition: load it if this node now leads
    /// it in a new epoch, close its coordinator if it no longer does.
    pub fn on_role(
        &self,
        broker: &Arc<Broker>,
        partition: &Arc<Partition>,
        leads: bool,
        epoch: i32,
    ) {
        let index = partition.index;
        let mut shards = self.shards.write();
        if leads && shards.get(&index).is_some_and(|s| s.epoch() == epoch) {
            return;
        }
        if let Some(Shard::Loaded { coordinator, .. }) = shards.remove(&index) {
            tracing::info!(
                partition = index,
                "closing the group coordinator of a partition this node no longer leads"
            );
            coordinator.close();
        }
        if leads {
            shards.insert(index, Shard::Loading { epoch });
            tokio::spawn(load(broker.clone(), partition.clone(), epoch));
        }
    }

    fn finish_load(&self, index: i32, epoch: i32, coordinator: Arc<GroupCoordinator>) -> bool {
        let mut shards = self.shards.write();
        match shards.get(&index) {
            Some(Shard::Loading { epoch: e }) if *e == epoch => {
                shards.insert(index, Shard::Loaded { epoch, coordinator });
                true
            }
            _ => false,
        }
    }
}

/// Reads the partition back from its log start to its log end (everything this leader has is
/// what its followers will have) and installs the coordinator, unless leadership moved on.
async fn load(broker: Arc<Broker>, partition: Arc<Partition>, epoch: i32) {
    let started = std::time::Instant::now();
    let read = {
        let partition = partition.clone();
        tokio::task::spawn_blocking(move || read_values(&partition)).await
    };
    let (values, end) = match read.map_err(|e| e.to_string()).and_then(|r| r) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(partition = partition.index, error = %e, "cannot load the groups of an offsets partition");
            return;
        }
    };
    let records = values.len();
    let journal = Arc::new(PartitionJournal {
        broker: Arc::downgrade(&broker),
        partition: partition.clone(),
        epoch,
    });
    let coordinator = GroupCoordinator::open_replicated(
        values,
        journal,
        end as u64,
        broker.group_config(),
        broker.group_catalog(),
        Arc::new(strom_group::SystemClock),
    );
    if broker
        .group_shards
        .finish_load(partition.index, epoch, coordinator.clone())
    {
        tracing::info!(
            partition = partition.index,
            epoch,
            records,
            ms = started.elapsed().as_millis() as u64,
            "loaded the groups of an offsets partition"
        );
        tokio::spawn(
            coordinator
                .clone()
                .run_background(broker.shutdown_receiver()),
        );
    } else {
        coordinator.close();
    }
}

/// Every record value of the partition, oldest first, and the log end read up to.
fn read_values(partition: &Partition) -> Result<(Vec<Bytes>, i64), String> {
    let (mut offset, end) = partition
        .lock()
        .map(|s| (s.log.log_start_offset(), s.log.log_end_offset()))
        .map_err(|e| e.to_string())?;
    let mut values = Vec::new();
    while offset < end {
        let slice = partition
            .lock()
            .map_err(|e| e.to_string())?
            .log
            .read(offset, LOAD_READ_BYTES)
            .map_err(|e| e.to_string())?;
        if slice.len == 0 {
            break;
        }
        let bytes = slice.read_bytes().map_err(|e| e.to_string())?;
        let headers = validate_batches(&bytes).map_err(|e| e.to_string())?;
        let mut rest = bytes;
        for h in headers {
            let mut batch = rest.split_to(h.total_size());
            offset = h.last_offset() + 1;
            if h.is_control() {
                continue;
            }
            let decoded = decode_batch(&mut batch, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES)
                .map_err(|e| e.to_string())?;
            values.extend(decoded.set.records.into_iter().filter_map(|r| r.value));
        }
    }
    Ok((values, end))
}

/// [`ReplicatedLog`] over one offsets partition this node leads in `epoch`.
struct PartitionJournal {
    broker: Weak<Broker>,
    partition: Arc<Partition>,
    epoch: i32,
}

impl ReplicatedLog for PartitionJournal {
    fn append(&self, payloads: &[Bytes]) -> Result<u64, i16> {
        let broker = self.broker.upgrade().ok_or(E::NotCoordinator.code())?;
        let min_insync = broker.config.min_insync_replicas;
        let epoch = crate::cluster::produce::check_leader(&self.partition, -1, min_insync)
            .map_err(coordinator_error)?;
        if epoch != self.epoch {
            return Err(E::NotCoordinator.code());
        }
        let batch = encode_batch(payloads).map_err(|_| E::UnknownServerError.code())?;
        let topic = broker
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or(E::NotCoordinator.code())?;
        let mut options = broker.topics.effective_config(&topic).append_options();
        options.leader_epoch = epoch;
        let appended = crate::append::append(&broker, &self.partition, batch, options)
            .map_err(|e| coordinator_error(crate::handlers::produce::append_error_code(&e)))?;
        Ok(appended.durable_end() as u64)
    }

    fn wait_replicated(&self, end: u64) -> ReplicationWait {
        let partition = self.partition.clone();
        let epoch = self.epoch;
        let min_insync = self
            .broker
            .upgrade()
            .map_or(1, |b| b.config.min_insync_replicas);
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(COMMIT_TIMEOUT_MS);
            crate::cluster::produce::wait_replicated(
                &partition, end as i64, epoch, min_insync, deadline,
            )
            .await
            .map_err(coordinator_error)
        })
    }
}

/// Kafka's mapping of a failed `__consumer_offsets` append to the coordinator's answer
/// (`GroupMetadataManager.storeOffsets`).
fn coordinator_error(e: E) -> i16 {
    match e {
        E::UnknownTopicOrPartition
        | E::NotEnoughReplicas
        | E::NotEnoughReplicasAfterAppend
        | E::RequestTimedOut => E::CoordinatorNotAvailable.code(),
        E::NotLeaderOrFollower | E::KafkaStorageError => E::NotCoordinator.code(),
        E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize => {
            E::InvalidCommitOffsetSize.code()
        }
        _ => E::UnknownServerError.code(),
    }
}

/// The payloads as the values of one uncompressed v2 batch without keys.
fn encode_batch(payloads: &[Bytes]) -> Result<Bytes, String> {
    let records = payloads
        .iter()
        .map(|value| (None, Some(value.clone()), Default::default()));
    crate::local::plain_batch(records, now_ms())
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    /// Values from Java's `Math.abs("...".hashCode()) % 50`.
    #[test]
    fn groups_land_where_kafka_puts_them() {
        // "".hashCode() == 0; "a".hashCode() == 97; "group".hashCode() == 98629247.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash: "Aa-negative-test-zz" style strings; checked by symmetry instead.
        for id in ["orders-app", "consumer-group-7", "ÄÖÜ", "日本"] {
            let p = partition_for(id, 10);
            assert!((0..10).contains(&p), "{id}: {p}");
        }
    }
}
