//! Producer and consumer throughput, the strom-client counterpart of librdkafka's
//! `rdkafka_performance` (`scripts/client-bench` runs both side by side).
//!
//! ```text
//! cargo build --release -p strom-client --example perf
//! target/release/examples/perf produce --bootstrap 127.0.0.1:9092 --topic t --size 100 \
//!     --count 1000000 --acks 1 --linger-ms 5 --batch-size 1000000
//! target/release/examples/perf consume --bootstrap 127.0.0.1:9092 --topic t --count 1000000
//! ```
//!
//! Prints one line, `RESULT mode=produce msgs=N bytes=N ms=N msgs_s=N mb_s=F`, with MB as
//! 10^6 bytes of payload. Produce time runs from the first `enqueue` to the last
//! acknowledgement, consume time from the first message received to the last one, as
//! `rdkafka_performance` counts them. `perf --help` lists every flag.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_client::{
    Acks, ClientError, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    ResponseError,
};

const USAGE: &str = "\
usage: perf produce|consume [flags]
  --bootstrap HOST:PORT    broker list (default 127.0.0.1:9092)
  --topic NAME             topic (default perf)
  --count N                messages to produce or consume (default 1000000)
  --partitions N           partitions: created with this many (produce), read (consume) (default 3)
produce:
  --size BYTES             payload size (default 100)
  --acks 0|1|all           (default 1)
  --linger-ms MS           (default 5, librdkafka's linger.ms)
  --batch-size BYTES       (default 1000000, as scripts/bench sets librdkafka's batch.size)
  --max-request-size BYTES (default 1048576)
  --max-in-flight N        requests in flight per broker (default 5)
  --buffer-memory BYTES    (default 1073741824, librdkafka's queue.buffering.max.kbytes here)
  --window N               deliveries awaited at most this far behind (default 1000000,
                           librdkafka's queue.buffering.max.messages here)
  --idempotence true|false (default false, as librdkafka's enable.idempotence)
consume:
  --fetch-max-wait-ms MS   (default 100)
  --partition-max-bytes B  (default 1048576)
  --fetch-max-bytes B      (default 52428800)
  --max-poll-records N     (default 500)";

struct Options {
    mode: String,
    bootstrap: String,
    topic: String,
    count: u64,
    partitions: i32,
    size: usize,
    acks: Acks,
    linger_ms: u64,
    batch_size: usize,
    max_request_size: usize,
    max_in_flight: usize,
    buffer_memory: usize,
    window: usize,
    idempotence: bool,
    fetch_max_wait_ms: i32,
    partition_max_bytes: i32,
    fetch_max_bytes: i32,
    max_poll_records: usize,
}

fn parse(args: Vec<String>) -> Result<Options, String> {
    let mut it = args.into_iter();
    let mode = it.next().ok_or("missing mode")?;
    if mode == "-h" || mode == "--help" {
        return Err(String::new());
    }
    if mode != "produce" && mode != "consume" {
        return Err(format!("unknown mode '{mode}'"));
    }
    let mut o = Options {
        mode,
        bootstrap: "127.0.0.1:9092".into(),
        topic: "perf".into(),
        count: 1_000_000,
        partitions: 3,
        size: 100,
        acks: Acks::Leader,
        linger_ms: 5,
        batch_size: 1_000_000,
        max_request_size: 1024 * 1024,
        max_in_flight: 5,
        buffer_memory: 1 << 30,
        window: 1_000_000,
        idempotence: false,
        fetch_max_wait_ms: 100,
        partition_max_bytes: 1024 * 1024,
        fetch_max_bytes: 50 * 1024 * 1024,
        max_poll_records: 500,
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--bootstrap" => o.bootstrap = value,
            "--topic" => o.topic = value,
            "--count" => o.count = value.parse().map_err(|e| bad(&e))?,
            "--partitions" => o.partitions = value.parse().map_err(|e| bad(&e))?,
            "--size" => o.size = value.parse().map_err(|e| bad(&e))?,
            "--acks" => o.acks = value.parse().map_err(|e| bad(&e))?,
            "--linger-ms" => o.linger_ms = value.parse().map_err(|e| bad(&e))?,
            "--batch-size" => o.batch_size = value.parse().map_err(|e| bad(&e))?,
            "--max-request-size" => o.max_request_size = value.parse().map_err(|e| bad(&e))?,
            "--max-in-flight" => o.max_in_flight = value.parse().map_err(|e| bad(&e))?,
            "--buffer-memory" => o.buffer_memory = value.parse().map_err(|e| bad(&e))?,
            "--window" => o.window = value.parse().map_err(|e| bad(&e))?,
            "--idempotence" => o.idempotence = value.parse().map_err(|e| bad(&e))?,
            "--fetch-max-wait-ms" => o.fetch_max_wait_ms = value.parse().map_err(|e| bad(&e))?,
            "--partition-max-bytes" => {
                o.partition_max_bytes = value.parse().map_err(|e| bad(&e))?
            }
            "--fetch-max-bytes" => o.fetch_max_bytes = value.parse().map_err(|e| bad(&e))?,
            "--max-poll-records" => o.max_poll_records = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

/// Prints the result line.
fn report(mode: &str, msgs: u64, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "RESULT mode={mode} msgs={msgs} bytes={bytes} ms={} msgs_s={:.0} mb_s={:.2}",
        elapsed.as_millis(),
        msgs as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

async fn produce(o: &Options) -> Result<(), ClientError> {
    let config = ProducerConfig {
        acks: o.acks,
        linger_ms: o.linger_ms,
        batch_size: o.batch_size,
        max_request_size: o.max_request_size,
        max_in_flight_requests: o.max_in_flight,
        buffer_memory: o.buffer_memory,
        enable_idempotence: o.idempotence,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect_with(&o.bootstrap, config).await?;
    match producer.create_topic(&o.topic, o.partitions).await {
        Err(e) if e.code() == Some(ResponseError::TopicAlreadyExists) => {}
        other => other?,
    }
    let payload = Bytes::from(vec![b'x'; o.size]);
    // Answers are awaited in order, at most `window` behind the newest record, so the
    // producer's own buffer, not this loop, decides how much is in flight.
    let mut deliveries = VecDeque::with_capacity(o.window.min(1 << 20));
    let started = Instant::now();
    for _ in 0..o.count {
        let record = ProducerRecord::new(o.topic.as_str(), payload.clone());
        deliveries.push_back(producer.enqueue(record).await?);
        if deliveries.len() >= o.window.max(1) {
            if let Some(d) = deliveries.pop_front() {
                d.wait().await?;
            }
        }
    }
    while let Some(d) = deliveries.pop_front() {
        d.wait().await?;
    }
    let elapsed = started.elapsed();
    report("produce", o.count, o.count * o.size as u64, elapsed);
    producer.close().await
}

async fn consume(o: &Options) -> Result<(), ClientError> {
    let config = ConsumerConfig {
        fetch_max_wait_ms: o.fetch_max_wait_ms,
        partition_max_bytes: o.partition_max_bytes,
        fetch_max_bytes: o.fetch_max_bytes,
        max_poll_records: o.max_poll_records,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect_with(&o.bootstrap, config).await?;
    for p in 0..o.partitions {
        consumer.assign(&o.topic, p).await?;
    }
    let (mut msgs, mut bytes) = (0u64, 0u64);
    let mut started = None;
    let mut last_data = Instant::now();
    while msgs < o.count {
        let batch = consumer.poll(Duration::from_secs(1)).await?;
        if batch.is_empty() {
            if last_data.elapsed() > Duration::from_secs(30) {
                return Err(ClientError::Invalid(format!(
                    "no message for 30 s after {msgs} of {}",
                    o.count
                )));
            }
            continue;
        }
        started.get_or_insert_with(Instant::now);
        last_data = Instant::now();
        msgs += batch.len() as u64;
        bytes += batch
            .iter()
            .map(|m| m.value.as_ref().map_or(0, |v| v.len() as u64))
            .sum::<u64>();
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    report("consume", msgs, bytes, elapsed);
    consumer.close().await
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match parse(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("perf: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = if o.mode == "produce" {
        produce(&o).await
    } else {
        consume(&o).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perf: {e}");
            ExitCode::FAILURE
        }
    }
}
