//! `group.protocol=consumer` (KIP-848) against a real `strom serve`: members share a topic
//! and hand partitions over without reading a record twice or skipping one, resume from
//! committed offsets, and carry on after the broker is killed and restarted.
//! Build the binary first: `cargo build -p strom`.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strom_client::{
    Consumer, ConsumerConfig, GroupProtocol, Message, OffsetReset, Producer, RebalanceListener,
};

/// Heartbeats every 200 ms, so hand-overs take well under a second.
const BROKER_ARGS: &[&str] = &["--set", "group.consumer.heartbeat.interval.ms=200"];

fn config(group: &str) -> ConsumerConfig {
    ConsumerConfig {
        group_protocol: GroupProtocol::Consumer,
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::with_group(group)
    }
}

/// Writes `per_partition` records `P-I` to each partition, I counting on from `from`.
async fn produce(addr: &str, topic: &str, partitions: i32, from: usize, per_partition: usize) {
    let producer = Producer::connect(addr).await.unwrap();
    for p in 0..partitions {
        for i in from..from + per_partition {
            producer.send(topic, format!("{p}-{i}"), p).await.unwrap();
        }
    }
    producer.close().await.unwrap();
}

#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

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

/// Every record any member handled, in the order they were handled.
type Log = Arc<Mutex<Vec<Message>>>;

/// A member polling in a task until told to stop: it logs what it reads and publishes how
/// many partitions it owns. Returns the consumer.
struct Member {
    owns: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Consumer>,
}

impl Member {
    fn spawn(mut c: Consumer, log: Log) -> Member {
        let owns = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (owns.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Acquire) {
                let messages = c.poll(Duration::from_millis(100)).await.unwrap();
                log.lock().unwrap().extend(messages);
                *o.lock().unwrap() = c.assignment().len();
            }
            c
        });
        Member { owns, stop, task }
    }

    fn owns(&self) -> usize {
        *self.owns.lock().unwrap()
    }

    async fn stop(self) -> Consumer {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap()
    }
}

async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The offsets read of each partition, in the order they were read.
fn offsets_by_partition(log: &[Message]) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for m in log {
        out.entry(m.partition).or_default().push(m.offset);
    }
    out
}

/// Two members split a 4-partition topic while records keep coming; the first gives up two
/// partitions (committing in the hand-over, before its revoked callback), then closes and
/// the second takes all four back. Every record is handled once, in order per partition.
#[tokio::test]
async fn two_members_split_a_topic_and_hand_it_back_reading_every_record_once() {
    let broker = match support::Broker::start_with(BROKER_ARGS) {
        Some(b) => b,
        None => return,
    };
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("split", 4).await.unwrap();
    produce(&broker.addr, "split", 4, 0, 20).await;
    // Auto-commit commits what was handled before the revoked callback runs and on close;
    // its interval is long so those are the only commits.
    let member_config = || ConsumerConfig {
        enable_auto_commit: true,
        auto_commit_interval_ms: 600_000,
        max_poll_records: 5,
        ..config("splitters")
    };
    let log: Log = Arc::default();

    let a_events = Events::default();
    let mut a = Consumer::connect_with(&broker.addr, member_config())
        .await
        .unwrap();
    a.set_rebalance_listener(a_events.clone());
    a.subscribe(&["split"]).await.unwrap();
    let a = Member::spawn(a, log.clone());
    wait_until(
        "A owns all 4 partitions and read some",
        Duration::from_secs(15),
        || a.owns() == 4 && !log.lock().unwrap().is_empty(),
    )
    .await;

    let b_events = Events::default();
    let mut b = Consumer::connect_with(&broker.addr, member_config())
        .await
        .unwrap();
    b.set_rebalance_listener(b_events.clone());
    b.subscribe(&["split"]).await.unwrap();
    let b = Member::spawn(b, log.clone());
    wait_until(
        "A and B own 2 partitions each",
        Duration::from_secs(15),
        || a.owns() == 2 && b.owns() == 2,
    )
    .await;
    produce(&broker.addr, "split", 4, 20, 20).await;
    wait_until(
        "the first 160 records are read",
        Duration::from_secs(15),
        || log.lock().unwrap().len() >= 160,
    )
    .await;

    let a = a.stop().await;
    a.close().await.unwrap();
    wait_until("B owns all 4 partitions", Duration::from_secs(15), || {
        b.owns() == 4
    })
    .await;
    produce(&broker.addr, "split", 4, 40, 20).await;
    wait_until("all 240 records are read", Duration::from_secs(15), || {
        log.lock().unwrap().len() >= 240
    })
    .await;
    // Anything read twice would arrive now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = b.stop().await;
    b.close().await.unwrap();

    let log = log.lock().unwrap().clone();
    let expected: Vec<i64> = (0..60).collect();
    for (partition, offsets) in offsets_by_partition(&log) {
        assert_eq!(offsets, expected, "partition {partition}");
    }
    assert_eq!(log.len(), 240);
    for m in &log {
        assert_eq!(m.value_str(), format!("{}-{}", m.partition, m.offset));
    }
    let a_seen = a_events.seen();
    assert!(
        a_seen[0].starts_with("assigned") && a_seen[0].matches("split").count() == 4,
        "{a_seen:?}"
    );
    assert!(
        a_seen
            .iter()
            .any(|e| e.starts_with("revoked") && e.matches("split").count() == 2),
        "A gave two partitions to B: {a_seen:?}"
    );
    assert!(
        a_seen.last().unwrap().starts_with("revoked"),
        "A's close revokes what it owns: {a_seen:?}"
    );
    let b_assigned: usize = b_events
        .seen()
        .iter()
        .filter(|e| e.starts_with("assigned"))
        .map(|e| e.matches("split").count())
        .sum();
    assert_eq!(b_assigned, 4, "B got 2, then A's 2: {:?}", b_events.seen());
}

/// A member commits (with its member epoch) and leaves; the next member of the group starts
/// at the committed offsets.
#[tokio::test]
async fn a_new_member_resumes_from_the_committed_offsets() {
    let broker = match support::Broker::start_with(BROKER_ARGS) {
        Some(b) => b,
        None => return,
    };
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("resume", 2).await.unwrap();
    produce(&broker.addr, "resume", 2, 0, 10).await;

    let mut first = Consumer::connect_with(&broker.addr, config("resumers"))
        .await
        .unwrap();
    first.subscribe(&["resume"]).await.unwrap();
    let read = poll_n(&mut first, 20, Duration::from_secs(15)).await;
    assert_eq!(read.len(), 20);
    let metadata = first.group_metadata().unwrap();
    assert!(metadata.generation_id > 0, "a member epoch: {metadata:?}");
    first.commit().await.unwrap();
    // Admin describes the KIP-848 group (DescribeGroups alone would say Dead).
    let admin = strom_client::Admin::connect(&broker.addr).await.unwrap();
    let described = admin.describe_group("resumers").await.unwrap();
    assert_eq!(
        (described.state.as_str(), described.protocol_type.as_str()),
        ("Stable", "consumer")
    );
    assert_eq!(described.members.len(), 1);
    assert_eq!(
        described.members[0].assignment,
        vec![("resume".to_string(), vec![0, 1])]
    );
    assert!(described.offsets.iter().all(|o| o.committed == Some(10)));
    first.close().await.unwrap();

    produce(&broker.addr, "resume", 2, 10, 5).await;
    let mut second = Consumer::connect_with(&broker.addr, config("resumers"))
        .await
        .unwrap();
    second.subscribe(&["resume"]).await.unwrap();
    let mut read = poll_n(&mut second, 10, Duration::from_secs(15)).await;
    read.extend(poll_n(&mut second, 1, Duration::from_millis(500)).await);
    let expected: Vec<i64> = (10..15).collect();
    let by_partition = offsets_by_partition(&read);
    assert_eq!(by_partition.len(), 2, "{by_partition:?}");
    for (partition, offsets) in by_partition {
        assert_eq!(offsets, expected, "partition {partition}");
    }
    second.close().await.unwrap();
}

/// The broker is killed (-9) and restarted: it restores the group from its offsets log, so
/// the member carries on at its epoch with its partitions (no lost or revoked callback) and
/// reads on from where it was.
#[tokio::test]
async fn a_member_carries_on_after_the_broker_restarts() {
    let mut broker = match support::Broker::start_with(BROKER_ARGS) {
        Some(b) => b,
        None => return,
    };
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("restarted", 2).await.unwrap();
    drop(producer);
    produce(&broker.addr, "restarted", 2, 0, 10).await;

    let events = Events::default();
    let mut c = Consumer::connect_with(&broker.addr, config("survivors"))
        .await
        .unwrap();
    c.set_rebalance_listener(events.clone());
    c.subscribe(&["restarted"]).await.unwrap();
    let mut read = poll_n(&mut c, 20, Duration::from_secs(15)).await;
    assert_eq!(read.len(), 20);
    c.commit().await.unwrap();
    let before = events.seen();

    broker.restart();
    // Several heartbeats (200 ms apart) reach the restarted broker meanwhile.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        read.extend(c.poll(Duration::from_millis(100)).await.unwrap());
    }
    produce(&broker.addr, "restarted", 2, 10, 10).await;
    read.extend(poll_n(&mut c, 20, Duration::from_secs(30)).await);
    read.extend(poll_n(&mut c, 1, Duration::from_millis(500)).await);
    let expected: Vec<i64> = (0..20).collect();
    for (partition, offsets) in offsets_by_partition(&read) {
        assert_eq!(offsets, expected, "partition {partition}");
    }
    assert_eq!(read.len(), 40);
    assert_eq!(
        events.seen(),
        before,
        "no rebalance callback across the restart"
    );
    c.commit().await.unwrap();
    c.close().await.unwrap();
}

/// A member that stops polling for longer than `max_poll_interval_ms` leaves the group, so
/// the other member gets its partitions; its next poll finds them lost and rejoins.
#[tokio::test]
async fn a_member_that_stops_polling_leaves_and_later_rejoins() {
    let broker = match support::Broker::start_with(BROKER_ARGS) {
        Some(b) => b,
        None => return,
    };
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("stall", 2).await.unwrap();
    let log: Log = Arc::default();
    let mut a = Consumer::connect_with(&broker.addr, config("stallers"))
        .await
        .unwrap();
    a.subscribe(&["stall"]).await.unwrap();
    let a = Member::spawn(a, log.clone());
    let b_events = Events::default();
    let mut b = Consumer::connect_with(
        &broker.addr,
        ConsumerConfig {
            max_poll_interval_ms: 1_500,
            ..config("stallers")
        },
    )
    .await
    .unwrap();
    b.set_rebalance_listener(b_events.clone());
    b.subscribe(&["stall"]).await.unwrap();
    let b_member = Member::spawn(b, log.clone());
    wait_until(
        "A and B own one partition each",
        Duration::from_secs(15),
        || a.owns() == 1 && b_member.owns() == 1,
    )
    .await;
    let mut b = b_member.stop().await;
    wait_until("A owns both partitions", Duration::from_secs(15), || {
        a.owns() == 2
    })
    .await;
    b.poll(Duration::from_millis(100)).await.unwrap();
    let seen = b_events.seen();
    assert!(seen.iter().any(|e| e.starts_with("lost")), "{seen:?}");
    poll_until_owns(&mut b, 1, Duration::from_secs(15)).await;
    b.close().await.unwrap();
    a.stop().await.close().await.unwrap();
}

/// Polls until `c` owns `n` partitions, or fails after `timeout`.
async fn poll_until_owns(c: &mut Consumer, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while c.assignment().len() != n {
        assert!(Instant::now() < deadline, "owns {:?}", c.assignment());
        c.poll(Duration::from_millis(100)).await.unwrap();
    }
}

/// The CLI joins with `-X group.protocol=consumer`, prints every record, commits, and a
/// second run of the group starts at that commit.
#[tokio::test]
async fn the_cli_consumes_with_group_protocol_consumer() {
    let broker = match support::Broker::start_with(BROKER_ARGS) {
        Some(b) => b,
        None => return,
    };
    let producer = Producer::connect(&broker.addr).await.unwrap();
    producer.create_topic("cli848", 2).await.unwrap();
    produce(&broker.addr, "cli848", 2, 0, 3).await;
    let args = [
        "consume",
        "cli848",
        "--group",
        "cli-readers",
        "-X",
        "group.protocol=consumer",
        "--from-beginning",
        "--exit-at-end",
    ];
    let (code, out, err) = broker.cli(&args, "");
    assert_eq!(code, 0, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, ["0-0", "0-1", "0-2", "1-0", "1-1", "1-2"]);
    let (code, out, err) = broker.cli(&args, "");
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// Polls until `n` messages arrived or `timeout` passed.
async fn poll_n(c: &mut Consumer, n: usize, timeout: Duration) -> Vec<Message> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(100)).await.unwrap());
    }
    got
}
