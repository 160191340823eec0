//! Format stability: a partition directory written by the first version of this crate is kept
//! in `tests/fixtures/format-v1/` and must keep opening with the same contents, so a change to
//! the on-disk format cannot slip in silently. To regenerate it (only for a deliberate format
//! change, with a new directory name): `STROM_LOG_WRITE_FIXTURE=1 cargo test -p strom-log
//! write_fixture -- --ignored`.

use std::path::{Path, PathBuf};

use super::{file_names, read_everything};
use crate::testing::batch_with_timestamps;
use crate::{validate_batches, LogConfig, PartitionLog};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1/partition-0")
}

fn fixture_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_000,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 200,
        flush_on_roll: true,
    }
}

/// Batch `i` holds `1 + i % 4` records whose timestamps are `10 * offset`.
fn fixture_batch(base_offset: i64, i: i64) -> Vec<u8> {
    let ts: Vec<i64> = (0..1 + i % 4).map(|k| 10 * (base_offset + k)).collect();
    batch_with_timestamps(&ts, 16)
}

const FIXTURE_BATCHES: i64 = 30;
const FIXTURE_START: i64 = 7;

#[test]
#[ignore = "writes the committed fixture; see the module docs"]
fn write_fixture() {
    if std::env::var("STROM_LOG_WRITE_FIXTURE").is_err() {
        return;
    }
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let mut log = PartitionLog::open(&dir, fixture_config(), 0).unwrap();
    for i in 0..FIXTURE_BATCHES {
        let payload = fixture_batch(log.log_end_offset(), i);
        let headers = validate_batches(&payload).unwrap();
        log.append(&payload, &headers, 0).unwrap();
    }
    log.delete_records_before(FIXTURE_START).unwrap();
    log.flush().unwrap();
}

#[test]
fn format_v1_fixture_still_opens_with_the_same_contents() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("partition-0");
    std::fs::create_dir(&dir).unwrap();
    let mut originals = Vec::new();
    for name in file_names(&fixture_dir()) {
        let bytes = std::fs::read(fixture_dir().join(&name)).unwrap();
        std::fs::write(dir.join(&name), &bytes).unwrap();
        originals.push((name, bytes));
    }
    assert!(originals.len() > 4, "the fixture is missing");

    let log = PartitionLog::open(&dir, fixture_config(), 0).unwrap();
    assert_eq!(log.log_start_offset(), FIXTURE_START);
    let batches = read_everything(&log);
    let mut expected_base = batches[0].0;
    for (base, last, bytes) in &batches {
        assert_eq!(*base, expected_base);
        let h = validate_batches(bytes).unwrap()[0];
        assert_eq!(h.base_timestamp, 10 * base);
        expected_base = last + 1;
    }
    assert_eq!(expected_base, log.log_end_offset());
    assert_eq!(
        log.offset_for_timestamp(10 * 40 + 5).unwrap(),
        Some((41, 410))
    );
    // Opening a clean directory rewrites nothing: every file is byte-for-byte the same.
    for (name, bytes) in &originals {
        assert_eq!(
            &std::fs::read(dir.join(name)).unwrap(),
            bytes,
            "{name} changed"
        );
    }
}
