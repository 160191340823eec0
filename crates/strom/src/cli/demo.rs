//! `strom demo`: the seed's demonstration, end to end, printing what happens.
//!
//! 1. Start a broker (this same binary, `strom serve`, as a child process) on a free port with a
//!    temporary data directory.
//! 2. Create `demo-topic` with 3 partitions and do the seed's tour: send "Hello, Kafka!" to
//!    partition 0 and read it back.
//! 3. Produce in parallel: one producer per partition, each on its own connection.
//! 4. Consume in parallel: a consumer group whose members split the partitions; show each
//!    member's share and offsets, and the group's committed offsets.
//! 5. Kill the broker with SIGKILL (as a crash would), start it again on the same data dir,
//!    and check with a fresh consumer that every acknowledged message is still there, and that
//!    the group's committed offsets survived too.
//!
//! Every check that fails makes the command exit non-zero with a message saying what was
//! wrong. The broker runs as a child process so that the restart is a real one: nothing
//! survives in memory, only what reached the disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context};
use strom_client::{Admin, Consumer, ConsumerConfig, Producer, ProducerRecord};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const TOPIC: &str = "demo-topic";
const GROUP: &str = "demo-group";
const PARTITIONS: i32 = 3;
const HELLO: &str = "Hello, Kafka!";
/// A broker that needs longer than this to listen is broken.
const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The consumer group must have read everything within this.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the first rebalance waits for more members, so that the consumers, started
/// together, join one generation and split the partitions instead of the first taking all.
const INITIAL_REBALANCE_DELAY_MS: u32 = 1500;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Messages each producer sends (one producer per partition).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    messages: u32,
    /// Members of the consumer group.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    consumers: u32,
    /// Keep the broker's data directory and log (the path is printed) instead of deleting them.
    #[arg(long)]
    keep_data: bool,
    /// The three-node story instead: produce and consume on a replicated topic, kill -9 the
    /// partition leader, keep going, and check that nothing acknowledged was lost.
    #[arg(long)]
    cluster: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("strom-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let result = if args.cluster {
        super::demo_cluster::demo(dir.path()).await
    } else {
        demo(&args, dir.path()).await
    };
    if args.keep_data || result.is_err() {
        let kept = dir.keep();
        println!();
        println!("Data directory and broker log kept in {}", kept.display());
    }
    result
}

/// Messages the producers were told are stored: (partition, offset) -> value.
type Produced = BTreeMap<(i32, i64), String>;

async fn demo(args: &DemoArgs, dir: &Path) -> anyhow::Result<()> {
    let mut broker = BrokerProcess::new(dir)?;
    step(1, "Starting a broker");
    println!("    $ {}", broker.command_line());
    broker.start().await?;
    println!("    listening on {} (pid {})", broker.addr, broker.pid());

    step(
        2,
        &format!("Creating {TOPIC} with {PARTITIONS} partitions; the seed's tour"),
    );
    let mut produced = Produced::new();
    let producer = Producer::connect(&broker.addr).await?;
    producer.create_topic(TOPIC, PARTITIONS).await?;
    println!("    created {TOPIC}");
    let offset = producer.send(TOPIC, HELLO, 0).await?;
    println!("    producer.send({TOPIC:?}, {HELLO:?}, partition 0) -> offset {offset}");
    produced.insert((0, offset), HELLO.to_string());
    producer.close().await?;
    let mut consumer = Consumer::connect(&broker.addr).await?;
    consumer.assign(TOPIC, 0).await?;
    let read = poll_until(&mut consumer, 1, Duration::from_secs(10)).await?;
    let hello = read
        .iter()
        .find(|m| m.offset == offset)
        .ok_or_else(|| anyhow!("the consumer did not read back offset {offset} of partition 0"))?;
    ensure!(
        hello.value_str() == HELLO,
        "read back {:?}, expected {HELLO:?}",
        hello.value_str()
    );
    println!(
        "    consumer.poll() -> offset {}: {:?}",
        hello.offset,
        hello.value_str()
    );

    step(
        3,
        &format!(
            "Producing in parallel: {PARTITIONS} producers, one per partition, {} messages each",
            args.messages
        ),
    );
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..PARTITIONS {
        let addr = broker.addr.clone();
        let n = args.messages;
        tasks.spawn(async move {
            produce_partition(&addr, p, n)
                .await
                .map(|r| (p, r))
                .with_context(|| format!("producer {p}"))
        });
    }
    let mut shares = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (p, records) = joined.context("a producer task panicked")??;
        shares.insert(p, records);
    }
    for (p, records) in &shares {
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        ensure!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "producer {p}'s offsets in partition {p} are not consecutive: {offsets:?}"
        );
        println!(
            "    producer {p} -> partition {p}: {} messages at offsets {}",
            records.len(),
            span(&offsets)
        );
        for (o, v) in records {
            ensure!(
                produced.insert((*p, *o), v.clone()).is_none(),
                "offset {o} of partition {p} was given to two messages"
            );
        }
    }
    println!(
        "    {} messages acknowledged (acks=all: on disk) in {} ms",
        produced.len(),
        started.elapsed().as_millis()
    );

    step(
        4,
        &format!(
            "Consuming in parallel: group {GROUP} with {} members",
            args.consumers
        ),
    );
    let group_result = consume_as_group(&broker.addr, args.consumers, &produced).await?;
    for (i, share) in group_result.iter().enumerate() {
        let parts: Vec<String> = share
            .iter()
            .map(|(p, offsets)| format!("partition {p} offsets {}", span(offsets)))
            .collect();
        let count: usize = share.values().map(Vec::len).sum();
        println!(
            "    consumer {i}: {count} messages{}{}",
            if parts.is_empty() { "" } else { " from " },
            parts.join(", ")
        );
    }
    check_group_shares(&group_result, &produced, args.consumers)?;
    let committed = committed_offsets(&broker.addr).await?;
    println!(
        "    committed offsets of {GROUP}: {}",
        show_committed(&committed)
    );
    check_committed(&committed, &produced)?;

    step(
        5,
        "Restarting the broker: SIGKILL (as a crash would), then start it on the same data dir",
    );
    broker.kill().await?;
    println!("    killed pid {}", broker.last_pid);
    broker.start().await?;
    println!(
        "    listening again on {} (pid {})",
        broker.addr,
        broker.pid()
    );

    step(6, "Checking that every message is still there");
    let found = read_everything(&broker.addr, &produced).await?;
    for p in 0..PARTITIONS {
        let want = produced.keys().filter(|(q, _)| *q == p).count();
        let got = found.keys().filter(|(q, _)| *q == p).count();
        println!("    partition {p}: {got} of {want} messages");
    }
    let missing: Vec<_> = produced.keys().filter(|k| !found.contains_key(k)).collect();
    ensure!(
        missing.is_empty(),
        "{} acknowledged messages are missing after the restart, e.g. (partition, offset) {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    for (k, v) in &produced {
        ensure!(
            found.get(k) == Some(v),
            "partition {} offset {} reads {:?} after the restart, expected {v:?}",
            k.0,
            k.1,
            found.get(k)
        );
    }
    let committed = committed_offsets(&broker.addr).await?;
    println!(
        "    committed offsets of {GROUP}: {}",
        show_committed(&committed)
    );
    check_committed(&committed, &produced)?;
    broker.kill().await?;

    println!();
    println!(
        "demo passed: {} messages (the tour's 1 and {PARTITIONS} producers x {}) were consumed once by a group of {}, and all of them and the group's offsets survived a broker crash",
        produced.len(),
        args.messages,
        args.consumers
    );
    Ok(())
}

pub(super) fn step(n: u32, what: &str) {
    println!();
    println!("[{n}/6] {what}");
}

/// `a..=b` for a consecutive run, else the count of distinct offsets with first and last.
fn span(offsets: &[i64]) -> String {
    match (offsets.iter().min(), offsets.iter().max()) {
        (Some(a), Some(b)) if (b - a + 1) as usize == offsets.len() => format!("{a}..={b}"),
        (Some(a), Some(b)) => format!("{a}..={b} ({} of them)", offsets.len()),
        _ => "none".to_string(),
    }
}

/// One producer writes `n` messages to partition `p`, batching them (enqueue, then wait for
/// every acknowledgement). Returns (offset, value) in order.
async fn produce_partition(addr: &str, p: i32, n: u32) -> anyhow::Result<Vec<(i64, String)>> {
    let producer = Producer::connect(addr).await?;
    let mut deliveries = Vec::with_capacity(n as usize);
    for j in 0..n {
        let value = format!("producer-{p} message-{j}");
        let record = ProducerRecord::new(TOPIC, value.clone())
            .partition(p)
            .key(format!("key-{p}-{j}"));
        deliveries.push((value, producer.enqueue(record).await?));
    }
    let mut out = Vec::with_capacity(deliveries.len());
    for (value, d) in deliveries {
        let meta = d
            .wait()
            .await
            .with_context(|| format!("producer {p}: sending {value:?}"))?;
        ensure!(
            meta.partition == p,
            "producer {p}: {value:?} landed in partition {}",
            meta.partition
        );
        out.push((meta.offset, value));
    }
    producer.close().await?;
    Ok(out)
}

/// Per member: partition -> offsets it read.
type Share = BTreeMap<i32, Vec<i64>>;

/// Runs the group's members in parallel until together they have read every produced message,
/// committing after each poll. Members leave only once all are done, so no rebalance happens
/// while anyone still reads.
async fn consume_as_group(
    addr: &str,
    members: u32,
    produced: &Produced,
) -> anyhow::Result<Vec<Share>> {
    let seen: Arc<Mutex<BTreeSet<(i32, i64)>>> = Arc::default();
    let total = produced.len();
    let all_done = Arc::new(tokio::sync::Barrier::new(members as usize));
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..members {
        let addr = addr.to_string();
        let seen = seen.clone();
        let all_done = all_done.clone();
        tasks.spawn(async move {
            let config = ConsumerConfig {
                session_timeout_ms: 10_000,
                ..ConsumerConfig::with_group(GROUP)
            };
            let mut consumer = Consumer::connect_with(&addr, config)
                .await
                .with_context(|| format!("consumer {i}: connecting"))?;
            consumer
                .subscribe(&[TOPIC])
                .await
                .with_context(|| format!("consumer {i}: subscribing to {TOPIC}"))?;
            let mut share = Share::new();
            while seen.lock().expect("seen lock").len() < total {
                ensure!(
                    Instant::now() < deadline,
                    "consumer {i}: the group did not read all {total} messages within {CONSUME_TIMEOUT:?}"
                );
                let messages = consumer
                    .poll(Duration::from_millis(300))
                    .await
                    .with_context(|| format!("consumer {i}: polling"))?;
                if messages.is_empty() {
                    continue;
                }
                {
                    let mut seen = seen.lock().expect("seen lock");
                    for m in &messages {
                        share.entry(m.partition).or_default().push(m.offset);
                        seen.insert((m.partition, m.offset));
                    }
                }
                if let Err(e) = consumer.commit().await {
                    // A rebalance in progress refuses commits; the next poll rejoins and the
                    // next commit covers these offsets too.
                    tracing::warn!(consumer = i, error = %e, "commit failed; retrying after the next poll");
                }
            }
            consumer.commit().await.with_context(|| format!("consumer {i}: final commit"))?;
            all_done.wait().await;
            consumer.close().await?;
            anyhow::Ok((i, share))
        });
    }
    let mut shares = vec![Share::new(); members as usize];
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.context("a consumer task panicked").and_then(|r| r) {
            Ok((i, share)) => shares[i as usize] = share,
            Err(e) => {
                // The others would wait for the failed member at the barrier forever.
                tasks.abort_all();
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(shares),
    }
}

/// The group must have read every message, each exactly once, with the partitions split
/// between its members (each partition read by one member).
fn check_group_shares(shares: &[Share], produced: &Produced, members: u32) -> anyhow::Result<()> {
    let mut read: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for share in shares {
        for (p, offsets) in share {
            for o in offsets {
                *read.entry((*p, *o)).or_default() += 1;
            }
        }
    }
    let missing = produced.keys().filter(|k| !read.contains_key(k)).count();
    ensure!(
        missing == 0,
        "the group did not read {missing} of the produced messages"
    );
    let twice = read.values().filter(|&&n| n > 1).count();
    ensure!(
        twice == 0,
        "{twice} messages were delivered to more than one member of the group"
    );
    for p in 0..PARTITIONS {
        let readers = shares.iter().filter(|s| s.contains_key(&p)).count();
        ensure!(
            readers == 1,
            "partition {p} was read by {readers} members, expected exactly one"
        );
    }
    let busy = shares.iter().filter(|s| !s.is_empty()).count();
    let expected = (members as usize).min(PARTITIONS as usize);
    ensure!(
        busy == expected,
        "the group did not split the partitions: {busy} of {members} members read messages, expected {expected}"
    );
    println!("    every message read exactly once; each partition by one member");
    Ok(())
}

async fn committed_offsets(addr: &str) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
    let admin = Admin::connect(addr).await?;
    let group = admin.describe_group(GROUP).await?;
    Ok(group
        .offsets
        .into_iter()
        .filter(|o| o.topic == TOPIC)
        .map(|o| (o.partition, o.committed))
        .collect())
}

fn show_committed(committed: &BTreeMap<i32, Option<i64>>) -> String {
    committed
        .iter()
        .map(|(p, o)| match o {
            Some(o) => format!("partition {p} = {o}"),
            None => format!("partition {p} = none"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The group's committed offset of each partition is its end: the next offset to read.
fn check_committed(
    committed: &BTreeMap<i32, Option<i64>>,
    produced: &Produced,
) -> anyhow::Result<()> {
    for p in 0..PARTITIONS {
        let end = produced
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| o + 1)
            .max()
            .unwrap_or(0);
        let got = committed.get(&p).copied().flatten();
        ensure!(
            got == Some(end),
            "group {GROUP} has committed offset {got:?} for partition {p}, expected {end} (everything read)"
        );
    }
    Ok(())
}

/// Reads every partition from the beginning with a fresh consumer (manual assignment, no
/// group) up to the offsets produced.
async fn read_everything(
    addr: &str,
    produced: &Produced,
) -> anyhow::Result<BTreeMap<(i32, i64), String>> {
    let mut consumer = Consumer::connect(addr).await?;
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        consumer.assign(TOPIC, p).await?;
        consumer.seek(TOPIC, p, 0)?;
        let end = produced
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| o + 1)
            .max()
            .unwrap_or(0);
        ends.insert(p, end);
    }
    let mut found = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ends
        .iter()
        .any(|(p, end)| consumer.position(TOPIC, *p).unwrap_or(0) < *end)
    {
        if Instant::now() >= deadline {
            break;
        }
        for m in consumer.poll(Duration::from_millis(500)).await? {
            found.insert((m.partition, m.offset), m.value_str().into_owned());
        }
    }
    Ok(found)
}

/// Polls until at least `n` messages arrived or `timeout` passed.
async fn poll_until(
    consumer: &mut Consumer,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<strom_client::Message>> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < deadline {
        out.extend(consumer.poll(Duration::from_millis(500)).await?);
    }
    Ok(out)
}

/// A free port on 127.0.0.1.
pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port())
}

/// `strom serve` as a child process on a fixed port and data dir, so it can be restarted.
pub(super) struct BrokerProcess {
    binary: PathBuf,
    pub(super) addr: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Settings beyond the listener and data dir, as `key=value`.
    settings: Vec<String>,
    child: Option<Child>,
    pub(super) last_pid: u32,
}

impl BrokerProcess {
    fn new(dir: &Path) -> anyhow::Result<BrokerProcess> {
        let settings = vec![format!(
            "group.initial.rebalance.delay.ms={INITIAL_REBALANCE_DELAY_MS}"
        )];
        Self::named(dir, "", free_port()?, settings)
    }

    /// A broker with its data dir and log named after `name` inside `dir`.
    pub(super) fn named(
        dir: &Path,
        name: &str,
        port: u16,
        settings: Vec<String>,
    ) -> anyhow::Result<BrokerProcess> {
        let binary = std::env::current_exe().context("cannot find the strom binary itself")?;
        Ok(BrokerProcess {
            binary,
            addr: format!("127.0.0.1:{port}"),
            data_dir: dir.join(format!("data{name}")),
            log_path: dir.join(format!("broker{name}.log")),
            settings,
            child: None,
            last_pid: 0,
        })
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".into(),
            "--listen".into(),
            self.addr.clone(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
        ];
        for s in &self.settings {
            args.push("--set".into());
            args.push(s.clone());
        }
        args
    }

    pub(super) fn command_line(&self) -> String {
        format!("strom {}", self.args().join(" "))
    }

    pub(super) fn pid(&self) -> u32 {
        self.last_pid
    }

    pub(super) async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open {}", self.log_path.display()))?;
        let mut child = Command::new(&self.binary)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.last_pid = child.id().unwrap_or(0);
        let deadline = Instant::now() + BROKER_START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the broker exited during startup ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if tokio::net::TcpStream::connect(&self.addr).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the broker did not listen on {} within {BROKER_START_TIMEOUT:?}; its log:\n{}",
                    self.addr,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and wait for the process to be gone.
    pub(super) async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("cannot kill the broker")?;
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
