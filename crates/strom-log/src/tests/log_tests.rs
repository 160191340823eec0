//! Behavior of a running log: offsets, reads, rolling, retention, DeleteRecords, timestamp
//! lookups, flush bookkeeping.

use super::{append, append_simple, config, file_names, read_everything};
use crate::testing::{batch_with_timestamps, simple_batch, BatchBuilder, TestRecord};
use crate::{set_log_append_time, validate_batches, LogConfig, LogError, PartitionLog};

fn open(dir: &std::path::Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, 1_000).unwrap()
}

#[test]
fn new_log_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config(1 << 20, 4096));
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (0, 0, 0)
    );
    assert_eq!(log.segment_count(), 1);
    assert!(log.read(0, 100).unwrap().is_empty());
    assert!(log.read(0, 100).unwrap().read_bytes().unwrap().is_empty());
    assert!(matches!(
        log.read(1, 100),
        Err(LogError::OffsetOutOfRange {
            offset: 1,
            start: 0,
            end: 0
        })
    ));
    assert!(log.flush_target().is_none());
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(
        file_names(dir.path()),
        [
            "00000000000000000000.index",
            "00000000000000000000.log",
            "00000000000000000000.timeindex"
        ]
    );
}

#[test]
fn append_assigns_offsets_and_patches_base_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    let a = append(&mut log, &[simple_batch(3, 10)], 1_000);
    assert_eq!(
        (a.base_offset, a.last_offset, a.log_start_offset),
        (0, 2, 0)
    );
    let b = append(&mut log, &[simple_batch(1, 20), simple_batch(5, 30)], 1_000);
    assert_eq!((b.base_offset, b.last_offset), (3, 8));
    assert_eq!(log.log_end_offset(), 9);
    let batches = read_everything(&log);
    let ranges: Vec<(i64, i64)> = batches.iter().map(|b| (b.0, b.1)).collect();
    assert_eq!(ranges, [(0, 2), (3, 3), (4, 8)]);
    let total: usize = batches.iter().map(|b| b.2.len()).sum();
    assert_eq!(log.size_bytes(), total as u64);
}

#[test]
fn empty_append_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    append_simple(&mut log, 1, 2);
    let info = log.append(&[], &[], 5).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (2, 1));
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn append_rejects_headers_that_do_not_match_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    let one = simple_batch(2, 0);
    let two = simple_batch(3, 0);
    let wrong = validate_batches(&two).unwrap();
    assert!(matches!(
        log.append(&one, &wrong, 0),
        Err(LogError::InvalidAppend(_))
    ));
    let both = [one.clone(), two.clone()].concat();
    let only_first = validate_batches(&one).unwrap();
    assert!(matches!(
        log.append(&both, &only_first, 0),
        Err(LogError::InvalidAppend(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn read_returns_the_batch_containing_the_offset_and_respects_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 0));
    for n in [3usize, 1, 5, 2] {
        append(&mut log, &[simple_batch(n, 0)], 0);
    }
    let all = read_everything(&log);
    let sizes: Vec<usize> = all.iter().map(|b| b.2.len()).collect();
    // Offset inside the third batch (4..=8) starts at that batch.
    let s = log.read(6, 1 << 20).unwrap();
    let bytes = s.read_bytes().unwrap();
    let hs = validate_batches(&bytes).unwrap();
    assert_eq!(hs[0].base_offset, 4);
    assert_eq!(hs.len(), 2);
    // max_bytes smaller than one batch still returns one whole batch (KIP-74).
    let s = log.read(0, 1).unwrap();
    assert_eq!(s.len, sizes[0]);
    // Exactly two batches fit.
    let s = log.read(0, sizes[0] + sizes[1]).unwrap();
    assert_eq!(s.len, sizes[0] + sizes[1]);
    let s = log.read(0, sizes[0] + sizes[1] + sizes[2] - 1).unwrap();
    assert_eq!(s.len, sizes[0] + sizes[1]);
    // At the end: empty; past it: out of range.
    assert!(log.read(11, 10).unwrap().is_empty());
    assert!(matches!(
        log.read(12, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn sparse_index_lookups_find_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 200));
    for i in 0..200usize {
        append(&mut log, &[simple_batch(1 + i % 4, i as i64)], 0);
    }
    assert!(
        log.active().index.len() > 10,
        "the test should exercise the index"
    );
    for offset in 0..log.log_end_offset() {
        let slice = log.read(offset, 1).unwrap();
        let bytes = slice.read_bytes().unwrap();
        let h = validate_batches(&bytes).unwrap()[0];
        assert!(
            h.base_offset <= offset && offset <= h.last_offset(),
            "offset {offset}: {h:?}"
        );
    }
}

#[test]
fn rolls_by_size_and_reads_never_cross_segments() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(2, 0).len() as u64;
    let mut log = open(dir.path(), config(batch_len * 3, 1));
    append_simple(&mut log, 10, 2);
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.segment_base_offsets(), [0, 6, 12, 18]);
    assert!(dir.path().join("00000000000000000006.log").exists());
    assert!(dir.path().join("00000000000000000018.timeindex").exists());
    let s = log.read(0, 1 << 20).unwrap();
    assert_eq!(s.len as u64, batch_len * 3);
    let s = log.read(7, 1 << 20).unwrap();
    assert_eq!(
        validate_batches(&s.read_bytes().unwrap()).unwrap()[0].base_offset,
        6
    );
    assert_eq!(read_everything(&log).len(), 10);
    // A payload bigger than segment_bytes goes into a fresh segment of its own.
    let big: Vec<Vec<u8>> = (0..5).map(|_| simple_batch(2, 0)).collect();
    let info = append(&mut log, &big, 0);
    assert_eq!(info.base_offset, 20);
    assert_eq!(*log.segment_base_offsets().last().unwrap(), 20);
}

#[test]
fn rolls_by_segment_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20, 4096);
    cfg.segment_ms = Some(100);
    let mut log = open(dir.path(), cfg);
    append(&mut log, &[simple_batch(1, 0)], 1_000);
    append(&mut log, &[simple_batch(1, 0)], 1_099);
    assert_eq!(log.segment_count(), 1);
    append(&mut log, &[simple_batch(1, 0)], 1_100);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.segment_base_offsets(), [0, 2]);
}

#[test]
fn time_retention_deletes_old_segments_and_rolls_an_expired_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = batch_with_timestamps(&[0], 10).len() as u64;
    let mut cfg = config(batch_len * 2, 4096);
    cfg.retention_ms = Some(1_000);
    let mut log = open(dir.path(), cfg);
    // Segments: [ts 100, 200] [ts 300, 5000] [ts 6000]
    for ts in [100, 200, 300, 5_000, 6_000] {
        append(&mut log, &[batch_with_timestamps(&[ts], 10)], ts);
    }
    assert_eq!(log.segment_count(), 3);
    assert_eq!(
        log.apply_retention(1_200).unwrap(),
        0,
        "newest ts 200 is exactly 1000 old"
    );
    assert_eq!(log.apply_retention(1_201).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 2);
    assert!(!dir.path().join("00000000000000000000.log").exists());
    assert!(matches!(
        log.read(1, 10),
        Err(LogError::OffsetOutOfRange { start: 2, .. })
    ));
    assert_eq!(log.apply_retention(6_500).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    // Everything expired: the active segment is rolled, then deleted.
    assert_eq!(log.apply_retention(100_000).unwrap(), 1);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (5, 5, 0)
    );
    assert!(log.read(5, 10).unwrap().is_empty());
    assert_eq!(
        log.apply_retention(200_000).unwrap(),
        0,
        "an empty active segment stays"
    );
    let info = append(&mut log, &[batch_with_timestamps(&[1], 10)], 200_000);
    assert_eq!(info.base_offset, 5);
    drop(log);
    let log = open(dir.path(), config(1 << 20, 4096));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 6));
}

#[test]
fn size_retention_keeps_the_newest_segments_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(1, 0).len() as u64;
    let mut cfg = config(batch_len * 2, 4096);
    cfg.retention_bytes = Some(batch_len * 3);
    let mut log = open(dir.path(), cfg.clone());
    append_simple(&mut log, 7, 1); // segments of 2,2,2,1 batches
    assert_eq!(log.segment_count(), 4);
    assert_eq!(log.apply_retention(0).unwrap(), 2);
    assert_eq!(log.size_bytes(), batch_len * 3);
    assert_eq!(log.log_start_offset(), 4);
    cfg.retention_bytes = Some(0);
    log.set_config(cfg);
    assert_eq!(log.apply_retention(0).unwrap(), 2);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (7, 7, 1)
    );
}

#[test]
fn delete_records_moves_the_start_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(2, 0).len() as u64;
    let mut log = open(dir.path(), config(batch_len * 2, 4096));
    append_simple(&mut log, 6, 2); // segments [0..4) [4..8) [8..12)
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert_eq!(log.segment_base_offsets(), [4, 8]);
    assert!(matches!(
        log.read(4, 10),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // Reading at the new start returns the batch containing it (from offset 4).
    let s = log.read(5, 1).unwrap();
    assert_eq!(
        validate_batches(&s.read_bytes().unwrap()).unwrap()[0].base_offset,
        4
    );
    assert_eq!(
        log.delete_records_before(3).unwrap(),
        5,
        "moving backwards is a no-op"
    );
    assert!(matches!(
        log.delete_records_before(13),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let mut log = open(dir.path(), config(batch_len * 2, 4096));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 12));
    // Up to the end: the active segment stays, empty of readable offsets.
    assert_eq!(log.delete_records_before(12).unwrap(), 12);
    assert_eq!(log.segment_base_offsets(), [8]);
    assert!(log.read(12, 10).unwrap().is_empty());
    assert_eq!(append(&mut log, &[simple_batch(1, 0)], 0).base_offset, 12);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(400, 100));
    // Timestamps out of order across and inside batches.
    let plan: Vec<Vec<i64>> = vec![
        vec![10, 30, 20],
        vec![5, 6],
        vec![40, 35, 50],
        vec![45],
        vec![60, 55, 70, 65],
        vec![1, 2, 3],
        vec![80],
    ];
    let mut records: Vec<(i64, i64)> = Vec::new(); // (offset, ts)
    for ts in &plan {
        let info = append(&mut log, &[batch_with_timestamps(ts, 30)], 0);
        for (i, &t) in ts.iter().enumerate() {
            records.push((info.base_offset + i as i64, t));
        }
    }
    assert!(log.segment_count() > 1);
    for target in 0..=90 {
        // Kafka's answer: the first batch whose max timestamp reaches the target, then the
        // first record in it at or after the target.
        let expected = plan
            .iter()
            .scan(0i64, |base, ts| {
                let b = *base;
                *base += ts.len() as i64;
                Some((b, ts))
            })
            .find(|(_, ts)| ts.iter().max().unwrap() >= &target)
            .map(|(b, ts)| {
                let i = ts.iter().position(|&t| t >= target).unwrap();
                (b + i as i64, ts[i])
            });
        assert_eq!(
            log.offset_for_timestamp(target).unwrap(),
            expected,
            "target {target}"
        );
    }
    assert_eq!(
        log.max_timestamp(),
        Some((records.iter().find(|r| r.1 == 80).unwrap().0, 80))
    );
}

#[test]
fn timestamp_lookups_use_batch_granularity_for_compressed_and_log_append_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    append(&mut log, &[batch_with_timestamps(&[1, 2], 1)], 0);
    let compressed = BatchBuilder::new()
        .attributes(4) // zstd; the log never decompresses
        .record(TestRecord::new(10, None, Some(b"a")))
        .record(TestRecord::new(20, None, Some(b"b")))
        .build();
    append(&mut log, &[compressed], 0);
    let mut lat = batch_with_timestamps(&[1, 1, 1], 1);
    set_log_append_time(&mut lat, 500);
    append(&mut log, &[lat], 0);
    assert_eq!(log.offset_for_timestamp(15).unwrap(), Some((2, 20)));
    assert_eq!(log.offset_for_timestamp(100).unwrap(), Some((4, 500)));
    assert_eq!(log.offset_for_timestamp(501).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((4, 500)));
}

#[test]
fn offset_for_timestamp_skips_records_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    append(&mut log, &[batch_with_timestamps(&[50, 10, 20], 1)], 0);
    log.delete_records_before(2).unwrap();
    assert_eq!(log.offset_for_timestamp(5).unwrap(), Some((2, 20)));
    assert_eq!(log.offset_for_timestamp(30).unwrap(), None);
}

#[test]
fn flush_bookkeeping_covers_rolled_segments_first() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(1, 0).len() as u64;
    let mut log = open(dir.path(), config(batch_len * 2, 4096));
    assert_eq!(log.flushed_offset(), 0);
    append_simple(&mut log, 3, 1); // segments [0,1] [2]
    let target = log.flush_target().unwrap();
    assert_eq!(
        target.offset(),
        2,
        "the rolled, unflushed segment comes first"
    );
    target.sync().unwrap();
    log.mark_flushed(&target);
    let target = log.flush_target().unwrap();
    assert_eq!(target.offset(), 3);
    target.sync().unwrap();
    log.mark_flushed(&target);
    assert!(log.flush_target().is_none());
    assert_eq!(log.flushed_offset(), 3);
    log.mark_flushed(&target);
    assert_eq!(log.flushed_offset(), 3, "marking twice changes nothing");
    append_simple(&mut log, 1, 1);
    log.flush().unwrap();
    assert_eq!(log.flushed_offset(), 4);
    // A roll never fsyncs on the append path, even in a durable log: the flusher owes it.
    let mut cfg = config(batch_len * 2, 4096);
    cfg.flush_on_roll = true;
    log.set_config(cfg);
    append_simple(&mut log, 1, 1); // [2,3] [4]: rolled, nothing synced
    assert_eq!(log.flushed_offset(), 4);
    append_simple(&mut log, 1, 1); // [2,3] [4,5]
    assert_eq!(log.flush_target().map(|t| t.offset()), Some(6));
}

#[test]
fn reads_of_flushed_data_stop_at_the_flushed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(1, 0).len() as u64;
    let mut log = open(dir.path(), config(batch_len * 3, 4096));
    append_simple(&mut log, 2, 1); // [0,1]
    let target = log.flush_target().unwrap();
    target.sync().unwrap();
    log.mark_flushed(&target);
    append_simple(&mut log, 3, 1); // [0,1,2] [3,4]
    assert_eq!(log.flushed_offset(), 2);
    let slice = log.read_flushed(0, 1 << 20).unwrap();
    assert_eq!(
        slice.len as u64,
        2 * batch_len,
        "stops at the flushed offset"
    );
    assert!(log.read_flushed(2, 1 << 20).unwrap().is_empty());
    assert!(log.read_flushed(4, 1 << 20).unwrap().is_empty());
    assert!(log.read_flushed(6, 1 << 20).is_err(), "past the log end");
    assert_eq!(log.read(0, 1 << 20).unwrap().len as u64, 3 * batch_len);
    while let Some(target) = log.flush_target() {
        target.sync().unwrap();
        log.mark_flushed(&target);
    }
    assert_eq!(log.flushed_offset(), 5);
    assert_eq!(
        log.read_flushed(3, 1 << 20).unwrap().len as u64,
        2 * batch_len
    );
    assert_eq!(
        log.read_flushed(0, 1 << 20).unwrap().len as u64,
        3 * batch_len
    );
}

#[test]
fn scan_headers_walks_from_the_containing_batch_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(300, 64));
    for i in 0..12 {
        let b = BatchBuilder::new()
            .producer(7, 0, i * 2)
            .record(TestRecord::new(0, None, Some(b"x")))
            .record(TestRecord::new(0, None, None))
            .build();
        append(&mut log, &[b], 0);
    }
    assert!(log.segment_count() > 2);
    let mut seen = Vec::new();
    log.scan_headers(9, &mut |h| seen.push((h.base_offset, h.base_sequence)))
        .unwrap();
    let expected: Vec<(i64, i32)> = (4..12).map(|i| (i * 2, i as i32 * 2)).collect();
    assert_eq!(seen, expected);
    let mut count = 0;
    log.scan_headers(24, &mut |_| count += 1).unwrap();
    assert_eq!(count, 0);
}

/// The leader's append writes the assigned base offsets and its epoch from patched copies of
/// each batch's first bytes: the caller's buffer stays as it was, and the file holds the
/// caller's bytes with only those fields changed (the CRC, which does not cover them, still
/// holds). A replica's append writes the leader's bytes as they are.
#[test]
fn appends_stamp_offsets_and_epoch_without_touching_the_callers_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    append_simple(&mut log, 1, 2);
    let payload = [
        simple_batch(3, 10),
        simple_batch(1, 20),
        simple_batch(4, 30),
    ]
    .concat();
    let before = payload.clone();
    let headers = validate_batches(&payload).unwrap();
    let info = log.append_as_leader(&payload, &headers, 7, 1_000).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (2, 9));
    assert_eq!(payload, before, "the caller's bytes are not patched");
    let stored = log.read(2, 1 << 20).unwrap().read_bytes().unwrap();
    let stored_headers = validate_batches(&stored).unwrap();
    let mut expected = payload.clone();
    let mut at = 0;
    for (h, base) in headers.iter().zip([2, 5, 6]) {
        crate::set_base_offset(&mut expected[at..], base);
        crate::batch::set_partition_leader_epoch(&mut expected[at..], 7);
        at += h.total_size();
    }
    assert_eq!(stored, expected);
    let stamped: Vec<(i64, i32)> = stored_headers
        .iter()
        .map(|h| (h.base_offset, h.partition_leader_epoch))
        .collect();
    assert_eq!(stamped, [(2, 7), (5, 7), (6, 7)]);
    // `append` keeps the batch's own epoch.
    let one = simple_batch(1, 40);
    let own_epoch = validate_batches(&one).unwrap()[0].partition_leader_epoch;
    log.append(&one, &validate_batches(&one).unwrap(), 1_000)
        .unwrap();
    let last = validate_batches(&log.read(10, 1 << 20).unwrap().read_bytes().unwrap()).unwrap();
    assert_eq!(
        (last[0].base_offset, last[0].partition_leader_epoch),
        (10, own_epoch)
    );

    // A replica stores exactly what its leader has, byte for byte.
    let replica_dir = tempfile::tempdir().unwrap();
    let mut replica = open(replica_dir.path(), config(1 << 20, 4096));
    let leader_bytes = read_everything(&log)
        .into_iter()
        .flat_map(|b| b.2)
        .collect::<Vec<u8>>();
    let leader_headers = crate::validate_stored_batches(&leader_bytes).unwrap();
    replica
        .append_as_follower(&leader_bytes, &leader_headers, 1_000)
        .unwrap();
    let copied: Vec<u8> = read_everything(&replica)
        .into_iter()
        .flat_map(|b| b.2)
        .collect();
    assert_eq!(copied, leader_bytes);
}

#[test]
fn log_append_time_batches_are_stored_as_patched() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    let mut payload = simple_batch(2, 0);
    set_log_append_time(&mut payload, 12_345);
    let headers = validate_batches(&payload).unwrap();
    log.append(&payload, &headers, 12_345).unwrap();
    let stored = log.read(0, 100).unwrap().read_bytes().unwrap();
    let h = validate_batches(&stored).unwrap()[0];
    assert!(h.timestamp_type_log_append());
    assert_eq!(h.max_timestamp, 12_345);
    assert_eq!(&stored[..], &payload[..]);
}

/// The broker validates a payload, then stamps LogAppendTime into the bytes, then appends with
/// the headers from before the stamp. An early version compared every header field and
/// rejected that append; the indexes must also use the stamped timestamp.
#[test]
fn append_accepts_log_append_time_stamped_after_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(1 << 20, 4096));
    let mut payload = [simple_batch(2, 5), simple_batch(3, 7)].concat();
    let headers = validate_batches(&payload).unwrap();
    let first = headers[0].total_size();
    set_log_append_time(&mut payload[..first], 70_000);
    set_log_append_time(&mut payload[first..], 70_000);
    let info = log.append(&payload, &headers, 70_000).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    assert_eq!(log.max_timestamp(), Some((0, 70_000)));
    assert_eq!(log.offset_for_timestamp(60_000).unwrap(), Some((0, 70_000)));
    assert!(validate_batches(&log.read(0, 1 << 20).unwrap().read_bytes().unwrap()).is_ok());
}

/// Found by the model test: size retention deleted the two oldest segments, which left an
/// expired segment at the front that time retention had not considered, because the first
/// segment (not expired) had stopped its prefix. One pass must delete the whole expired prefix
/// that remains after size and log-start deletions.
#[test]
fn retention_deletes_expired_segments_uncovered_by_size_retention() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = batch_with_timestamps(&[0], 10).len() as u64;
    let mut cfg = config(batch_len, 4096); // one batch per segment
    cfg.retention_ms = Some(1_000);
    cfg.retention_bytes = Some(batch_len * 3);
    let mut log = open(dir.path(), cfg);
    for ts in [5_000, 100, 200, 4_500, 4_600] {
        append(&mut log, &[batch_with_timestamps(&[ts], 10)], 0);
    }
    // Size deletes segments 0 and 1 (5 -> 3 segments fit the limit); segment 0 is not expired
    // (ts 5000) but once it is gone, segment 2 (ts 200) leads an expired prefix and goes too;
    // segment 3 (ts 4500) is not expired at 5000.
    assert_eq!(log.apply_retention(5_000).unwrap(), 3);
    assert_eq!(log.segment_base_offsets(), [3, 4]);
}

/// Descriptors this process holds on files inside `dir`.
fn open_files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

#[test]
fn old_segments_hold_descriptors_only_while_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch(1, 0).len() as u64;
    let mut log = open(dir.path(), config(batch_len * 2, 4096));
    append_simple(&mut log, 10, 1); // five segments
    assert_eq!(log.segment_count(), 5);
    // Old segments drop their index files at the roll; their `.log` stays open until swept.
    assert_eq!(open_files_in(dir.path()), 4 + 3);
    log.flush().unwrap();
    assert_eq!(
        log.close_cold_segments(),
        0,
        "each was used since the last sweep"
    );
    assert_eq!(log.close_cold_segments(), 4);
    assert_eq!(
        open_files_in(dir.path()),
        3,
        "only the active segment's three files"
    );
    // A read reopens just the segment it needs; the next two sweeps close it again.
    let slice = log.read(2, 1 << 20).unwrap();
    assert_eq!(slice.read_bytes().unwrap().len() as u64, batch_len * 2);
    drop(slice);
    assert_eq!(open_files_in(dir.path()), 4);
    assert_eq!(log.close_cold_segments(), 0);
    assert_eq!(log.close_cold_segments(), 1);
    drop(log);
    let log = open(dir.path(), config(batch_len * 2, 4096));
    assert_eq!(
        open_files_in(dir.path()),
        3,
        "a start opens only the active segment"
    );
    assert_eq!(read_everything(&log).len(), 10);
}

#[test]
fn wipe_and_start_at_leaves_an_empty_log_at_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), config(200, 4096));
    for _ in 0..10 {
        append_simple(&mut log, 2, 30);
    }
    assert!(log.segment_count() > 1);
    drop(log);
    PartitionLog::wipe_and_start_at(dir.path(), 500).unwrap();
    let mut log = open(dir.path(), config(200, 4096));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(log.segment_count(), 1);
    let a = append(&mut log, &[simple_batch(3, 10)], 1_000);
    assert_eq!((a.base_offset, a.last_offset), (500, 502));
    assert!(matches!(
        log.read(10, 100),
        Err(LogError::OffsetOutOfRange { start: 500, .. })
    ));
    drop(log);
    // The start survives a restart.
    let log = open(dir.path(), config(200, 4096));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 503));
}
