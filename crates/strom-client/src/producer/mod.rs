//! [`Producer`]: sends records, batching them per partition in a background task.
//!
//! `send_record` hands the record to the producer's task and waits for the broker's answer;
//! [`Producer::enqueue`] hands it over and returns a [`Delivery`] to await later, which is how
//! many records end up in one batch. A partition's batch holds at most `batch_size` bytes
//! (a larger record travels alone) and one Produce request at most `max_request_size` bytes,
//! whatever the linger. The task sends a batch when it is full, when `linger_ms` has passed
//! since its first record, or at once when `linger_ms` is 0; records that arrive while
//! requests are in flight fill the next batches.
//!
//! ## Delivery guarantees
//!
//! - With `acks = All` and `enable_idempotence` (the defaults, as in the Java client since
//!   3.0) the producer is idempotent: it takes a producer id (InitProducerId) and numbers each
//!   partition's batches, so the broker writes a retried batch once. Every record is written
//!   exactly once and in the order of `enqueue` per partition, or its [`Delivery`] fails.
//!   Up to `max_in_flight_requests` requests are in flight per broker; a failure makes the
//!   partition resend from the failed batch on, in order. A sequence error the broker cannot
//!   resolve (OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID on the oldest unacknowledged
//!   batch) fails that batch and bumps the producer epoch, as Kafka's clients do.
//! - Retriable failures (lost connections, leader changes, timeouts) are retried until
//!   `delivery_timeout_ms` (2 minutes) has passed since the record was enqueued.
//! - With `acks` 0 or 1 the producer is not idempotent: a retry after a lost answer may write
//!   a record twice; one request per partition is in flight, so order is kept. With acks 0
//!   nothing is known of the outcome and offsets are -1.
//! - The accepted but unsent records are bounded by `buffer_memory` bytes; `enqueue` waits up
//!   to `max_block_ms` for room, then fails.

mod accumulator;
mod queue;
mod sender;
mod transaction;
mod txn_state;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admin::Admin;
use crate::cluster::{Client, ClientConfig};
use crate::consumer::ConsumerGroupMetadata;
use crate::error::{ClientError, Result};
use crate::offsets::TopicPartition;
use crate::partitioner::Partitioner;
use crate::records::{now_ms, CompressionType, Header, OutgoingRecord};
use transaction::{SenderReport, TransactionManager};
use txn_state::Call;
pub use txn_state::TransactionState;

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
    /// How long a batch may wait for more records, in milliseconds (`linger.ms`).
    pub linger_ms: u64,
    /// The most bytes of records in one partition's batch (`batch.size`); a larger record
    /// is sent in a batch of its own.
    pub batch_size: usize,
    /// The most bytes of one Produce request (`max.request.size`); a larger record is
    /// refused by `enqueue` with MESSAGE_TOO_LARGE.
    pub max_request_size: usize,
    /// Compression of every batch.
    pub compression: CompressionType,
    /// Idempotent delivery (`enable.idempotence`); takes effect with `acks = All`.
    pub enable_idempotence: bool,
    /// Requests in flight per broker (`max.in.flight.requests.per.connection`), at most 5
    /// with idempotence as in Kafka.
    pub max_in_flight_requests: usize,
    /// How long a record may take from `enqueue` to acknowledgement, retries included
    /// (`delivery.timeout.ms`).
    pub delivery_timeout_ms: u64,
    /// Bytes of records accepted but not yet acknowledged (`buffer.memory`).
    pub buffer_memory: usize,
    /// How long `enqueue` waits for room in the buffer (`max.block.ms`), and how long the
    /// transaction calls retry their coordinator.
    pub max_block_ms: u64,
    /// Makes the producer transactional (`transactional.id`): records are sent inside
    /// transactions (`init_transactions`, `begin_transaction`, `commit_transaction`), and a
    /// newer producer with the same id fences this one. Needs `acks = All` and idempotence.
    pub transactional_id: Option<String>,
    /// How long the coordinator lets a transaction stay open before aborting it
    /// (`transaction.timeout.ms`).
    pub transaction_timeout_ms: i32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            linger_ms: 0,
            batch_size: 16 * 1024,
            max_request_size: 1024 * 1024,
            compression: CompressionType::None,
            enable_idempotence: true,
            max_in_flight_requests: 5,
            delivery_timeout_ms: 120_000,
            buffer_memory: 32 * 1024 * 1024,
            max_block_ms: 60_000,
            transactional_id: None,
            transaction_timeout_ms: 60_000,
        }
    }
}

impl ProducerConfig {
    /// Whether this producer numbers its batches (idempotence needs acks=all).
    pub(crate) fn idempotent(&self) -> bool {
        self.enable_idempotence && self.acks == Acks::All
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

    /// Adds a header. A name may repeat: headers are an ordered list, as in Kafka.
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

/// Bytes a batch and a request add around a record: the batch header (61) and the request's
/// topic and partition framing, rounded up.
pub(crate) const BATCH_OVERHEAD_BYTES: usize = 61 + 64;

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
    /// The producer id and epoch a transactional producer got from its coordinator.
    Producer(i64, i16),
    /// Fail every batch not yet sent (the transaction is aborted), then answer.
    AbortUnsent(oneshot::Sender<()>),
}

pub(crate) struct PendingRecord {
    pub topic: String,
    pub partition: i32,
    pub record: OutgoingRecord,
    pub done: oneshot::Sender<Result<RecordMetadata>>,
    /// Bytes taken from the buffer (`buffer_memory`), given back when the record is answered.
    pub buffer_bytes: u32,
    /// When `enqueue` accepted it: the start of its `delivery_timeout_ms`.
    pub accepted: Instant,
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
    tx: queue::QueueSender,
    partitioner: Partitioner,
    task: JoinHandle<()>,
    /// Free bytes of `buffer_memory`; the background task gives bytes back as records are
    /// answered.
    buffer: Arc<Semaphore>,
    config: Arc<ProducerConfig>,
    /// The transaction state, with `transactional_id`. A lock held across a call, so
    /// transaction calls and the sends that add partitions take turns.
    txn: Option<Mutex<TransactionManager>>,
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
        // The queue needs no bound of its own: every record in it holds buffer bytes.
        let queue = Arc::new(queue::Queue::default());
        let tx = queue::QueueSender(queue.clone());
        let rx = queue::QueueReceiver(queue);
        let buffer = Arc::new(Semaphore::new(
            config.buffer_memory.min(Semaphore::MAX_PERMITS),
        ));
        let report = Arc::new(SenderReport::default());
        let txn = config.transactional_id.clone().map(|id| {
            Mutex::new(TransactionManager::new(
                client.clone(),
                id,
                config.transaction_timeout_ms,
                Duration::from_millis(config.max_block_ms),
                report.clone(),
            ))
        });
        let config = Arc::new(config);
        let task = tokio::spawn(sender::run(
            client.clone(),
            config.clone(),
            rx,
            buffer.clone(),
            report,
        ));
        Producer {
            client,
            tx,
            partitioner: Partitioner::new(),
            task,
            buffer,
            config,
            txn,
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

    /// Queues a record for the next batch and returns without waiting for the broker. Waits
    /// up to `max_block_ms` for room in the buffer; a record larger than `max_request_size`
    /// or `buffer_memory` is refused at once.
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<Delivery> {
        let ProducerRecord {
            topic,
            partition,
            key,
            value,
            headers,
            timestamp,
        } = record;
        // Unknown topics and partitions fail here, at once, rather than after the retries.
        // Known topics are taken from the cache even when stale: the partition count rarely
        // changes, and a broker that is away must not stop `enqueue` (the sender finds the
        // leaders). An unknown topic is looked up, retrying for up to `max_block_ms`.
        let (count, known) = match self.client.cached_partitions(&topic, partition) {
            Some(cached) => cached,
            None => {
                let info = self.lookup(&topic).await?;
                let known =
                    partition.is_none_or(|p| info.partitions.iter().any(|i| i.partition == p));
                (info.partitions.len(), known)
            }
        };
        let partition = match partition {
            Some(p) => {
                if !known {
                    let info = self.client.refresh_topic(&topic).await?;
                    if !info.partitions.iter().any(|i| i.partition == p) {
                        return Err(ClientError::kafka(
                            3, // UNKNOWN_TOPIC_OR_PARTITION
                            format!(
                                "topic {topic} partition {p} (the topic has {} partitions)",
                                info.partitions.len()
                            ),
                        ));
                    }
                }
                p
            }
            None => {
                if count == 0 {
                    return Err(ClientError::Invalid(format!(
                        "topic {topic} has no partitions"
                    )));
                }
                self.partitioner.partition(key.as_deref(), count as i32)
            }
        };
        // Held until the record is queued, so a commit cannot end the transaction between
        // adding the partition and queueing the record.
        let _in_transaction = match &self.txn {
            Some(txn) => {
                let mut txn = txn.lock().await;
                txn.add_partition(&topic, partition).await?;
                Some(txn)
            }
            None => None,
        };
        let record = OutgoingRecord {
            key,
            value,
            headers,
            timestamp: timestamp.unwrap_or_else(now_ms),
        };
        let accepted = Instant::now();
        let buffer_bytes = self
            .reserve(&topic, partition, record.size_estimate())
            .await?;
        let (done, rx) = oneshot::channel();
        let pending = PendingRecord {
            topic,
            partition,
            record,
            done,
            buffer_bytes,
            accepted,
        };
        if !self.tx.0.push(Command::Record(pending)) {
            self.buffer.add_permits(buffer_bytes as usize);
            return Err(ClientError::Closed);
        }
        Ok(Delivery { rx })
    }

    /// Metadata of a topic not yet known, retrying retriable failures for `max_block_ms`.
    async fn lookup(&self, topic: &str) -> Result<crate::cluster::TopicInfo> {
        let deadline = Instant::now() + Duration::from_millis(self.config.max_block_ms);
        let mut attempt = 0;
        loop {
            match self.client.topic(topic).await {
                Err(e)
                    if e.is_retriable()
                        && e.code()
                            != Some(crate::error::ResponseError::UnknownTopicOrPartition)
                        && Instant::now() < deadline =>
                {
                    tracing::debug!(topic, error = %e, "metadata not available yet");
                    self.client.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Takes `size` bytes of the buffer, waiting up to `max_block_ms`.
    async fn reserve(&self, topic: &str, partition: i32, size: usize) -> Result<u32> {
        // Batch and request framing: a record must fit a request with its batch header.
        let framed = size + BATCH_OVERHEAD_BYTES;
        if framed > self.config.max_request_size {
            return Err(ClientError::kafka_with_message(
                10, // MESSAGE_TOO_LARGE, as the Java client's RecordTooLargeException
                format!("producing to topic {topic} partition {partition}"),
                Some(&format!(
                    "the record is {framed} bytes framed, more than max_request_size ({})",
                    self.config.max_request_size
                )),
            ));
        }
        let capacity = self.config.buffer_memory.min(Semaphore::MAX_PERMITS);
        let bytes = u32::try_from(size).ok().filter(|b| *b as usize <= capacity);
        let Some(bytes) = bytes else {
            return Err(ClientError::Invalid(format!(
                "a record of {size} bytes is larger than buffer_memory ({} bytes)",
                self.config.buffer_memory
            )));
        };
        // Without a wait there is no timer to set up: the common case, taken per record.
        if let Ok(permit) = self.buffer.try_acquire_many(bytes) {
            permit.forget();
            return Ok(bytes);
        }
        let wait = Duration::from_millis(self.config.max_block_ms);
        match tokio::time::timeout(wait, self.buffer.acquire_many(bytes)).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(bytes)
            }
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout {
                what: format!(
                    "room in the producer buffer (buffer_memory {} bytes)",
                    self.config.buffer_memory
                ),
                timeout_ms: self.config.max_block_ms,
            }),
        }
    }

    /// Sends every queued record now and waits until the broker answered all of them.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if !self.tx.0.push(Command::Flush(tx)) {
            return Err(ClientError::Closed);
        }
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Gets the producer id and epoch of `transactional_id` from its coordinator, fencing
    /// older producers with the same id and ending (aborting) their open transaction. Must
    /// come first on a transactional producer.
    pub async fn init_transactions(&self) -> Result<()> {
        if !self.config.idempotent() {
            return Err(ClientError::Invalid(
                "a transactional producer needs acks = All and enable_idempotence".into(),
            ));
        }
        let mut txn = self.txn()?.lock().await;
        let (id, epoch) = txn.init().await?;
        self.command(Command::Producer(id, epoch))
    }

    /// Opens a transaction: records sent from now on are committed or aborted together.
    pub async fn begin_transaction(&self) -> Result<()> {
        self.txn()?.lock().await.start(Call::Begin)
    }

    /// Commits a consumer's offsets as part of the open transaction (consume-transform-produce):
    /// they become the group's committed offsets if and only if the transaction commits.
    /// `offsets` are the next offsets to read; `group` comes from
    /// [`crate::Consumer::group_metadata`], whose generation the group coordinator checks.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        self.txn()?.lock().await.send_offsets(offsets, group).await
    }

    /// Sends every record of the open transaction, then commits it (EndTxn). If a record
    /// failed, nothing is committed: the error is returned and the producer is left in
    /// `AbortableError`, to be aborted. A timeout leaves the commit to be called again.
    pub async fn commit_transaction(&self) -> Result<()> {
        let mut txn = self.txn()?.lock().await;
        txn.start(Call::Commit)?;
        self.flush().await?;
        txn.end(true).await?;
        Ok(())
    }

    /// Aborts the open transaction: records not yet sent are dropped (their deliveries fail),
    /// the ones sent are answered, then EndTxn aborts them all; read_committed consumers never
    /// see them. Allowed after an abortable error.
    pub async fn abort_transaction(&self) -> Result<()> {
        let mut txn = self.txn()?.lock().await;
        txn.start(Call::Abort)?;
        let (tx, rx) = oneshot::channel();
        self.command(Command::AbortUnsent(tx))?;
        rx.await.map_err(|_| ClientError::Closed)?;
        self.flush().await?;
        if let Some((id, epoch)) = txn.end(false).await? {
            self.command(Command::Producer(id, epoch))?;
        }
        Ok(())
    }

    /// Where the transactional producer stands; `None` without `transactional_id`.
    pub async fn transaction_state(&self) -> Option<TransactionState> {
        match &self.txn {
            Some(txn) => Some(txn.lock().await.state()),
            None => None,
        }
    }

    fn txn(&self) -> Result<&Mutex<TransactionManager>> {
        self.txn.as_ref().ok_or_else(|| {
            ClientError::Invalid(
                "transactions need a transactional id (ProducerConfig::transactional_id)".into(),
            )
        })
    }

    fn command(&self, command: Command) -> Result<()> {
        if self.tx.0.push(command) {
            Ok(())
        } else {
            Err(ClientError::Closed)
        }
    }

    /// Flushes and stops the background task.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        let Producer { tx, task, .. } = self;
        drop(tx);
        task.await.map_err(|_| ClientError::Closed)
    }
}
