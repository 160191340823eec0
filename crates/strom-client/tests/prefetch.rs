//! The consumer's prefetching against a real `strom serve`: with fetches in flight between
//! polls and records buffered ahead of the position, every record still comes back exactly
//! once and in order per partition, across seeks, pauses, small byte bounds and a rebalance.
//! Build the binary first: `cargo build -p strom`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strom_client::{Consumer, ConsumerConfig, Message, OffsetReset, Producer, ProducerRecord};

/// How long a test may poll for its records.
const POLL_FOR_MS: u64 = 30_000;

/// Writes `per_partition` records of about 100 bytes to each partition, concurrently.
async fn fill(addr: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer = Producer::connect(addr).await.unwrap();
    producer.create_topic(topic, partitions).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..per_partition {
        for p in 0..partitions {
            let value = format!("{p}-{i}-{}", "x".repeat(96));
            let record = ProducerRecord::new(topic, value).partition(p);
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
    }
    for d in deliveries {
        d.wait().await.unwrap();
    }
    producer.close().await.unwrap();
}

/// Checks each message is the next offset of its partition and its value matches.
fn check_in_order(next: &mut BTreeMap<i32, i64>, messages: &[Message]) {
    for m in messages {
        let expected = next.entry(m.partition).or_insert(0);
        assert_eq!(
            m.offset, *expected,
            "partition {} skipped or repeated a record",
            m.partition
        );
        assert!(
            m.value_str()
                .starts_with(&format!("{}-{}-", m.partition, m.offset)),
            "{}",
            m.value_str()
        );
        *expected += 1;
    }
}

#[tokio::test]
async fn every_record_once_in_order_with_small_buffers_seeks_and_pauses() {
    let broker = broker!();
    const PARTITIONS: i32 = 24;
    const PER_PARTITION: i64 = 300;
    fill(
        &broker.addr,
        "prefetched",
        PARTITIONS,
        PER_PARTITION as usize,
    )
    .await;

    // Small bounds: many rounds of fetches, each partition's data split over several.
    let config = ConsumerConfig {
        max_poll_records: 37,
        partition_max_bytes: 2_000,
        fetch_max_bytes: 16_000,
        buffered_max_bytes: 8_000,
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut c = Consumer::connect_with(&broker.addr, config).await.unwrap();
    c.assign_topic("prefetched").await.unwrap();

    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let paused = ("prefetched".to_string(), 5);
    let mut polls = 0;
    let deadline = Instant::now() + Duration::from_millis(POLL_FOR_MS);
    loop {
        let messages = c.poll(Duration::from_millis(200)).await.unwrap();
        polls += 1;
        if c.paused().contains(&paused) {
            assert!(
                messages.iter().all(|m| m.partition != paused.1),
                "a paused partition's records came back"
            );
        }
        check_in_order(&mut next, &messages);
        match polls {
            // Back to the start of partitions 0 and 1 while their later records are
            // buffered or in flight: those are dropped and read again from the seek.
            3 => {
                for p in [0, 1] {
                    c.seek("prefetched", p, 0).unwrap();
                    next.insert(p, 0);
                }
                // Forward too: partition 2 skips to offset 250.
                c.seek("prefetched", 2, 250).unwrap();
                next.insert(2, 250);
            }
            5 => c.pause(std::slice::from_ref(&paused)),
            20 => c.resume(std::slice::from_ref(&paused)),
            _ => {}
        }
        let done = (0..PARTITIONS).all(|p| next.get(&p) == Some(&PER_PARTITION));
        if done && polls > 20 {
            break;
        }
        assert!(Instant::now() < deadline, "read only {next:?}");
    }
    for p in 0..PARTITIONS {
        assert_eq!(c.position("prefetched", p), Some(PER_PARTITION));
    }
}

/// Polls until every record of `total` was seen by someone, checking that each message
/// returned belongs to a partition the member owns; returns what this member read.
async fn member(
    mut c: Consumer,
    seen: Arc<Mutex<BTreeMap<i32, BTreeSet<i64>>>>,
    total: usize,
    pause: Duration,
) -> Vec<(i32, i64)> {
    let deadline = Instant::now() + Duration::from_millis(POLL_FOR_MS);
    let mut read = Vec::new();
    loop {
        tokio::time::sleep(pause).await;
        let messages = c.poll(Duration::from_millis(100)).await.unwrap();
        // Whatever was prefetched before a rebalance, a member returns only what it owns.
        let owned = c.assignment();
        for m in &messages {
            assert!(
                owned.contains(&(m.topic.clone(), m.partition)),
                "partition {} returned by a member that does not own it",
                m.partition
            );
            read.push((m.partition, m.offset));
        }
        let distinct = {
            let mut seen = seen.lock().unwrap();
            for m in &messages {
                seen.entry(m.partition).or_default().insert(m.offset);
            }
            seen.values().map(BTreeSet::len).sum::<usize>()
        };
        if distinct == total {
            break;
        }
        assert!(Instant::now() < deadline, "read {distinct} of {total}");
    }
    c.close().await.unwrap();
    read
}

/// Story: prefetched records of partitions a rebalance takes away must not be returned by
/// their old owner, and their new owner must start at the committed position.
#[tokio::test]
async fn a_rebalance_drops_prefetched_records_of_revoked_partitions() {
    let broker = broker!();
    const PARTITIONS: i32 = 8;
    const PER_PARTITION: i64 = 400;
    fill(&broker.addr, "moved", PARTITIONS, PER_PARTITION as usize).await;

    let config = |max_poll_records| ConsumerConfig {
        max_poll_records,
        partition_max_bytes: 4_000,
        heartbeat_interval_ms: 100,
        enable_auto_commit: true,
        auto_commit_interval_ms: 100,
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::with_group("movers")
    };
    let seen: Arc<Mutex<BTreeMap<i32, BTreeSet<i64>>>> = Arc::default();
    let total = (PARTITIONS as i64 * PER_PARTITION) as usize;
    let mut first = Consumer::connect_with(&broker.addr, config(20))
        .await
        .unwrap();
    first.subscribe(&["moved"]).await.unwrap();
    // The first member reads a little of every partition, with more prefetched, before the
    // second joins; each then polls on its own, as two processes would.
    for _ in 0..5 {
        let messages = first.poll(Duration::from_millis(500)).await.unwrap();
        let mut seen = seen.lock().unwrap();
        for m in messages {
            seen.entry(m.partition).or_default().insert(m.offset);
        }
    }
    let mut second = Consumer::connect_with(&broker.addr, config(500))
        .await
        .unwrap();
    second.subscribe(&["moved"]).await.unwrap();
    // The first member works slowly (it would otherwise read all its prefetched and
    // remaining records before the rebalance that gives the second member its share).
    let slow = Duration::from_millis(20);
    let a = tokio::spawn(member(first, seen.clone(), total, slow));
    let b = tokio::spawn(member(second, seen.clone(), total, Duration::ZERO));
    let (_, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(!b.is_empty(), "the group split the partitions");
    let seen = seen.lock().unwrap();
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = seen[&p].iter().copied().collect();
        assert_eq!(
            offsets,
            (0..PER_PARTITION).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
}
