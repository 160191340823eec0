//! kill -9 crash test: a child process (this test binary, running `crash_child`) appends,
//! applies retention and rolls segments as fast as it can until the parent kills it at a
//! random moment. The parent then reopens the directory and checks that the log is an intact,
//! contiguous sequence of the child's batches that includes every append the child reported
//! as done (a killed process loses nothing from the page cache).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::read_everything;
use crate::testing::batch_with_timestamps;
use crate::{validate_batches, LogConfig, PartitionLog};

const DIR_ENV: &str = "STROM_LOG_CRASH_DIR";

fn crash_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: Some(512 * 1024),
        index_interval_bytes: 1024,
        flush_on_roll: false,
    }
}

/// Every record's timestamp is its own offset, so the parent can check any batch it finds.
fn batch_for(base_offset: i64, records: usize) -> Vec<u8> {
    let ts: Vec<i64> = (0..records as i64).map(|i| base_offset + i).collect();
    batch_with_timestamps(&ts, 50)
}

#[test]
#[ignore = "only runs as the child of killed_writer_leaves_an_intact_prefix"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let mut log = PartitionLog::open(std::path::Path::new(&dir), crash_config(), 0).unwrap();
    let mut rng = rand::rngs::StdRng::from_entropy();
    // Bounded so a parent that fails to kill us does not leave a runaway process.
    for i in 0..2_000_000u64 {
        let end = log.log_end_offset();
        let mut payload = Vec::new();
        let mut next = end;
        for _ in 0..rng.gen_range(1..4) {
            let n = rng.gen_range(1..8);
            payload.extend_from_slice(&batch_for(next, n));
            next += n as i64;
        }
        let headers = validate_batches(&payload).unwrap();
        let info = log.append(&payload, &headers, 0).unwrap();
        assert_eq!(info.base_offset, end);
        if i % 50 == 0 {
            log.apply_retention(0).unwrap();
        }
        println!("done {}", info.last_offset + 1);
    }
}

#[test]
fn killed_writer_leaves_an_intact_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc4a5);
    let mut last_end = 0;
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "tests::crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut done = 0i64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("done ") {
                    done = n.parse().unwrap();
                }
            }
            done
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..600)));
        child.kill().unwrap();
        child.wait().unwrap();
        let done = reader.join().unwrap();

        let log = PartitionLog::open(dir.path(), crash_config(), 0).unwrap();
        assert!(
            log.log_end_offset() >= done,
            "round {round}: lost acknowledged appends"
        );
        assert!(
            log.log_end_offset() >= last_end,
            "round {round}: the log went backwards"
        );
        last_end = log.log_end_offset();
        let mut expected = log.segment_base_offsets()[0];
        for (base, last, bytes) in read_everything(&log) {
            assert_eq!(base, expected, "round {round}: gap or overlap");
            let header = validate_batches(&bytes).unwrap()[0];
            assert_eq!(
                header.base_timestamp, base,
                "round {round}: batch {base} is not the child's"
            );
            expected = last + 1;
        }
        assert_eq!(expected, log.log_end_offset());
    }
    assert!(last_end > 0, "the child never appended");
}
