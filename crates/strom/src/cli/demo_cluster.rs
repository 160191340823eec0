//! `strom demo --cluster`: the three-node story, printing what happens.
//!
//! 1. Start three `strom serve` child processes that form one cluster on 127.0.0.1.
//! 2. Create `demo-topic` with 3 partitions, each replicated to all three nodes.
//! 3. Produce (acks=all, idempotent) and consume in a group at the same time.
//! 4. Kill the leader of partition 0 with SIGKILL while both run; measure how long until
//!    another node leads it and until the producer's next acknowledgement.
//! 5. Stop producing; the group reads everything that was acknowledged.
//! 6. Start the killed node again and watch it catch up and rejoin every ISR.
//!
//! Every check that fails makes the command exit non-zero with what was wrong.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context};
use strom_client::{Admin, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer};
use tokio::time::Instant;

use super::demo::{free_port, step, BrokerProcess};

const TOPIC: &str = "demo-topic";
const GROUP: &str = "demo-cluster-group";
const PARTITIONS: i32 = 3;
const NODES: usize = 3;
/// Short timings so a failover takes seconds (Kafka's defaults take tens of seconds).
const SETTINGS: [&str; 5] = [
    "broker.session.timeout.ms=2000",
    "broker.heartbeat.interval.ms=200",
    "controller.quorum.election.timeout.ms=500",
    "min.insync.replicas=2",
    "group.initial.rebalance.delay.ms=500",
];
/// How long the producer runs before and after the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(2);
const LOAD_AFTER_KILL: Duration = Duration::from_secs(4);
/// Bounds on each wait, so a broken cluster fails the demo instead of hanging it.
const CLUSTER_READY_TIMEOUT: Duration = Duration::from_secs(30);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What the producer was told is stored: (partition, offset) -> value.
type Acked = BTreeMap<(i32, i64), String>;

pub async fn demo(dir: &Path) -> anyhow::Result<()> {
    step(1, "Starting three nodes that form one cluster");
    let mut nodes = start_nodes(dir).await?;
    let all: String = nodes
        .iter()
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");

    step(
        2,
        &format!("Creating {TOPIC}: {PARTITIONS} partitions, each on all {NODES} nodes"),
    );
    let admin = Admin::connect(&all).await?;
    create_replicated_topic(&admin).await?;
    let leaders = show_partitions(&admin).await?;

    step(
        3,
        "Producing (acks=all, idempotent) and consuming in a group at the same time",
    );
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let ack_times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let producing = Arc::new(AtomicBool::new(true));
    let producer = tokio::spawn(produce(
        all.clone(),
        acked.clone(),
        ack_times.clone(),
        stop.clone(),
    ));
    let read: Arc<Mutex<BTreeMap<(i32, i64), String>>> = Arc::default();
    let reader = tokio::spawn(consume(
        all.clone(),
        read.clone(),
        acked.clone(),
        producing.clone(),
    ));
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    println!(
        "    {} messages acknowledged, {} read so far",
        acked.lock().expect("acked").len(),
        read.lock().expect("read").len()
    );

    let victim = leaders[0];
    step(
        4,
        &format!("Killing node {victim}, the leader of partition 0, with SIGKILL"),
    );
    let killed_at = Instant::now();
    let acked_before = acked.lock().expect("acked").len();
    nodes[victim as usize - 1].kill().await?;
    println!(
        "    killed node {victim} (pid {})",
        nodes[victim as usize - 1].last_pid
    );
    let survivors: String = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i + 1 != victim as usize)
        .map(|(_, n)| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    let new_leader = wait_new_leader(&survivors, victim).await?;
    println!(
        "    node {new_leader} leads partition 0 after {} ms",
        killed_at.elapsed().as_millis()
    );
    tokio::time::sleep(LOAD_AFTER_KILL).await;
    let after_kill = acked.lock().expect("acked").len() - acked_before;
    let first_ack = ack_times
        .lock()
        .expect("ack times")
        .iter()
        .find(|t| **t > killed_at)
        .map(|t| t.duration_since(killed_at));
    let Some(first_ack) = first_ack else {
        return Err(anyhow!(
            "the producer got no acknowledgement in the {LOAD_AFTER_KILL:?} after the kill"
        ));
    };
    println!(
        "    the producer went on: its first acknowledgement came {} ms after the kill, {after_kill} since",
        first_ack.as_millis()
    );

    step(
        5,
        "Stopping the producer; the group reads everything acknowledged",
    );
    stop.notify_one();
    let producer_errors = producer.await.context("the producer task panicked")??;
    producing.store(false, Ordering::Release);
    let total = acked.lock().expect("acked").len();
    println!(
        "    {total} messages acknowledged in all ({producer_errors} sends failed and were not acknowledged)"
    );
    let (redelivered, lost) = reader.await.context("the consumer task panicked")??;
    ensure!(
        lost.is_empty(),
        "{} acknowledged messages were never read, e.g. (partition, offset) {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let read_now = read.lock().expect("read").clone();
    for (k, v) in acked.lock().expect("acked").iter() {
        ensure!(
            read_now.get(k) == Some(v),
            "partition {} offset {} reads {:?}, but {v:?} was acknowledged there",
            k.0,
            k.1,
            read_now.get(k)
        );
    }
    println!(
        "    the group read all {total} acknowledged messages, each at its offset ({redelivered} read twice after the group moved: at-least-once, as Kafka's consumers are)"
    );

    step(6, &format!("Starting node {victim} again"));
    nodes[victim as usize - 1].start().await?;
    let rejoined_at = Instant::now();
    wait_full_isr(&admin).await?;
    println!(
        "    node {victim} caught up and is in every partition's ISR again after {} ms",
        rejoined_at.elapsed().as_millis()
    );
    show_partitions(&admin).await?;
    for node in &mut nodes {
        node.kill().await?;
    }
    println!();
    println!(
        "demo passed: a leader was killed under acks=all load, another node took over, and none of the {total} acknowledged messages was lost"
    );
    Ok(())
}

async fn start_nodes(dir: &Path) -> anyhow::Result<Vec<BrokerProcess>> {
    let controller_ports: Vec<u16> = (0..NODES).map(|_| free_port()).collect::<Result<_, _>>()?;
    let voters = controller_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, port) in controller_ports.iter().enumerate() {
        let mut settings: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
        settings.push(format!("node.id={}", i + 1));
        settings.push(format!("controller.listen=127.0.0.1:{port}"));
        settings.push(format!("controller.quorum.voters={voters}"));
        settings.push("http.listen=".into());
        let mut node = BrokerProcess::named(dir, &format!("-{}", i + 1), free_port()?, settings)?;
        node.start().await?;
        println!(
            "    node {}: listening on {} (pid {})",
            i + 1,
            node.addr,
            node.pid()
        );
        nodes.push(node);
    }
    println!("    $ {}", nodes[0].command_line());
    Ok(nodes)
}

/// CreateTopics with RF 3 is refused until all three brokers registered: retry until then.
async fn create_replicated_topic(admin: &Admin) -> anyhow::Result<()> {
    let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
    loop {
        let topic = NewTopic {
            replication_factor: NODES as i16,
            ..NewTopic::new(TOPIC, PARTITIONS)
        };
        match admin.create_topics(vec![topic]).await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "the cluster is not ready yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("creating the replicated topic"),
        }
    }
    wait_full_isr(admin).await
}

/// Prints each partition's leader, replicas and ISR; returns the leaders.
async fn show_partitions(admin: &Admin) -> anyhow::Result<Vec<i32>> {
    let info = admin.client().refresh_topic(TOPIC).await?;
    let mut leaders = Vec::new();
    for p in &info.partitions {
        println!(
            "    partition {}: leader node {}, replicas {:?}, in sync {:?}",
            p.partition, p.leader, p.replicas, p.isr
        );
        leaders.push(p.leader);
    }
    Ok(leaders)
}

async fn wait_full_isr(admin: &Admin) -> anyhow::Result<()> {
    let deadline = Instant::now() + CLUSTER_READY_TIMEOUT;
    loop {
        if let Ok(info) = admin.client().refresh_topic(TOPIC).await {
            let whole = info.partitions.len() == PARTITIONS as usize
                && info
                    .partitions
                    .iter()
                    .all(|p| p.leader > 0 && p.isr.len() == NODES);
            if whole {
                return Ok(());
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the partitions did not get all {NODES} replicas in sync within {CLUSTER_READY_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_new_leader(survivors: &str, victim: i32) -> anyhow::Result<i32> {
    let admin = Admin::connect(survivors).await?;
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    loop {
        if let Ok(info) = admin.client().refresh_topic(TOPIC).await {
            if let Some(p) = info.partitions.first() {
                if p.leader > 0 && p.leader != victim {
                    return Ok(p.leader);
                }
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no other node led partition 0 within {FAILOVER_TIMEOUT:?} of the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends numbered messages round-robin over the partitions, each awaited (so every recorded
/// offset was acknowledged), until told to stop. Returns how many sends failed.
async fn produce(
    bootstrap: String,
    acked: Arc<Mutex<Acked>>,
    ack_times: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<usize> {
    let producer = Producer::connect(&bootstrap).await?;
    let mut failed = 0;
    let mut n: u64 = 0;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let value = format!("message-{n:06}");
        let partition = (n % PARTITIONS as u64) as i32;
        tokio::select! {
            _ = &mut stopped => break,
            sent = producer.send(TOPIC, value.clone(), partition) => match sent {
                Ok(offset) => {
                    acked.lock().expect("acked").insert((partition, offset), value);
                    ack_times.lock().expect("ack times").push(Instant::now());
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "a send failed");
                }
            },
        }
        n += 1;
    }
    producer.close().await?;
    Ok(failed)
}

/// One group member reading and committing until, once the producer stopped, it has read
/// everything acknowledged. Returns (records read more than once, acknowledged records
/// never read).
async fn consume(
    bootstrap: String,
    read: Arc<Mutex<BTreeMap<(i32, i64), String>>>,
    acked: Arc<Mutex<Acked>>,
    producing: Arc<AtomicBool>,
) -> anyhow::Result<(usize, Vec<(i32, i64)>)> {
    let config = ConsumerConfig {
        auto_offset_reset: OffsetReset::Earliest,
        session_timeout_ms: 10_000,
        ..ConsumerConfig::with_group(GROUP)
    };
    let mut consumer = Consumer::connect_with(&bootstrap, config).await?;
    consumer.subscribe(&[TOPIC]).await?;
    let mut redelivered = 0;
    let mut deadline: Option<Instant> = None;
    loop {
        let messages = match consumer.poll(Duration::from_millis(300)).await {
            Ok(m) => m,
            Err(e) => {
                // A coordinator or leader that moved: the next poll finds the new one.
                tracing::debug!(error = %e, "poll failed; polling again");
                Vec::new()
            }
        };
        if !messages.is_empty() {
            {
                let mut read = read.lock().expect("read");
                for m in &messages {
                    if read
                        .insert((m.partition, m.offset), m.value_str().into_owned())
                        .is_some()
                    {
                        redelivered += 1;
                    }
                }
            }
            if let Err(e) = consumer.commit().await {
                tracing::debug!(error = %e, "commit failed; the next one covers it");
            }
        }
        if producing.load(Ordering::Acquire) {
            continue;
        }
        // The producer stopped: done once every acknowledged record was read.
        let missing: Vec<(i32, i64)> = {
            let read = read.lock().expect("read");
            acked
                .lock()
                .expect("acked")
                .keys()
                .filter(|k| !read.contains_key(k))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            let _ = consumer.commit().await;
            consumer.close().await?;
            return Ok((redelivered, missing));
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + READ_TIMEOUT);
        if Instant::now() >= deadline {
            return Ok((redelivered, missing));
        }
    }
}
