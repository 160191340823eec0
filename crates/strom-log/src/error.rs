//! Error types of the log layer: one enum for batch validation (`BatchError`), one for the log
//! itself (`LogError`). The broker maps them to Kafka error codes at its handler boundary; this
//! crate never names a Kafka error code.

use std::io;

/// A produce payload (or a stored batch) failed a header-level check.
///
/// [`BatchError::is_corrupt_message`] tells the broker which Kafka error to answer with:
/// structural damage (size, magic, CRC) is `CORRUPT_MESSAGE`, a well-formed batch whose record
/// count and offset range disagree is `INVALID_RECORD`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a v2 batch header (61) at `position`.
    #[error("truncated batch header at byte {position}: {available} bytes left, need 61")]
    HeaderTooShort { position: usize, available: usize },
    /// Only record batch format v2 (magic 2) is accepted.
    #[error("unsupported record batch magic {magic} at byte {position} (only v2 is accepted)")]
    InvalidMagic { position: usize, magic: i8 },
    /// `batch_length` is smaller than the fixed part of a v2 header.
    #[error("invalid batch_length {batch_length} at byte {position} (minimum 49)")]
    InvalidBatchLength { position: usize, batch_length: i32 },
    /// `batch_length` points past the end of the buffer.
    #[error("batch at byte {position} claims {total_size} bytes but only {available} are present")]
    Truncated {
        position: usize,
        total_size: usize,
        available: usize,
    },
    /// CRC-32C over bytes 21.. of the batch does not match the stored one.
    #[error("CRC mismatch in batch at byte {position}: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        position: usize,
        stored: u32,
        computed: u32,
    },
    /// `records_count` is negative.
    #[error("invalid records_count {records_count} in batch at byte {position}")]
    InvalidRecordCount { position: usize, records_count: i32 },
    /// `last_offset_delta + 1 != records_count`, or the delta is negative.
    #[error("inconsistent batch at byte {position}: last_offset_delta {last_offset_delta}, records_count {records_count}")]
    InconsistentOffsets {
        position: usize,
        last_offset_delta: i32,
        records_count: i32,
    },
    /// The records section of an uncompressed batch does not decode (only checked when a
    /// caller walks records, e.g. timestamp lookups; never on append).
    #[error("malformed records in batch: {0}")]
    MalformedRecords(&'static str),
}

impl BatchError {
    /// True for structural damage (the broker answers `CORRUPT_MESSAGE`); false for a
    /// well-formed batch with inconsistent contents (`INVALID_RECORD`).
    pub fn is_corrupt_message(&self) -> bool {
        !matches!(
            self,
            BatchError::InvalidRecordCount { .. } | BatchError::InconsistentOffsets { .. }
        )
    }
}

/// Errors of [`crate::PartitionLog`].
#[derive(thiserror::Error, Debug)]
pub enum LogError {
    #[error("log I/O error: {0}")]
    Io(#[from] io::Error),
    /// The requested offset is outside `[start, end]` (Kafka `OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// Data on disk that passed recovery no longer parses: a bug or outside damage.
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// An earlier write or fsync of this log failed. The log refuses every later append and
    /// flush until it is reopened: after a failed fsync Linux may have dropped the dirty pages
    /// and a second fsync would succeed without them (fsyncgate), so retrying is never safe.
    #[error("log is offline after an I/O error: {0}")]
    Failed(String),
    /// Recovery found acknowledged data damaged (not a torn write): the log is not opened and
    /// nothing is repaired, so no acknowledged byte is deleted or its offset handed out again.
    #[error("damaged log: {0}")]
    Damaged(String),
    /// The caller passed bytes and headers that do not describe each other.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A batch failed validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
}
