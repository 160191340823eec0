//! Fetch: whole batches straight from segment files (one pread each), the partition and
//! response byte limits, long polling — wait on the partitions' notifiers until `min_bytes`
//! have arrived or `max_wait_ms` has passed, with no sleep loop — and incremental fetch
//! sessions (KIP-227, [`crate::fetch_sessions`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use strom_log::LogError;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use crate::broker::Broker;
use crate::fetch_sessions::{FetchContext, FetchPartition, PartitionKey, NO_SESSION};
use crate::metrics::records_in_batches;
use crate::partition::Partition;
use crate::security::acl::op;
use crate::topics::now_ms;

/// Longest long-poll we honour, so a bad request cannot pin a connection forever.
pub const FETCH_MAX_WAIT_MS_MAX: i32 = 60_000;
/// The first Fetch version that names topics by id (sessions then key partitions by id).
const TOPIC_IDS_VERSION: i16 = 13;

struct Slot {
    request: FetchPartition,
    partition: Option<Arc<Partition>>,
    topic_missing: bool,
    /// READ on the topic was refused: TOPIC_AUTHORIZATION_FAILED, and no wait for it.
    denied: bool,
}

fn partition_error(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

/// Reads every slot once; returns the partition entries and how many record bytes they hold.
fn read_all(
    slots: &[Slot],
    response_max_bytes: usize,
    read_committed: bool,
    clustered: bool,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        let index = slot.request.partition;
        if slot.denied {
            out.push(partition_error(index, E::TopicAuthorizationFailed.code()));
            continue;
        }
        let Some(p) = &slot.partition else {
            out.push(partition_error(index, E::UnknownTopicOrPartition.code()));
            any_error = true;
            continue;
        };
        // KIP-74: the first batch is returned whole even past the limits, so a consumer can
        // always make progress; after that the response budget applies.
        let budget =
            (slot.request.max_bytes.max(0) as usize).min(response_max_bytes.saturating_sub(total));
        let (read, hw, lso, aborted, start) = {
            let Ok(state) = p.lock() else {
                // An offline partition (failed disk or damaged log): Kafka's answer for a
                // replica whose log dir failed.
                out.push(partition_error(index, E::KafkaStorageError.code()));
                any_error = true;
                continue;
            };
            // In cluster mode only the leader serves consumers.
            if clustered && !state.replica.as_ref().is_some_and(|r| r.is_leader()) {
                out.push(partition_error(index, E::NotLeaderOrFollower.code()));
                any_error = true;
                continue;
            }
            // Partition.fetchRecords checks the client's leader epoch first: newer than ours
            // is UNKNOWN_LEADER_EPOCH, older is FENCED_LEADER_EPOCH (-1 means "no check").
            let epoch = state.leader_epoch();
            let client_epoch = slot.request.current_leader_epoch;
            let epoch_error = if client_epoch > epoch {
                Some(E::UnknownLeaderEpoch)
            } else if client_epoch >= 0 && client_epoch < epoch {
                Some(E::FencedLeaderEpoch)
            } else {
                None
            };
            if let Some(e) = epoch_error {
                out.push(partition_error(index, e.code()));
                any_error = true;
                continue;
            }
            let read = if budget == 0 && total > 0 {
                Ok(None)
            } else if read_committed {
                state
                    .read_committed(slot.request.fetch_offset, budget.max(1))
                    .map(Some)
            } else {
                state
                    .read_visible(slot.request.fetch_offset, budget.max(1))
                    .map(Some)
            };
            let lso = state.last_stable_offset();
            // UnifiedLog.collectAbortedTransactions: the aborted transactions that overlap
            // what this fetch can return (up to the LSO). An empty list, not null, when none.
            let aborted = read_committed.then(|| {
                state
                    .log
                    .aborted_between(slot.request.fetch_offset, lso)
                    .into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect::<Vec<_>>()
            });
            (
                read,
                state.high_watermark(),
                lso,
                aborted,
                state.log.log_start_offset(),
            )
        };
        let entry = PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(hw)
            .with_last_stable_offset(lso)
            .with_log_start_offset(start)
            .with_aborted_transactions(aborted);
        match read {
            Ok(Some(mut slice)) if !slice.is_empty() => {
                // Past the first partition with data Kafka's LogSegment.read has
                // minOneMessage=false and cuts at the byte budget, even inside a batch;
                // clients drop the partial batch and fetch it whole next time.
                if total > 0 {
                    slice.len = slice.len.min(budget);
                }
                match slice.read_bytes() {
                    // A replicated log holds batches past the high watermark: cut them off.
                    Ok(bytes) if clustered => {
                        let bytes = crate::cluster::produce::below_offset(bytes, hw);
                        total += bytes.len();
                        out.push(entry.with_records(Some(bytes)));
                    }
                    Ok(bytes) => {
                        total += bytes.len();
                        out.push(entry.with_records(Some(bytes)));
                    }
                    Err(e) => {
                        tracing::error!(topic = %p.topic, partition = index, error = %e, "read failed");
                        any_error = true;
                        out.push(entry.with_error_code(E::KafkaStorageError.code()));
                    }
                }
            }
            Ok(_) => out.push(entry.with_records(Some(Default::default()))),
            Err(LogError::OffsetOutOfRange { .. }) => {
                // ReplicaManager answers a consumer's out-of-range fetch with no offsets at
                // all (LogReadResult of UnknownOffset) and an empty record set.
                any_error = true;
                out.push(
                    partition_error(index, E::OffsetOutOfRange.code())
                        .with_records(Some(Default::default())),
                );
            }
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = index, error = %e, "read failed");
                any_error = true;
                out.push(entry.with_error_code(E::KafkaStorageError.code()));
            }
        }
    }
    (out, total, any_error)
}

/// Read-committed isolation (KIP-98).
const READ_COMMITTED: i8 = 1;

/// The request's partitions and forgotten partitions, keyed as a session keys them.
fn requested(req: &FetchRequest, uses_ids: bool) -> (Vec<FetchPartition>, Vec<PartitionKey>) {
    let key = |name: &str, id: uuid::Uuid, partition: i32| {
        if uses_ids {
            PartitionKey::Id(id, partition)
        } else {
            PartitionKey::Name(name.to_string(), partition)
        }
    };
    let partitions = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| FetchPartition {
                key: key(&t.topic.0, t.topic_id, p.partition),
                topic: t.topic.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect();
    let forgotten = req
        .forgotten_topics_data
        .iter()
        .flat_map(|f| f.partitions.iter().map(|&p| key(&f.topic.0, f.topic_id, p)))
        .collect();
    (partitions, forgotten)
}

/// A response with only a top-level error (session errors; dispatch counts it).
fn session_error(code: E, session_id: i32) -> FetchResponse {
    FetchResponse::default()
        .with_error_code(code.code())
        .with_session_id(session_id)
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: FetchRequest,
    version: i16,
    authz: &Authz<'_>,
) -> FetchResponse {
    let uses_ids = version >= TOPIC_IDS_VERSION;
    let (requested, forgotten) = requested(&req, uses_ids);
    let context = broker.fetch_sessions.context(
        req.session_id,
        req.session_epoch,
        uses_ids,
        &requested,
        &forgotten,
        now_ms(),
    );
    let serve = match &context {
        FetchContext::Error(e) => return session_error(*e, NO_SESSION),
        FetchContext::Full { .. } => requested,
        FetchContext::Incremental { partitions, .. } => partitions.clone(),
    };
    let read_committed = req.isolation_level == READ_COMMITTED;
    let clustered = broker.cluster.get().is_some();
    let response_max_bytes = (req.max_bytes.max(1) as usize).min(broker.config.fetch_max_bytes);
    let slots: Vec<Slot> = serve
        .into_iter()
        .map(|request| {
            let topic = if uses_ids {
                broker.topics.get_by_id(request.topic_id)
            } else {
                broker.topics.get(request.topic.0.as_str())
            };
            let denied = authz.enforcing()
                && match &topic {
                    Some(tp) => !authz.topic(op::READ, &tp.name()),
                    None if !uses_ids => !authz.topic(op::READ, request.topic.0.as_str()),
                    None => false,
                };
            let topic = if denied { None } else { topic };
            Slot {
                partition: topic
                    .as_ref()
                    .and_then(|tp| tp.partition(request.partition)),
                topic_missing: topic.is_none() && !denied,
                denied,
                request,
            }
        })
        .collect();
    let min_bytes = req.min_bytes.max(0) as usize;
    let wait = Duration::from_millis(req.max_wait_ms.clamp(0, FETCH_MAX_WAIT_MS_MAX) as u64);
    let deadline = tokio::time::Instant::now() + wait;
    // ReplicaManager.fetchMessages answers at once when `bytesReadable >= minBytes`, so a
    // min_bytes of 0 (or less) never waits, even with no data.
    let satisfied = |total: usize, any_error: bool| total >= min_bytes || any_error;
    let mut read = read_all(&slots, response_max_bytes, read_committed, clustered);
    while !satisfied(read.1, read.2) && tokio::time::Instant::now() < deadline {
        // Register interest, then re-read, so an append between the read and the wait is
        // not missed.
        let mut waiters: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = slots
            .iter()
            .filter_map(|s| s.partition.as_ref())
            .map(|p| Box::pin(p.appended.notified()))
            .collect();
        for w in &mut waiters {
            w.as_mut().enable();
        }
        read = read_all(&slots, response_max_bytes, read_committed, clustered);
        if satisfied(read.1, read.2) || waiters.is_empty() {
            break;
        }
        // A graceful shutdown answers parked fetches at once with what they have.
        let stop = tokio::select! {
            r = tokio::time::timeout_at(deadline, futures_any(waiters)) => r.is_err(),
            _ = broker.shutting_down() => true,
        };
        read = read_all(&slots, response_max_bytes, read_committed, clustered);
        if stop {
            break;
        }
    }
    let mut answered = Vec::with_capacity(slots.len());
    for (slot, mut part) in slots.into_iter().zip(read.0) {
        // Unknown topic ids get UNKNOWN_TOPIC_ID rather than UNKNOWN_TOPIC_OR_PARTITION.
        if slot.topic_missing && uses_ids {
            part.error_code = E::UnknownTopicId.code();
        }
        // UnifiedLog.read collects aborted transactions only for read_committed fetches (set
        // in read_all), null for read_uncommitted and for read errors. Unknown partitions keep the schema default (an empty list), as
        // FetchResponse.partitionResponse leaves it.
        if slot.partition.is_some() && (!read_committed || part.error_code != 0) {
            part.aborted_transactions = None;
        }
        if let (Some(p), Some(records)) = (&slot.partition, &part.records) {
            if !records.is_empty() {
                p.stats.fetched(records.len(), records_in_batches(records));
            }
        }
        answered.push((slot.request, part));
    }
    let (session_id, answered) = match context {
        FetchContext::Full { open: true } => {
            let view: Vec<(FetchPartition, &PartitionData)> =
                answered.iter().map(|(r, p)| (r.clone(), p)).collect();
            let id = broker.fetch_sessions.open(uses_ids, &view, now_ms());
            (id, answered)
        }
        FetchContext::Full { open: false } | FetchContext::Error(_) => (NO_SESSION, answered),
        FetchContext::Incremental {
            session_id,
            request_epoch,
            ..
        } => match broker
            .fetch_sessions
            .select(session_id, request_epoch, answered)
        {
            Ok(selected) => (session_id, selected),
            Err(e) => return session_error(e, session_id),
        },
    };
    let mut response = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(by_topic(answered));
    crate::cluster::leader_hints::fill_fetch(broker, &mut response, version);
    response
}

/// Consecutive partitions of one topic share a topic entry, as Kafka's `FetchResponse.of`
/// builds them from its ordered map.
fn by_topic(answered: Vec<(FetchPartition, PartitionData)>) -> Vec<FetchableTopicResponse> {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (request, part) in answered {
        match topics.last_mut() {
            Some(t) if t.topic == request.topic && t.topic_id == request.topic_id => {
                t.partitions.push(part)
            }
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(request.topic)
                    .with_topic_id(request.topic_id)
                    .with_partitions(vec![part]),
            ),
        }
    }
    topics
}

/// Resolves when any of the notifications fires.
async fn futures_any(waiters: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>>) {
    let mut waiters = waiters;
    std::future::poll_fn(move |cx| {
        for w in waiters.iter_mut() {
            if w.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
