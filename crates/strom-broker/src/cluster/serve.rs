//! The leader's side of replication: a follower's fetch records how far it has the log (which
//! moves the high watermark and wakes acks=all waits and consumers), then reads whole batches
//! from its offset up to the log end (not the high watermark), waiting up to its
//! `max_wait_ms` when there is nothing new. Fetches for another epoch are refused, which fences
//! a deposed leader's followers and a deposed leader itself.

use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_cluster::messages::{
    EpochEndRequest, EpochEndResponse, ReplicaError, ReplicaFetchRequest, ReplicaFetchResponse,
    TxnOffsetsRequest, WriteTxnMarkersRequest,
};
use strom_cluster::rpc::BoxFuture;
use strom_cluster::DataPlane;
use strom_log::{LogError, ReadSlice};

use super::epochs;
use crate::broker::Broker;
use crate::partition::{Partition, PartitionState};

/// Longest wait a follower may ask for.
const REPLICA_FETCH_WAIT_MS_MAX: u32 = 10_000;

pub struct Plane(pub Weak<Broker>);

fn refusal(error: ReplicaError) -> ReplicaFetchResponse {
    ReplicaFetchResponse {
        error,
        high_watermark: -1,
        log_start_offset: -1,
        log_end_offset: -1,
    }
}

/// The leader-and-epoch check shared by both requests.
fn check_epoch(state: &PartitionState, epoch: i32) -> Result<(), ReplicaError> {
    let Some(r) = &state.replica else {
        return Err(ReplicaError::NotLeader);
    };
    if !r.is_leader() {
        return Err(ReplicaError::NotLeader);
    }
    match epoch.cmp(&r.leader_epoch) {
        std::cmp::Ordering::Less => Err(ReplicaError::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Err(ReplicaError::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// One read under the lock: the answer, the slice to read after it, and whether the high
/// watermark moved.
fn read_once(
    partition: &Partition,
    request: &ReplicaFetchRequest,
) -> Result<(ReplicaFetchResponse, ReadSlice, bool), ReplicaFetchResponse> {
    let mut state = partition
        .lock()
        .map_err(|_| refusal(ReplicaError::Storage))?;
    check_epoch(&state, request.leader_epoch).map_err(refusal)?;
    let log_end = state.log.log_end_offset();
    let before = state.high_watermark();
    if let Some(r) = state.replica.as_mut() {
        r.record_fetch(
            request.replica_id,
            request.fetch_offset,
            log_end,
            Instant::now(),
        );
    }
    let hw = state.high_watermark();
    let answer = ReplicaFetchResponse {
        error: ReplicaError::None,
        high_watermark: hw,
        log_start_offset: state.log.log_start_offset(),
        log_end_offset: log_end,
    };
    let slice = match state
        .log
        .read(request.fetch_offset, request.max_bytes.max(1) as usize)
    {
        Ok(slice) => slice,
        Err(LogError::OffsetOutOfRange { .. }) => {
            return Err(ReplicaFetchResponse {
                error: ReplicaError::OffsetOutOfRange,
                ..answer
            })
        }
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "replica read failed");
            return Err(refusal(ReplicaError::Storage));
        }
    };
    Ok((answer, slice, hw > before))
}

async fn fetch(broker: Arc<Broker>, request: ReplicaFetchRequest) -> (ReplicaFetchResponse, Bytes) {
    let Some(partition) = broker
        .topics
        .get(&request.topic)
        .and_then(|t| t.partition(request.partition))
    else {
        return (refusal(ReplicaError::UnknownPartition), Bytes::new());
    };
    let wait = Duration::from_millis(u64::from(
        request.max_wait_ms.min(REPLICA_FETCH_WAIT_MS_MAX),
    ));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut notified = pin!(partition.appended.notified());
        notified.as_mut().enable();
        let (answer, slice, moved) = match read_once(&partition, &request) {
            Ok(r) => r,
            Err(refused) => return (refused, Bytes::new()),
        };
        if moved {
            partition.appended.notify_waiters();
        }
        if !slice.is_empty() || tokio::time::Instant::now() >= deadline {
            return match slice.read_bytes() {
                Ok(bytes) => (answer, bytes),
                Err(e) => {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "replica read failed");
                    (refusal(ReplicaError::Storage), Bytes::new())
                }
            };
        }
        tokio::select! {
            _ = tokio::time::timeout_at(deadline, notified) => {}
            _ = broker.shutting_down() => return (answer, Bytes::new()),
        }
    }
}

/// A consumer read for another node: the leader's records from the offset, below its high
/// watermark.
fn consumer_read(
    broker: &Broker,
    request: &ReplicaFetchRequest,
) -> Result<(ReplicaFetchResponse, Bytes), ReplicaFetchResponse> {
    let partition = broker
        .topics
        .get(&request.topic)
        .and_then(|t| t.partition(request.partition))
        .ok_or(refusal(ReplicaError::UnknownPartition))?;
    let state = partition
        .lock()
        .map_err(|_| refusal(ReplicaError::Storage))?;
    if !state.replica.as_ref().is_some_and(|r| r.is_leader()) {
        return Err(refusal(ReplicaError::NotLeader));
    }
    let answer = ReplicaFetchResponse {
        error: ReplicaError::None,
        high_watermark: state.high_watermark(),
        log_start_offset: state.log.log_start_offset(),
        log_end_offset: state.log.log_end_offset(),
    };
    let slice = match state.read_visible(request.fetch_offset, request.max_bytes.max(1) as usize) {
        Ok(slice) => slice,
        Err(LogError::OffsetOutOfRange { .. }) => {
            return Err(ReplicaFetchResponse {
                error: ReplicaError::OffsetOutOfRange,
                ..answer
            })
        }
        Err(_) => return Err(refusal(ReplicaError::Storage)),
    };
    drop(state);
    let bytes = slice
        .read_bytes()
        .map_err(|_| refusal(ReplicaError::Storage))?;
    let bytes = super::produce::below_offset(bytes, answer.high_watermark);
    Ok((answer, bytes))
}

impl DataPlane for Plane {
    fn committed_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, i16> {
        let broker = self
            .0
            .upgrade()
            .ok_or(strom_protocol::ResponseError::NotCoordinator.code())?;
        super::group_calls::committed_here(&broker, group, topic)
    }

    fn consumer_read(&self, request: ReplicaFetchRequest) -> (ReplicaFetchResponse, Bytes) {
        let Some(broker) = self.0.upgrade() else {
            return (refusal(ReplicaError::Storage), Bytes::new());
        };
        consumer_read(&broker, &request).unwrap_or_else(|refused| (refused, Bytes::new()))
    }

    fn write_txn_markers(&self, request: WriteTxnMarkersRequest) -> BoxFuture<Vec<i16>> {
        let broker = self.0.upgrade();
        Box::pin(async move {
            match broker {
                Some(b) => super::txn_calls::serve_markers(&b, request).await,
                None => vec![
                    strom_protocol::ResponseError::NotLeaderOrFollower.code();
                    request.partitions.len()
                ],
            }
        })
    }

    fn txn_offsets(&self, request: TxnOffsetsRequest) -> BoxFuture<Result<Vec<i16>, i16>> {
        let broker = self.0.upgrade();
        Box::pin(async move {
            match broker {
                Some(b) => super::txn_calls::serve_offsets(&b, request).await,
                None => Err(strom_protocol::ResponseError::NotCoordinator.code()),
            }
        })
    }

    fn replica_fetch(
        &self,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<(ReplicaFetchResponse, Bytes)> {
        let broker = self.0.upgrade();
        Box::pin(async move {
            match broker {
                Some(b) => fetch(b, request).await,
                None => (refusal(ReplicaError::Storage), Bytes::new()),
            }
        })
    }

    fn epoch_end(&self, request: EpochEndRequest) -> EpochEndResponse {
        let refused = |error| EpochEndResponse {
            error,
            epoch: -1,
            end_offset: -1,
        };
        let Some(broker) = self.0.upgrade() else {
            return refused(ReplicaError::Storage);
        };
        let Some(partition) = broker
            .topics
            .get(&request.topic)
            .and_then(|t| t.partition(request.partition))
        else {
            return refused(ReplicaError::UnknownPartition);
        };
        let Ok(state) = partition.lock() else {
            return refused(ReplicaError::Storage);
        };
        if let Err(e) = check_epoch(&state, request.leader_epoch) {
            return refused(e);
        }
        match epochs::end_of_epoch(&state.log, request.epoch) {
            Ok((epoch, end_offset)) => EpochEndResponse {
                error: ReplicaError::None,
                epoch,
                end_offset,
            },
            Err(_) => refused(ReplicaError::Storage),
        }
    }
}
