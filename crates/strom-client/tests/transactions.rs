//! Exactly-once against a real `strom serve`: transactional producers, read_committed
//! consumers and consume-transform-produce with `send_offsets_to_transaction`.
//! Build the binary first: `cargo build -p strom`.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strom_client::{
    Admin, ClientError, Consumer, ConsumerConfig, IsolationLevel, Message, Producer,
    ProducerConfig, ProducerRecord, ResponseError, TransactionState,
};

/// How long a test waits for records to arrive on a loaded machine.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);

fn transactional(id: &str) -> ProducerConfig {
    ProducerConfig {
        transactional_id: Some(id.to_string()),
        linger_ms: 5,
        ..ProducerConfig::default()
    }
}

fn reader(isolation_level: IsolationLevel) -> ConsumerConfig {
    ConsumerConfig {
        isolation_level,
        fetch_max_wait_ms: 100,
        ..ConsumerConfig::default()
    }
}

/// Reads every partition of `topic` from the start until each position reaches the end
/// offset at this consumer's isolation level; returns the values per partition in order and
/// checks the positions end exactly there (past any transaction marker).
async fn read_all(
    addr: &str,
    topic: &str,
    isolation: IsolationLevel,
) -> BTreeMap<i32, Vec<String>> {
    let mut c = Consumer::connect_with(addr, reader(isolation))
        .await
        .unwrap();
    c.assign_topic(topic).await.unwrap();
    let ends = c.end_offsets().await.unwrap();
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let at_end = |c: &Consumer| {
        ends.iter()
            .all(|((t, p), end)| c.position(t, *p).is_some_and(|pos| pos >= *end))
    };
    while !at_end(&c) {
        assert!(Instant::now() < deadline, "did not reach {ends:?} in time");
        for m in c.poll(Duration::from_millis(300)).await.unwrap() {
            out.entry(m.partition)
                .or_default()
                .push(m.value_str().to_string());
        }
    }
    for ((t, p), end) in &ends {
        assert_eq!(
            c.position(t, *p),
            Some(*end),
            "{isolation:?} position of {t}/{p}"
        );
    }
    out
}

#[tokio::test]
async fn commit_is_visible_to_read_committed_and_abort_never() {
    let broker = broker!();
    let addr = &broker.addr;
    Admin::connect(addr)
        .await
        .unwrap()
        .create_topic("txn", 2)
        .await
        .unwrap();
    let a = Producer::connect_with(addr, transactional("txn-a"))
        .await
        .unwrap();
    let b = Producer::connect_with(addr, transactional("txn-b"))
        .await
        .unwrap();
    a.init_transactions().await.unwrap();
    b.init_transactions().await.unwrap();
    // Two producers with overlapping transactions on both partitions; in each round one
    // commits and the other aborts, alternating, so committed and aborted batches interleave.
    let mut committed: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut written: Vec<(i32, i64, String)> = Vec::new();
    for round in 0..4 {
        a.begin_transaction().await.unwrap();
        b.begin_transaction().await.unwrap();
        let mut deliveries = Vec::new();
        for i in 0..6 {
            for (name, producer) in [("a", &a), ("b", &b)] {
                let partition = i % 2;
                let value = format!("r{round}-{name}-{i}");
                let record = ProducerRecord::new("txn", value.clone()).partition(partition);
                deliveries.push((name, value, producer.enqueue(record).await.unwrap()));
            }
        }
        let a_commits = round % 2 == 0;
        let (winner, loser) = if a_commits { (&a, &b) } else { (&b, &a) };
        let winner_name = if a_commits { "a" } else { "b" };
        winner.commit_transaction().await.unwrap();
        loser.abort_transaction().await.unwrap();
        for (name, value, delivery) in deliveries {
            let result = delivery.wait().await;
            if name == winner_name {
                let meta = result.unwrap();
                committed
                    .entry(meta.partition)
                    .or_default()
                    .push(value.clone());
                written.push((meta.partition, meta.offset, value));
            } else if let Ok(meta) = result {
                // Sent before the abort: written, then aborted by the marker.
                written.push((meta.partition, meta.offset, value));
            }
        }
        assert_eq!(a.transaction_state().await, Some(TransactionState::Ready));
    }
    // Committed records come back in the order they were written.
    written.sort();
    for values in committed.values_mut() {
        values.sort_by_key(|v| written.iter().position(|(_, _, w)| w == v));
    }
    let mut uncommitted: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for (p, _, v) in &written {
        uncommitted.entry(*p).or_default().push(v.clone());
    }
    assert!(
        written.len() > committed.values().map(Vec::len).sum::<usize>(),
        "some aborted records were written, so the test can tell the two readers apart"
    );

    let seen = read_all(addr, "txn", IsolationLevel::ReadUncommitted).await;
    assert_eq!(
        seen, uncommitted,
        "read_uncommitted sees committed and aborted records"
    );
    let seen = read_all(addr, "txn", IsolationLevel::ReadCommitted).await;
    assert_eq!(
        seen, committed,
        "read_committed sees exactly the committed records, in order"
    );
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), 4 * 6);
}

#[tokio::test]
async fn a_second_producer_with_the_same_id_fences_the_first() {
    let broker = broker!();
    let addr = &broker.addr;
    Admin::connect(addr)
        .await
        .unwrap()
        .create_topic("fence", 1)
        .await
        .unwrap();
    let zombie = Producer::connect_with(addr, transactional("shared-id"))
        .await
        .unwrap();
    zombie.init_transactions().await.unwrap();
    zombie.begin_transaction().await.unwrap();
    zombie
        .send_record(ProducerRecord::new("fence", "zombie").partition(0))
        .await
        .unwrap();

    let fresh = Producer::connect_with(addr, transactional("shared-id"))
        .await
        .unwrap();
    fresh.init_transactions().await.unwrap();

    let err = zombie.commit_transaction().await.unwrap_err();
    assert_eq!(err.code(), Some(ResponseError::ProducerFenced), "{err}");
    assert_eq!(
        zombie.transaction_state().await,
        Some(TransactionState::FatalError)
    );
    // Fatal: every later call returns the same error.
    for err in [
        zombie.begin_transaction().await.unwrap_err(),
        zombie.abort_transaction().await.unwrap_err(),
        zombie
            .send_record(ProducerRecord::new("fence", "late").partition(0))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), Some(ResponseError::ProducerFenced), "{err}");
    }

    fresh.begin_transaction().await.unwrap();
    fresh
        .send_record(ProducerRecord::new("fence", "fresh").partition(0))
        .await
        .unwrap();
    fresh.commit_transaction().await.unwrap();
    let seen = read_all(addr, "fence", IsolationLevel::ReadCommitted).await;
    assert_eq!(seen.get(&0), Some(&vec!["fresh".to_string()]));
}

#[tokio::test]
async fn calls_in_the_wrong_state_say_what_is_missing() {
    let broker = broker!();
    let addr = &broker.addr;
    let p = Producer::connect_with(addr, transactional("early"))
        .await
        .unwrap();
    let err = p.begin_transaction().await.unwrap_err();
    assert!(matches!(err, ClientError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("init_transactions"), "{err}");
    p.init_transactions().await.unwrap();
    p.create_topic("anywhere", 1).await.unwrap();
    let err = p
        .send_record(ProducerRecord::new("anywhere", "x").partition(0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("begin_transaction"), "{err}");
    let err = p.commit_transaction().await.unwrap_err();
    assert!(err.to_string().contains("no transaction is open"), "{err}");
    // An empty transaction commits without troubling the coordinator.
    p.begin_transaction().await.unwrap();
    p.commit_transaction().await.unwrap();
    let plain = Producer::connect(addr).await.unwrap();
    let err = plain.init_transactions().await.unwrap_err();
    assert!(err.to_string().contains("transactional id"), "{err}");
}

/// Copies `input` to `output` in transactions of at most `max_poll_records`, committing the
/// consumed offsets with each; the transaction numbered `abort_round` is aborted and redone.
async fn copy(addr: &str, group: &str, abort_round: usize) {
    let config = ConsumerConfig {
        isolation_level: IsolationLevel::ReadCommitted,
        max_poll_records: 15,
        heartbeat_interval_ms: 200,
        fetch_max_wait_ms: 100,
        ..ConsumerConfig::with_group(group)
    };
    let mut consumer = Consumer::connect_with(addr, config).await.unwrap();
    consumer.subscribe(&["input"]).await.unwrap();
    let producer = Producer::connect_with(addr, transactional("copier"))
        .await
        .unwrap();
    producer.init_transactions().await.unwrap();
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    let mut round = 0;
    let mut idle_polls = 0;
    while idle_polls < 5 {
        assert!(Instant::now() < deadline, "the copy did not finish in time");
        let messages = consumer.poll(Duration::from_millis(500)).await.unwrap();
        if messages.is_empty() {
            idle_polls += 1;
            continue;
        }
        idle_polls = 0;
        producer.begin_transaction().await.unwrap();
        for m in &messages {
            let value = m.value_str().to_uppercase();
            producer
                .enqueue(ProducerRecord::new("output", value).partition(m.partition))
                .await
                .unwrap();
        }
        let offsets = next_offsets(&messages);
        let metadata = consumer.group_metadata().unwrap();
        assert!(metadata.generation_id > 0, "{metadata:?}");
        producer
            .send_offsets_to_transaction(&offsets, &metadata)
            .await
            .unwrap();
        if round == abort_round {
            producer.abort_transaction().await.unwrap();
            // Redo: back to the first record of the aborted batch.
            for m in first_per_partition(&messages) {
                consumer.seek(&m.topic, m.partition, m.offset).unwrap();
            }
        } else {
            producer.commit_transaction().await.unwrap();
        }
        round += 1;
    }
    assert!(
        round > abort_round + 1,
        "the copy took {round} transactions"
    );
    consumer.close().await.unwrap();
}

fn next_offsets(messages: &[Message]) -> Vec<((String, i32), i64)> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in messages {
        next.insert((m.topic.clone(), m.partition), m.offset + 1);
    }
    next.into_iter().collect()
}

fn first_per_partition(messages: &[Message]) -> Vec<&Message> {
    let mut first: BTreeMap<i32, &Message> = BTreeMap::new();
    for m in messages {
        first.entry(m.partition).or_insert(m);
    }
    first.into_values().collect()
}

#[tokio::test]
async fn consume_transform_produce_copies_every_record_exactly_once() {
    let broker = broker!();
    let addr = &broker.addr;
    let admin = Admin::connect(addr).await.unwrap();
    admin.create_topic("input", 2).await.unwrap();
    admin.create_topic("output", 2).await.unwrap();
    let plain = Producer::connect(addr).await.unwrap();
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for p in 0..2 {
        for i in 0..40 {
            plain
                .send("input", format!("rec-{p}-{i}"), p)
                .await
                .unwrap();
            expected.entry(p).or_default().push(format!("REC-{p}-{i}"));
        }
    }
    copy(addr, "copy-group", 1).await;

    let seen = read_all(addr, "output", IsolationLevel::ReadCommitted).await;
    assert_eq!(
        seen, expected,
        "every input record copied exactly once, in order"
    );
    let group = admin.describe_group("copy-group").await.unwrap();
    for p in 0..2 {
        let committed = group
            .offsets
            .iter()
            .find(|o| o.partition == p)
            .and_then(|o| o.committed);
        assert_eq!(
            committed,
            Some(40),
            "the group's committed offset of input/{p}"
        );
    }
}

/// The `transactional_copy` example, which `cargo test` builds beside the tests.
fn copy_example() -> Option<std::path::PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let path = target.join("debug/examples").join(format!(
        "transactional_copy{}",
        std::env::consts::EXE_SUFFIX
    ));
    if !path.exists() {
        eprintln!(
            "SKIPPED: {} is not built (cargo build -p strom-client --examples)",
            path.display()
        );
        return None;
    }
    Some(path)
}

fn start_copy(example: &std::path::Path, addr: &str) -> std::process::Child {
    std::process::Command::new(example)
        .args([
            addr,
            "big-input",
            "big-output",
            "big-copy",
            "big-copier",
            "10",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start the transactional_copy example")
}

/// The records of `topic` a read_committed consumer can see now, over all partitions.
async fn committed_count(addr: &str, topic: &str) -> i64 {
    let mut c = Consumer::connect_with(addr, reader(IsolationLevel::ReadCommitted))
        .await
        .unwrap();
    c.assign_topic(topic).await.unwrap();
    // Every transaction ends with one marker per partition; an upper bound is enough here.
    c.end_offsets().await.unwrap().values().sum()
}

#[tokio::test]
async fn a_copy_killed_mid_way_and_restarted_still_copies_every_record_once() {
    let broker = broker!();
    let Some(example) = copy_example() else {
        return;
    };
    let addr = &broker.addr;
    let admin = Admin::connect(addr).await.unwrap();
    admin.create_topic("big-input", 2).await.unwrap();
    admin.create_topic("big-output", 2).await.unwrap();
    let plain = Producer::connect_with(
        addr,
        ProducerConfig {
            linger_ms: 5,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let per_partition = 600;
    let mut expected: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut deliveries = Vec::new();
    for p in 0..2 {
        for i in 0..per_partition {
            let record = ProducerRecord::new("big-input", format!("big-{p}-{i}")).partition(p);
            deliveries.push(plain.enqueue(record).await.unwrap());
            expected.entry(p).or_default().push(format!("BIG-{p}-{i}"));
        }
    }
    for d in deliveries {
        d.wait().await.unwrap();
    }

    let mut first = start_copy(&example, addr);
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    while committed_count(addr, "big-output").await < 200 {
        assert!(
            Instant::now() < deadline,
            "the first copier made no progress"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first copier stopped early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill().unwrap(); // SIGKILL, most likely inside a transaction
    first.wait().unwrap();
    let at_kill = committed_count(addr, "big-output").await;
    assert!(
        at_kill < 2 * per_partition as i64,
        "the copier finished before it was killed ({at_kill} offsets)"
    );

    let mut second = start_copy(&example, addr);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second copier did not finish");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "the second copier failed: {status}");

    let seen = read_all(addr, "big-output", IsolationLevel::ReadCommitted).await;
    assert_eq!(
        seen, expected,
        "every input record exactly once, in order, across the kill"
    );
    let group = admin.describe_group("big-copy").await.unwrap();
    for p in 0..2 {
        let committed = group
            .offsets
            .iter()
            .find(|o| o.partition == p)
            .and_then(|o| o.committed);
        assert_eq!(
            committed,
            Some(per_partition as i64),
            "committed offset of big-input/{p}"
        );
    }
}
