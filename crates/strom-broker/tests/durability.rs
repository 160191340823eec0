//! The broker's durability rules through its domain API: a failed fsync takes the partition
//! offline for good (fsyncgate), and in a durable broker the high watermark follows fsync.

mod conformance_common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conformance_common::{create, open_with};
use strom_broker::append::{append, AppendError, AppendOptions};
use strom_broker::partition::Partition;
use strom_log::fault::FaultyIo;
use strom_log::testing::{BatchBuilder, TestRecord};

const OPTIONS: AppendOptions = AppendOptions {
    keys_required: false,
    max_message_bytes: 1 << 20,
    log_append_time: false,
    flush_messages: -1,
    leader_epoch: 0,
    compression: None,
    timestamp_window: None,
};

fn idempotent_batch(producer_id: i64, sequence: i32) -> Bytes {
    Bytes::from(
        BatchBuilder::new()
            .producer(producer_id, 0, sequence)
            .record(TestRecord::new(1_700_000_000_000, None, Some(b"value")))
            .build(),
    )
}

async fn durable_partition() -> (tempfile::TempDir, Arc<strom_broker::Broker>, Arc<Partition>) {
    let (dir, broker) = open_with(&[("log.fsync", "acks-all")]).await;
    create(&broker, "t", 1).await;
    let partition = broker.topics.get("t").unwrap().partition(0).unwrap();
    (dir, broker, partition)
}

/// Regression (fsyncgate): after a failed fsync the next flush round fsynced again, which on
/// Linux succeeds after the kernel dropped the unwritten pages, so later acks=all writes and
/// a client's retry of the failed batch (answered as a duplicate) were acknowledged.
#[tokio::test]
async fn a_failed_fsync_takes_the_partition_offline_for_good() {
    let (_dir, broker, partition) = durable_partition().await;
    let io = Arc::new(FaultyIo::default());
    partition
        .with_log(|log| log.replace_io(io.clone()))
        .unwrap();

    let first = append(&broker, &partition, idempotent_batch(7, 0), OPTIONS).unwrap();
    broker
        .flusher
        .wait_durable(partition.clone(), first.durable_end())
        .await
        .unwrap();

    io.fail_next_sync();
    let second = append(&broker, &partition, idempotent_batch(7, 1), OPTIONS).unwrap();
    let waited = broker
        .flusher
        .wait_durable(partition.clone(), second.durable_end())
        .await;
    assert!(
        waited.is_err(),
        "an acks=all write whose fsync failed is not acknowledged"
    );
    io.disarm();

    // The client retries the failed batch, and others write on: neither is acknowledged.
    let retry = append(&broker, &partition, idempotent_batch(7, 1), OPTIONS);
    assert!(matches!(retry, Err(AppendError::Offline(_))), "{retry:?}");
    let later = append(&broker, &partition, idempotent_batch(8, 0), OPTIONS);
    assert!(matches!(later, Err(AppendError::Offline(_))), "{later:?}");
    let waited = broker
        .flusher
        .wait_durable(partition.clone(), second.durable_end())
        .await;
    assert!(waited.is_err());
    assert!(
        partition.lock().is_err(),
        "fetches see the partition offline too"
    );
    assert!(partition
        .offline_reason()
        .unwrap()
        .contains("injected fsync failure"));
    // The durable offset never moved past what was fsynced.
    assert_eq!(partition.recovery_point(), Some(1));
}

#[tokio::test]
async fn the_high_watermark_follows_fsync_even_for_acks_1() {
    let (_dir, broker, partition) = durable_partition().await;
    // A current-thread runtime: the flusher cannot run until this test yields.
    let appended = append(&broker, &partition, idempotent_batch(1, 0), OPTIONS).unwrap();
    {
        let state = partition.lock().unwrap();
        assert_eq!(state.log.log_end_offset(), 1);
        assert_eq!(state.high_watermark(), 0, "not visible before fsync");
        assert!(state.read_visible(0, 1 << 20).unwrap().is_empty());
    }
    // Nobody waits for this write (acks=1), yet the flusher makes it visible soon.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while partition.lock().unwrap().high_watermark() < appended.durable_end() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "high watermark never advanced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!partition
        .lock()
        .unwrap()
        .read_visible(0, 1 << 20)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn without_fsync_the_high_watermark_is_the_log_end() {
    let (_dir, broker) = open_with(&[("log.fsync", "never")]).await;
    create(&broker, "t", 1).await;
    let partition = broker.topics.get("t").unwrap().partition(0).unwrap();
    append(&broker, &partition, idempotent_batch(1, 0), OPTIONS).unwrap();
    assert_eq!(partition.lock().unwrap().high_watermark(), 1);
}
