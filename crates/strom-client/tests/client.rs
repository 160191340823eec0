//! The Rust client against a real `strom serve`: the seed's tour, keys and headers, batching
//! and compression, acks, seeking, consumer groups with commits and resume, admin, errors, and
//! the blocking wrappers. Build the binary first: `cargo build -p strom`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use strom_client::partitioner::partition_for_key;
use strom_client::{
    Acks, Admin, ClientError, CompressionType, Consumer, ConsumerConfig, Message, NewTopic,
    OffsetReset, Producer, ProducerConfig, ProducerRecord, ResponseError,
};

/// Polls until `n` messages arrived or `timeout` passed.
async fn poll_n(consumer: &mut Consumer, n: usize, timeout: Duration) -> Vec<Message> {
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

#[tokio::test]
async fn seed_tour_send_returns_offsets_and_poll_reads_them() {
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("demo-topic", 3).await.unwrap();
    let first = producer
        .send("demo-topic", "Hello, Kafka!", 0)
        .await
        .unwrap();
    let second = producer.send("demo-topic", "second", 0).await.unwrap();
    assert_eq!((first, second), (0, 1));
    assert_eq!(
        producer.send("demo-topic", "elsewhere", 2).await.unwrap(),
        0
    );

    let mut consumer = Consumer::connect(&broker.addr).await.unwrap();
    consumer.assign("demo-topic", 0).await.unwrap();
    let messages = poll_n(&mut consumer, 2, Duration::from_secs(10)).await;
    let got: Vec<(i64, String)> = messages
        .iter()
        .map(|m| (m.offset, m.value_str().into_owned()))
        .collect();
    assert_eq!(got, vec![(0, "Hello, Kafka!".into()), (1, "second".into())]);
    assert_eq!(consumer.position("demo-topic", 0), Some(2));
    producer.close().await.unwrap();
}

#[tokio::test]
async fn keyed_records_land_where_the_java_client_puts_them() {
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("keys", 5).await.unwrap();
    let mut expected = BTreeMap::new();
    for key in ["user-1", "user-2", "user-3", "a", "hello", ""] {
        let meta = producer
            .send_record(
                ProducerRecord::new("keys", format!("value of {key}"))
                    .key(key.to_string())
                    .header("source", "test")
                    .timestamp(1_700_000_000_123),
            )
            .await
            .unwrap();
        assert_eq!(
            meta.partition,
            partition_for_key(key.as_bytes(), 5),
            "key {key:?}"
        );
        expected.insert(key.to_string(), (meta.partition, meta.offset));
    }

    let mut consumer = Consumer::connect(&broker.addr).await.unwrap();
    consumer.assign_topic("keys").await.unwrap();
    let messages = poll_n(&mut consumer, expected.len(), Duration::from_secs(10)).await;
    assert_eq!(messages.len(), expected.len());
    for m in &messages {
        let key = m.key_str().unwrap().into_owned();
        assert_eq!(expected[&key], (m.partition, m.offset));
        assert_eq!(m.value_str(), format!("value of {key}"));
        assert_eq!(m.headers, vec![("source".to_string(), Some("test".into()))]);
        assert_eq!(m.timestamp, 1_700_000_000_123);
    }
}

#[tokio::test]
async fn batches_with_every_codec_keep_order_and_offsets() {
    let broker = broker!();
    let admin = Admin::connect(&broker.addr).await.unwrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        admin.create_topic(&topic, 1).await.unwrap();
        let config = ProducerConfig {
            linger_ms: 20,
            batch_size: 4096,
            compression: codec.parse::<CompressionType>().unwrap(),
            ..ProducerConfig::default()
        };
        let producer = Producer::connect_with(&broker.addr, config).await.unwrap();
        let mut deliveries = Vec::new();
        for i in 0..200 {
            let record = ProducerRecord::new(topic.clone(), format!("message {i}")).partition(0);
            deliveries.push(producer.enqueue(record).await.unwrap());
        }
        for (i, d) in deliveries.into_iter().enumerate() {
            assert_eq!(d.wait().await.unwrap().offset, i as i64, "{codec}");
        }
        producer.close().await.unwrap();

        let mut consumer = Consumer::connect(&broker.addr).await.unwrap();
        consumer.assign(&topic, 0).await.unwrap();
        let messages = poll_n(&mut consumer, 200, Duration::from_secs(10)).await;
        assert_eq!(messages.len(), 200, "{codec}");
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(m.offset, i as i64);
            assert_eq!(m.value_str(), format!("message {i}"));
        }
    }
}

#[tokio::test]
async fn acks_zero_and_one_deliver() {
    let broker = broker!();
    let admin = Admin::connect(&broker.addr).await.unwrap();
    admin.create_topic("acks", 1).await.unwrap();
    for (acks, expect_offset) in [(Acks::Leader, Some(0)), (Acks::None, None)] {
        let config = ProducerConfig {
            acks,
            ..ProducerConfig::default()
        };
        let producer = Producer::connect_with(&broker.addr, config).await.unwrap();
        let offset = producer.send("acks", format!("{acks:?}"), 0).await.unwrap();
        match expect_offset {
            Some(o) => assert_eq!(offset, o),
            None => assert_eq!(offset, -1, "acks=0 cannot know the offset"),
        }
        producer.close().await.unwrap();
    }
    let mut consumer = Consumer::connect(&broker.addr).await.unwrap();
    consumer.assign("acks", 0).await.unwrap();
    let messages = poll_n(&mut consumer, 2, Duration::from_secs(10)).await;
    let values: Vec<_> = messages
        .iter()
        .map(|m| m.value_str().into_owned())
        .collect();
    assert_eq!(values, vec!["Leader", "None"]);
}

#[tokio::test]
async fn seek_moves_the_position_and_latest_skips_old_messages() {
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("seek", 1).await.unwrap();
    for i in 0..5 {
        producer.send("seek", format!("m{i}"), 0).await.unwrap();
    }
    let mut consumer = Consumer::connect(&broker.addr).await.unwrap();
    consumer.assign("seek", 0).await.unwrap();
    consumer.seek("seek", 0, 3).unwrap();
    let messages = poll_n(&mut consumer, 2, Duration::from_secs(10)).await;
    let offsets: Vec<i64> = messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, vec![3, 4]);
    assert!(
        consumer.seek("seek", 7, 0).is_err(),
        "partition 7 is not assigned"
    );

    let latest = ConsumerConfig {
        auto_offset_reset: OffsetReset::Latest,
        ..ConsumerConfig::default()
    };
    let mut tail = Consumer::connect_with(&broker.addr, latest).await.unwrap();
    tail.assign("seek", 0).await.unwrap();
    assert!(tail
        .poll(Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    producer.send("seek", "new", 0).await.unwrap();
    let messages = poll_n(&mut tail, 1, Duration::from_secs(10)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].offset, 5);
}

#[tokio::test]
async fn a_group_splits_partitions_commits_and_resumes() {
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("grouped", 3).await.unwrap();
    for i in 0..30 {
        producer
            .send("grouped", format!("m{i}"), i % 3)
            .await
            .unwrap();
    }

    let config = || ConsumerConfig {
        heartbeat_interval_ms: 200,
        ..ConsumerConfig::with_group("splitters")
    };
    let mut a = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    let mut b = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    a.subscribe(&["grouped"]).await.unwrap();
    b.subscribe(&["grouped"]).await.unwrap();

    // Poll both until the group settles with both members holding partitions and all 30
    // messages have been read between them.
    let mut seen: BTreeMap<(i32, i64), String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(300)),
            b.poll(Duration::from_millis(300))
        );
        for m in ra.unwrap().into_iter().chain(rb.unwrap()) {
            seen.insert((m.partition, m.offset), m.value_str().into_owned());
        }
        let (pa, pb) = (a.assignment(), b.assignment());
        let settled = !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 3;
        if settled && seen.len() == 30 {
            let all: BTreeSet<_> = pa.iter().chain(pb.iter()).cloned().collect();
            assert_eq!(
                all.len(),
                3,
                "partitions are split, not shared: {pa:?} {pb:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group did not settle: {pa:?} {pb:?} seen {}",
            seen.len()
        );
    }
    a.commit().await.unwrap();
    b.commit().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();

    let admin = Admin::connect(&broker.addr).await.unwrap();
    let described = admin.describe_group("splitters").await.unwrap();
    assert_eq!(described.offsets.len(), 3);
    for p in &described.offsets {
        assert_eq!(
            (p.committed, p.end_offset, p.lag),
            (Some(10), 10, Some(0)),
            "{p:?}"
        );
    }
    assert!(admin
        .list_groups()
        .await
        .unwrap()
        .iter()
        .any(|g| g.group_id == "splitters"));

    // A new member of the group resumes after the committed offsets.
    producer.send("grouped", "after", 1).await.unwrap();
    let mut c = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    c.subscribe(&["grouped"]).await.unwrap();
    let messages = poll_n(&mut c, 1, Duration::from_secs(30)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!((messages[0].partition, messages[0].offset), (1, 10));
    assert_eq!(messages[0].value_str(), "after");
    c.commit().await.unwrap();
    c.close().await.unwrap();
    let lag: i64 = admin
        .describe_group("splitters")
        .await
        .unwrap()
        .offsets
        .iter()
        .map(|p| p.lag.expect("committed"))
        .sum();
    assert_eq!(lag, 0);
}

#[tokio::test]
async fn admin_creates_describes_lists_and_deletes_topics() {
    let broker = broker!();
    let admin = Admin::connect(&broker.addr).await.unwrap();
    admin
        .create_topics(vec![
            NewTopic::new("configured", 4).config("retention.ms", "60000")
        ])
        .await
        .unwrap();
    let d = admin.describe_topic("configured").await.unwrap();
    assert_eq!(d.info.partitions.len(), 4);
    assert!(d.info.partitions.iter().all(|p| p.leader >= 0));
    let retention = d
        .configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("60000"));
    assert!(!retention.is_default);

    let names: Vec<String> = admin
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"configured".to_string()), "{names:?}");

    let err = admin.create_topic("configured", 1).await.unwrap_err();
    assert_eq!(err.code(), Some(ResponseError::TopicAlreadyExists), "{err}");

    admin.delete_topic("configured").await.unwrap();
    let names: Vec<String> = admin
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.contains(&"configured".to_string()), "{names:?}");
    let err = admin.describe_topic("configured").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ResponseError::UnknownTopicOrPartition),
        "{err}"
    );
}

#[tokio::test]
async fn errors_name_the_problem() {
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    let err = producer.send("no-such-topic", "x", 0).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ResponseError::UnknownTopicOrPartition),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-topic"), "{err}");

    producer.create_topic("small", 1).await.unwrap();
    let err = producer.send("small", "x", 3).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(ResponseError::UnknownTopicOrPartition),
        "{err}"
    );

    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let err = Producer::connect(&addr).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }));
    assert_eq!(
        err.to_string(),
        format!("cannot reach broker at {addr}: connection refused")
    );
}

#[test]
fn blocking_wrappers_work_without_a_runtime() {
    let broker = broker!();
    let producer = strom_client::blocking::Producer::connect(&broker.addr).unwrap();
    producer.create_topic("blocking", 1).unwrap();
    let offset = producer.send("blocking", "sync hello", 0).unwrap();
    assert_eq!(offset, 0);
    producer.close().unwrap();

    let mut consumer = strom_client::blocking::Consumer::connect(&broker.addr).unwrap();
    consumer.assign("blocking", 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        got = consumer.poll(Duration::from_millis(200)).unwrap();
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].value_str(), "sync hello");
    consumer.close().unwrap();
}

/// Story: a blocking producer or consumer used or dropped inside an async runtime (a `Drop`
/// running in a task, a handler holding one) panicked: tokio refuses `block_on` and dropping a
/// runtime on a thread that runs async code. Now the calls wait on a plain channel and drop
/// shuts the wrapper's runtime down in the background: no panic, and nothing sent is lost.
#[test]
fn a_blocking_client_works_and_drops_inside_an_async_runtime() {
    let broker = broker!();
    let producer = strom_client::blocking::Producer::connect(&broker.addr).unwrap();
    producer.create_topic("inside", 1).unwrap();
    let mut consumer = strom_client::blocking::Consumer::connect(&broker.addr).unwrap();
    consumer.assign("inside", 0).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = broker.addr.clone();
    runtime.block_on(async move {
        assert_eq!(producer.send("inside", "from async code", 0).unwrap(), 0);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.is_empty() && Instant::now() < deadline {
            got = consumer.poll(Duration::from_millis(200)).unwrap();
        }
        assert_eq!(got.len(), 1);
        drop(consumer);
        drop(producer);
        // Made on a blocking thread of this runtime, dropped in one of its tasks.
        let producer = tokio::task::spawn_blocking(move || {
            let p = strom_client::blocking::Producer::connect(&addr).unwrap();
            p.send("inside", "from a blocking thread", 0).unwrap();
            p
        })
        .await
        .unwrap();
        tokio::spawn(async move { drop(producer) }).await.unwrap();
    });
    drop(runtime);
    let mut consumer = strom_client::blocking::Consumer::connect(&broker.addr).unwrap();
    consumer.assign("inside", 0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(consumer.poll(Duration::from_millis(200)).unwrap());
    }
    let values: Vec<String> = got.iter().map(|m| m.value_str().into_owned()).collect();
    assert_eq!(values, ["from async code", "from a blocking thread"]);
}

#[tokio::test]
async fn clients_reconnect_after_a_broker_restart() {
    let mut broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("restart", 2).await.unwrap();
    assert_eq!(producer.send("restart", "before", 0).await.unwrap(), 0);
    let mut consumer = Consumer::connect(&broker.addr).await.unwrap();
    consumer.assign("restart", 0).await.unwrap();
    assert_eq!(
        poll_n(&mut consumer, 1, Duration::from_secs(10))
            .await
            .len(),
        1
    );

    broker.restart();

    // The old connections are dead; the next requests open new ones.
    let offset = producer.send("restart", "after", 0).await.unwrap();
    assert_eq!(
        offset, 1,
        "the message written before the restart is still there"
    );
    let messages = poll_n(&mut consumer, 1, Duration::from_secs(15)).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        (messages[0].offset, messages[0].value_str().into_owned()),
        (1, "after".into())
    );
}

#[tokio::test]
async fn when_a_member_leaves_the_other_takes_over_its_partitions() {
    let broker = broker!();
    let admin = Admin::connect(&broker.addr).await.unwrap();
    admin.create_topic("takeover", 4).await.unwrap();
    let config = || ConsumerConfig {
        heartbeat_interval_ms: 200,
        ..ConsumerConfig::with_group("takers")
    };
    let mut a = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    let mut b = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    a.subscribe(&["takeover"]).await.unwrap();
    b.subscribe(&["takeover"]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.assignment().len() != 2 || b.assignment().len() != 2 {
        assert!(
            Instant::now() < deadline,
            "{:?} {:?}",
            a.assignment(),
            b.assignment()
        );
        let (ra, rb) = tokio::join!(
            a.poll(Duration::from_millis(200)),
            b.poll(Duration::from_millis(200))
        );
        ra.unwrap();
        rb.unwrap();
    }
    // Range assignment in member-id order: two contiguous halves.
    let mut halves = [a.assignment(), b.assignment()];
    halves.sort();
    let parts = |h: &Vec<(String, i32)>| h.iter().map(|(_, p)| *p).collect::<Vec<_>>();
    assert_eq!(parts(&halves[0]), vec![0, 1]);
    assert_eq!(parts(&halves[1]), vec![2, 3]);

    b.close().await.unwrap();
    while a.assignment().len() != 4 {
        assert!(Instant::now() < deadline, "{:?}", a.assignment());
        a.poll(Duration::from_millis(200)).await.unwrap();
    }
    let described = admin.describe_group("takers").await.unwrap();
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.state, "Stable");
    assert_eq!(described.protocol, "range");
    let assigned: usize = described.members[0]
        .assignment
        .iter()
        .map(|(_, p)| p.len())
        .sum();
    assert_eq!(assigned, 4);
    a.close().await.unwrap();
}

#[tokio::test]
async fn a_group_picks_up_added_partitions() {
    let broker = broker!();
    let admin = Admin::connect(&broker.addr).await.unwrap();
    admin.create_topic("growing", 1).await.unwrap();
    let config = ConsumerConfig {
        metadata_max_age_ms: 200,
        ..ConsumerConfig::with_group("growers")
    };
    let mut consumer = Consumer::connect_with(&broker.addr, config).await.unwrap();
    consumer.subscribe(&["growing"]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().len() != 1 {
        assert!(Instant::now() < deadline);
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }
    admin.create_partitions("growing", 3).await.unwrap();
    assert_eq!(
        admin
            .describe_topic("growing")
            .await
            .unwrap()
            .info
            .partitions
            .len(),
        3
    );
    while consumer.assignment().len() != 3 {
        assert!(Instant::now() < deadline, "{:?}", consumer.assignment());
        consumer.poll(Duration::from_millis(100)).await.unwrap();
    }
    consumer.close().await.unwrap();
}

#[tokio::test]
async fn a_group_member_rejoins_after_a_broker_restart() {
    let mut broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("rejoin", 1).await.unwrap();
    producer.send("rejoin", "before", 0).await.unwrap();
    let config = ConsumerConfig {
        heartbeat_interval_ms: 200,
        ..ConsumerConfig::with_group("survivors")
    };
    let mut consumer = Consumer::connect_with(&broker.addr, config).await.unwrap();
    consumer.subscribe(&["rejoin"]).await.unwrap();
    let got = poll_n(&mut consumer, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1);
    consumer.commit().await.unwrap();

    broker.restart();
    producer.send("rejoin", "after", 0).await.unwrap();

    // Polls may fail while the member finds the restarted coordinator; it must recover.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = Vec::new();
    while after.is_empty() {
        assert!(Instant::now() < deadline, "no message after the restart");
        match consumer.poll(Duration::from_millis(300)).await {
            Ok(messages) => after = messages,
            Err(e) => eprintln!("poll during recovery: {e}"),
        }
    }
    assert_eq!(after[0].value_str(), "after");
    assert_eq!(after[0].offset, 1, "resumed after the committed offset");
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
}
