//! The transaction protocol between nodes (Kafka's WriteTxnMarkers, and transactional offsets
//! whose group and transaction coordinators are on different nodes), both sides:
//!
//! - A coordinator ending a transaction writes its markers through each partition's leader,
//!   this node included, and retries the partitions that failed (a leader moved, an ISR too
//!   small) against the latest image until [`DELIVERY_TIMEOUT_MS`]; then the state stays
//!   Prepare and the cleanup task tries again (EndTxn answered already, once the decision was
//!   on the ISR of its `__transaction_state` partition). A marker counts once the partition's
//!   ISR has it. Markers written twice are harmless.
//! - A committed transaction's offsets go to each group's coordinator the same way.
//! - TxnOffsetCommit reaches the group's coordinator, which checks the member and then stages
//!   the offsets with the transaction's coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strom_cluster::messages::{Request, Response, TxnOffsetsRequest, WriteTxnMarkersRequest};
use strom_protocol::ResponseError as E;

use super::coordinator_log::REPLICATION_TIMEOUT_MS;
use super::groups::OFFSETS_TOPIC;
use super::shards::partition_for;
use super::txns::TXN_TOPIC;
use crate::broker::Broker;
use crate::txn::{commit_to_group, offsets_by_group, PendingOffset, TxnError, TxnMeta};

/// How long the end of a transaction keeps retrying its markers and offsets.
const DELIVERY_TIMEOUT_MS: u64 = 15_000;
/// Pause between retries.
const RETRY_BACKOFF_MS: u64 = 100;

/// The leader of partition `index` of `topic` in the latest image: `Some(None)` when it has
/// none now, `None` when the partition does not exist (a deleted topic).
fn leader_of(broker: &Broker, topic: &str, index: i32) -> Option<Option<i32>> {
    let image = broker.cluster.get()?.image();
    let p = image.topics.get(topic)?.partitions.get(index as usize)?;
    Some((p.leader != strom_cluster::NO_LEADER).then_some(p.leader))
}

/// The node that leads a key's partition of an internal topic.
fn internal_leader(broker: &Broker, topic: &str, key: &str) -> Option<i32> {
    let image = broker.cluster.get()?.image();
    let partitions = image.topics.get(topic)?.partitions.len() as i32;
    leader_of(broker, topic, partition_for(key, partitions)).flatten()
}

/// One inter-node call, or this node's own answer when `node` is this node.
async fn call(broker: &Arc<Broker>, node: i32, request: Request) -> Option<Response> {
    if node == broker.node_id() {
        return Some(serve(broker, request).await);
    }
    let cluster = broker.cluster.get()?;
    let timeout = cluster.node.request_timeout() + Duration::from_millis(REPLICATION_TIMEOUT_MS);
    match cluster.node.call(node, &request, &[], timeout).await {
        Ok((response, _)) => Some(response),
        Err(e) => {
            tracing::debug!(node, error = %e, "transaction call failed");
            None
        }
    }
}

/// Writes the transaction's markers to every partition (deleted ones skipped).
pub async fn write_markers(
    broker: &Arc<Broker>,
    meta: &TxnMeta,
    commit: bool,
) -> Result<(), TxnError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(DELIVERY_TIMEOUT_MS);
    let mut todo: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
    loop {
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (topic, index) in todo {
            match leader_of(broker, &topic, index) {
                None => {}
                Some(None) => failed.push((topic, index)),
                Some(Some(leader)) => by_leader.entry(leader).or_default().push((topic, index)),
            }
        }
        let mut calls = tokio::task::JoinSet::new();
        for (leader, partitions) in by_leader {
            let broker = broker.clone();
            let request = WriteTxnMarkersRequest {
                producer_id: meta.producer_id,
                producer_epoch: meta.producer_epoch,
                commit,
                partitions,
            };
            calls.spawn(async move {
                let partitions = request.partitions.clone();
                let codes = match call(&broker, leader, Request::WriteTxnMarkers(request)).await {
                    Some(Response::WriteTxnMarkers(codes)) => codes,
                    _ => Vec::new(),
                };
                let mut codes = codes.into_iter();
                partitions
                    .into_iter()
                    .filter(|_| codes.next().unwrap_or(E::RequestTimedOut.code()) != 0)
                    .collect::<Vec<_>>()
            });
        }
        while let Some(done) = calls.join_next().await {
            failed.extend(done.map_err(|_| TxnError::Storage)?);
        }
        if failed.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(transactional_id = %meta.transactional_id, partitions = ?failed, "transaction markers not written in time; the cleanup task retries");
            return Err(TxnError::Storage);
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
        todo = failed;
    }
}

/// Whether a coordinator answer means "ask again, perhaps elsewhere".
pub(super) fn retriable(code: i16) -> bool {
    [
        E::NotCoordinator,
        E::CoordinatorNotAvailable,
        E::CoordinatorLoadInProgress,
        E::RequestTimedOut,
        E::ConcurrentTransactions,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// Calls the coordinator (the leader of `key`'s partition of `topic`) until its answer is
/// not a retriable refusal, or the deadline passes (then COORDINATOR_NOT_AVAILABLE).
async fn call_coordinator(
    broker: &Arc<Broker>,
    topic: &str,
    key: &str,
    request: TxnOffsetsRequest,
    timeout_ms: u64,
) -> Result<Vec<i16>, i16> {
    let answer = |r| match r {
        Response::TxnOffsets(r) => r,
        _ => Err(E::CoordinatorNotAvailable.code()),
    };
    let again = |codes: &Vec<i16>| codes.iter().any(|&c| retriable(c));
    let request = Request::TxnOffsets(request);
    call_until_answered(broker, (topic, key), request, timeout_ms, answer, again).await
}

/// [`call_coordinator`] for any call: `answer` reads the response (a refusal as its code),
/// `again` tells whether a successful answer still holds a retriable refusal.
pub(super) async fn call_until_answered<T>(
    broker: &Arc<Broker>,
    (topic, key): (&str, &str),
    request: Request,
    timeout_ms: u64,
    answer: impl Fn(Response) -> Result<T, i16>,
    again: impl Fn(&T) -> bool,
) -> Result<T, i16> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let answer = match internal_leader(broker, topic, key) {
            Some(node) => match call(broker, node, request.clone()).await {
                Some(r) => answer(r),
                None => Err(E::CoordinatorNotAvailable.code()),
            },
            None => Err(E::CoordinatorNotAvailable.code()),
        };
        let again = match &answer {
            Err(code) => retriable(*code),
            Ok(value) => again(value),
        };
        if !again {
            return answer;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(E::CoordinatorNotAvailable.code());
        }
        tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
    }
}

/// Writes a committed transaction's offsets to each group's coordinator.
pub async fn commit_offsets(broker: &Arc<Broker>, meta: &TxnMeta) -> Result<(), TxnError> {
    for (group, offsets) in offsets_by_group(meta) {
        let request = TxnOffsetsRequest::Commit {
            group: group.to_string(),
            offsets,
        };
        // Offsets of a partition deleted since are refused for good; the rest are written.
        if let Err(code) =
            call_coordinator(broker, OFFSETS_TOPIC, group, request, DELIVERY_TIMEOUT_MS).await
        {
            tracing::warn!(transactional_id = %meta.transactional_id, group, code, "transactional offsets not written in time; the cleanup task retries");
            return Err(TxnError::Storage);
        }
    }
    Ok(())
}

/// TxnOffsetCommit's second half, after the group coordinator checked the member: stages the
/// offsets with the transaction's coordinator, wherever it is.
pub async fn stage_offsets(
    broker: &Arc<Broker>,
    transactional_id: &str,
    (producer_id, producer_epoch): (i64, i16),
    group: &str,
    offsets: Vec<PendingOffset>,
) -> Result<Vec<Result<(), i16>>, i16> {
    if broker.cluster.get().is_none() {
        let txn = broker.txn_for(transactional_id)?;
        return txn
            .stage_offsets(
                broker,
                transactional_id,
                (producer_id, producer_epoch),
                group,
                offsets,
            )
            .await;
    }
    let request = TxnOffsetsRequest::Stage {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        group: group.to_string(),
        offsets,
    };
    let codes = call_coordinator(
        broker,
        TXN_TOPIC,
        transactional_id,
        request,
        REPLICATION_TIMEOUT_MS,
    )
    .await?;
    Ok(codes
        .into_iter()
        .map(|c| if c == 0 { Ok(()) } else { Err(c) })
        .collect())
}

/// The answering side of the calls, for this node's own use.
pub async fn serve(broker: &Arc<Broker>, request: Request) -> Response {
    match request {
        Request::WriteTxnMarkers(r) => Response::WriteTxnMarkers(serve_markers(broker, r).await),
        Request::TxnOffsets(r) => Response::TxnOffsets(serve_offsets(broker, r).await),
        Request::CommittedOffsets { group, topic } => {
            Response::CommittedOffsets(super::group_calls::committed_here(broker, &group, &topic))
        }
        _ => Response::Unavailable("not a transaction call".into()),
    }
}

/// Writes the markers to the partitions this node leads and waits for their ISRs.
pub async fn serve_markers(broker: &Arc<Broker>, request: WriteTxnMarkersRequest) -> Vec<i16> {
    let min_insync = broker.config.min_insync_replicas;
    let mut codes = vec![0i16; request.partitions.len()];
    let mut waits = Vec::new();
    for (i, (topic, index)) in request.partitions.iter().enumerate() {
        let Some(partition) = broker.topics.get(topic).and_then(|t| t.partition(*index)) else {
            codes[i] = E::UnknownTopicOrPartition.code();
            continue;
        };
        let epoch = match super::produce::check_leader(&partition, -1, min_insync) {
            Ok(epoch) => epoch,
            Err(e) => {
                codes[i] = e.code();
                continue;
            }
        };
        match crate::append::append_marker(
            broker,
            &partition,
            request.producer_id,
            request.producer_epoch,
            request.commit,
        ) {
            Ok(end) => waits.push((i, partition, end, epoch)),
            Err(e) => codes[i] = crate::handlers::produce::append_error_code(&e).code(),
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(REPLICATION_TIMEOUT_MS);
    for (i, partition, end, epoch) in waits {
        if let Err(e) =
            super::produce::wait_replicated(&partition, end, epoch, min_insync, deadline).await
        {
            codes[i] = e.code();
        }
    }
    codes
}

pub async fn serve_offsets(
    broker: &Arc<Broker>,
    request: TxnOffsetsRequest,
) -> Result<Vec<i16>, i16> {
    match request {
        TxnOffsetsRequest::Commit { group, offsets } => {
            let coordinator = broker.coordinator_for(&group)?;
            Ok(commit_to_group(&coordinator, &group, &offsets)
                .await
                .into_iter()
                .map(|r| r.err().map_or(0, |e| e.kafka_code()))
                .collect())
        }
        TxnOffsetsRequest::Stage {
            transactional_id,
            producer_id,
            producer_epoch,
            group,
            offsets,
        } => {
            let txn = broker.txn_for(&transactional_id)?;
            let results = txn
                .stage_offsets(
                    broker,
                    &transactional_id,
                    (producer_id, producer_epoch),
                    &group,
                    offsets,
                )
                .await?;
            Ok(results.into_iter().map(|r| r.err().unwrap_or(0)).collect())
        }
    }
}
