//! Error types of the log layer: batch validation (`BatchError`, defined with the header layout
//! in `strom_protocol::record_batch` and re-exported here) and the log itself (`LogError`). The broker maps them to Kafka error codes at its handler boundary; this
//! crate never names a Kafka error code.

use std::io;

/// Batch validation errors are the protocol crate's: the header layout is defined there.
pub use strom_protocol::record_batch::BatchError;

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
