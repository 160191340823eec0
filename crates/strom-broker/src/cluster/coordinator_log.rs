//! A coordinator's records in a partition of an internal topic this node leads: appended as
//! keyless records of uncompressed batches, "durable" once the ISR has them (as Kafka's
//! coordinators wait for their acks=all appends), and read back whole when a new leader loads
//! the partition.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use strom_group::{ReplicatedLog, ReplicationWait};
use strom_log::validate_batches;
use strom_protocol::records::{decode_batch, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;
use crate::partition::Partition;
use crate::topics::now_ms;

/// Kafka's `offsets.commit.timeout.ms` (and the transaction log's request timeout): how long
/// an append waits for the ISR.
pub const REPLICATION_TIMEOUT_MS: u64 = 5000;
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

/// A new leader's read of its coordinator partition, off the request workers: every record
/// value and the log end, or `None` (logged) when the log cannot be read.
pub async fn read_back(partition: &Arc<Partition>) -> Option<(Vec<Bytes>, i64)> {
    let read = {
        let partition = partition.clone();
        tokio::task::spawn_blocking(move || read_values(&partition)).await
    };
    match read.map_err(|e| e.to_string()).and_then(|r| r) {
        Ok(read) => Some(read),
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "cannot load a coordinator partition");
            None
        }
    }
}

/// Every record value of the partition, oldest first, and the log end read up to.
pub fn read_values(partition: &Partition) -> Result<(Vec<Bytes>, i64), String> {
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

/// [`ReplicatedLog`] over one internal partition this node leads in `epoch`.
#[derive(Clone)]
pub struct PartitionJournal {
    broker: Weak<Broker>,
    partition: Arc<Partition>,
    epoch: i32,
}

impl PartitionJournal {
    pub fn new(broker: &Arc<Broker>, partition: &Arc<Partition>, epoch: i32) -> Arc<Self> {
        Arc::new(PartitionJournal {
            broker: Arc::downgrade(broker),
            partition: partition.clone(),
            epoch,
        })
    }
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
            .get(&self.partition.topic)
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
            let deadline =
                tokio::time::Instant::now() + Duration::from_millis(REPLICATION_TIMEOUT_MS);
            crate::cluster::produce::wait_replicated(
                &partition, end as i64, epoch, min_insync, deadline,
            )
            .await
            .map_err(coordinator_error)
        })
    }

    fn discard_before(&self, start: u64, end: u64) {
        let wait = self.wait_replicated(end);
        let journal = self.clone();
        tokio::spawn(async move {
            if wait.await.is_ok() {
                journal.move_log_start(start as i64);
            }
        });
    }
}

impl PartitionJournal {
    /// Moves the log start to `start` if this node still leads in the journal's epoch.
    fn move_log_start(&self, start: i64) {
        let Ok(mut state) = self.partition.lock() else {
            return;
        };
        let leads = state
            .replica
            .as_ref()
            .is_some_and(|r| r.is_leader() && r.leader_epoch == self.epoch);
        if !leads {
            return;
        }
        match state.log.delete_records_before(start) {
            Ok(_) => {
                tracing::debug!(topic = %self.partition.topic, partition = self.partition.index, start, "discarded the records before a coordinator checkpoint")
            }
            Err(e) => {
                tracing::warn!(topic = %self.partition.topic, partition = self.partition.index, error = %e, "cannot discard the records before a coordinator checkpoint")
            }
        }
    }
}

/// Kafka's mapping of a failed coordinator append to the coordinator's answer
/// (`GroupMetadataManager.storeOffsets`, `TransactionStateManager.appendTransactionToLog`).
pub fn coordinator_error(e: E) -> i16 {
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
