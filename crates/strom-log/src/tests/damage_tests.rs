//! Damage that a crash cannot explain, and what `PartitionLog::open` must do about it: refuse
//! with `LogError::Damaged` and change no file, instead of "repairing" by truncating or
//! deleting acknowledged data. Torn tails (what a crash does leave) are still cut off.

use std::path::Path;

use super::{append, config, file_names, read_everything};
use crate::testing::simple_batch;
use crate::{LogConfig, LogError, PartitionLog};

/// Three segments of 4 single-record batches each, plus an active one, in a durable log.
fn durable() -> LogConfig {
    let mut cfg = config(simple_batch(1, 0).len() as u64 * 4, 64);
    cfg.flush_on_roll = true;
    cfg
}

fn build(dir: &Path, cfg: &LogConfig, batches: usize) -> Vec<(i64, i64, Vec<u8>)> {
    let mut log = PartitionLog::open(dir, cfg.clone(), 0).unwrap();
    for _ in 0..batches {
        append(&mut log, &[simple_batch(1, 0)], 0);
    }
    log.flush().unwrap();
    read_everything(&log)
}

/// Every segment file's name and bytes, to prove that a refused open changed nothing (index
/// files are a cache that recovery may rebuild or, without their segment, remove).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

fn segment_path(dir: &Path, index: usize) -> std::path::PathBuf {
    let name = file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .nth(index)
        .unwrap();
    dir.join(name)
}

/// Cut the last `bytes` bytes off `path`.
fn cut(path: &Path, bytes: u64) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len - bytes)
        .unwrap();
}

fn assert_refused(dir: &Path, cfg: &LogConfig, point: Option<i64>) -> String {
    let before = snapshot(dir);
    let result = PartitionLog::open_at_recovery_point(dir, cfg.clone(), 0, point);
    let Err(LogError::Damaged(why)) = result else {
        panic!("expected Damaged, got {result:?}");
    };
    assert_eq!(snapshot(dir), before, "a refused open changes no file");
    why
}

/// Regression: damage in an old segment used to make recovery delete every newer segment,
/// fsynced and acknowledged, and hand their offsets out again.
#[test]
fn a_cut_in_an_old_segment_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    build(dir.path(), &cfg, 14);
    let old = segment_path(dir.path(), 1);
    cut(&old, 10);
    let why = assert_refused(dir.path(), &cfg, None);
    assert!(why.contains("segment 4"), "{why}");
}

#[test]
fn a_missing_middle_segment_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    build(dir.path(), &cfg, 14);
    std::fs::remove_file(segment_path(dir.path(), 1)).unwrap();
    let why = assert_refused(dir.path(), &cfg, None);
    assert!(why.contains("does not continue"), "{why}");
}

#[test]
fn a_bad_batch_with_good_batches_after_it_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    build(dir.path(), &cfg, 14); // the active segment holds offsets 12 and 13
    let active = segment_path(dir.path(), 3);
    let mut bytes = std::fs::read(&active).unwrap();
    bytes[40] ^= 0xff; // inside the first batch's CRC-covered body
    std::fs::write(&active, &bytes).unwrap();
    let why = assert_refused(dir.path(), &cfg, None);
    assert!(why.contains("not a torn write"), "{why}");
}

#[test]
fn a_torn_tail_of_the_active_segment_is_still_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    let all = build(dir.path(), &cfg, 14);
    let active = segment_path(dir.path(), 3);
    cut(&active, 3);
    let log = PartitionLog::open_at_recovery_point(dir.path(), cfg, 0, Some(12)).unwrap();
    assert_eq!(log.log_end_offset(), 13);
    assert_eq!(read_everything(&log), all[..13].to_vec());
}

#[test]
fn a_truncation_below_the_recovery_point_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    build(dir.path(), &cfg, 14);
    let active = segment_path(dir.path(), 3);
    cut(&active, 3);
    let why = assert_refused(dir.path(), &cfg, Some(14));
    assert!(why.contains("recovery point 14"), "{why}");
}

#[test]
fn a_recovery_point_past_the_end_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    build(dir.path(), &cfg, 14);
    let why = assert_refused(dir.path(), &cfg, Some(20));
    assert!(why.contains("past the end"), "{why}");
}

#[test]
fn without_durable_rolls_or_a_point_old_damage_is_truncated_as_before() {
    // `log.fsync=never`: a power loss may tear any unflushed segment, as in Kafka.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = durable();
    cfg.flush_on_roll = false;
    let all = build(dir.path(), &cfg, 14);
    let old = segment_path(dir.path(), 1);
    cut(&old, 10);
    let log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(read_everything(&log), all[..7].to_vec());
}

/// Regression: a segment whose `.log` was created but whose index could not be (EMFILE,
/// ENOSPC) stayed behind, and every later roll failed with "file exists" until a restart.
#[test]
fn a_half_created_segment_does_not_block_later_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = durable();
    let mut log = PartitionLog::open(dir.path(), cfg, 0).unwrap();
    for _ in 0..4 {
        append(&mut log, &[simple_batch(1, 0)], 0);
    }
    // The next roll creates segment 4; make its index creation fail once.
    let blocker = dir.path().join(format!("{:020}.timeindex", 4));
    std::fs::write(&blocker, b"").unwrap();
    let payload = simple_batch(1, 0);
    let headers = crate::validate_batches(&payload).unwrap();
    assert!(log.append(&payload, &headers, 0).is_err());
    assert!(!dir.path().join(format!("{:020}.log", 4)).exists());
    assert!(
        log.failure().is_none(),
        "a failed roll does not poison the log"
    );
    let info = append(&mut log, &[simple_batch(1, 0)], 0);
    assert_eq!((info.base_offset, log.segment_count()), (4, 2));
}
