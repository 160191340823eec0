//! The domain's write path: [`append`] checks a payload of record batches (header, CRC-32C,
//! size, idempotent sequence), appends it under the partition's own lock, and says what
//! happened as [`Appended`] or [`AppendError`]. The Kafka Produce handler and the JSON front
//! end are adapters over it; each maps [`AppendError`] to its own error form in one place.
//!
//! The batches are stored exactly as the client sent them; only the base offset, the leader
//! epoch and, for LogAppendTime topics, the max timestamp are patched. No record is decoded,
//! unless the topic asks for record checks or another codec ([`crate::record_checks`]), and
//! no batch is copied: the log writes the patched first bytes of each batch and the rest of
//! the request's buffer with one `pwritev`. Only LogAppendTime, which changes bytes under the
//! CRC, works on a copy. The CRC-32C is computed once, by `validate_batches`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strom_log::{validate_batches, BatchError, BatchHeader, LogError};
use strom_protocol::kafka_protocol::records::Compression;

use crate::broker::Broker;
use crate::partition::{Offline, Partition, PartitionState};
use crate::producer_snapshot;
use crate::producer_state::SequenceCheck;
use crate::record_checks;
use crate::topics::now_ms;

/// The topic settings an append obeys.
#[derive(Debug, Clone, Copy)]
pub struct AppendOptions {
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type=LogAppendTime`: stamp the broker's time.
    pub log_append_time: bool,
    /// `flush.messages`: fsync after this many unflushed messages (-1 or 0: never).
    pub flush_messages: i64,
    /// The leader epoch stamped on each batch (0 on a single node). In cluster mode the
    /// append is refused unless this node still leads the partition in this epoch.
    pub leader_epoch: i32,
    /// `cleanup.policy` includes `compact`: every record needs a key (Kafka's LogValidator).
    pub keys_required: bool,
    /// `compression.type` other than `producer`: batches are stored in this codec.
    pub compression: Option<Compression>,
    /// CreateTime topics with a `message.timestamp.*.max.ms` set: the accepted window.
    pub timestamp_window: Option<TimestampWindow>,
}

/// How far a CreateTime timestamp may be behind and ahead of the broker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampWindow {
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

/// A successful append, or a recognised retry of one (`duplicate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker's timestamp for LogAppendTime topics (and the stored one for duplicates).
    pub log_append_time_ms: Option<i64>,
    pub log_start_offset: i64,
    /// A retry of a batch already in the log: nothing was written.
    pub duplicate: bool,
}

impl Appended {
    /// The append is durable once the flushed offset reaches this.
    pub fn durable_end(&self) -> i64 {
        self.last_offset + 1
    }
}

/// Why an append was refused. Messages follow Kafka's wording where clients show them.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("empty record set")]
    Empty,
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("batch of {size} bytes exceeds max.message.bytes ({max})")]
    MessageTooLarge { size: usize, max: usize },
    #[error("Clients are not allowed to write control records")]
    ControlRecords,
    #[error("Invalid sequence number {sequence} in record batch with producerId {producer_id}")]
    MissingSequence { sequence: i32, producer_id: i64 },
    #[error("The producer attempted a transactional operation in an invalid state: partition {partition} was not added to producer {producer_id}'s transaction")]
    PartitionNotInTxn { producer_id: i64, partition: String },
    #[error("Message batch size is {size} bytes in append to partition {partition}, which exceeds the maximum configured segment size of {segment_bytes}.")]
    RecordListTooLarge {
        size: usize,
        partition: String,
        segment_bytes: u64,
    },
    #[error("out of order sequence number {sequence} for producer {producer_id}")]
    OutOfOrderSequence { sequence: i32, producer_id: i64 },
    #[error("producer epoch {epoch} of producer {producer_id} is older than the current one")]
    InvalidProducerEpoch { epoch: i16, producer_id: i64 },
    #[error("This server is not the leader for that topic-partition.")]
    NotLeader,
    /// Records Kafka's LogValidator refuses one by one: `(index in the batch, reason)`.
    #[error("One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]", .0.len(), record_errors_shown(.0))]
    RecordErrors(Vec<(i32, String)>),
    /// Records whose CreateTime is outside the topic's window (INVALID_TIMESTAMP), listed as
    /// [`AppendError::RecordErrors`] are.
    #[error("One or more records have been rejected due to invalid timestamp")]
    InvalidTimestamps(Vec<(i32, String)>),
    #[error(transparent)]
    Offline(#[from] Offline),
    #[error("{0}")]
    Storage(LogError),
}

/// Check and append one partition's payload (see the module docs). On success the bytes are
/// in the page cache and waiting fetches are woken; durability is the caller's to wait for
/// ([`crate::flusher::Flusher::wait_durable`] with [`Appended::durable_end`]).
pub fn append(
    broker: &Broker,
    partition: &Arc<Partition>,
    records: Bytes,
    options: AppendOptions,
) -> Result<Appended, AppendError> {
    if records.is_empty() {
        return Err(AppendError::Empty);
    }
    let headers = validate_batches(&records)?;
    check_headers(&headers, options.max_message_bytes)?;
    let now = now_ms();
    if record_checks::records_checked(&options) {
        record_checks::check_records(&records, &headers, &options, partition, now)?;
    }
    let (records, headers) = match options.compression {
        Some(target) => {
            let rewritten = record_checks::recompress(records, &headers, target)?;
            let headers = validate_batches(&rewritten)?;
            check_headers(&headers, options.max_message_bytes)?;
            (rewritten, headers)
        }
        None => (records, headers),
    };
    // Only transactional batches pay for this lookup (KIP-890's verification, done locally).
    if let Some(h) = headers.iter().find(|h| h.is_transactional()) {
        if !broker.partition_in_txn(
            h.producer_id,
            h.producer_epoch,
            &partition.topic,
            partition.index,
        ) {
            return Err(AppendError::PartitionNotInTxn {
                producer_id: h.producer_id,
                partition: format!("{}-{}", partition.topic, partition.index),
            });
        }
    }
    // LogAppendTime changes bytes inside the CRC, so those batches are patched in a copy
    // (outside the partition lock). Otherwise the client's bytes go to the log untouched:
    // the log writes each batch's base offset and leader epoch from a patched copy of its
    // first 16 bytes, in the same vectored write.
    let records = if options.log_append_time {
        let mut buf = BytesMut::from(&records[..]);
        let mut pos = 0;
        for h in &headers {
            strom_log::set_log_append_time(&mut buf[pos..pos + h.total_size()], now);
            pos += h.total_size();
        }
        buf.freeze()
    } else {
        records
    };
    let mut state = partition.lock()?;
    if let Some(r) = &state.replica {
        if !r.is_leader() || r.leader_epoch != options.leader_epoch {
            return Err(AppendError::NotLeader);
        }
    }
    // UnifiedLog.append: a payload larger than a whole segment is RECORD_LIST_TOO_LARGE.
    let segment_bytes = state.log.config().segment_bytes;
    if records.len() as u64 > segment_bytes {
        return Err(AppendError::RecordListTooLarge {
            size: records.len(),
            partition: format!("{}-{}", partition.topic, partition.index),
            segment_bytes,
        });
    }
    for h in &headers {
        match state.producers.check(h) {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate {
                base_offset,
                timestamp,
            } if headers.len() == 1 => {
                // UnifiedLog.append answers a duplicate with the original batch's offsets and
                // its stored timestamp as the log append time.
                return Ok(Appended {
                    base_offset,
                    last_offset: base_offset + i64::from(h.last_offset_delta),
                    log_append_time_ms: Some(timestamp),
                    log_start_offset: state.log.log_start_offset(),
                    duplicate: true,
                });
            }
            SequenceCheck::Duplicate { .. } | SequenceCheck::OutOfOrder => {
                return Err(AppendError::OutOfOrderSequence {
                    sequence: h.base_sequence,
                    producer_id: h.producer_id,
                });
            }
            SequenceCheck::StaleEpoch => {
                return Err(AppendError::InvalidProducerEpoch {
                    epoch: h.producer_epoch,
                    producer_id: h.producer_id,
                });
            }
        }
    }
    let active_before = state.log.active_segment_base();
    let offsets: i64 = headers
        .iter()
        .map(|h| i64::from(h.last_offset_delta) + 1)
        .sum();
    // Kafka stamps every appended batch with the leader epoch (outside the CRC), so
    // consumers see the epoch that Metadata and OffsetForLeaderEpoch report.
    let epoch = options.leader_epoch;
    let info = if state.log.roll_due(records.len() as u64, offsets, now) {
        // Creating a segment's files can wait milliseconds on a busy filesystem journal:
        // let this worker's other tasks (other partitions' requests) move to another thread.
        crate::blocking::off_worker(|| state.log.append_as_leader(&records, &headers, epoch, now))
    } else {
        state.log.append_as_leader(&records, &headers, epoch, now)
    };
    let info = match info {
        Ok(info) => info,
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "append failed");
            return Err(AppendError::Storage(e));
        }
    };
    // The state as of the new segment's base, before this append's batches: a restart
    // rebuilds from here instead of from the start of the log.
    snapshot_if_rolled(&state, active_before);
    let mut base = info.base_offset;
    let mut messages = 0i64;
    for h in &headers {
        let assigned = BatchHeader {
            base_offset: base,
            max_timestamp: if options.log_append_time {
                now
            } else {
                h.max_timestamp
            },
            ..*h
        };
        state.producers.record(&assigned, now);
        base += i64::from(h.last_offset_delta) + 1;
        messages += i64::from(h.records_count.max(0));
    }
    state.unflushed_messages += messages;
    let flush_due =
        options.flush_messages > 0 && state.unflushed_messages >= options.flush_messages;
    let visible_now = state.high_watermark() > info.last_offset;
    // Cluster mode: followers long-poll on the same notifier; wake them at once.
    let replicated = state.replica.is_some();
    drop(state);
    partition.stats.appended(records.len(), messages as u64);
    if visible_now || replicated {
        partition.appended.notify_waiters();
    }
    if !visible_now {
        // The high watermark follows fsync: have the flusher make this visible soon, even
        // when nobody waits for an acknowledgement (acks=1).
        broker.flusher.mark_dirty(partition);
    }
    if flush_due {
        broker.flusher.mark_dirty(partition);
    }
    Ok(Appended {
        base_offset: info.base_offset,
        last_offset: info.last_offset,
        log_append_time_ms: options.log_append_time.then_some(now),
        log_start_offset: info.log_start_offset,
        duplicate: false,
    })
}

/// Kafka's LogValidator.validateBatch and the size rule, on headers that passed
/// `validate_batches`.
fn check_headers(headers: &[BatchHeader], max_message_bytes: usize) -> Result<(), AppendError> {
    if let Some(h) = headers.iter().find(|h| h.total_size() > max_message_bytes) {
        return Err(AppendError::MessageTooLarge {
            size: h.total_size(),
            max: max_message_bytes,
        });
    }
    // Clients may not write control records, and an idempotent batch (producer id set) must
    // carry a sequence number. Both INVALID_RECORD.
    if headers.iter().any(|h| h.is_control()) {
        return Err(AppendError::ControlRecords);
    }
    if let Some(h) = headers
        .iter()
        .find(|h| h.producer_id >= 0 && h.base_sequence < 0)
    {
        return Err(AppendError::MissingSequence {
            sequence: h.base_sequence,
            producer_id: h.producer_id,
        });
    }
    if let Some(h) = headers
        .iter()
        .find(|h| h.is_transactional() && h.producer_id < 0)
    {
        return Err(AppendError::MissingSequence {
            sequence: h.base_sequence,
            producer_id: h.producer_id,
        });
    }
    Ok(())
}

/// Writes a transaction marker (commit or abort) for `producer_id` at `epoch` to one
/// partition: the coordinator's write, never a client's. Ends the producer's open transaction
/// there, records an abort in the segment's `.txnindex`, and returns the offset after the
/// marker (the caller waits for it to be durable).
pub fn append_marker(
    broker: &Broker,
    partition: &Arc<Partition>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
) -> Result<i64, AppendError> {
    let now = now_ms();
    let marker = strom_protocol::control::encode_marker(producer_id, epoch, commit, 0, now);
    let headers = validate_batches(&marker)?;
    let mut state = partition.lock()?;
    if state.replica.as_ref().is_some_and(|r| !r.is_leader()) {
        return Err(AppendError::NotLeader);
    }
    let leader_epoch = state.leader_epoch();
    let active_before = state.log.active_segment_base();
    let info = state.log.append_as_leader(&marker, &headers, leader_epoch, now).map_err(|e| {
        tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "writing a transaction marker failed");
        AppendError::Storage(e)
    })?;
    snapshot_if_rolled(&state, active_before);
    if let Some(aborted) = state
        .producers
        .end_txn(producer_id, epoch, info.last_offset, commit)
    {
        state
            .log
            .append_aborted(aborted)
            .map_err(AppendError::Storage)?;
    }
    let visible_now = state.high_watermark() > info.last_offset;
    drop(state);
    if visible_now {
        partition.appended.notify_waiters();
    } else {
        broker.flusher.mark_dirty(partition);
    }
    Ok(info.last_offset + 1)
}

/// After an append that rolled the log (its active segment is no longer `active_before`),
/// hands the producer state as of the new segment's base to a snapshot writer off the request
/// path. Through the log's own directory, which follows a topic delete (never
/// `partition.dir`, which a topic re-created under the same name may own by then).
pub(crate) fn snapshot_if_rolled(state: &PartitionState, active_before: i64) {
    let rolled_at = state.log.active_segment_base();
    if rolled_at == active_before {
        return;
    }
    let obsolete = state
        .log
        .segment_base_before_active(producer_snapshot::SNAPSHOTS_KEPT);
    producer_snapshot::RollSnapshot::new(state.log.dir(), rolled_at, &state.producers, obsolete)
        .spawn();
}

/// Kafka's `RecordError` as its message lists them.
fn record_errors_shown(errors: &[(i32, String)]) -> String {
    errors
        .iter()
        .take(3)
        .map(|(i, m)| format!("RecordError(batchIndex={i}, message='{m}')"))
        .collect::<Vec<_>>()
        .join(", ")
}
