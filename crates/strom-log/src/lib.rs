//! strom-log: the embedded, segmented on-disk log of one partition.
//!
//! It knows Kafka RecordBatch v2 *headers* (to validate, patch offsets, index and recover)
//! and nothing about Kafka requests; the broker glues the two. Byte layouts are in
//! `docs/log-format.md` and at the top of the module that writes each file.
//!
//! # Layout
//! - [`batch`]: the 61-byte v2 header view, `validate_batches`, in-place patches, record walk.
//! - `config`: [`LogConfig`] with Kafka defaults.
//! - `segment`: one `.log` file plus its in-memory indexes; header walks.
//! - `index`: the sparse `.index` / `.timeindex` pair of a segment.
//! - `io`: the write path's file operations behind a small trait, for fault injection.
//! - `recovery`: opening a directory after a crash: truncate at the first bad batch, rebuild
//!   indexes, drop orphan files.
//! - `log`: [`PartitionLog`]: append, read, flush bookkeeping.
//! - `retention`: time/size retention and DeleteRecords.
//! - `cleaner`: log compaction (Kafka's log cleaner): key map, segment rewrite, crash-safe
//!   swap of cleaned segments.
//! - `lookup`: timestamp lookups for ListOffsets.
//! - `start_offset`: the durable `log-start-offset` file.
//! - `txn_index`: the per-segment aborted-transaction index (`.txnindex`).
//! - [`atomic_file`]: write-temp, fsync, rename, fsync-dir for every small durable file (shared
//!   with the broker and the offsets store).
//! - [`testing`]: builds valid batches for tests (doc-hidden).
//!
//! # Performance contract
//! No per-record work on append or read: append checks 61-byte headers and issues one
//! `pwritev` of the caller's bytes, each batch's first 16 bytes (base offset, length, leader
//! epoch: outside the CRC) replaced by a patched copy, so a batch is never copied; read finds the position with the sparse index plus a short
//! header walk and returns a range the caller reads with one `pread`, outside the lock.

pub mod atomic_file;
pub mod batch;
mod cleaner;
mod config;
mod error;
mod index;
mod io;
mod log;
mod lookup;
mod recovery;
mod retention;
mod segment;
mod start_offset;
#[doc(hidden)]
pub mod testing;
mod txn_index;

pub use batch::{
    set_base_offset, set_log_append_time, validate_batches, validate_stored_batches, BatchHeader,
};
pub use cleaner::{
    CleanPlan, CleanStats, Cleaned, CleanerConfig, DEFAULT_DEDUPE_BUFFER_BYTES,
    DEFAULT_DELETE_RETENTION_MS, DEFAULT_MIN_CLEANABLE_DIRTY_RATIO, OFFSET_MAP_ENTRY_BYTES,
};
pub use config::{
    LogConfig, DEFAULT_INDEX_INTERVAL_BYTES, DEFAULT_RETENTION_MS, DEFAULT_SEGMENT_BYTES,
    DEFAULT_SEGMENT_MS,
};
pub use error::{BatchError, LogError};
pub use log::{AppendInfo, FlushTarget, PartitionLog, ReadSlice, SyncError};
pub use txn_index::AbortedTxn;

/// Fault injection for other crates' tests: a write path whose next write or fsync fails.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault {
    pub use crate::io::{FaultyIo, FileIo};

    impl crate::PartitionLog {
        /// Route this log's writes and fsyncs through `io` from now on.
        pub fn replace_io(&mut self, io: std::sync::Arc<dyn FileIo>) {
            self.io = io;
        }
    }
}

#[cfg(test)]
mod tests;
