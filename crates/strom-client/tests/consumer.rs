//! The consumer's controls against a real `strom serve`: records per poll, pause and resume,
//! auto-commit on close, rebalance callbacks, `max_poll_interval_ms` and static membership.
//! Build the binary first: `cargo build -p strom`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strom_client::{
    Admin, Consumer, ConsumerConfig, Message, OffsetReset, Producer, RebalanceListener,
};

async fn fill(addr: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer = Producer::connect(addr).await.unwrap();
    producer.create_topic(topic, partitions).await.unwrap();
    for p in 0..partitions {
        for i in 0..per_partition {
            producer.send(topic, format!("{p}-{i}"), p).await.unwrap();
        }
    }
    producer.close().await.unwrap();
}

fn group_config(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        heartbeat_interval_ms: 100,
        ..ConsumerConfig::with_group(group)
    }
}

async fn committed(addr: &str, group: &str, partition: i32) -> Option<i64> {
    let admin = Admin::connect(addr).await.unwrap();
    let g = admin.describe_group(group).await.unwrap();
    g.offsets
        .iter()
        .find(|o| o.partition == partition)
        .and_then(|o| o.committed)
}

/// Polls until `n` messages arrived or `timeout` passed.
async fn poll_n(c: &mut Consumer, n: usize, timeout: Duration) -> Vec<Message> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    got
}

#[tokio::test]
async fn poll_returns_at_most_max_poll_records_and_commits_only_what_it_returned() {
    let broker = broker!();
    fill(&broker.addr, "many", 1, 25).await;
    let config = ConsumerConfig {
        max_poll_records: 10,
        ..group_config("bounded")
    };
    let mut c = Consumer::connect_with(&broker.addr, config).await.unwrap();
    c.subscribe(&["many"]).await.unwrap();
    let first = poll_n(&mut c, 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 10, "one poll, at most 10 records");
    assert_eq!(first.last().unwrap().offset, 9);
    assert_eq!(c.position("many", 0), Some(10));
    c.commit().await.unwrap();
    assert_eq!(committed(&broker.addr, "bounded", 0).await, Some(10));
    let second = c.poll(Duration::from_secs(1)).await.unwrap();
    let third = c.poll(Duration::from_secs(1)).await.unwrap();
    let offsets: Vec<i64> = second.iter().chain(&third).map(|m| m.offset).collect();
    assert_eq!(offsets, (10..25).collect::<Vec<_>>());
    c.close().await.unwrap();
}

#[tokio::test]
async fn paused_partitions_are_not_fetched_until_resumed() {
    let broker = broker!();
    fill(&broker.addr, "two", 2, 5).await;
    let mut c = Consumer::connect(&broker.addr).await.unwrap();
    c.assign_topic("two").await.unwrap();
    c.seek_to(strom_client::OffsetSpec::Earliest).await.unwrap();
    c.pause(&[("two".to_string(), 0)]);
    assert_eq!(c.paused(), vec![("two".to_string(), 0)]);
    let got = poll_n(&mut c, 10, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 5, "only the unpaused partition");
    assert!(got.iter().all(|m| m.partition == 1));
    c.resume(&[("two".to_string(), 0)]);
    let got = poll_n(&mut c, 5, Duration::from_secs(10)).await;
    let values: Vec<String> = got.iter().map(|m| m.value_str().into_owned()).collect();
    assert_eq!(values, ["0-0", "0-1", "0-2", "0-3", "0-4"]);
}

#[tokio::test]
async fn auto_commit_commits_the_positions_on_close() {
    let broker = broker!();
    fill(&broker.addr, "auto", 1, 5).await;
    let config = ConsumerConfig {
        enable_auto_commit: true,
        auto_commit_interval_ms: 60_000,
        ..group_config("auto")
    };
    let mut c = Consumer::connect_with(&broker.addr, config).await.unwrap();
    c.subscribe(&["auto"]).await.unwrap();
    assert_eq!(poll_n(&mut c, 5, Duration::from_secs(10)).await.len(), 5);
    assert_eq!(
        committed(&broker.addr, "auto", 0).await,
        None,
        "nothing committed yet"
    );
    c.close().await.unwrap();
    assert_eq!(committed(&broker.addr, "auto", 0).await, Some(5));
}

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl RebalanceListener for Events {
    fn on_partitions_revoked(&mut self, partitions: &[(String, i32)]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("revoked {partitions:?}"));
    }
    fn on_partitions_assigned(&mut self, partitions: &[(String, i32)]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("assigned {partitions:?}"));
    }
    fn on_partitions_lost(&mut self, partitions: &[(String, i32)]) {
        self.0.lock().unwrap().push(format!("lost {partitions:?}"));
    }
}

/// Polls `c` in a task until told to stop; returns the consumer.
fn keep_polling(
    mut c: Consumer,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Consumer> {
    tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            c.poll(Duration::from_millis(100)).await.unwrap();
        }
        c
    })
}

/// Polls until `c` owns `n` partitions, or fails after `timeout`.
async fn until_owns(c: &mut Consumer, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while c.assignment().len() != n {
        assert!(
            Instant::now() < deadline,
            "owns {:?}, waited for {n}",
            c.assignment()
        );
        c.poll(Duration::from_millis(100)).await.unwrap();
    }
}

#[tokio::test]
async fn the_listener_hears_revoke_and_assign_and_a_stalled_member_leaves() {
    let broker = broker!();
    fill(&broker.addr, "shared", 2, 1).await;
    let events = Events::default();
    let mut a = Consumer::connect_with(&broker.addr, group_config("listen"))
        .await
        .unwrap();
    a.set_rebalance_listener(events.clone());
    a.subscribe(&["shared"]).await.unwrap();
    until_owns(&mut a, 2, Duration::from_secs(10)).await;

    // A second member: A's next polls revoke both partitions and get one back.
    let config = ConsumerConfig {
        max_poll_interval_ms: 1_500,
        ..group_config("listen")
    };
    let mut b = Consumer::connect_with(&broker.addr, config).await.unwrap();
    b.subscribe(&["shared"]).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b_task = keep_polling(b, stop.clone());
    until_owns(&mut a, 1, Duration::from_secs(15)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut b = b_task.await.unwrap();
    let seen = events.0.lock().unwrap().clone();
    let both = r#"[("shared", 0), ("shared", 1)]"#;
    assert_eq!(seen[0], format!("assigned {both}"));
    assert!(seen.contains(&format!("revoked {both}")), "{seen:?}");
    assert!(
        seen.last().unwrap().starts_with("assigned [(\"shared\""),
        "{seen:?}"
    );
    assert_eq!(a.assignment().len() + b.assignment().len(), 2);

    // B stops polling for longer than its max_poll_interval_ms: it leaves and A takes over.
    until_owns(&mut a, 2, Duration::from_secs(15)).await;
    // B's next poll finds its partitions lost and rejoins.
    let b_events = Events::default();
    b.set_rebalance_listener(b_events.clone());
    b.poll(Duration::from_millis(100)).await.unwrap();
    let seen = b_events.0.lock().unwrap().clone();
    assert!(
        seen.first().is_some_and(|e| e.starts_with("lost")),
        "{seen:?}"
    );
}

/// Static membership (KIP-345): a member with a `group_instance_id` that closes does not
/// leave, so the group does not rebalance; restarted with the same id, it gets its
/// partitions back.
#[tokio::test]
async fn a_static_member_keeps_its_partitions_across_a_restart() {
    let broker = broker!();
    fill(&broker.addr, "static", 2, 1).await;
    let static_config = || ConsumerConfig {
        group_instance_id: Some("instance-a".into()),
        session_timeout_ms: 30_000,
        ..group_config("static")
    };
    let mut a = Consumer::connect_with(&broker.addr, static_config())
        .await
        .unwrap();
    a.subscribe(&["static"]).await.unwrap();
    until_owns(&mut a, 2, Duration::from_secs(10)).await;
    let mut b = Consumer::connect_with(&broker.addr, group_config("static"))
        .await
        .unwrap();
    b.subscribe(&["static"]).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b_task = keep_polling(b, stop.clone());
    until_owns(&mut a, 1, Duration::from_secs(15)).await;
    let mine = a.assignment();
    a.close().await.unwrap();

    // B keeps polling: no rebalance gives it A's partition while A is away.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let mut b = b_task.await.unwrap();
    assert_eq!(b.assignment().len(), 1, "{:?}", b.assignment());

    let mut again = Consumer::connect_with(&broker.addr, static_config())
        .await
        .unwrap();
    again.subscribe(&["static"]).await.unwrap();
    until_owns(&mut again, 1, Duration::from_secs(10)).await;
    assert_eq!(again.assignment(), mine);
    b.poll(Duration::from_millis(100)).await.unwrap();
    assert_eq!(b.assignment().len(), 1);
}

/// A consumer as a `Stream`: every message once, then the consumer back for `commit`.
#[tokio::test]
async fn a_consumer_is_a_stream_of_messages() {
    use futures_core::Stream;
    let broker = broker!();
    fill(&broker.addr, "streamed", 2, 15).await;
    let config = ConsumerConfig {
        max_poll_records: 4,
        ..group_config("streamers")
    };
    let mut c = Consumer::connect_with(&broker.addr, config).await.unwrap();
    c.subscribe(&["streamed"]).await.unwrap();
    let mut stream = c.into_stream();
    let mut got = Vec::new();
    while got.len() < 30 {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
        let m = tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .expect("a message within 10 s")
            .expect("the stream does not end")
            .unwrap();
        got.push((m.partition, m.value_str().into_owned()));
    }
    got.sort();
    let mut expected: Vec<(i32, String)> = (0..2)
        .flat_map(|p| (0..15).map(move |i| (p, format!("{p}-{i}"))))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    let mut c = stream.into_inner().unwrap();
    c.commit().await.unwrap();
    assert_eq!(committed(&broker.addr, "streamers", 0).await, Some(15));
    assert_eq!(committed(&broker.addr, "streamers", 1).await, Some(15));
    c.close().await.unwrap();
}

/// Three members share a stream; one dies mid-stream without leaving (its task is aborted,
/// as a crash would end it). The other two take over its partitions after the session
/// timeout and every message is handled at least once, resuming from the dead member's last
/// commit.
#[tokio::test]
async fn a_three_member_group_survives_a_member_killed_mid_stream() {
    const PARTITIONS: i32 = 3;
    const PER_PARTITION: usize = 200;
    let broker = broker!();
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("trio", PARTITIONS).await.unwrap();
    let seen: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut members = Vec::new();
    for _ in 0..3 {
        let config = ConsumerConfig {
            // Kafka's smallest session timeout (group.min.session.timeout.ms).
            session_timeout_ms: 6_000,
            rebalance_timeout_ms: 8_000,
            max_poll_records: 20,
            ..group_config("trio")
        };
        let mut c = Consumer::connect_with(&broker.addr, config).await.unwrap();
        c.subscribe(&["trio"]).await.unwrap();
        let (seen, stop) = (seen.clone(), stop.clone());
        members.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let messages = c.poll(Duration::from_millis(100)).await.unwrap();
                {
                    let mut s = seen.lock().unwrap();
                    for m in &messages {
                        s.insert(m.value_str().into_owned());
                    }
                }
                if !messages.is_empty() {
                    // A commit refused by a rebalance is retried after the next poll.
                    let _ = c.commit().await;
                }
            }
            c.close().await.unwrap();
        }));
    }
    for i in 0..PER_PARTITION {
        for p in 0..PARTITIONS {
            producer.send("trio", format!("{p}-{i}"), p).await.unwrap();
        }
        if i == PER_PARTITION / 3 {
            members.remove(0).abort();
        }
    }
    let total = PARTITIONS as usize * PER_PARTITION;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    for m in members {
        m.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<String> = (0..PARTITIONS)
        .flat_map(|p| (0..PER_PARTITION).map(move |i| format!("{p}-{i}")))
        .filter(|v| !seen.contains(v))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "never handled: {missing:?}...");
    for p in 0..PARTITIONS {
        assert_eq!(
            committed(&broker.addr, "trio", p).await,
            Some(PER_PARTITION as i64),
            "partition {p}"
        );
    }
}

/// Cooperative rebalancing (KIP-429): when a second member joins, the first gives up only
/// the partition that moves and keeps reading the other, instead of revoking everything.
#[tokio::test]
async fn cooperative_sticky_moves_only_the_partitions_that_change_owner() {
    let broker = broker!();
    fill(&broker.addr, "coop", 2, 3).await;
    let config = || ConsumerConfig {
        assignors: vec![strom_client::Assignor::CooperativeSticky],
        ..group_config("coop")
    };
    let events = Events::default();
    let mut a = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    a.set_rebalance_listener(events.clone());
    a.subscribe(&["coop"]).await.unwrap();
    assert_eq!(poll_n(&mut a, 6, Duration::from_secs(10)).await.len(), 6);
    assert_eq!(a.assignment().len(), 2);

    let mut b = Consumer::connect_with(&broker.addr, config())
        .await
        .unwrap();
    b.subscribe(&["coop"]).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let b_task = keep_polling(b, stop.clone());
    until_owns(&mut a, 1, Duration::from_secs(15)).await;
    // Give B its partition in the follow-up rebalance (A rejoins at once after revoking).
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        a.poll(Duration::from_millis(100)).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let b = b_task.await.unwrap();
    let seen = events.0.lock().unwrap().clone();
    let kept = a.assignment()[0].clone();
    let moved = b.assignment();
    assert_eq!(moved.len(), 1, "{moved:?}; a saw {seen:?}");
    assert_ne!(moved[0], kept);
    assert_eq!(seen[0], r#"assigned [("coop", 0), ("coop", 1)]"#);
    assert_eq!(seen[1], format!("revoked [{:?}]", moved[0]), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|e| e.contains(&format!("{kept:?}")) && e.starts_with("revoked")),
        "the kept partition was never revoked: {seen:?}"
    );
    // A kept its position on the partition it kept: nothing is read twice.
    assert_eq!(a.position(&kept.0, kept.1), Some(3));
}
