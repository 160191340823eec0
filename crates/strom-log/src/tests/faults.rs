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
    let log = PartitionLog::open_with_io(dir, cfg, 0, None, io.clone()).unwrap();
    (log, io)
}

fn try_append(log: &mut PartitionLog, batches: &[Vec<u8>]) -> Result<crate::AppendInfo, LogError> {
    let payload = batches.concat();
    let headers = validate_batches(&payload).unwrap();
    log.append(&payload, &headers, 0)
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
fn a_failed_append_takes_the_log_offline_until_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, io) = open_faulty(dir.path(), 1 << 20, false);
    try_append(&mut log, &[simple_batch(2, 0)]).unwrap();
    io.fail_next_write(7);
    assert!(matches!(
        try_append(&mut log, &[simple_batch(2, 0)]),
        Err(LogError::Io(_))
    ));
    // The write error may have cost pages we cannot see: nothing more is accepted.
    assert!(matches!(
        try_append(&mut log, &[simple_batch(2, 0)]),
        Err(LogError::Failed(_))
    ));
    assert!(matches!(log.flush(), Err(LogError::Failed(_))));
    assert!(log.failure().is_some());
    let kept = read_everything(&log);
    assert_eq!(kept.len(), 1);
    drop(log);
    let (mut log, _) = open_faulty(dir.path(), 1 << 20, false);
    assert_eq!(read_everything(&log), kept);
    assert_eq!(
        try_append(&mut log, &[simple_batch(1, 0)])
            .unwrap()
            .base_offset,
        2
    );
}

/// Regression (fsyncgate): a failed fsync used to be retried by the next flush round, which
/// on Linux succeeds after the kernel dropped the dirty pages, so later acknowledgements
/// covered data that was gone. A failed fsync now takes the log offline for good.
#[test]
fn a_failed_fsync_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, io) = open_faulty(dir.path(), 1 << 20, false);
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    let target = log.flush_target().unwrap();
    io.fail_next_sync();
    let crate::SyncError::Fsync(error) = target.sync().unwrap_err() else {
        panic!("the injected failure is an fsync failure");
    };
    log.mark_sync_failed(error);
    assert_eq!(log.flushed_offset(), 0);
    io.disarm();
    assert!(log.flush_target().is_none(), "no second fsync is offered");
    assert!(matches!(log.flush(), Err(LogError::Failed(_))));
    assert!(try_append(&mut log, &[simple_batch(1, 0)]).is_err());
    assert_eq!(log.flushed_offset(), 0);
    assert!(log.read_flushed(0, 1 << 20).unwrap().is_empty());
}

#[test]
fn a_failed_flush_takes_the_log_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, io) = open_faulty(dir.path(), 1 << 20, false);
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    io.fail_next_sync();
    assert!(log.flush().is_err());
    assert_eq!(log.flushed_offset(), 0);
    io.disarm();
    assert!(log.flush().is_err());
    assert_eq!(log.flushed_offset(), 0);
}

#[test]
fn a_roll_never_fsyncs_on_the_append_path() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(1, 0).len() as u64;
    let (mut log, io) = open_faulty(dir.path(), batch_len * 2, true);
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    io.fail_next_sync();
    try_append(&mut log, &[simple_batch(1, 0)]).unwrap();
    assert_eq!((log.segment_count(), log.log_end_offset()), (2, 3));
    // The armed failure is still waiting for the flusher's first fsync.
    let target = log.flush_target().unwrap();
    assert_eq!(target.offset(), 2, "the rolled segment is synced first");
    assert!(target.sync().is_err());
}
