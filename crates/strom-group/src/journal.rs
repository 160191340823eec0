//! Where a coordinator writes its records: the local offsets log file (a single node), or a
//! replicated partition (cluster mode: a partition of `__consumer_offsets` that this node
//! leads, so that another node can take the groups over when this one dies).
//!
//! In the replicated form each store record's payload (the bytes after `len | crc` in
//! `store`'s file format) is the value of one Kafka record; the partition's own batches carry
//! the CRC. "Durable" there means replicated to the partition's ISR, as Kafka's group
//! coordinator waits for its acks=all append to `__consumer_offsets`.

use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::GroupError;
use crate::store::{decode_payload, OffsetLog, Record};

/// A future that ends once a replicated append is safe, or with the Kafka error code to answer.
pub type ReplicationWait = Pin<Box<dyn Future<Output = Result<(), i16>> + Send>>;

/// The broker's side of a replicated coordinator: one partition it leads.
pub trait ReplicatedLog: Send + Sync + 'static {
    /// Appends the payloads as records of one batch (page cache only) and returns the
    /// partition's log end after them, or the Kafka error code (this node no longer leads).
    fn append(&self, payloads: &[Bytes]) -> Result<u64, i16>;
    /// Ends once everything below `end` is replicated to the ISR; fails with the Kafka error
    /// code the coordinator answers with (NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE).
    fn wait_replicated(&self, end: u64) -> ReplicationWait;
    /// A checkpoint of every live record was appended from `start` to `end`: once the ISR
    /// has it, the records below `start` may go (the partition's log start moves there, as a
    /// DeleteRecords would). Runs in the background; a lost leadership skips it.
    fn discard_before(&self, start: u64, end: u64);
}

/// Most payload bytes per batch of a checkpoint (well below `max.message.bytes`).
pub const CHECKPOINT_BATCH_BYTES: usize = 512 * 1024;

/// Appends `payloads` as a checkpoint in batches of at most [`CHECKPOINT_BATCH_BYTES`] (one
/// payload at least each) and has the records before it discarded once it is replicated.
/// `end` is the partition's log end before the checkpoint (where it starts) and after it.
pub fn append_checkpoint(
    log: &dyn ReplicatedLog,
    payloads: &[Bytes],
    end: &mut u64,
) -> Result<(), i16> {
    let start = *end;
    let mut rest = payloads;
    while !rest.is_empty() {
        let mut bytes = 0;
        let n = rest
            .iter()
            .take_while(|p| {
                bytes += p.len();
                bytes <= CHECKPOINT_BATCH_BYTES
            })
            .count()
            .max(1);
        *end = log.append(&rest[..n])?;
        rest = &rest[n..];
    }
    log.discard_before(start, *end);
    Ok(())
}

/// The coordinator's record sink.
pub(crate) enum Journal {
    File(OffsetLog),
    Replicated {
        log: Arc<dyn ReplicatedLog>,
        /// The partition's log end after the last append: the "sequence" waits are for.
        end: u64,
        /// Records in the partition from its log start (what a checkpoint would shrink).
        records: u64,
    },
}

impl Journal {
    /// Appends records; returns the sequence to wait for (`wait_durable`).
    pub(crate) fn append(&mut self, records: &[Record]) -> Result<u64, GroupError> {
        match self {
            Journal::File(log) => log.append(records),
            Journal::Replicated {
                log,
                end,
                records: count,
            } => {
                let payloads = encode_payloads(records)?;
                let new_end = log
                    .append(&payloads)
                    .map_err(|code| GroupError::Replication { code })?;
                *end = new_end;
                *count += records.len() as u64;
                Ok(new_end)
            }
        }
    }

    pub(crate) fn written_seq(&self) -> u64 {
        match self {
            Journal::File(log) => log.written_seq(),
            Journal::Replicated { end, .. } => *end,
        }
    }

    /// Records that a compaction could shrink: the file's, or the partition's from its log
    /// start.
    pub(crate) fn records_in_file(&self) -> u64 {
        match self {
            Journal::File(log) => log.records_in_file(),
            Journal::Replicated { records, .. } => *records,
        }
    }

    /// Compaction: the file is rewritten with only `live`; a partition gets `live` appended
    /// as a checkpoint, and what lies before it is discarded once the ISR has it.
    pub(crate) fn rewrite(&mut self, live: &[Record]) -> Result<(), GroupError> {
        match self {
            Journal::File(log) => log.rewrite(live),
            Journal::Replicated { log, end, records } => {
                let payloads = encode_payloads(live)?;
                append_checkpoint(log.as_ref(), &payloads, end)
                    .map_err(|code| GroupError::Replication { code })?;
                *records = live.len() as u64;
                Ok(())
            }
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        match self {
            Journal::File(log) => log.is_poisoned(),
            Journal::Replicated { .. } => false,
        }
    }

    pub(crate) fn poison(&mut self) {
        if let Journal::File(log) = self {
            log.poison();
        }
    }

    /// A file handle to fsync outside the lock; `None` for a replicated log.
    pub(crate) fn sync_handle(&self) -> Result<Option<File>, GroupError> {
        match self {
            Journal::File(log) => log.sync_handle().map(Some),
            Journal::Replicated { .. } => Ok(None),
        }
    }

    /// Fsyncs the file in place; a replicated log has nothing to flush here (its partition
    /// has its own flusher).
    pub(crate) fn sync(&mut self) -> Result<(), GroupError> {
        match self {
            Journal::File(log) => log.sync(),
            Journal::Replicated { .. } => Ok(()),
        }
    }

    pub(crate) fn replicated(&self) -> Option<Arc<dyn ReplicatedLog>> {
        match self {
            Journal::File(_) => None,
            Journal::Replicated { log, .. } => Some(Arc::clone(log)),
        }
    }
}

/// Each record's payload, as one Kafka record value.
fn encode_payloads(records: &[Record]) -> Result<Vec<Bytes>, GroupError> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let mut framed = Vec::with_capacity(64);
        if !r.encode(&mut framed) {
            return Err(GroupError::Replication {
                code: crate::codes::UNKNOWN_SERVER_ERROR,
            });
        }
        // `encode` frames the payload as `len u32 | crc u32 | payload`.
        out.push(Bytes::from(framed).slice(8..));
    }
    Ok(out)
}

/// Decodes the record values read back from a replicated partition, oldest first. A value
/// this build cannot read (a newer Strom's) is skipped with a warning: unlike the local file,
/// the partition's batches are CRC-checked, so it is not damage.
pub(crate) fn decode_values(values: impl IntoIterator<Item = Bytes>) -> Vec<Record> {
    let mut out = Vec::new();
    for v in values {
        match decode_payload(&v) {
            Some(r) => out.push(r),
            None => tracing::warn!(
                bytes = v.len(),
                "skipping an unreadable group record in a replicated offsets partition"
            ),
        }
    }
    out
}
