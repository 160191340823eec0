//! Produce: validate each partition's batches (magic 2, CRC-32C, size), check idempotent
//! sequences, append under the partition's own lock, then answer — at once for acks=1 (page
//! cache), after the group-commit fsync for acks=all, never for acks=0.
//!
//! The batches are stored exactly as the client sent them; only the base offset (and, for
//! LogAppendTime topics, the max timestamp) is patched. No record is decoded here.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use strom_log::{validate_batches, BatchError, BatchHeader};
use strom_protocol::ResponseError as E;

use super::{ready, sb};
use crate::broker::{Broker, Reply};
use crate::config::FsyncPolicy;
use crate::handlers::leader_epoch::LEADER_EPOCH;
use crate::partition::Partition;
use crate::producer_state::SequenceCheck;
use crate::topics::now_ms;

/// Byte offset of `partition_leader_epoch` in a v2 batch header (not covered by the CRC).
const PARTITION_LEADER_EPOCH_AT: usize = 12;
/// Byte offset of `magic` in any batch format (v0/v1 message sets share it).
const MAGIC_AT: usize = 16;
/// `LOG_OVERHEAD` of Kafka's record formats: base offset (8) + batch length (4).
const LOG_OVERHEAD: usize = 12;
/// Kafka's `LegacyRecord.RECORD_OVERHEAD_V0`: the smallest size field a batch may claim.
const RECORD_OVERHEAD_V0: i32 = 14;
/// Compression codec id of zstd in the batch attributes.
const ZSTD: i16 = 4;

fn error(index: i32, code: i16, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(sb))
}

/// Appends one partition's payload. Returns the response entry and, on success, the offset
/// the request needs on disk before a durable acknowledgement. Also used by `crate::local`
/// (the JSON front end), so every append goes through the same checks.
pub(crate) fn append_partition(
    broker: &Broker,
    partition: &Arc<Partition>,
    records: Option<Bytes>,
    max_message_bytes: usize,
    log_append_time: bool,
    flush_messages: i64,
) -> (PartitionProduceResponse, Option<i64>) {
    let index = partition.index;
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return (
            error(
                index,
                E::InvalidRecord.code(),
                Some("empty record set".into()),
            ),
            None,
        );
    };
    let headers = match validate_batches(&records) {
        Ok(h) => h,
        Err(e) => {
            let code = match e {
                BatchError::InvalidMagic { .. } => E::UnsupportedForMessageFormat.code(),
                _ if e.is_corrupt_message() => E::CorruptMessage.code(),
                _ => E::InvalidRecord.code(),
            };
            return (error(index, code, Some(e.to_string())), None);
        }
    };
    if let Some(h) = headers.iter().find(|h| h.total_size() > max_message_bytes) {
        let msg = format!(
            "batch of {} bytes exceeds max.message.bytes ({max_message_bytes})",
            h.total_size()
        );
        return (error(index, E::MessageTooLarge.code(), Some(msg)), None);
    }
    // Kafka's LogValidator.validateBatch: clients may not write control records, and an
    // idempotent batch (producer id set) must carry a sequence number. Both INVALID_RECORD.
    if headers.iter().any(|h| h.is_control()) {
        let msg = "Clients are not allowed to write control records".to_string();
        return (error(index, E::InvalidRecord.code(), Some(msg)), None);
    }
    if let Some(h) = headers
        .iter()
        .find(|h| h.producer_id >= 0 && h.base_sequence < 0)
    {
        let msg = format!(
            "Invalid sequence number {} in record batch with producerId {}",
            h.base_sequence, h.producer_id
        );
        return (error(index, E::InvalidRecord.code(), Some(msg)), None);
    }
    if headers.iter().any(|h| h.is_transactional()) {
        let msg = "transactions are not supported by this broker".to_string();
        return (
            error(
                index,
                E::TransactionalIdAuthorizationFailed.code(),
                Some(msg),
            ),
            None,
        );
    }
    // UnifiedLog.append: a payload larger than a whole segment is RECORD_LIST_TOO_LARGE.
    let segment_bytes = partition.state.lock().log.config().segment_bytes;
    if records.len() as u64 > segment_bytes {
        let msg = format!(
            "Message batch size is {} bytes in append to partition {}-{index}, which exceeds the maximum configured segment size of {segment_bytes}.",
            records.len(),
            partition.topic
        );
        return (error(index, E::RecordListTooLarge.code(), Some(msg)), None);
    }
    let mut buf = BytesMut::from(&records[..]);
    // Kafka stamps every appended batch with the leader epoch (outside the CRC), so consumers
    // see the epoch that Metadata and OffsetForLeaderEpoch report.
    let mut pos = 0;
    for h in &headers {
        buf[pos + PARTITION_LEADER_EPOCH_AT..pos + PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&LEADER_EPOCH.to_be_bytes());
        pos += h.total_size();
    }
    let now = now_ms();
    let mut state = partition.state.lock();
    for h in &headers {
        match state.producers.check(h) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate {
                base_offset,
                timestamp,
            } if headers.len() == 1 => {
                // UnifiedLog.append answers a duplicate with the original batch's offsets and
                // its stored timestamp as the log append time.
                let resp = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(timestamp)
                    .with_log_start_offset(state.log.log_start_offset());
                // A retry must not be acknowledged before the original is durable.
                return (resp, Some(base_offset + h.last_offset_delta as i64 + 1));
            }
            SequenceCheck::Duplicate { .. } | SequenceCheck::OutOfOrder => {
                let msg = format!(
                    "out of order sequence number {} for producer {}",
                    h.base_sequence, h.producer_id
                );
                return (
                    error(index, E::OutOfOrderSequenceNumber.code(), Some(msg)),
                    None,
                );
            }
            SequenceCheck::StaleEpoch => {
                return (error(index, E::InvalidProducerEpoch.code(), None), None);
            }
        }
    }
    if log_append_time {
        let mut pos = 0;
        for h in &headers {
            strom_log::set_log_append_time(&mut buf[pos..pos + h.total_size()], now);
            pos += h.total_size();
        }
    }
    let info = match state.log.append(&mut buf, &headers, now) {
        Ok(info) => info,
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = index, error = %e, "append failed");
            return (
                error(index, E::KafkaStorageError.code(), Some(e.to_string())),
                None,
            );
        }
    };
    let mut base = info.base_offset;
    let mut messages = 0i64;
    for h in &headers {
        let assigned = BatchHeader {
            base_offset: base,
            max_timestamp: if log_append_time {
                now
            } else {
                h.max_timestamp
            },
            ..*h
        };
        state.producers.record(&assigned);
        base += h.last_offset_delta as i64 + 1;
        messages += h.records_count.max(0) as i64;
    }
    state.unflushed_messages += messages;
    let flush_due = flush_messages > 0 && state.unflushed_messages >= flush_messages;
    drop(state);
    partition.appended.notify_waiters();
    if flush_due {
        let p = partition.clone();
        let flusher = broker.flusher.clone();
        tokio::spawn(async move { flusher.wait_durable(p, info.last_offset + 1).await });
    }
    let resp = PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(info.base_offset)
        .with_log_append_time_ms(if log_append_time { now } else { -1 })
        .with_log_start_offset(info.log_start_offset);
    (resp, Some(info.last_offset + 1))
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
        let size = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
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
    // attributes sit at bytes 21-22 of a v2 header; a batch this short fails its CRC later.
    if version < 7 && records.len() >= 23 {
        let attributes = i16::from_be_bytes([records[21], records[22]]);
        if attributes & 0x07 == ZSTD {
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
    // fits max.message.bytes, then passes its CRC (the rest is `append_partition`'s).
    let base_offset = i64::from_be_bytes(records[..8].try_into().unwrap_or_default());
    if base_offset != 0 {
        return Err(invalid(format!(
            "The baseOffset of the record batch in the append should be 0, but it is {base_offset}"
        )));
    }
    Ok(records.slice(..size))
}

/// The size and CRC checks of `analyzeAndValidateRecords`, ahead of the header checks so a
/// batch that is both too large and damaged gets Kafka's answer (MESSAGE_TOO_LARGE, then
/// CORRUPT_MESSAGE, then INVALID_RECORD).
fn check_size_and_crc(batch: &[u8], max_message_bytes: usize) -> Result<(), (i16, String)> {
    if batch.len() > max_message_bytes {
        return Err((
            E::MessageTooLarge.code(),
            format!(
                "The record batch size in the append is {} bytes which exceeds the maximum configured value of {max_message_bytes}.",
                batch.len()
            ),
        ));
    }
    let valid = batch.len() >= BatchHeader::SIZE
        && u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]])
            == strom_log::batch::compute_crc(batch);
    if !valid {
        return Err((
            E::CorruptMessage.code(),
            "Record is corrupt (stored crc does not match the batch)".into(),
        ));
    }
    Ok(())
}

pub async fn handle(broker: &Arc<Broker>, req: ProduceRequest, version: i16, corr: i32) -> Reply {
    let acks = req.acks;
    let durable = match broker.config.fsync {
        FsyncPolicy::Never => false,
        FsyncPolicy::AcksAll => acks == -1,
        FsyncPolicy::Always => acks != 0,
    };
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut waits: Vec<(usize, usize, Arc<Partition>, i64)> = Vec::new();
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
        // Resolved once per topic, not per partition: it parses the topic's overrides.
        let cfg = topic.as_ref().map(|t| broker.topics.effective_config(t));
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            // KafkaApis.handleProduceRequest: unknown topics and partitions first, then
            // validateRecords; only what passes both reaches ReplicaManager.appendRecords,
            // which refuses acks outside {-1, 0, 1}.
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
            if let Err((code, msg)) = check_size_and_crc(&records, cfg.max_message_bytes) {
                parts.push(error(pd.index, code, Some(msg)));
                continue;
            }
            let (resp, end) = append_partition(
                broker,
                &partition,
                Some(records),
                cfg.max_message_bytes,
                cfg.log_append_time,
                cfg.flush_messages,
            );
            if let (true, Some(end)) = (durable, end) {
                waits.push((ti, pi, partition, end));
            }
            parts.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(td.name)
                .with_topic_id(td.topic_id)
                .with_partition_responses(parts),
        );
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
    let response = ProduceResponse::default().with_responses(responses);
    if waits.is_empty() {
        return ready(corr, version, &response);
    }
    let flusher = broker.flusher.clone();
    Reply::Deferred(Box::pin(async move {
        let mut response = response;
        for (ti, pi, partition, end) in waits {
            if let Err(e) = flusher.wait_durable(partition, end).await {
                let entry = &mut response.responses[ti].partition_responses[pi];
                *entry = error(entry.index, E::KafkaStorageError.code(), Some(e));
            }
        }
        match ready(corr, version, &response) {
            Reply::Ready(buf) => Some(buf),
            _ => None,
        }
    }))
}
