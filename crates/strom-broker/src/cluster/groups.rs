//! Replicated group coordination, as Kafka does it: groups and their committed offsets live in
//! the partitions of the internal topic `__consumer_offsets` (`offsets.topic.num.partitions`,
//! replicated `offsets.topic.replication.factor` times), and a group's coordinator is the
//! leader of partition `abs(javaHash(group id)) % partitions`. When this node becomes that
//! leader it reads the partition back into a fresh [`GroupCoordinator`] (answering
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile); every commit is appended there and answered once
//! the ISR has it; when it stops leading, the coordinator is closed and its clients get
//! NOT_COORDINATOR, look the new coordinator up and rejoin.

use std::sync::Arc;

use strom_group::GroupCoordinator;

use super::coordinator_log::{read_back, PartitionJournal};
use super::shards::{Closable, Shards};
use crate::broker::Broker;
use crate::partition::Partition;

/// The internal topic's name (Kafka's).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The coordinators of the `__consumer_offsets` partitions this node leads.
pub type GroupShards = Shards<GroupCoordinator>;

impl Closable for GroupCoordinator {
    fn close(&self) {
        GroupCoordinator::close(self)
    }
}

/// FindCoordinator for a group in cluster mode: the live leader of its offsets partition.
pub fn coordinator_node(
    broker: &Arc<Broker>,
    group_id: &str,
) -> Result<(i32, String, i32), strom_protocol::ResponseError> {
    let config = &broker.config;
    broker.group_shards.coordinator_node(
        broker,
        group_id,
        (
            config.offsets_topic_num_partitions,
            config.offsets_topic_replication_factor,
        ),
    )
}

/// The reconciler saw a new role for an offsets partition: load it if this node now leads it
/// in a new epoch, close its coordinator if it no longer does.
pub fn on_role(broker: &Arc<Broker>, partition: &Arc<Partition>, leads: bool, epoch: i32) {
    if broker.group_shards.on_role(partition.index, leads, epoch) {
        tokio::spawn(load(broker.clone(), partition.clone(), epoch));
    }
}

/// Reads the partition back from its log start to its log end (everything this leader has is
/// what its followers will have) and installs the coordinator, unless leadership moved on.
async fn load(broker: Arc<Broker>, partition: Arc<Partition>, epoch: i32) {
    let started = std::time::Instant::now();
    let Some((values, end)) = read_back(&partition).await else {
        return;
    };
    let records = values.len();
    let coordinator = GroupCoordinator::open_replicated(
        values,
        PartitionJournal::new(&broker, &partition, epoch),
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
