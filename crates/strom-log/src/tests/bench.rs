//! A rough throughput check, ignored by default because it measures the machine as much as
//! the code: `cargo test -p strom-log --release -- --ignored --nocapture throughput`.

use std::time::Instant;

use super::config;
use crate::testing::batch_with_timestamps;
use crate::{validate_batches, PartitionLog};

#[test]
#[ignore]
fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(64 << 20, 4096), 0).unwrap();
    // 100 records of 100 bytes per batch: a typical producer batch of ~11 KB.
    let batch = batch_with_timestamps(&[1_000; 100], 100);
    let headers = validate_batches(&batch).unwrap();
    let batches = 20_000;
    let started = Instant::now();
    for _ in 0..batches {
        log.append(&batch, &headers, 0).unwrap();
    }
    let elapsed = started.elapsed();
    let mb = (batches * batch.len()) as f64 / 1e6;
    println!(
        "append: {batches} batches, {mb:.0} MB in {elapsed:?} = {:.0} MB/s, {} segments",
        mb / elapsed.as_secs_f64(),
        log.segment_count()
    );

    let started = Instant::now();
    let mut offset = 0;
    let mut bytes = 0usize;
    let mut reads = 0;
    while offset < log.log_end_offset() {
        let slice = log.read(offset, 1 << 20).unwrap();
        let data = slice.read_bytes().unwrap();
        bytes += data.len();
        reads += 1;
        let last = validate_batches(&data[data.len() - batch.len()..]).unwrap()[0].last_offset();
        offset = last + 1;
    }
    let elapsed = started.elapsed();
    println!(
        "read: {reads} reads of up to 1 MiB, {:.0} MB in {elapsed:?} = {:.0} MB/s",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );

    let started = Instant::now();
    let lookups = 20_000;
    for i in 0..lookups {
        let offset = (i * 7919) % log.log_end_offset();
        let slice = log.read(offset, 1).unwrap();
        assert!(!slice.is_empty());
    }
    println!(
        "locate: {lookups} random single-batch reads (no data copy) in {:?}",
        started.elapsed()
    );
}
