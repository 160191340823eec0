//! Produce: Kafka's request-level checks (known topic and partition, one batch of magic 2,
//! size), then the domain append (`crate::append`), then the answer — at once for acks=1
//! (page cache), after the group-commit fsync for acks=all, never for acks=0.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strom_log::BatchError;
use strom_protocol::record_batch::{
    ATTRIBUTES_AT, ATTR_COMPRESSION_MASK, ATTR_TRANSACTIONAL, BATCH_LENGTH_AT, LOG_OVERHEAD,
    MAGIC_AT,
};
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::{ready, sb};
use crate::append::{append, AppendError, Appended};
use crate::broker::{Broker, Reply};
use crate::config::FsyncPolicy;
use crate::metrics::METRICS;
use crate::partition::Partition;
use crate::security::acl::op;
/// Kafka's `LegacyRecord.RECORD_OVERHEAD_V0`: the smallest size field a batch may claim.
const RECORD_OVERHEAD_V0: i32 = 14;
/// Produce's API key, for the error counters.
const PRODUCE_API: i16 = 0;
/// The first Produce version whose responses carry per-record errors (KIP-467).
const RECORD_ERRORS_VERSION: i16 = 8;
/// Compression codec id of zstd in the batch attributes.
const ZSTD: i16 = 4;
/// Longest acks=all wait for the ISR honoured (cluster mode), whatever the request asks.
const PRODUCE_TIMEOUT_MS_MAX: i32 = 300_000;

fn error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(sb))
}

/// The Kafka error for a refused append: the one place domain append errors become Kafka
/// codes (the JSON front end reports the same names).
pub(crate) fn append_error_code(e: &AppendError) -> E {
    match e {
        AppendError::Empty | AppendError::ControlRecords | AppendError::MissingSequence { .. } => {
            E::InvalidRecord
        }
        AppendError::Batch(BatchError::InvalidMagic { .. }) => E::UnsupportedForMessageFormat,
        AppendError::Batch(b) if b.is_corrupt_message() => E::CorruptMessage,
        AppendError::Batch(_) => E::InvalidRecord,
        AppendError::MessageTooLarge { .. } => E::MessageTooLarge,
        AppendError::PartitionNotInTxn { .. } => E::InvalidTxnState,
        AppendError::RecordListTooLarge { .. } => E::RecordListTooLarge,
        AppendError::OutOfOrderSequence { .. } => E::OutOfOrderSequenceNumber,
        AppendError::InvalidProducerEpoch { .. } => E::InvalidProducerEpoch,
        AppendError::NotLeader => E::NotLeaderOrFollower,
        AppendError::RecordErrors(_) => E::InvalidRecord,
        AppendError::InvalidTimestamps(_) => E::InvalidTimestamp,
        AppendError::Offline(_) | AppendError::Storage(_) => E::KafkaStorageError,
    }
}

fn append_error(index: i32, e: &AppendError, version: i16) -> PartitionProduceResponse {
    // KafkaApis answers a stale epoch without a message.
    let message = match e {
        AppendError::InvalidProducerEpoch { .. } => None,
        _ => Some(e.to_string()),
    };
    let response = error(index, append_error_code(e).code(), message);
    match e {
        // Each refused record by its index in the batch (v8+, KIP-467).
        AppendError::RecordErrors(errors) | AppendError::InvalidTimestamps(errors)
            if version >= RECORD_ERRORS_VERSION =>
        {
            response.with_record_errors(
                errors
                    .iter()
                    .map(|(i, m)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(*i)
                            .with_batch_index_error_message(Some(sb(m)))
                    })
                    .collect(),
            )
        }
        _ => response,
    }
}

fn appended(index: i32, a: &Appended) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(a.base_offset)
        .with_log_append_time_ms(a.log_append_time_ms.unwrap_or(-1))
        .with_log_start_offset(a.log_start_offset)
}

/// `ProduceRequest.validateRecords` and the framing of Kafka's `ByteBufferLogInputStream`, as
/// KafkaApis runs them before the log sees the bytes: the payload must hold one complete
/// batch (trailing bytes too short for a second batch are dropped, as `trimInvalidBytes`
/// does), of magic 2, not zstd before v7, and only one. Returns the bytes to append.
fn first_batch(records: Option<Bytes>, version: i16) -> Result<Bytes, (i16, String)> {
    let records = records.unwrap_or_default();
    let corrupt = |m: String| (E::CorruptMessage.code(), m);
    let invalid = |m: String| (E::InvalidRecord.code(), m);
    // The size of the batch at `buf`, None when the bytes end before it does.
    let next_batch = |buf: &[u8]| -> Result<Option<usize>, (i16, String)> {
        if buf.len() < LOG_OVERHEAD {
            return Ok(None);
        }
        let size = i32::from_be_bytes(
            buf[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
                .try_into()
                .expect("4 bytes"),
        );
        if size < RECORD_OVERHEAD_V0 {
            return Err(corrupt(format!(
                "Record size {size} is less than the minimum record overhead ({RECORD_OVERHEAD_V0})"
            )));
        }
        if buf.len() <= MAGIC_AT {
            return Ok(None);
        }
        let magic = buf[MAGIC_AT] as i8;
        if !(0..=2).contains(&magic) {
            return Err(corrupt(format!("Invalid magic found in record: {magic}")));
        }
        let total = size as usize + LOG_OVERHEAD;
        Ok((buf.len() >= total).then_some(total))
    };
    let Some(size) = next_batch(&records)? else {
        return Err(invalid(format!(
            "Produce requests with version {version} must have at least one record batch per partition"
        )));
    };
    if records[MAGIC_AT] != 2 {
        return Err(invalid(format!(
            "Produce requests with version {version} are only allowed to contain record batches with magic version 2"
        )));
    }
    // A batch too short for its attributes fails its CRC later.
    if version < 7 && records.len() >= ATTRIBUTES_AT + 2 {
        let attributes = i16::from_be_bytes([records[ATTRIBUTES_AT], records[ATTRIBUTES_AT + 1]]);
        if attributes & ATTR_COMPRESSION_MASK == ZSTD {
            return Err((
                E::UnsupportedCompressionType.code(),
                format!(
                    "Produce requests with version {version} are not allowed to use ZStandard compression"
                ),
            ));
        }
    }
    if next_batch(&records[size..])?.is_some() {
        return Err(invalid(format!(
            "Produce requests with version {version} are only allowed to contain exactly one record batch per partition"
        )));
    }
    // UnifiedLog.analyzeAndValidateRecords, in its order: a client's batch has base offset 0,
    // fits max.message.bytes, then passes its CRC (the rest is the domain append's).
    let base_offset = i64::from_be_bytes(records[..8].try_into().unwrap_or_default());
    if base_offset != 0 {
        return Err(invalid(format!(
            "The baseOffset of the record batch in the append should be 0, but it is {base_offset}"
        )));
    }
    Ok(records.slice(..size))
}

/// The size check of `analyzeAndValidateRecords`, ahead of everything else so a batch that is
/// both too large and damaged gets Kafka's answer (MESSAGE_TOO_LARGE, then CORRUPT_MESSAGE,
/// then INVALID_RECORD; the domain append checks the CRC, once, before the counts).
fn check_size(batch: &[u8], max_message_bytes: usize) -> Result<(), (i16, String)> {
    if batch.len() > max_message_bytes {
        return Err((
            E::MessageTooLarge.code(),
            format!(
                "The record batch size in the append is {} bytes which exceeds the maximum configured value of {max_message_bytes}.",
                batch.len()
            ),
        ));
    }
    Ok(())
}

/// Whether some partition's records start with a transactional batch (attributes bit 4).
fn has_transactional_batch(req: &ProduceRequest) -> bool {
    req.topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .filter_map(|p| p.records.as_ref())
        .filter_map(|r| r.get(ATTRIBUTES_AT..ATTRIBUTES_AT + 2))
        .any(|a| i16::from_be_bytes([a[0], a[1]]) & ATTR_TRANSACTIONAL != 0)
}

pub async fn handle(
    broker: &Arc<Broker>,
    req: ProduceRequest,
    version: i16,
    corr: i32,
    authz: &Authz<'_>,
    throttle_ms: i32,
) -> Reply {
    let acks = req.acks;
    let durable = match broker.config.fsync {
        FsyncPolicy::Never => false,
        FsyncPolicy::AcksAll => acks == -1,
        FsyncPolicy::Always => acks != 0,
    };
    // Cluster mode: acks=all waits for the ISR (the high watermark) instead of a local fsync.
    let cluster = broker.cluster.get();
    let replicated = cluster.is_some() && acks == -1;
    let durable = durable && !replicated;
    // KafkaApis.handleProduceRequest: transactional batches need WRITE on the transactional
    // id, else every partition is TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
    let txn_denied = authz.enforcing()
        && has_transactional_batch(&req)
        && !req
            .transactional_id
            .as_ref()
            .is_some_and(|id| authz.transactional_id(op::WRITE, id));
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut waits: Vec<(usize, usize, Arc<Partition>, i64)> = Vec::new();
    let mut replica_waits: Vec<(usize, usize, Arc<Partition>, i64, i32)> = Vec::new();
    for (ti, td) in req.topic_data.into_iter().enumerate() {
        let topic = if version >= 13 {
            broker.topics.get_by_id(td.topic_id)
        } else {
            broker.topics.get(td.name.0.as_str())
        };
        let unknown = if version >= 13 {
            E::UnknownTopicId
        } else {
            E::UnknownTopicOrPartition
        };
        // KafkaApis.handleProduceRequest checks WRITE before whether the topic exists; a
        // topic id it cannot resolve stays UNKNOWN_TOPIC_ID.
        let name = match (&topic, version >= 13) {
            (Some(t), _) => Some(t.name().to_string()),
            (None, false) => Some(td.name.0.to_string()),
            (None, true) => None,
        };
        let denied =
            authz.enforcing() && name.as_deref().is_some_and(|n| !authz.topic(op::WRITE, n));
        // Resolved once per topic, not per partition: it parses the topic's overrides.
        let cfg = topic.as_ref().map(|t| broker.topics.effective_config(t));
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            // KafkaApis.handleProduceRequest: unknown topics and partitions first, then
            // validateRecords; only what passes both reaches ReplicaManager.appendRecords,
            // which refuses acks outside {-1, 0, 1}.
            if txn_denied {
                let code = E::TransactionalIdAuthorizationFailed.code();
                parts.push(error(pd.index, code, None));
                continue;
            }
            if denied {
                parts.push(error(pd.index, E::TopicAuthorizationFailed.code(), None));
                continue;
            }
            let (Some(topic), Some(cfg)) = (&topic, &cfg) else {
                parts.push(error(pd.index, unknown.code(), None));
                continue;
            };
            let Some(partition) = topic.partition(pd.index) else {
                parts.push(error(pd.index, E::UnknownTopicOrPartition.code(), None));
                continue;
            };
            let records = match first_batch(pd.records, version) {
                Ok(r) => r,
                Err((code, msg)) => {
                    parts.push(error(pd.index, code, Some(msg)));
                    continue;
                }
            };
            if !matches!(acks, -1..=1) {
                parts.push(error(pd.index, E::InvalidRequiredAcks.code(), None));
                continue;
            }
            if let Err((code, msg)) = check_size(&records, cfg.max_message_bytes) {
                parts.push(error(pd.index, code, Some(msg)));
                continue;
            }
            let mut options = cfg.append_options();
            if cluster.is_some() {
                match crate::cluster::produce::check_leader(
                    &partition,
                    acks,
                    broker.config.min_insync_replicas,
                ) {
                    Ok(epoch) => options.leader_epoch = epoch,
                    Err(code) => {
                        parts.push(error(pd.index, code.code(), None));
                        continue;
                    }
                }
            }
            match append(broker, &partition, records, options) {
                Ok(a) => {
                    if replicated {
                        replica_waits.push((
                            ti,
                            pi,
                            partition,
                            a.durable_end(),
                            options.leader_epoch,
                        ));
                    } else if durable {
                        waits.push((ti, pi, partition, a.durable_end()));
                    }
                    parts.push(appended(pd.index, &a));
                }
                Err(e) => parts.push(append_error(pd.index, &e, version)),
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_topic_id(td.topic_id)
                .with_partition_responses(parts),
        );
    }
    for p in responses.iter().flat_map(|t| &t.partition_responses) {
        METRICS.error(PRODUCE_API, p.error_code);
    }
    if acks == 0 {
        // KafkaApis: "since no response is expected by the producer, the server will close
        // [the connection] so that the producer client will know that some error has happened
        // and will refresh its metadata".
        let failed: Vec<String> = responses
            .iter()
            .flat_map(|t| {
                t.partition_responses
                    .iter()
                    .filter(|p| p.error_code != 0)
                    .map(move |p| {
                        format!("{}-{}: error {}", t.name.0.as_str(), p.index, p.error_code)
                    })
            })
            .collect();
        if !failed.is_empty() {
            return Reply::Close(format!(
                "closing connection after an acks=0 produce that failed: {}",
                failed.join(", ")
            ));
        }
        // The client reads no response; durability work still happens for fsync=always.
        if !waits.is_empty() {
            let flusher = broker.flusher.clone();
            tokio::spawn(async move {
                for (_, _, p, end) in waits {
                    let _ = flusher.wait_durable(p, end).await;
                }
            });
        }
        return Reply::None;
    }
    let response = ProduceResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(throttle_ms);
    if waits.is_empty() && replica_waits.is_empty() {
        let mut response = response;
        crate::cluster::leader_hints::fill_produce(broker, &mut response, version);
        return ready(corr, version, &response);
    }
    let hints_from = broker.clone();
    let flusher = broker.flusher.clone();
    let timeout =
        std::time::Duration::from_millis(req.timeout_ms.clamp(0, PRODUCE_TIMEOUT_MS_MAX) as u64);
    let min_insync = broker.config.min_insync_replicas;
    Reply::Deferred(Box::pin(async move {
        let mut response = response;
        let waited_since = METRICS.enabled().then(std::time::Instant::now);
        let deadline = tokio::time::Instant::now() + timeout;
        for (ti, pi, partition, end, epoch) in replica_waits {
            if let Err(code) = crate::cluster::produce::wait_replicated(
                &partition, end, epoch, min_insync, deadline,
            )
            .await
            {
                let entry = &mut response.responses[ti].partition_responses[pi];
                *entry = error(entry.index, code.code(), None);
            }
        }
        for (ti, pi, partition, end) in waits {
            if let Err(e) = flusher.wait_durable(partition, end).await {
                let entry = &mut response.responses[ti].partition_responses[pi];
                *entry = error(entry.index, E::KafkaStorageError.code(), Some(e));
                METRICS.error(PRODUCE_API, E::KafkaStorageError.code());
            }
        }
        if let Some(since) = waited_since {
            METRICS.produce_fsync_wait.observe(since.elapsed());
        }
        crate::cluster::leader_hints::fill_produce(&hints_from, &mut response, version);
        match ready(corr, version, &response) {
            Reply::Ready(buf) => Some(buf),
            _ => None,
        }
    }))
}
