//! Crate tests: `log_tests` (append, read, roll, retention, DeleteRecords, lookups),
//! `recovery_tests` (crash shapes on disk), `model` (proptest against an in-memory model).

mod bench;
mod crash;
mod damage_tests;
mod faults;
mod fixtures;
mod log_tests;
mod model;
mod recovery_tests;

use std::path::Path;

use crate::testing::simple_batch;
use crate::{validate_batches, AppendInfo, LogConfig, PartitionLog};

/// A config with no time-based behavior and flushing off, for deterministic tests.
pub(crate) fn config(segment_bytes: u64, index_interval_bytes: u32) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes,
        flush_on_roll: false,
    }
}

/// Validate and append one payload made of `batches`.
pub(crate) fn append(log: &mut PartitionLog, batches: &[Vec<u8>], now_ms: i64) -> AppendInfo {
    let payload: Vec<u8> = batches.concat();
    let headers = validate_batches(&payload).expect("test batches are valid");
    log.append(&payload, &headers, now_ms).expect("append")
}

/// Append `count` single-batch payloads of `records` records each.
pub(crate) fn append_simple(log: &mut PartitionLog, count: usize, records: usize) {
    for _ in 0..count {
        append(log, &[simple_batch(records, 1_000)], 1_000);
    }
}

/// Every batch of the log, read through the public API from the log start offset:
/// `(base_offset, last_offset, bytes)`.
pub(crate) fn read_everything(log: &PartitionLog) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 1 << 20).expect("read");
        let bytes = slice.read_bytes().expect("pread");
        let headers = validate_batches(&bytes).expect("stored batches stay valid");
        assert!(!headers.is_empty());
        let mut at = 0;
        for h in headers {
            out.push((
                h.base_offset,
                h.last_offset(),
                bytes[at..at + h.total_size()].to_vec(),
            ));
            at += h.total_size();
            offset = h.last_offset() + 1;
        }
    }
    out
}

pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
