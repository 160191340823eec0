//! What the group and transaction coordinators of cluster mode share: each lives on the leader
//! of one partition of an internal topic (`__consumer_offsets`, `__transaction_state`), keys
//! map to partitions as Kafka maps them, and a node holds one coordinator per partition it
//! leads, loading it when it becomes the leader in a new epoch and closing it when it stops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

/// The internal topic partition of a key (a group or transactional id): Kafka's
/// `partitionFor`, so a key lands where a Kafka cluster with as many partitions would put it.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = key
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    // Kafka's `Utils.abs`: Integer.MIN_VALUE maps to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// A coordinator that a lost leadership closes.
pub trait Closable: Send + Sync + 'static {
    fn close(&self);
}

enum Shard<C> {
    /// This node leads the partition in `epoch` and is reading it back.
    Loading {
        epoch: i32,
    },
    Loaded {
        epoch: i32,
        coordinator: Arc<C>,
    },
}

impl<C> Shard<C> {
    fn epoch(&self) -> i32 {
        match self {
            Shard::Loading { epoch } | Shard::Loaded { epoch, .. } => *epoch,
        }
    }
}

/// The coordinators of the internal topic partitions this node leads.
pub struct Shards<C> {
    /// The internal topic.
    pub topic: &'static str,
    shards: RwLock<HashMap<i32, Shard<C>>>,
    /// A creation of the internal topic is under way (one at a time, however many ask).
    creating: Arc<AtomicBool>,
}

impl<C: Closable> Shards<C> {
    pub fn new(topic: &'static str) -> Self {
        Shards {
            topic,
            shards: RwLock::new(HashMap::new()),
            creating: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The coordinator of `partition`, or the Kafka error code to answer with.
    pub fn get(&self, partition: i32) -> Result<Arc<C>, i16> {
        match self.shards.read().get(&partition) {
            Some(Shard::Loaded { coordinator, .. }) => Ok(coordinator.clone()),
            Some(Shard::Loading { .. }) => Err(E::CoordinatorLoadInProgress.code()),
            None => Err(E::NotCoordinator.code()),
        }
    }

    /// The coordinator of `key`, by the partition count in the metadata image.
    pub fn for_key(&self, broker: &Broker, key: &str) -> Result<Arc<C>, i16> {
        let partitions = broker
            .cluster
            .get()
            .and_then(|c| c.image().topics.get(self.topic).map(|t| t.partitions.len()))
            .ok_or(E::NotCoordinator.code())?;
        self.get(partition_for(key, partitions as i32))
    }

    /// Every loaded coordinator on this node.
    pub fn all(&self) -> Vec<Arc<C>> {
        self.shards
            .read()
            .values()
            .filter_map(|s| match s {
                Shard::Loaded { coordinator, .. } => Some(coordinator.clone()),
                Shard::Loading { .. } => None,
            })
            .collect()
    }

    /// The reconciler saw a role for partition `index`: close its coordinator if this node no
    /// longer leads it in `epoch`. True when a load must start (the caller spawns it, then
    /// calls [`Shards::finish_load`]).
    pub fn on_role(&self, index: i32, leads: bool, epoch: i32) -> bool {
        let mut shards = self.shards.write();
        if leads && shards.get(&index).is_some_and(|s| s.epoch() == epoch) {
            return false;
        }
        if let Some(Shard::Loaded { coordinator, .. }) = shards.remove(&index) {
            tracing::info!(
                topic = self.topic,
                partition = index,
                "closing the coordinator of a partition this node no longer leads"
            );
            coordinator.close();
        }
        if leads {
            shards.insert(index, Shard::Loading { epoch });
        }
        leads
    }

    /// Installs a loaded coordinator unless leadership moved on meanwhile (then the caller
    /// closes it).
    pub fn finish_load(&self, index: i32, epoch: i32, coordinator: Arc<C>) -> bool {
        let mut shards = self.shards.write();
        match shards.get(&index) {
            Some(Shard::Loading { epoch: e }) if *e == epoch => {
                shards.insert(index, Shard::Loaded { epoch, coordinator });
                true
            }
            _ => false,
        }
    }

    /// FindCoordinator in cluster mode (Kafka's `KafkaApis.getCoordinator`): the live leader
    /// of the key's partition as (node id, host, port). Without the topic yet, its creation
    /// starts and the answer is COORDINATOR_NOT_AVAILABLE, which clients retry.
    pub fn coordinator_node(
        &self,
        broker: &Arc<Broker>,
        key: &str,
        (partitions, replication_factor): (i32, i16),
    ) -> Result<(i32, String, i32), E> {
        let Some(cluster) = broker.cluster.get() else {
            return Err(E::CoordinatorNotAvailable);
        };
        let image = cluster.image();
        let Some(topic) = image.topics.get(self.topic) else {
            self.create_topic(broker, partitions, replication_factor);
            return Err(E::CoordinatorNotAvailable);
        };
        let index = partition_for(key, topic.partitions.len() as i32);
        let leader = topic
            .partitions
            .get(index as usize)
            .map_or(strom_cluster::NO_LEADER, |p| p.leader);
        match image.brokers.get(&leader) {
            Some(b) if !b.fenced => Ok((leader, b.host.clone(), b.port)),
            _ => Err(E::CoordinatorNotAvailable),
        }
    }

    /// Starts making the internal topic through the quorum, unless that is under way.
    fn create_topic(&self, broker: &Arc<Broker>, partitions: i32, replication_factor: i16) {
        if self.creating.swap(true, Ordering::AcqRel) {
            return;
        }
        let broker = broker.clone();
        let topic = self.topic;
        let creating = self.creating.clone();
        tokio::spawn(async move {
            if let Some(cluster) = broker.cluster.get().cloned() {
                // Coordinator records must outlive any retention.
                let configs = [("retention.ms".to_string(), "-1".to_string())].into();
                let made = cluster
                    .create_topic(
                        &broker,
                        topic,
                        partitions,
                        replication_factor as usize,
                        configs,
                    )
                    .await;
                match made {
                    Ok(_) | Err(crate::cluster::CreateError::Exists) => {}
                    Err(e) => {
                        tracing::warn!(topic, error = %e, "cannot create an internal topic yet; its coordinators are not available")
                    }
                }
            }
            creating.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    /// Values from Java's `Math.abs("...".hashCode()) % 50`.
    #[test]
    fn keys_land_where_kafka_puts_them() {
        // "".hashCode() == 0; "a".hashCode() == 97; "group".hashCode() == 98629247.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for id in ["orders-app", "consumer-group-7", "ÄÖÜ", "日本"] {
            let p = partition_for(id, 10);
            assert!((0..10).contains(&p), "{id}: {p}");
        }
    }
}
