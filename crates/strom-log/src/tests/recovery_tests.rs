//! Crash shapes on disk, and what `PartitionLog::open` must make of them: always exactly the
//! intact prefix of what was appended, with indexes equal to the ones the appends built.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};

use super::{append, config, file_names, read_everything};
use crate::testing::{batch_with_timestamps, simple_batch};
use crate::{LogConfig, PartitionLog};

const SEGMENT_BYTES: u64 = 2_000;
const INDEX_INTERVAL_BYTES: u32 = 150;

fn cfg() -> LogConfig {
    config(SEGMENT_BYTES, INDEX_INTERVAL_BYTES)
}

/// A log of 40 batches of 1..=4 records over several segments; returns the batches as read.
fn build(dir: &Path) -> Vec<(i64, i64, Vec<u8>)> {
    let mut log = PartitionLog::open(dir, cfg(), 0).unwrap();
    for i in 0..40i64 {
        let n = 1 + (i % 4) as usize;
        let ts: Vec<i64> = (0..n as i64).map(|k| 1_000 + i * 10 + k).collect();
        append(&mut log, &[batch_with_timestamps(&ts, 20)], 0);
    }
    assert!(log.segment_count() >= 3);
    log.flush().unwrap();
    read_everything(&log)
}

fn reopen(dir: &Path) -> PartitionLog {
    PartitionLog::open(dir, cfg(), 0).unwrap()
}

fn active_log_path(dir: &Path) -> std::path::PathBuf {
    let last = file_names(dir)
        .into_iter()
        .rfind(|n| n.ends_with(".log"))
        .unwrap();
    dir.join(last)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// The batches of `all` that lie wholly within the first `keep` bytes of the active segment.
fn surviving(all: &[(i64, i64, Vec<u8>)], active_base: i64, keep: u64) -> Vec<(i64, i64, Vec<u8>)> {
    let mut pos = 0u64;
    all.iter()
        .filter(|b| {
            if b.0 < active_base {
                return true;
            }
            pos += b.2.len() as u64;
            pos <= keep
        })
        .cloned()
        .collect()
}

fn active_base(dir: &Path) -> i64 {
    let path = active_log_path(dir);
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Snapshot of every index file's bytes, to compare a rebuilt index with the original.
fn index_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with("index"))
        .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn clean_reopen_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let indexes = index_files(dir.path());
    let log = reopen(dir.path());
    assert_eq!(read_everything(&log), all);
    assert_eq!(index_files(dir.path()), indexes);
    assert_eq!(log.log_end_offset(), all.last().unwrap().1 + 1);
    assert_eq!(log.flushed_offset(), log.log_end_offset());
}

#[test]
fn torn_tail_truncates_to_the_intact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let base = active_base(dir.path());
    let path = active_log_path(dir.path());
    let full = file_len(&path);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut keep = full;
    // Cut a random number of bytes off the end, several times, reopening in between.
    while keep > 0 {
        keep = keep.saturating_sub(rng.gen_range(1..120));
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(keep)
            .unwrap();
        let log = reopen(dir.path());
        let expected = surviving(&all, base, keep);
        assert_eq!(
            read_everything(&log),
            expected,
            "kept {keep} of {full} bytes"
        );
        assert_eq!(log.log_end_offset(), expected.last().unwrap().1 + 1);
        keep = file_len(&path);
    }
    // Appending after recovery continues the offset sequence.
    let mut log = reopen(dir.path());
    assert_eq!(append(&mut log, &[simple_batch(1, 0)], 0).base_offset, base);
}

#[test]
fn corrupted_last_batch_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let path = active_log_path(dir.path());
    let len = file_len(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[len as usize - 3] ^= 0x55; // inside the last batch's records: only the CRC notices
    std::fs::write(&path, &bytes).unwrap();
    let log = reopen(dir.path());
    assert_eq!(read_everything(&log), all[..all.len() - 1].to_vec());
    assert_eq!(file_len(&path), len - all.last().unwrap().2.len() as u64);
}

#[test]
fn garbage_or_zeros_after_the_last_batch_are_cut_off() {
    for garbage in [
        vec![0u8; 700],
        (0..500u32)
            .map(|i| (i * 37 % 251) as u8)
            .collect::<Vec<u8>>(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let all = build(dir.path());
        let path = active_log_path(dir.path());
        let len = file_len(&path);
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&garbage)
            .unwrap();
        let log = reopen(dir.path());
        assert_eq!(read_everything(&log), all);
        assert_eq!(file_len(&path), len);
    }
}

#[test]
fn a_valid_batch_with_an_impossible_offset_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let path = active_log_path(dir.path());
    // A well-formed batch claiming offset 0 cannot follow the log's last offset.
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&simple_batch(2, 0))
        .unwrap();
    let log = reopen(dir.path());
    assert_eq!(read_everything(&log), all);
}

#[test]
fn missing_index_files_are_rebuilt_identically() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let indexes = index_files(dir.path());
    for (name, _) in &indexes {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let log = reopen(dir.path());
    assert_eq!(read_everything(&log), all);
    assert_eq!(index_files(dir.path()), indexes);
}

#[test]
fn damaged_index_files_are_repaired() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let all = build(dir.path());
        let indexes = index_files(dir.path());
        for (name, bytes) in &indexes {
            let mut damaged = bytes.clone();
            match round % 4 {
                0 => damaged.truncate(rng.gen_range(0..=damaged.len())),
                1 => damaged.extend((0..rng.gen_range(1..30)).map(|_| rng.gen::<u8>())),
                2 => {
                    if !damaged.is_empty() {
                        let at = rng.gen_range(0..damaged.len());
                        damaged[at] ^= 1 << rng.gen_range(0..8);
                    }
                }
                _ => damaged.iter_mut().for_each(|b| *b = 0),
            }
            std::fs::write(dir.path().join(name), damaged).unwrap();
        }
        let log = reopen(dir.path());
        assert_eq!(read_everything(&log), all, "round {round}");
        for offset in log.log_start_offset()..log.log_end_offset() {
            let bytes = log.read(offset, 1).unwrap().read_bytes().unwrap();
            let h = crate::validate_batches(&bytes).unwrap()[0];
            assert!(
                h.base_offset <= offset && offset <= h.last_offset(),
                "round {round}"
            );
        }
        // Rebuilt or kept, every index entry on disk is again plausible: a second open
        // must not find anything to repair.
        let after = index_files(dir.path());
        drop(log);
        let _ = reopen(dir.path());
        assert_eq!(index_files(dir.path()), after, "round {round}");
    }
}

#[test]
fn damage_in_an_older_segment_drops_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let names: Vec<String> = file_names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    let first = dir.path().join(&names[0]);
    let len = file_len(&first);
    OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let log = reopen(dir.path());
    let second_base: i64 = names[1].trim_end_matches(".log").parse().unwrap();
    // The first segment loses its last batch; the segments after it are deleted.
    let expected: Vec<_> = all
        .iter()
        .filter(|b| b.1 + 1 < second_base)
        .cloned()
        .collect();
    assert_eq!(read_everything(&log), expected);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(file_names(dir.path()).len(), 3);
}

#[test]
fn gap_between_segments_drops_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let names: Vec<String> = file_names(dir.path())
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    // Losing a middle segment entirely leaves a gap; the log must end before it.
    let second_base: i64 = names[1].trim_end_matches(".log").parse().unwrap();
    std::fs::remove_file(dir.path().join(&names[1])).unwrap();
    let log = reopen(dir.path());
    let expected: Vec<_> = all.iter().filter(|b| b.0 < second_base).cloned().collect();
    assert_eq!(read_everything(&log), expected);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn orphan_and_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    std::fs::write(dir.path().join("00000000000000099999.index"), [0u8; 8]).unwrap();
    std::fs::write(dir.path().join("00000000000000099999.timeindex"), [0u8; 12]).unwrap();
    std::fs::write(dir.path().join("log-start-offset.tmp"), [1u8; 3]).unwrap();
    std::fs::write(dir.path().join("broker-state.tmp"), b"not ours").unwrap();
    std::fs::write(
        dir.path().join("00000000000000000000.snapshot"),
        b"not ours",
    )
    .unwrap();
    let log = reopen(dir.path());
    assert_eq!(read_everything(&log), all);
    assert!(file_names(dir.path())
        .iter()
        .all(|n| !n.contains("99999") && n != "log-start-offset.tmp"));
    // Files the broker keeps next to the log are not ours to delete.
    assert!(dir.path().join("broker-state.tmp").exists());
    assert!(dir.path().join("00000000000000000000.snapshot").exists());
}

#[test]
fn log_start_offset_past_the_recovered_end_starts_an_empty_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let end = all.last().unwrap().1 + 1;
    let mut log = reopen(dir.path());
    log.delete_records_before(end).unwrap();
    drop(log);
    // The crash lost the active segment's data but the start offset file was durable.
    let path = active_log_path(dir.path());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let mut log = reopen(dir.path());
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (end, end, 1)
    );
    assert_eq!(append(&mut log, &[simple_batch(1, 0)], 0).base_offset, end);
}

#[test]
fn a_damaged_log_start_offset_file_falls_back_to_the_first_segment() {
    let dir = tempfile::tempdir().unwrap();
    let all = build(dir.path());
    let mut log = reopen(dir.path());
    log.delete_records_before(3).unwrap();
    drop(log);
    std::fs::write(dir.path().join("log-start-offset"), b"nonsense").unwrap();
    let log = reopen(dir.path());
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(read_everything(&log), all);
}
