//! `strom produce TOPIC`: one message per line of stdin.

use std::collections::VecDeque;

use anyhow::{Context, Result};
use strom_client::producer::Delivery;
use strom_client::{Acks, CompressionType, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::common::{client_config, Bootstrap};

/// How many messages may be sent but not yet acknowledged before reading more of stdin.
const IN_FLIGHT_MESSAGES_MAX: usize = 10_000;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    echo 'Hello, Kafka!' | strom produce demo-topic --partition 0\n  \
    printf 'user-1:clicked\\nuser-2:left\\n' | strom produce demo-topic --key-separator :")]
pub struct ProduceArgs {
    /// Topic to write to.
    pub topic: String,
    /// Partition to write to (default: by key hash, or round-robin without a key).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Split each line at the first SEP: the text before is the key, after is the value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression: CompressionType,
    /// How long to wait for more lines before sending a batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<CompressionType, String> {
    s.parse()
}

pub async fn run(args: ProduceArgs) -> Result<()> {
    let config = ProducerConfig {
        client: client_config(&args.bootstrap)?,
        acks: args.acks,
        linger_ms: args.linger_ms,
        compression: args.compression,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect_with(&args.bootstrap.bootstrap, config).await?;
    // Fail before reading stdin if the topic or partition does not exist.
    match args.partition {
        Some(p) => {
            producer.client().leader(&args.topic, p).await?;
        }
        None => {
            producer.client().topic(&args.topic).await?;
        }
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut in_flight: VecDeque<Delivery> = VecDeque::new();
    let mut line_no = 0u64;
    while let Some(line) = lines.next_line().await.context("cannot read stdin")? {
        line_no += 1;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line.to_string()),
            },
            None => (None, line.to_string()),
        };
        let mut record = ProducerRecord::new(args.topic.clone(), value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = args.partition {
            record = record.partition(p);
        }
        in_flight.push_back(
            producer
                .enqueue(record)
                .await
                .with_context(|| format!("cannot send line {line_no}"))?,
        );
        if in_flight.len() >= IN_FLIGHT_MESSAGES_MAX {
            if let Some(d) = in_flight.pop_front() {
                d.wait().await?;
            }
        }
    }
    producer.flush().await?;
    for d in in_flight {
        d.wait().await?;
    }
    producer.close().await?;
    Ok(())
}
