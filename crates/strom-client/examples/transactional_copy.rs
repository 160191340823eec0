//! Consume-transform-produce, exactly once: reads a topic as a group member with
//! read_committed, writes each record upper-cased to another topic, and commits the consumed
//! offsets in the same transaction (`send_offsets_to_transaction`). Stops after five seconds
//! without input.
//!
//! ```text
//! cargo run -p strom-client --example transactional_copy -- \
//!     127.0.0.1:9092 input-topic output-topic copy-group copy-txn [records-per-transaction]
//! ```
//!
//! Killed at any moment and started again with the same transactional id, it still writes
//! every input record exactly once as read_committed consumers see the output: the new
//! instance fences the old one and aborts its open transaction, and resumes from the offsets
//! committed with the last committed transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use strom_client::{
    ClientError, Consumer, ConsumerConfig, IsolationLevel, Message, Producer, ProducerConfig,
    ProducerRecord, TransactionState,
};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let input = args.next().unwrap_or_else(|| "input-topic".into());
    let output = args.next().unwrap_or_else(|| "output-topic".into());
    let group = args.next().unwrap_or_else(|| "copy-group".into());
    let transactional_id = args.next().unwrap_or_else(|| "copy-txn".into());
    let per_transaction = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|_| ClientError::Invalid(format!("records per transaction: {n}?")))?,
        None => 500,
    };

    let consumer_config = ConsumerConfig {
        isolation_level: IsolationLevel::ReadCommitted,
        max_poll_records: per_transaction,
        ..ConsumerConfig::with_group(group)
    };
    let mut consumer = Consumer::connect_with(&bootstrap, consumer_config).await?;
    consumer.subscribe(&[input.as_str()]).await?;
    let producer_config = ProducerConfig {
        transactional_id: Some(transactional_id),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect_with(&bootstrap, producer_config).await?;
    producer.init_transactions().await?;

    let mut idle_polls = 0;
    let mut copied = 0usize;
    while idle_polls < 5 {
        let messages = consumer.poll(Duration::from_secs(1)).await?;
        if messages.is_empty() {
            idle_polls += 1;
            continue;
        }
        idle_polls = 0;
        match copy_in_transaction(&producer, &consumer, &output, &messages).await {
            Ok(()) => copied += messages.len(),
            Err(e) if producer.transaction_state().await == Some(TransactionState::FatalError) => {
                return Err(e); // fenced by a newer instance: this one must stop
            }
            Err(e) => {
                eprintln!("transaction failed ({e}); aborting and reading the batch again");
                producer.abort_transaction().await?;
                for (partition, offset) in first_offsets(&messages) {
                    consumer.seek(&input, partition, offset)?;
                }
            }
        }
    }
    println!("copied {copied} records from {input} to {output}");
    producer.close().await?;
    consumer.close().await
}

/// One transaction: the transformed records and the offsets after them.
async fn copy_in_transaction(
    producer: &Producer,
    consumer: &Consumer,
    output: &str,
    messages: &[Message],
) -> Result<(), ClientError> {
    producer.begin_transaction().await?;
    let mut next_offsets = BTreeMap::new();
    for m in messages {
        let value = m.value_str().to_uppercase();
        let mut record = ProducerRecord::new(output, value).partition(m.partition);
        record.key = m.key.clone();
        producer.enqueue(record).await?;
        next_offsets.insert((m.topic.clone(), m.partition), m.offset + 1);
    }
    let offsets: Vec<_> = next_offsets.into_iter().collect();
    producer
        .send_offsets_to_transaction(&offsets, &consumer.group_metadata()?)
        .await?;
    producer.commit_transaction().await
}

/// The first offset of each partition in a batch: where to read again after an abort.
fn first_offsets(messages: &[Message]) -> BTreeMap<i32, i64> {
    let mut first = BTreeMap::new();
    for m in messages {
        first.entry(m.partition).or_insert(m.offset);
    }
    first
}
