//! The producer's guarantees against a real `strom serve`: every record exactly once and in
//! order through a broker kill -9 and restart, a buffer bounded in bytes, repeated header
//! names, and a bootstrap list with a dead address in it. Build the binary first:
//! `cargo build -p strom`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strom_client::producer::Delivery;
use strom_client::{
    Admin, Client, ClientError, Consumer, Message, Producer, ProducerConfig, ProducerRecord,
};

/// Reads every partition of `topic` from the start until `n` messages arrived or `timeout`.
async fn read_all(addr: &str, topic: &str, n: usize, timeout: Duration) -> Vec<Message> {
    let mut consumer = Consumer::connect(addr).await.expect("consumer");
    consumer.assign_topic(topic).await.expect("assign");
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(
            consumer
                .poll(Duration::from_millis(200))
                .await
                .expect("poll"),
        );
    }
    got
}

/// Story: the producer had no idempotence and a retry budget of about three seconds. A broker
/// killed with -9 and back after a few seconds failed every record in flight or queued
/// meanwhile, and a batch the broker wrote just before dying, whose answer was lost, was
/// written again by the retry. Now the producer numbers its batches (the broker drops a
/// batch it already has) and retries for `delivery_timeout_ms`.
#[tokio::test]
async fn a_stream_survives_a_broker_kill_with_every_record_exactly_once_in_order() {
    let mut broker = broker!();
    const RECORDS: usize = 4_000;
    const PARTITIONS: i32 = 2;
    Admin::connect(&broker.addr)
        .await
        .unwrap()
        .create_topic("stream", PARTITIONS)
        .await
        .unwrap();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    let stream = tokio::spawn(async move {
        let mut deliveries: Vec<Delivery> = Vec::new();
        for i in 0..RECORDS {
            let record =
                ProducerRecord::new("stream", i.to_string()).partition(i as i32 % PARTITIONS);
            deliveries.push(producer.enqueue(record).await.expect("enqueue"));
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut results = Vec::new();
        for d in deliveries {
            results.push(d.wait().await);
        }
        producer.close().await.expect("close");
        results
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.kill();
    // Longer than the old retry budget.
    tokio::time::sleep(Duration::from_secs(5)).await;
    broker.start_again();
    let results = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .expect("the stream finishes")
        .unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} records failed, first: {}",
        failed.len(),
        failed[0]
    );

    let messages = read_all(&broker.addr, "stream", RECORDS, Duration::from_secs(20)).await;
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    let mut last_per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for m in &messages {
        let i: usize = m.value_str().parse().unwrap();
        *seen.entry(i).or_default() += 1;
        assert_eq!(m.partition, i as i32 % PARTITIONS);
        if let Some(prev) = last_per_partition.insert(m.partition, i) {
            assert!(prev < i, "partition {} has {prev} before {i}", m.partition);
        }
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "written twice: {duplicated:?}");
    assert_eq!(seen.len(), RECORDS, "every record once");
    // Delivered offsets match where the records are.
    for (i, r) in results.iter().enumerate() {
        let meta = r.as_ref().unwrap();
        let m = messages
            .iter()
            .find(|m| m.partition == meta.partition && m.offset == meta.offset)
            .expect("the acknowledged offset holds a record");
        assert_eq!(m.value_str(), i.to_string());
    }
}

/// Story: the producer's queue was bounded by a count of records (10,000), so large records
/// could take any amount of memory and `enqueue` waited forever on a dead broker. Now the
/// buffer holds `buffer_memory` bytes and `enqueue` waits at most `max_block_ms`.
#[tokio::test]
async fn the_buffer_is_bounded_in_bytes_and_enqueue_gives_up_after_max_block_ms() {
    let mut broker = broker!();
    Admin::connect(&broker.addr)
        .await
        .unwrap()
        .create_topic("bounded", 1)
        .await
        .unwrap();
    let config = ProducerConfig {
        buffer_memory: 64 * 1024,
        max_block_ms: 300,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect_with(&broker.addr, config).await.unwrap();
    let err = producer
        .enqueue(ProducerRecord::new("bounded", vec![b'x'; 100 * 1024]).partition(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("buffer_memory"), "{err}");

    broker.kill();
    let mut accepted = Vec::new();
    let started = Instant::now();
    let err = loop {
        let record = ProducerRecord::new("bounded", vec![b'y'; 1000]).partition(0);
        match producer.enqueue(record).await {
            Ok(d) => accepted.push(d),
            Err(e) => break e,
        }
        assert!(accepted.len() < 1000, "the buffer never filled");
    };
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("buffer"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        (50..=64).contains(&accepted.len()),
        "64 KiB holds about 60 records of 1 KB, accepted {}",
        accepted.len()
    );

    broker.start_again();
    for (i, d) in accepted.into_iter().enumerate() {
        let meta = d.wait().await.expect("delivered once the broker is back");
        assert_eq!(meta.offset, i as i64);
    }
    // The buffer has room again.
    producer
        .send_record(ProducerRecord::new("bounded", "after").partition(0))
        .await
        .unwrap();
    producer.close().await.unwrap();
}

/// Story: headers went through the batch codec as a map, so a record with two `trace`
/// headers arrived with one. Kafka keeps headers as an ordered list.
#[tokio::test]
async fn repeated_header_names_arrive_in_order() {
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("headers", 1).await.unwrap();
    let mut record = ProducerRecord::new("headers", "v")
        .partition(0)
        .header("trace", "a")
        .header("other", "x")
        .header("trace", "b");
    record.headers.push(("trace".into(), None));
    let sent = record.headers.clone();
    producer.send_record(record).await.unwrap();
    let messages = read_all(&broker.addr, "headers", 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].headers, sent);
    assert_eq!(messages[0].headers.len(), 4);
}

/// Story: the client took one bootstrap address; `a:9092,b:9092` was not an address at all.
#[tokio::test]
async fn a_bootstrap_list_is_tried_in_turn() {
    let broker = broker!();
    let dead = format!("127.0.0.1:{}", support::free_port());
    let list = format!("{dead}, {}", broker.addr);
    let client = Client::connect(&list).await.unwrap();
    assert_eq!(client.brokers().len(), 1);
    assert_eq!(client.brokers()[0].addr, broker.addr);
    let producer = Producer::connect(&list).await.unwrap();
    producer.create_topic("listed", 1).await.unwrap();
    assert_eq!(producer.send("listed", "v", 0).await.unwrap(), 0);

    let err = Client::connect(&format!("{dead},{dead}"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach broker"), "{err}");
}
