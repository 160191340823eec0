//! [`Producer`]: sends records, batching them per partition in a background task.
//!
//! `send_record` hands the record to the producer's task and waits for the broker's answer;
//! [`Producer::enqueue`] hands it over and returns a [`Delivery`] to await later, which is how
//! many records end up in one batch. The task sends a partition's batch when it reaches
//! `batch_size` bytes, when `linger_ms` has passed since its first record, or at once when
//! `linger_ms` is 0 (then every record that queued up while the previous request was in flight
//! goes in the next batch).

mod accumulator;

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::admin::Admin;
use crate::cluster::{Client, ClientConfig};
use crate::error::{ClientError, Result};
use crate::partitioner::Partitioner;
use crate::records::{now_ms, CompressionType, Header, OutgoingRecord};

/// How many acknowledgements the producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: the broker sends no response and offsets are unknown (-1).
    None,
    /// The leader wrote the record.
    Leader,
    /// Every in-sync replica has it (on a single broker: durable on disk).
    #[default]
    All,
}

impl Acks {
    pub(crate) fn as_i16(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            other => Err(format!("unknown acks '{other}' (expected 0, 1 or all)")),
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Acknowledgements to wait for.
    pub acks: Acks,
    /// How long a batch may wait for more records, in milliseconds.
    pub linger_ms: u64,
    /// A partition's batch is sent once it holds this many bytes.
    pub batch_size: usize,
    /// Compression of every batch.
    pub compression: CompressionType,
    /// Records accepted but not yet sent; `enqueue` waits when the queue is full.
    pub queue_records_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            linger_ms: 0,
            batch_size: 16 * 1024,
            compression: CompressionType::None,
            queue_records_max: 10_000,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The topic.
    pub topic: String,
    /// The partition; `None` picks one by key hash, or round-robin without a key.
    pub partition: Option<i32>,
    /// The key.
    pub key: Option<Bytes>,
    /// The value (`None` writes a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Creation time in ms since the epoch; `None` uses the current time.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key (and so the partition, unless one is set).
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header. Header names should be unique within a record: the batch codec keeps
    /// only the last value of a repeated name.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the broker assigned (-1 with `Acks::None`).
    pub offset: i64,
    /// The record's timestamp (the broker's, for log-append-time topics).
    pub timestamp: i64,
}

/// The answer for one enqueued record; await it with [`Delivery::wait`].
#[derive(Debug)]
pub struct Delivery {
    rx: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Delivery {
    /// Waits until the broker acknowledged (or refused) the record.
    pub async fn wait(self) -> Result<RecordMetadata> {
        self.rx.await.map_err(|_| ClientError::Closed)?
    }
}

pub(crate) enum Command {
    Record(PendingRecord),
    Flush(oneshot::Sender<()>),
}

pub(crate) struct PendingRecord {
    pub topic: String,
    pub partition: i32,
    pub record: OutgoingRecord,
    pub done: oneshot::Sender<Result<RecordMetadata>>,
}

/// Sends records to a Kafka-compatible cluster.
///
/// ```no_run
/// # async fn demo() -> Result<(), strom_client::ClientError> {
/// use strom_client::{Producer, ProducerRecord};
///
/// let producer = Producer::connect("127.0.0.1:9092").await?;
/// producer.create_topic("demo-topic", 3).await?;
/// let offset = producer.send("demo-topic", "Hello, Kafka!", 0).await?;
/// println!("written at offset {offset}");
///
/// // With a key: the partition comes from the key's murmur2 hash, as in the Java client.
/// let meta = producer
///     .send_record(ProducerRecord::new("demo-topic", "v").key("user-42").header("source", "docs"))
///     .await?;
/// println!("partition {} offset {}", meta.partition, meta.offset);
/// producer.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct Producer {
    client: Client,
    tx: mpsc::Sender<Command>,
    partitioner: Partitioner,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("client", &self.client)
            .finish()
    }
}

impl Producer {
    /// Connects to the cluster at `bootstrap` with default settings (acks=all, no linger).
    pub async fn connect(bootstrap: &str) -> Result<Producer> {
        Self::connect_with(bootstrap, ProducerConfig::default()).await
    }

    /// Connects with the given settings.
    pub async fn connect_with(bootstrap: &str, config: ProducerConfig) -> Result<Producer> {
        let client = Client::connect_with(bootstrap, config.client.clone()).await?;
        Ok(Self::from_client(client, config))
    }

    /// A producer over an existing client. Must be called inside a tokio runtime.
    pub fn from_client(client: Client, config: ProducerConfig) -> Producer {
        let (tx, rx) = mpsc::channel(config.queue_records_max.max(1));
        let task = tokio::spawn(accumulator::run(client.clone(), Arc::new(config), rx));
        Producer {
            client,
            tx,
            partitioner: Partitioner::new(),
            task,
        }
    }

    /// The underlying cluster handle.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a topic with `partitions` partitions (replication factor 1).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        Admin::from_client(self.client.clone())
            .create_topic(name, partitions)
            .await
    }

    /// Sends `value` to one partition and returns the offset the broker assigned.
    pub async fn send(&self, topic: &str, value: impl Into<Bytes>, partition: i32) -> Result<i64> {
        let meta = self
            .send_record(ProducerRecord::new(topic, value).partition(partition))
            .await?;
        Ok(meta.offset)
    }

    /// Sends a record and waits for the broker's acknowledgement.
    pub async fn send_record(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.enqueue(record).await?.wait().await
    }

    /// Queues a record for the next batch and returns without waiting for the broker.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<Delivery> {
        // Unknown topics and partitions fail here, at once, rather than after the retries.
        let mut topic = self.client.topic(&record.topic).await?;
        let partition = match record.partition {
            Some(p) => {
                if !topic.partitions.iter().any(|info| info.partition == p) {
                    topic = self.client.refresh_topic(&record.topic).await?;
                    if !topic.partitions.iter().any(|info| info.partition == p) {
                        return Err(ClientError::kafka(
                            3, // UNKNOWN_TOPIC_OR_PARTITION
                            format!(
                                "topic {} partition {p} (the topic has {} partitions)",
                                record.topic,
                                topic.partitions.len()
                            ),
                        ));
                    }
                }
                p
            }
            None => {
                let count = topic.partitions.len() as i32;
                if count == 0 {
                    return Err(ClientError::Invalid(format!(
                        "topic {} has no partitions",
                        record.topic
                    )));
                }
                self.partitioner.partition(record.key.as_deref(), count)
            }
        };
        let (done, rx) = oneshot::channel();
        let pending = PendingRecord {
            topic: record.topic,
            partition,
            record: OutgoingRecord {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp: record.timestamp.unwrap_or_else(now_ms),
            },
            done,
        };
        self.tx
            .send(Command::Record(pending))
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(Delivery { rx })
    }

    /// Sends every queued record now and waits until the broker answered all of them.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Flush(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Flushes and stops the background task.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        let Producer { tx, task, .. } = self;
        drop(tx);
        task.await.map_err(|_| ClientError::Closed)
    }
}
