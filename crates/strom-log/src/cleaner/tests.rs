//! The cleaner against a model ("the newest record of every key"), and a crash at every file
//! operation of the swap.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use strom_protocol::kafka_protocol::records::Compression;
use strom_protocol::record_batch::{
    check_stored_batch, BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL,
};

use super::filter::{parse_records, records_section};
use super::{CleanerConfig, StopAfter};
use crate::testing::{BatchBuilder, TestRecord};
use crate::tests::config;
use crate::{validate_batches, PartitionLog};

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Every record of the log from its start, through the public read path; batch and record
/// offsets must only grow.
fn read_records(log: &PartitionLog) -> Vec<Seen> {
    let mut out: Vec<Seen> = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).unwrap().read_bytes().unwrap();
        let mut at = 0;
        assert!(!bytes.is_empty());
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            let batch = &bytes[at..at + h.total_size()];
            check_stored_batch(&h, batch, at).unwrap();
            assert!(h.base_offset >= offset, "batches move forward");
            let raw = records_section(batch, &h, 1 << 24).unwrap();
            for r in parse_records(&raw, h.records_count).unwrap() {
                let o = h.base_offset + i64::from(r.offset_delta);
                assert!(
                    out.last().map_or(true, |p| p.offset < o),
                    "offsets increase"
                );
                assert!(o <= h.last_offset());
                let value = r.has_value.then(|| value_of(r.bytes));
                out.push(Seen {
                    offset: o,
                    key: r.key.map(<[u8]>::to_vec),
                    value,
                });
            }
            offset = h.last_offset() + 1;
            at += h.total_size();
        }
    }
    out
}

/// The value of a record written by `BatchBuilder` (no headers): its last bytes before the
/// header count, after the value length.
fn value_of(record: &[u8]) -> Vec<u8> {
    // Values in these tests are 8 ASCII digits.
    record[record.len() - 9..record.len() - 1].to_vec()
}

fn batch(keys: &[(Vec<u8>, Option<Vec<u8>>)], ts: i64, codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (k, v) in keys {
        b = b.record(TestRecord::new(ts, Some(k), v.as_deref()));
    }
    let plain = Bytes::from(b.build());
    strom_protocol::recompress::recompress(&plain, codec, 1 << 24)
        .unwrap()
        .to_vec()
}

fn append(log: &mut PartitionLog, batch: Vec<u8>, now: i64) -> i64 {
    let headers = validate_batches(&batch).unwrap();
    log.append(&batch, &headers, now).unwrap().base_offset
}

const CODECS: [Compression; 3] = [Compression::None, Compression::Gzip, Compression::Zstd];

/// Writes a random history of overwrites and tombstones of 20 keys; returns the newest
/// record of every key as the model sees it.
fn write_history(
    log: &mut PartitionLog,
    rng: &mut rand::rngs::StdRng,
    batches: usize,
    ts: i64,
) -> BTreeMap<Vec<u8>, Seen> {
    let mut model = BTreeMap::new();
    let mut counter = 0u32;
    for _ in 0..batches {
        let n = rng.gen_range(1..6);
        let mut records = Vec::new();
        for _ in 0..n {
            let key = format!("key-{:02}", rng.gen_range(0..20)).into_bytes();
            counter += 1;
            let value = (rng.gen_range(0..10) > 0).then(|| format!("{counter:08}").into_bytes());
            records.push((key, value));
        }
        let codec = CODECS[rng.gen_range(0..CODECS.len())];
        let base = append(log, batch(&records, ts, codec), ts);
        for (i, (key, value)) in records.into_iter().enumerate() {
            let seen = Seen {
                offset: base + i as i64,
                key: Some(key.clone()),
                value,
            };
            model.insert(key, seen);
        }
    }
    // The cleaner never touches what is not durable yet.
    log.flush().unwrap();
    model
}

/// The model's promise after cleaning: every key's newest record is there, and below the first
/// dirty offset no record has a newer one of the same key before that offset.
fn check_against_model(log: &PartitionLog, model: &BTreeMap<Vec<u8>, Seen>, tombstones_gone: bool) {
    let seen = read_records(log);
    for (key, newest) in model {
        let found = seen.iter().rev().find(|s| s.key.as_ref() == Some(key));
        if newest.value.is_none() && tombstones_gone {
            // Gone, or still there (not cleanable yet); never an older value come back.
            assert!(
                found.is_none() || found == Some(newest),
                "{key:?} came back"
            );
            continue;
        }
        assert_eq!(found, Some(newest), "newest record of {key:?}");
    }
    let dirty = log.first_dirty_offset();
    for (i, s) in seen.iter().enumerate().filter(|(_, s)| s.offset < dirty) {
        assert!(
            !seen[i + 1..]
                .iter()
                .any(|later| later.offset < dirty && later.key == s.key),
            "superseded record at {} survived cleaning",
            s.offset
        );
    }
}

#[test]
fn cleaned_log_keeps_the_newest_record_of_every_key() {
    for seed in 0..12u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut log = PartitionLog::open(dir.path(), config(2_000, 256), 0).unwrap();
        let mut model = BTreeMap::new();
        let cleaner = CleanerConfig {
            // Small maps now and then: a pass must stop where its map filled, and stay right.
            dedupe_buffer_bytes: if seed % 3 == 0 { 400 } else { 1 << 20 },
            delete_retention_ms: 1_000_000,
            ..CleanerConfig::default()
        };
        let mut removed = 0;
        for round in 0..6 {
            model.append(&mut write_history(&mut log, &mut rng, 40, 1_000 + round));
            let stats = log
                .clean_now(&cleaner, i64::MAX, 2_000, true)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
                .expect("closed segments to clean");
            removed += stats.records_removed;
            check_against_model(&log, &model, false);
        }
        assert!(
            removed > 10 && log.first_dirty_offset() > 0,
            "seed {seed}: {removed}"
        );
        let before = log.size_bytes();
        // Much later: every tombstone a pass kept has its delete horizon behind, and goes too;
        // the first pass stamps the ones no pass kept yet, the later ones remove them.
        log.clean_now(&cleaner, i64::MAX, 10_000_000, true).unwrap();
        for _ in 0..4 {
            log.clean_now(&cleaner, i64::MAX, 20_000_000, true).unwrap();
        }
        check_against_model(&log, &model, true);
        assert!(log.size_bytes() <= before, "seed {seed}");
        drop(log);
        let log = PartitionLog::open(dir.path(), config(2_000, 256), 0).unwrap();
        check_against_model(&log, &model, true);
    }
}

/// Every batch of the log from its start, with its records as (key, has value, timestamp).
#[allow(clippy::type_complexity)]
fn batches(log: &PartitionLog) -> Vec<(BatchHeader, Vec<(Option<Vec<u8>>, bool, i64)>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).unwrap().read_bytes().unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).unwrap();
            let batch = &bytes[at..at + h.total_size()];
            check_stored_batch(&h, batch, at).unwrap();
            let raw = records_section(batch, &h, 1 << 24).unwrap();
            let records = parse_records(&raw, h.records_count)
                .unwrap()
                .iter()
                .map(|r| {
                    let timestamp = h.base_timestamp + r.timestamp_delta;
                    (r.key.map(<[u8]>::to_vec), r.has_value, timestamp)
                })
                .collect();
            out.push((h, records));
            offset = h.last_offset() + 1;
            at += h.total_size();
        }
    }
    out
}

/// KIP-534. The story: a tombstone's age was taken from its batch's timestamp, which the
/// producer chose; a delete written with an old timestamp (a replayed or migrated record, a
/// clock behind) went at the very first cleaning, before a consumer reading the log from the
/// start could see it. Now the first pass that keeps a tombstone, or a marker whose
/// transaction has no data left, stamps its batch with `now + delete.retention.ms`, and only a
/// pass at or after that removes it; the records keep their own timestamps meanwhile.
#[test]
fn tombstones_and_markers_stay_delete_retention_ms_after_the_pass_that_first_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(300, 256), 0).unwrap();
    let old = 1_000;
    let value = |n: u32| Some(format!("{n:08}").into_bytes());
    append(
        &mut log,
        batch(&[(b"key-a".to_vec(), value(1))], old, Compression::None),
        old,
    );
    let deleting = BatchBuilder::new()
        .record(TestRecord::new(old, Some(b"key-b"), Some(b"00000002")))
        .record(TestRecord::new(old + 7, Some(b"key-a"), None))
        .build();
    append(&mut log, deleting, old);
    // A committed transaction whose only record is overwritten later: its marker is left with
    // no data.
    let txn = BatchBuilder::new()
        .attributes(ATTR_TRANSACTIONAL)
        .producer(7, 0, 0)
        .record(TestRecord::new(old, Some(b"key-t"), Some(b"00000003")))
        .build();
    append(&mut log, txn, old);
    let commit = BatchBuilder::new()
        .attributes(ATTR_TRANSACTIONAL | ATTR_CONTROL)
        .producer(7, 0, -1)
        .record(TestRecord::new(
            old,
            Some(&[0, 0, 0, 1]),
            Some(&[0, 0, 0, 0, 0, 0]),
        ))
        .build();
    append(&mut log, commit, old);
    append(
        &mut log,
        batch(&[(b"key-t".to_vec(), value(4))], old, Compression::None),
        old,
    );
    let mut fill = 0u32;
    let mut filler = |log: &mut PartitionLog| {
        for _ in 0..8 {
            fill += 1;
            let key = format!("fill-{fill}").into_bytes();
            append(
                log,
                batch(&[(key, value(fill))], old, Compression::Gzip),
                old,
            );
        }
        log.flush().unwrap();
    };
    filler(&mut log);
    let cleaner = CleanerConfig {
        delete_retention_ms: 5_000,
        ..CleanerConfig::default()
    };
    let tombstone = |log: &PartitionLog| {
        batches(log).into_iter().find(|(_, records)| {
            records
                .iter()
                .any(|(k, has_value, _)| k.as_deref() == Some(b"key-a") && !has_value)
        })
    };
    let marker = |log: &PartitionLog| batches(log).into_iter().find(|(h, _)| h.is_control());

    // Far past the records' own timestamps plus delete.retention.ms: kept, and stamped.
    log.clean_now(&cleaner, i64::MAX, 100_000, true)
        .unwrap()
        .unwrap();
    let (h, records) = tombstone(&log).expect("the tombstone survives its first pass");
    assert_eq!(h.delete_horizon_ms(), Some(105_000));
    let expected = vec![
        (Some(b"key-b".to_vec()), true, old),
        (Some(b"key-a".to_vec()), false, old + 7),
    ];
    assert_eq!(records, expected, "each record keeps its timestamp");
    let (h, _) = marker(&log).expect("the marker survives its first pass");
    assert_eq!(h.delete_horizon_ms(), Some(105_000));
    assert!(h.is_transactional() && h.producer_id == 7);

    // A pass before the horizon keeps both, and does not move the horizon.
    filler(&mut log);
    log.clean_now(&cleaner, i64::MAX, 104_999, true)
        .unwrap()
        .unwrap();
    assert_eq!(
        tombstone(&log).unwrap().0.delete_horizon_ms(),
        Some(105_000)
    );
    assert_eq!(marker(&log).unwrap().0.delete_horizon_ms(), Some(105_000));

    // At the horizon both go; key-b stays, still with its own timestamp.
    filler(&mut log);
    log.clean_now(&cleaner, i64::MAX, 105_000, true)
        .unwrap()
        .unwrap();
    assert!(tombstone(&log).is_none() && marker(&log).is_none());
    let key_b: Vec<_> = batches(&log)
        .into_iter()
        .flat_map(|(_, records)| records)
        .filter(|(k, _, _)| k.as_deref() == Some(b"key-b"))
        .collect();
    assert_eq!(key_b, vec![(Some(b"key-b".to_vec()), true, old)]);
}

#[test]
fn disk_stays_bounded_under_endless_overwrites_of_a_fixed_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut log = PartitionLog::open(dir.path(), config(4_000, 256), 0).unwrap();
    let cleaner = CleanerConfig::default();
    let mut largest = 0;
    for round in 0..60 {
        write_history(&mut log, &mut rng, 30, 1_000);
        log.clean_now(&cleaner, i64::MAX, 1_000, false).unwrap();
        if round >= 10 {
            largest = largest.max(log.size_bytes());
        }
    }
    // 20 keys of ~40 bytes each, plus the active segment and dirty segments up to half.
    assert!(largest < 20_000, "the log grew to {largest} bytes");
}

fn files_with_suffix(dir: &Path) -> Vec<String> {
    crate::tests::file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

/// Builds the same log in `dir` every time: two keys overwritten across several segments.
fn crash_fixture(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, config(600, 128), 0).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    write_history(&mut log, &mut rng, 60, 1_000);
    log
}

/// A crash after each file operation of the swap (simulated by stopping there and reopening):
/// each group of segments reads back exactly as before the pass or exactly as after it.
#[test]
fn a_crash_at_any_step_of_the_swap_leaves_the_old_or_the_new_segments() {
    let cleaner = CleanerConfig::default();
    let reference = tempfile::tempdir().unwrap();
    let mut log = crash_fixture(reference.path());
    let old = read_records(&log);
    log.clean_now(&cleaner, i64::MAX, 1_000, true)
        .unwrap()
        .unwrap();
    let new = read_records(&log);
    assert!(new.len() < old.len());
    for step in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let mut log = crash_fixture(dir.path());
        let plan = log.plan_clean(&cleaner, i64::MAX, 1_000, true).unwrap();
        let cleaned = plan.run().unwrap();
        let done = log
            .finish_clean_stopping(cleaned, StopAfter(Some(step)))
            .unwrap()
            .is_some();
        drop(log);
        let log = PartitionLog::open(dir.path(), config(600, 128), 0).unwrap();
        let after = read_records(&log);
        // Each group swaps alone: the groups before the crash are new, the rest old. So every
        // record read is one that was written, and every record the full pass kept is there.
        assert!(
            after.iter().all(|r| old.contains(r)),
            "step {step}: a record nobody wrote"
        );
        assert!(
            new.iter().all(|r| after.contains(r)),
            "step {step}: a live record lost"
        );
        assert!(files_with_suffix(dir.path()).is_empty(), "step {step}");
        if done {
            assert_eq!(after, new);
            assert!(step > 5);
            break;
        }
    }
}

/// The story: retention deleted the oldest segment while a pass was running off the lock;
/// swapping then would have brought its records back. The pass must be dropped instead.
#[test]
fn a_pass_over_segments_that_changed_meanwhile_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = crash_fixture(dir.path());
    let plan = log
        .plan_clean(&CleanerConfig::default(), i64::MAX, 1_000, true)
        .unwrap();
    let cleaned = plan.run().unwrap();
    let second = log.segment_base_offsets()[1];
    log.delete_records_before(second).unwrap();
    let before = read_records(&log);
    assert_eq!(log.finish_clean(cleaned).unwrap(), None);
    assert_eq!(read_records(&log), before);
    assert!(files_with_suffix(dir.path()).is_empty());
}

/// Regression: after cleaning, a run of segments that held only superseded records keeps one
/// empty batch each. Reads served those one by one, and librdkafka, which doubles its fetch
/// size on every answer without a message, gave up after ten in a row with
/// MSG_SIZE_TOO_LARGE. A read at any offset must start at a batch with records when one lies
/// ahead.
#[test]
fn reads_step_over_empty_batches_left_by_cleaning() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(300, 256), 0).unwrap();
    let keys: Vec<Vec<u8>> = (0..4).map(|k| format!("key-{k}").into_bytes()).collect();
    let mut counter = 0u32;
    for _ in 0..40 {
        let records: Vec<_> = keys
            .iter()
            .map(|k| {
                counter += 1;
                (k.clone(), Some(format!("{counter:08}").into_bytes()))
            })
            .collect();
        append(&mut log, batch(&records, 1_000, Compression::None), 1_000);
    }
    log.flush().unwrap();
    log.clean_now(&CleanerConfig::default(), i64::MAX, 2_000, true)
        .unwrap()
        .expect("closed segments to clean");
    let empty_segments = log
        .segments
        .iter()
        .filter(|s| {
            let mut any = false;
            s.walk_headers(0, &mut |_, h| {
                any |= h.records_count > 0;
                Ok(true)
            })
            .unwrap();
            !any
        })
        .count();
    assert!(
        empty_segments >= 10,
        "only {empty_segments} segments were emptied"
    );
    let end = log.log_end_offset();
    for offset in log.log_start_offset()..end {
        let bytes = log.read(offset, 1 << 20).unwrap().read_bytes().unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert!(
            h.last_offset() >= offset,
            "read at {offset} starts too early"
        );
        assert!(
            h.records_count > 0,
            "read at {offset} starts at an empty batch {}..={}",
            h.base_offset,
            h.last_offset()
        );
    }
    // What is left: the records of the segments the pass could not clean (the active one).
    let left = read_records(&log);
    assert!(left.len() < 4 * keys.len(), "{} records left", left.len());
}

/// A rough cleaner throughput check, ignored by default because it measures the machine as
/// much as the code: `cargo test -p strom-log --release -- --ignored --nocapture
/// cleaner_throughput`. 10,000 keys overwritten 20 times in 100-record batches of ~100-byte
/// values: one pass reads the whole log and keeps one record in twenty.
#[test]
#[ignore]
fn cleaner_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(64 << 20, 4096), 0).unwrap();
    let keys = 10_000u32;
    let value = vec![b'v'; 100];
    for round in 0..20u32 {
        for first in (0..keys).step_by(100) {
            let mut b = BatchBuilder::new();
            for k in first..first + 100 {
                let key = format!("key-{k:08}");
                let mut v = value.clone();
                v[..8].copy_from_slice(format!("{round:08}").as_bytes());
                b = b.record(TestRecord::new(1_000, Some(key.as_bytes()), Some(&v)));
            }
            append(&mut log, b.build(), 1_000);
        }
    }
    // One more small batch so every overwrite round sits in closed segments.
    log.roll(1_000).unwrap();
    append(
        &mut log,
        batch(
            &[(b"tail".to_vec(), Some(b"00000000".to_vec()))],
            1_000,
            Compression::None,
        ),
        1_000,
    );
    log.flush().unwrap();
    let before = log.size_bytes();
    let started = std::time::Instant::now();
    let stats = log
        .clean_now(&CleanerConfig::default(), i64::MAX, 2_000, true)
        .unwrap()
        .expect("a pass");
    let elapsed = started.elapsed();
    let mb = stats.bytes_read as f64 / 1e6;
    println!(
        "clean: read {mb:.0} MB, wrote {:.1} MB, removed {} records in {elapsed:?} = {:.0} MB/s; log {before} -> {} bytes",
        stats.bytes_written as f64 / 1e6,
        stats.records_removed,
        mb / elapsed.as_secs_f64(),
        log.size_bytes()
    );
    assert_eq!(stats.records_removed, u64::from(keys) * 19);
}
