//! Replicated transaction coordination, as Kafka does it: each transactional id's state lives
//! in a partition of the internal topic `__transaction_state`
//! (`transaction.state.log.num.partitions`, replicated
//! `transaction.state.log.replication.factor` times), partition
//! `abs(javaHash(transactional id)) % partitions`, and its coordinator is that partition's
//! leader. When this node becomes the leader it reads the partition back into a fresh
//! [`TxnCoordinator`] (COORDINATOR_LOAD_IN_PROGRESS meanwhile) whose first sweep completes any
//! transaction left in a Prepare state by the old leader; when it stops leading, the
//! coordinator is closed and its clients get NOT_COORDINATOR and look the new one up.

use std::sync::Arc;

use super::coordinator_log::{read_back, PartitionJournal};
use super::shards::{Closable, Shards};
use crate::broker::Broker;
use crate::partition::Partition;
use crate::txn::{journal, TxnCoordinator};

/// The internal topic's name (Kafka's).
pub const TXN_TOPIC: &str = "__transaction_state";

/// The coordinators of the `__transaction_state` partitions this node leads.
pub type TxnShards = Shards<TxnCoordinator>;

impl Closable for TxnCoordinator {
    fn close(&self) {
        TxnCoordinator::close(self)
    }
}

/// FindCoordinator for a transactional id in cluster mode: the live leader of its partition.
pub fn coordinator_node(
    broker: &Arc<Broker>,
    transactional_id: &str,
) -> Result<(i32, String, i32), strom_protocol::ResponseError> {
    let config = &broker.config;
    broker.txn_shards.coordinator_node(
        broker,
        transactional_id,
        (
            config.transaction_state_log_num_partitions,
            config.transaction_state_log_replication_factor,
        ),
    )
}

/// The reconciler saw a new role for a transaction state partition: load it if this node now
/// leads it in a new epoch, close its coordinator if it no longer does.
pub fn on_role(broker: &Arc<Broker>, partition: &Arc<Partition>, leads: bool, epoch: i32) {
    if broker.txn_shards.on_role(partition.index, leads, epoch) {
        tokio::spawn(load(broker.clone(), partition.clone(), epoch));
    }
}

/// Reads the partition back and installs its coordinator, unless leadership moved on.
async fn load(broker: Arc<Broker>, partition: Arc<Partition>, epoch: i32) {
    let started = std::time::Instant::now();
    let Some((values, end)) = read_back(&partition).await else {
        return;
    };
    let records = values.len();
    let txns = journal::replay(values);
    let ids = txns.len();
    let coordinator = Arc::new(TxnCoordinator::open_replicated(
        txns,
        PartitionJournal::new(&broker, &partition, epoch),
        (end as u64, records as u64),
        broker.txn_config(),
    ));
    if broker
        .txn_shards
        .finish_load(partition.index, epoch, coordinator.clone())
    {
        tracing::info!(
            partition = partition.index,
            epoch,
            records,
            transactional_ids = ids,
            ms = started.elapsed().as_millis() as u64,
            "loaded the transactions of a transaction state partition"
        );
        // Its first sweep (at once) completes what the previous leader left in a Prepare state.
        tokio::spawn(coordinator.run_background(broker.clone(), broker.shutdown_receiver()));
    } else {
        coordinator.close();
    }
}
