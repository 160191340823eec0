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
use crate::partition::Partition;
use crate::producer_state::SequenceCheck;
use crate::topics::now_ms;

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
    if headers
        .iter()
        .any(|h| h.is_transactional() || h.is_control())
    {
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
    let mut buf = BytesMut::from(&records[..]);
    let now = now_ms();
    let mut state = partition.state.lock();
    for h in &headers {
        match state.producers.check(h) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate { base_offset } if headers.len() == 1 => {
                let resp = PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(base_offset)
                    .with_log_append_time_ms(-1)
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
        let mut parts = Vec::with_capacity(td.partition_data.len());
        for (pi, pd) in td.partition_data.into_iter().enumerate() {
            if !matches!(acks, -1..=1) {
                parts.push(error(pd.index, E::InvalidRequiredAcks.code(), None));
                continue;
            }
            let Some(topic) = &topic else {
                parts.push(error(pd.index, unknown.code(), None));
                continue;
            };
            let Some(partition) = topic.partition(pd.index) else {
                parts.push(error(pd.index, E::UnknownTopicOrPartition.code(), None));
                continue;
            };
            let cfg = broker.topics.effective_config(topic);
            let (resp, end) = append_partition(
                broker,
                &partition,
                pd.records,
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
