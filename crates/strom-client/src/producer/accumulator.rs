//! The producer's background task: collects records per partition, sends a partition's batch
//! when it is full or has lingered long enough, and answers each record's [`Delivery`].
//!
//! One Produce request is in flight at a time per producer, which keeps every partition's
//! records in the order they were sent, retries included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Command, PendingRecord, ProducerConfig, RecordMetadata};
use crate::cluster::Client;
use crate::error::{ClientError, Result};
use crate::offsets::topic_name;
use crate::records::{encode_batch, OutgoingRecord};

type PartitionKey = (String, i32);

#[derive(Default)]
struct Batch {
    records: Vec<OutgoingRecord>,
    waiters: Vec<oneshot::Sender<Result<RecordMetadata>>>,
    bytes: usize,
}

/// Runs until the producer is dropped or closed, then sends what is left.
pub(crate) async fn run(
    client: Client,
    config: Arc<ProducerConfig>,
    mut rx: mpsc::Receiver<Command>,
) {
    let linger = Duration::from_millis(config.linger_ms);
    let mut batches: BTreeMap<PartitionKey, Batch> = BTreeMap::new();
    // When the oldest waiting record must go out.
    let mut deadline: Option<Instant> = None;
    loop {
        let command = match deadline {
            Some(when) if !batches.is_empty() => {
                tokio::select! {
                    c = rx.recv() => c,
                    _ = tokio::time::sleep_until(when) => {
                        send_all(&client, &config, &mut batches).await;
                        deadline = None;
                        continue;
                    }
                }
            }
            _ => rx.recv().await,
        };
        let Some(command) = command else {
            send_all(&client, &config, &mut batches).await;
            return;
        };
        let mut flush_waiters = Vec::new();
        let mut full = accept(command, &mut batches, &config, &mut flush_waiters);
        if config.linger_ms == 0 {
            // Take everything that queued up meanwhile into this round.
            while let Ok(command) = rx.try_recv() {
                full |= accept(command, &mut batches, &config, &mut flush_waiters);
            }
        }
        if config.linger_ms == 0 || full || !flush_waiters.is_empty() {
            send_all(&client, &config, &mut batches).await;
            deadline = None;
        } else if deadline.is_none() {
            deadline = Some(Instant::now() + linger);
        }
        for waiter in flush_waiters {
            let _ = waiter.send(());
        }
    }
}

/// Adds a command's record to its batch; returns whether that batch is now full.
fn accept(
    command: Command,
    batches: &mut BTreeMap<PartitionKey, Batch>,
    config: &ProducerConfig,
    flush_waiters: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    match command {
        Command::Flush(done) => {
            flush_waiters.push(done);
            false
        }
        Command::Record(PendingRecord {
            topic,
            partition,
            record,
            done,
        }) => {
            let batch = batches.entry((topic, partition)).or_default();
            batch.bytes += record.size_estimate();
            batch.records.push(record);
            batch.waiters.push(done);
            batch.bytes >= config.batch_size
        }
    }
}

/// Sends every batch, retrying retriable failures after refreshing metadata, and answers
/// every waiter.
async fn send_all(
    client: &Client,
    config: &ProducerConfig,
    batches: &mut BTreeMap<PartitionKey, Batch>,
) {
    if batches.is_empty() {
        return;
    }
    let mut todo: Vec<(PartitionKey, Batch, Bytes)> = Vec::new();
    for (key, batch) in std::mem::take(batches) {
        match encode_batch(&batch.records, config.compression) {
            Ok(bytes) => todo.push((key, batch, bytes)),
            Err(e) => fail(batch, &e),
        }
    }
    let mut attempt = 0;
    while !todo.is_empty() {
        let mut retry = Vec::new();
        // Group by leader; a partition whose leader is unknown is retried.
        let mut by_leader: BTreeMap<i32, Vec<(PartitionKey, Batch, Bytes)>> = BTreeMap::new();
        for (key, batch, bytes) in todo {
            match client.leader(&key.0, key.1).await {
                Ok(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((key, batch, bytes)),
                Err(e) => retry.push((key, batch, bytes, e)),
            }
        }
        for (leader, items) in by_leader {
            let results = produce(client, config, leader, &items).await;
            for ((key, batch, bytes), result) in items.into_iter().zip(results) {
                match result {
                    Ok((base_offset, append_time)) => {
                        succeed(&key, batch, base_offset, append_time)
                    }
                    Err(e) => retry.push((key, batch, bytes, e)),
                }
            }
        }
        todo = Vec::new();
        for (key, batch, bytes, err) in retry {
            if err.is_retriable() && attempt < client.config().request_retries_max {
                tracing::debug!(topic = %key.0, partition = key.1, error = %err, "retrying produce");
                client.invalidate_topic(&key.0);
                todo.push((key, batch, bytes));
            } else {
                fail(batch, &err);
            }
        }
        if !todo.is_empty() {
            client.backoff(attempt).await;
            attempt += 1;
        }
    }
}

/// One Produce request to one leader; returns (base offset, log-append time) per item.
async fn produce(
    client: &Client,
    config: &ProducerConfig,
    leader: i32,
    items: &[(PartitionKey, Batch, Bytes)],
) -> Vec<Result<(i64, i64)>> {
    let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
    for ((topic, partition), _, bytes) in items {
        topics.entry(topic.as_str()).or_default().push(
            PartitionProduceData::default()
                .with_index(*partition)
                .with_records(Some(bytes.clone())),
        );
    }
    let request = ProduceRequest::default()
        .with_acks(config.acks.as_i16())
        .with_timeout_ms(config.client.request_timeout.as_millis() as i32)
        .with_topic_data(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    TopicProduceData::default()
                        .with_name(topic_name(t))
                        .with_partition_data(parts)
                })
                .collect(),
        );
    let all = |e: &ClientError| -> Vec<Result<(i64, i64)>> {
        items.iter().map(|_| Err(same_error(e))).collect()
    };
    let conn = match client.broker_connection(leader).await {
        Ok(c) => c,
        Err(e) => return all(&e),
    };
    if config.acks.as_i16() == 0 {
        return match conn.send_without_response(&request).await {
            Ok(()) => items.iter().map(|_| Ok((-1, -1))).collect(),
            Err(e) => all(&e),
        };
    }
    let response = match conn.send(&request).await {
        Ok(r) => r,
        Err(e) => return all(&e),
    };
    items
        .iter()
        .map(|((topic, partition), _, _)| {
            let answer = response
                .responses
                .iter()
                .filter(|t| t.name.0.as_str() == topic)
                .flat_map(|t| t.partition_responses.iter())
                .find(|p| p.index == *partition)
                .ok_or_else(|| {
                    ClientError::protocol(format!(
                        "Produce response has no answer for topic {topic} partition {partition}"
                    ))
                })?;
            if answer.error_code != 0 {
                return Err(ClientError::kafka_with_message(
                    answer.error_code,
                    format!("producing to topic {topic} partition {partition}"),
                    answer.error_message.as_deref(),
                ));
            }
            Ok((answer.base_offset, answer.log_append_time_ms))
        })
        .collect()
}

fn succeed(key: &PartitionKey, batch: Batch, base_offset: i64, append_time: i64) {
    for (i, (record, waiter)) in batch.records.iter().zip(batch.waiters).enumerate() {
        let _ = waiter.send(Ok(RecordMetadata {
            topic: key.0.clone(),
            partition: key.1,
            offset: if base_offset < 0 {
                -1
            } else {
                base_offset + i as i64
            },
            timestamp: if append_time >= 0 {
                append_time
            } else {
                record.timestamp
            },
        }));
    }
}

fn fail(batch: Batch, err: &ClientError) {
    for waiter in batch.waiters {
        let _ = waiter.send(Err(same_error(err)));
    }
}

/// `ClientError` holds an `io::Error`, which is not `Clone`; rebuild an equivalent error for
/// each waiter.
fn same_error(err: &ClientError) -> ClientError {
    match err {
        ClientError::Connect { addr, reason } => ClientError::Connect {
            addr: addr.clone(),
            reason: reason.clone(),
        },
        ClientError::Io { addr, source } => ClientError::Io {
            addr: addr.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        ClientError::Kafka {
            code,
            context,
            message,
        } => ClientError::Kafka {
            code: *code,
            context: context.clone(),
            message: message.clone(),
        },
        ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
        ClientError::UnsupportedApi {
            api,
            client_min,
            client_max,
        } => ClientError::UnsupportedApi {
            api: api.clone(),
            client_min: *client_min,
            client_max: *client_max,
        },
        ClientError::Timeout { what, timeout_ms } => ClientError::Timeout {
            what: what.clone(),
            timeout_ms: *timeout_ms,
        },
        ClientError::Invalid(m) => ClientError::Invalid(m.clone()),
        ClientError::Closed => ClientError::Closed,
    }
}
