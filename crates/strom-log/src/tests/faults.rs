//! Injected I/O faults on the write path (see `io.rs`): a failed append must leave no trace,
//! in memory or after a restart, and the log must keep working afterwards.

use std::sync::Arc;

use super::{config, read_everything};
use crate::io::FaultyIo;
use crate::testing::simple_batch;
use crate::{validate_batches, LogError, PartitionLog};

fn open_faulty(
    dir: &std::path::Path,
    segment_bytes: u64,
    flush_on_roll: bool,
) -> (PartitionLog, Arc<FaultyIo>) {
    let io = Arc::new(FaultyIo::default());
    let mut cfg = config(segment_bytes, 100);
    cfg.flush_on_roll = flush_on_roll;
    let log = PartitionLog::open_with_io(dir, cfg, 0, io.clone()).unwrap();
    (log, io)
}

fn try_append(log: &mut PartitionLog, batches: &[Vec<u8>]) -> Result<crate::AppendInfo, LogError> {
    let mut payload = batches.concat();
    let headers = validate_batches(&payload).unwrap();
    log.append(&mut payload, &headers, 0)
}

#[test]
fn a_partially_written_append_leaves_no_trace() {
    let batch_len = simple_batch(3, 0).len() as u64;
    // Cut inside the first batch, exactly after it (a whole batch of a failed append on
    // disk), and inside the second.
    for partial in [10, batch_len, batch_len + 20] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, io) = open_faulty(dir.path(), 1 << 20, false);
        try_append(&mut log, &[simple_batch(2, 0)]).unwrap();
        let before = read_everything(&log);
        io.fail_next_write(partial);
        let failed = try_append(&mut log, &[simple_batch(3, 0), simple_batch(3, 0)]);
        assert!(matches!(failed, Err(LogError::Io(_))), "partial {partial}");
        assert_eq!(log.log_end_offset(), 2);
        assert_eq!(read_everything(&log), before);
        // The failed bytes were cut off, so a restart does not resurrect them either.
        drop(log);
        let (mut log, _io) = open_faulty(dir.path(), 1 << 20, false);
        assert_eq!(read_everything(&log), before, "partial {partial}");
        assert_eq!(
            try_append(&mut log, &[simple_batch(1, 0)])
                .unwrap()
                .base_offset,
            2
        );
    }
}

#[test]
fn the_log_keeps_working_after_a_failed_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, io) = open_faulty(dir.path(), 1 << 20, false);
    for i in 0..20 {
        if i % 3 == 1 {
            io.fail_next_write(7);
            assert!(try_append(&mut log, &[simple_batch(2, 0)]).is_err());
        } else {
            try_append(&mut log, &[simple_batch(2, 0)]).unwrap();
        }
    }
    let kept = read_everything(&log);
    assert_eq!(kept.len(), 13);
    assert_eq!(log.log_end_offset(), 26);
    drop(log);
    let (log, _) = open_faulty(dir.path(), 1 << 20, false);
    assert_eq!(read_everything(&log), kept);
}

#[test]
fn a_failed_fsync_on_roll_fails_the_append_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(1, 0).len() as u64;
    let (mut log, io) = open_faulty(dir.path(), batch_len * 2, true);
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    io.fail_next_sync();
    assert!(try_append(&mut log, &[simple_batch(1, 0)]).is_err());
    assert_eq!((log.segment_count(), log.log_end_offset()), (1, 2));
    assert_eq!(
        try_append(&mut log, &[simple_batch(1, 0)])
            .unwrap()
            .base_offset,
        2
    );
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.flushed_offset(), 2, "the rolled segment was synced");
}

#[test]
fn a_failed_flush_does_not_advance_the_flushed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, io) = open_faulty(dir.path(), 1 << 20, false);
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    io.fail_next_sync();
    assert!(log.flush().is_err());
    assert_eq!(log.flushed_offset(), 0);
    io.disarm();
    log.flush().unwrap();
    assert_eq!(log.flushed_offset(), 1);
}
