//! `strom produce TOPIC`: one message per line of stdin.

use std::collections::VecDeque;

use anyhow::{bail, Context, Result};
use strom_client::producer::Delivery;
use strom_client::{Acks, CompressionType, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::common::{client_config_from, flag_or_property, Bootstrap, Properties};
use super::produce_txn::{Transactions, TxnSettings};

/// How many messages may be sent but not yet acknowledged before reading more of stdin.
const IN_FLIGHT_MESSAGES_MAX: usize = 10_000;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    echo 'Hello, Kafka!' | strom produce demo-topic --partition 0\n  \
    printf 'user-1:clicked\\nuser-2:left\\n' | strom produce demo-topic --key-separator :\n  \
    strom produce demo-topic --transactional-id loader < lines.txt")]
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
    /// Write the input in transactions of this transactional id: read_committed consumers
    /// see it only once committed, and nothing of it if it fails (or is interrupted) before
    /// the end. A later producer with the same id aborts what this one left open. Same as
    /// `-X transactional.id=ID`.
    #[arg(long, value_name = "ID")]
    pub transactional_id: Option<String>,
    /// With a transactional id: commit every N records instead of the whole input at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub transaction_size: Option<u64>,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<CompressionType, String> {
    s.parse()
}

/// The transaction settings from the flags and `-X`, which they are taken out of.
fn txn_settings(args: &ProduceArgs, properties: &mut Properties) -> Result<Option<TxnSettings>> {
    let transactional_id = flag_or_property(
        args.transactional_id.clone(),
        "--transactional-id",
        properties,
        "transactional.id",
    )?;
    let timeout_ms = properties
        .take("transaction.timeout.ms")
        .map(|ms| ms.parse::<i32>())
        .transpose()
        .context("property transaction.timeout.ms")?;
    let Some(transactional_id) = transactional_id.filter(|id| !id.is_empty()) else {
        if args.transaction_size.is_some() || timeout_ms.is_some() {
            bail!("--transaction-size and transaction.timeout.ms need --transactional-id");
        }
        return Ok(None);
    };
    if args.acks != Acks::All {
        bail!("--transactional-id needs --acks all (transactions are idempotent)");
    }
    Ok(Some(TxnSettings {
        transactional_id,
        size: args.transaction_size,
        timeout_ms,
    }))
}

pub async fn run(args: ProduceArgs) -> Result<()> {
    let mut properties = args.bootstrap.properties()?;
    let txn = txn_settings(&args, &mut properties)?;
    let defaults = ProducerConfig::default();
    let config = ProducerConfig {
        client: client_config_from(&properties)?,
        acks: args.acks,
        linger_ms: args.linger_ms,
        compression: args.compression,
        transactional_id: txn.as_ref().map(|t| t.transactional_id.clone()),
        transaction_timeout_ms: txn
            .as_ref()
            .and_then(|t| t.timeout_ms)
            .unwrap_or(defaults.transaction_timeout_ms),
        ..defaults
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
    let mut transactions = match &txn {
        Some(settings) => Some(Transactions::init(&producer, settings).await?),
        None => None,
    };
    let mut in_flight: VecDeque<Delivery> = VecDeque::new();
    let mut sent = send_lines(&producer, &args, transactions.as_mut(), &mut in_flight).await;
    if let (Ok(()), Some(t)) = (&sent, transactions.as_mut()) {
        sent = t.commit(&mut in_flight).await;
    }
    if let Err(e) = sent {
        if let Some(t) = transactions.as_mut() {
            t.abort().await;
        }
        return Err(e);
    }
    producer.flush().await?;
    for d in in_flight {
        d.wait().await?;
    }
    producer.close().await?;
    Ok(())
}

/// Enqueues one record per line of stdin, keeping at most `IN_FLIGHT_MESSAGES_MAX`
/// unanswered. In a transaction, Ctrl-C stops it with an error, so the caller aborts.
async fn send_lines(
    producer: &Producer,
    args: &ProduceArgs,
    mut transactions: Option<&mut Transactions<'_>>,
    in_flight: &mut VecDeque<Delivery>,
) -> Result<()> {
    let transactional = transactions.is_some();
    let interrupted = async {
        if transactional {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            // Without a transaction, Ctrl-C ends the process as it always did.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(interrupted);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut line_no = 0u64;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line.context("cannot read stdin")?,
            _ = &mut interrupted => bail!("interrupted before the end of the input"),
        };
        let Some(line) = line else { break };
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
        if let Some(t) = transactions.as_deref_mut() {
            t.before_record().await?;
        }
        in_flight.push_back(
            producer
                .enqueue(record)
                .await
                .with_context(|| format!("cannot send line {line_no}"))?,
        );
        if let Some(t) = transactions.as_deref_mut() {
            t.after_record(in_flight).await?;
        }
        if in_flight.len() >= IN_FLIGHT_MESSAGES_MAX {
            if let Some(d) = in_flight.pop_front() {
                d.wait().await?;
            }
        }
    }
    Ok(())
}
