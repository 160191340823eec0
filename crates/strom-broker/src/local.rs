//! An in-process API over the broker for front ends that do not speak Kafka (the JSON-over-TCP
//! protocol in `strom-server`, and anything else embedded in the same process).
//!
//! It reuses the broker's own mechanisms rather than keeping a second copy of them:
//!
//! - **Produce** encodes one record into a v2 record batch with `kafka_protocol`'s encoder and
//!   appends it through the domain append (`crate::append`) that Kafka produce requests use,
//!   so batch validation, `max.message.bytes`, LogAppendTime and the
//!   `log.flush.interval.messages` accounting are the same. It then waits for the group-commit
//!   fsync exactly as a Kafka produce with `acks=all` does (unless `log.fsync=never`).
//! - **Reads** take whole batches from the partition log like a Kafka fetch, check them with
//!   `strom_log::validate_batches` (CRC included), decode them and drop the records before the
//!   requested offset (a batch can start before it) and control records.
//! - **Consumer positions** are committed offsets of the consumer group `json:<consumer_id>` in
//!   the group coordinator, written with its domain call `commit`, the one the Kafka
//!   OffsetCommit handler uses too. They are
//!   therefore durable, survive a restart, and show up in `strom group list` and in Kafka admin
//!   tools (e.g. `kafka-consumer-groups --describe --group json:c1`).
//!
//! Because it is the same log, a record written here is readable by any Kafka client, and a
//! record a Kafka client wrote is readable here.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_group::{Committer, CoordinatorError, NewOffset};
use strom_log::{validate_batches, LogError};
use strom_protocol::records::{decode_batch, RecordsError};
use strom_protocol::ResponseError;

use crate::broker::Broker;
use crate::config::FsyncPolicy;
use crate::partition::Partition;
use crate::topic_config::TopicOverrides;
use crate::topics::{now_ms, Topic, TopicError};

/// How long a JSON produce in cluster mode waits for the ISR before it fails.
pub const CLUSTER_PRODUCE_TIMEOUT_MS: u64 = 30_000;

/// Prefix of the consumer group that holds a consumer id's positions.
pub const CONSUMER_GROUP_PREFIX: &str = "json:";
/// Longest consumer id accepted, so the group id stays a sane Kafka group id.
pub const CONSUMER_ID_MAX_BYTES: usize = 200;
/// Most messages one read returns.
pub const READ_MESSAGES_MAX: usize = 10_000;
/// Most record-batch bytes one read takes from the log (it returns at least one message if
/// any exists, even past this). Bounds the memory and the response size of one request.
pub const READ_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Longest a consume may wait for new messages.
pub const READ_WAIT_MS_MAX: u64 = 30_000;
/// Consumes of one (consumer, topic, partition) are serialized so that each message is
/// delivered once to a consumer id even when it consumes from two connections at once. The
/// locks are sharded by hash rather than kept per consumer, so their number is bounded.
const POSITION_LOCK_SHARDS: usize = 64;
/// Bytes of the log read per step of a read loop.
const READ_CHUNK_BYTES: usize = 1024 * 1024;

/// A record header: name and optional value.
pub type Header = (String, Option<Bytes>);

/// Errors of the local API. The front end maps them to its own wire errors.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("unknown topic: {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        count: i32,
    },
    #[error("offset {offset} is out of range: the log has offsets {start} to {end}")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("{0}")]
    Invalid(String),
    /// Creating a topic failed (invalid name, already exists, bad partition count, ...).
    #[error("{0}")]
    Topic(#[from] TopicError),
    /// The append was refused with this Kafka error (e.g. MessageTooLarge).
    #[error("{}{}", .error, .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Rejected {
        error: ResponseError,
        message: Option<String>,
    },
    #[error("storage error: {0}")]
    Storage(String),
    /// Cluster mode: another node leads the partition; ask it (`leader` is its node id and
    /// Kafka address, which also speaks JSON, when the metadata names one).
    #[error("this node does not lead {topic} partition {partition}{}", .leader.as_ref().map(|(id, addr)| format!("; its leader is node {id} at {addr}")).unwrap_or_else(|| "; it has no leader now".into()))]
    NotLeader {
        topic: String,
        partition: i32,
        leader: Option<(i32, String)>,
    },
    /// Cluster mode: another node coordinates the group; ask it (`coordinator` is its node id
    /// and address when known; none while the group's coordinator is being chosen or loads).
    #[error("this node does not coordinate group {group}{}", .coordinator.as_ref().map(|(id, addr)| format!("; its coordinator is node {id} at {addr}")).unwrap_or_else(|| "; retry shortly".into()))]
    NotCoordinator {
        group: String,
        coordinator: Option<(i32, String)>,
    },
    /// The group coordinator refused (a commit, a join, ...).
    #[error("{0}")]
    Group(#[from] CoordinatorError),
    /// A JSON group member id that is not (or no longer) a member of the group.
    #[error("{member_id} is not a member of group {group} (it left, or its session expired); join again")]
    UnknownMember { group: String, member_id: String },
    /// A group member asked for a partition the group did not assign to it.
    #[error("partition {partition} of {topic} is not assigned to member {member_id} (its partitions: {assigned})")]
    NotAssigned {
        member_id: String,
        topic: String,
        partition: i32,
        assigned: String,
    },
}

/// A record to append.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    /// `None`: by murmur2 hash of the key (as the Java client does), round-robin without one.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    /// `None` writes a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` means now.
    pub timestamp_ms: Option<i64>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp (the log-append time on LogAppendTime topics).
    pub timestamp_ms: i64,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp_ms: i64,
}

/// The result of a read: the messages and the offset to read next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub messages: Vec<Message>,
    pub next_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The first offset still in the log.
    pub start_offset: i64,
    /// The offset the next record will get.
    pub end_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub partitions: Vec<PartitionOffsets>,
    /// The topic's config overrides (broker defaults are not listed).
    pub configs: TopicOverrides,
}

/// What a consume needs to know.
#[derive(Debug, Clone)]
pub struct ConsumeRequest<'a> {
    pub consumer_id: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    /// Start here instead of at the consumer's position.
    pub offset: Option<i64>,
    pub max_messages: usize,
    /// Wait up to this long for a message when there is none yet.
    pub wait: Duration,
    /// Move the position past the returned messages (the default). `false` only peeks: the
    /// client commits after processing, for at-least-once delivery.
    pub auto_commit: bool,
}

/// The in-process API. One per broker; cheap to share behind an `Arc`.
pub struct Local {
    pub(crate) broker: Arc<Broker>,
    /// Round-robin counter for records without partition and key.
    next_partition: AtomicU32,
    position_locks: Vec<tokio::sync::Mutex<()>>,
    /// The JSON members of consumer groups (`local_group`).
    pub(crate) group_members: crate::local_group::GroupMembers,
}

impl Local {
    pub fn new(broker: Arc<Broker>) -> Local {
        Local {
            broker,
            next_partition: AtomicU32::new(0),
            position_locks: (0..POSITION_LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            group_members: Default::default(),
        }
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicOverrides,
    ) -> Result<TopicSummary, LocalError> {
        let topic = if self.broker.cluster.get().is_some() {
            // Through the metadata log, with `default.replication.factor` replicas.
            crate::cluster::topics::create(&self.broker, name, partitions, configs).await?
        } else {
            self.broker
                .topics
                .create(name, partitions, configs, false)
                .await?
        };
        Ok(TopicSummary {
            name: topic.name(),
            partitions: topic.partition_count(),
        })
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Vec<TopicSummary> {
        self.broker
            .topics
            .all()
            .iter()
            .map(|t| TopicSummary {
                name: t.name(),
                partitions: t.partition_count(),
            })
            .collect()
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, LocalError> {
        let topic = self.topic(name)?;
        let partitions = topic
            .partitions
            .read()
            .iter()
            .map(|p| {
                let st = p.lock().map_err(|e| LocalError::Storage(e.to_string()))?;
                Ok(PartitionOffsets {
                    partition: p.index,
                    start_offset: st.log.log_start_offset(),
                    end_offset: st.high_watermark(),
                })
            })
            .collect::<Result<_, LocalError>>()?;
        let meta = topic.meta.read();
        Ok(TopicDescription {
            name: meta.name.clone(),
            topic_id: meta.topic_id.to_string(),
            partitions,
            configs: meta.configs.clone(),
        })
    }

    /// Cluster mode: a refusal because another node leads the partition becomes
    /// [`LocalError::NotLeader`] naming that node, so a JSON client can go there.
    fn redirect<T>(
        &self,
        topic: &str,
        partition: i32,
        result: Result<T, LocalError>,
    ) -> Result<T, LocalError> {
        match result {
            Err(LocalError::Rejected {
                error: ResponseError::NotLeaderOrFollower,
                ..
            }) => {
                let leader = self.broker.cluster.get().and_then(|c| {
                    let image = c.image();
                    let id = image.partition(topic, partition)?.leader;
                    let b = image.brokers.get(&id).filter(|b| !b.fenced)?;
                    Some((id, format!("{}:{}", b.host, b.port)))
                });
                Err(LocalError::NotLeader {
                    topic: topic.to_string(),
                    partition,
                    leader,
                })
            }
            other => other,
        }
    }

    /// Appends one record and waits until it is durable (like a Kafka produce with acks=all).
    /// In cluster mode only the partition's leader appends ([`LocalError::NotLeader`]).
    pub async fn produce(&self, topic: &str, record: NewRecord) -> Result<Appended, LocalError> {
        let t = self.topic(topic)?;
        let count = t.partition_count();
        let index = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => strom_protocol::partition_key::partition_for_key(key, count),
            (None, None) => {
                (self.next_partition.fetch_add(1, Ordering::Relaxed) % count as u32) as i32
            }
        };
        let result = self.produce_here(&t, index, record).await;
        self.redirect(topic, index, result)
    }

    async fn produce_here(
        &self,
        t: &Topic,
        index: i32,
        record: NewRecord,
    ) -> Result<Appended, LocalError> {
        let partition = self.partition(t, index)?;
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        let batch = encode_batch(record, timestamp_ms)?;
        let cfg = self.broker.topics.effective_config(t);
        let mut options = cfg.append_options();
        // Cluster mode: only the leader appends, and the answer waits for the ISR, as a
        // Kafka produce with acks=all.
        let min_insync = self.broker.config.min_insync_replicas;
        let clustered = self.broker.cluster.get().is_some();
        let rejected = |error| LocalError::Rejected {
            error,
            message: None,
        };
        if clustered {
            options.leader_epoch =
                crate::cluster::produce::check_leader(&partition, -1, min_insync)
                    .map_err(rejected)?;
        }
        let appended =
            crate::append::append(&self.broker, &partition, batch, options).map_err(|e| {
                LocalError::Rejected {
                    error: crate::handlers::produce::append_error_code(&e),
                    message: Some(e.to_string()),
                }
            })?;
        debug_assert_eq!(appended.base_offset, appended.last_offset, "one record");
        if clustered {
            let deadline = tokio::time::Instant::now()
                + std::time::Duration::from_millis(CLUSTER_PRODUCE_TIMEOUT_MS);
            crate::cluster::produce::wait_replicated(
                &partition,
                appended.durable_end(),
                options.leader_epoch,
                min_insync,
                deadline,
            )
            .await
            .map_err(rejected)?;
        } else if self.broker.config.fsync != FsyncPolicy::Never {
            self.broker
                .flusher
                .wait_durable(partition, appended.durable_end())
                .await
                .map_err(LocalError::Storage)?;
        }
        Ok(Appended {
            partition: index,
            offset: appended.base_offset,
            timestamp_ms: appended.log_append_time_ms.unwrap_or(timestamp_ms),
        })
    }

    /// Reads up to `max_messages` from `offset` on, waiting up to `wait` if there are none yet.
    /// Tracks no position.
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_messages: usize,
        wait: Duration,
    ) -> Result<Read, LocalError> {
        let t = self.topic(topic)?;
        let p = self.partition(&t, partition)?;
        wait_for_data(&p, offset, wait).await;
        let read = read_from(&p, offset, max_messages, self.decompressed_max());
        self.redirect(topic, partition, read)
    }

    /// `decompressed.batch.max.bytes`: the bound on the records one read decompresses.
    pub(crate) fn decompressed_max(&self) -> usize {
        self.broker.config.decompressed_batch_max_bytes
    }

    /// Reads from the consumer's position (or from `offset` when given) and moves the position
    /// past what it returns, durably. Each message is returned once to a consumer id, unless it
    /// moves its position back with `offset` or [`Local::commit`].
    ///
    /// A position outside the log (the records were deleted by retention, or the topic was
    /// recreated) restarts at the oldest record, like Kafka's `auto.offset.reset=earliest`; an
    /// explicit `offset` outside the log is an error.
    pub async fn consume(&self, req: ConsumeRequest<'_>) -> Result<Read, LocalError> {
        let (topic, partition) = (req.topic, req.partition);
        let read = self.consume_here(req).await;
        self.redirect(topic, partition, read)
    }

    async fn consume_here(&self, req: ConsumeRequest<'_>) -> Result<Read, LocalError> {
        validate_consumer_id(req.consumer_id)?;
        let t = self.topic(req.topic)?;
        let p = self.partition(&t, req.partition)?;
        if !req.wait.is_zero() {
            // Wait without holding the position lock, so a long poll never delays other
            // consumers whose lock shares its shard.
            let stored = self
                .position(req.consumer_id, req.topic, req.partition)
                .await?;
            let from = self.start_offset(&req, &p, stored)?;
            wait_for_data(&p, from, req.wait).await;
        }
        let _serialized = self.position_locks[self.lock_shard(&req)].lock().await;
        let stored = self
            .position(req.consumer_id, req.topic, req.partition)
            .await?;
        let from = self.start_offset(&req, &p, stored)?;
        let read = match read_from(&p, from, req.max_messages, self.decompressed_max()) {
            Err(LocalError::OffsetOutOfRange { start, .. }) if req.offset.is_none() => {
                // Retention removed the records between the check and the read.
                read_from(&p, start, req.max_messages, self.decompressed_max())?
            }
            other => other?,
        };
        if req.auto_commit && stored != Some(read.next_offset) {
            self.commit_locked(req.consumer_id, req.topic, req.partition, read.next_offset)
                .await?;
        }
        Ok(read)
    }

    /// Where a consume starts: the explicit offset (which must be in the log), else the stored
    /// position (reset to the log start when it is outside the log), else the log start.
    fn start_offset(
        &self,
        req: &ConsumeRequest<'_>,
        p: &Partition,
        stored: Option<i64>,
    ) -> Result<i64, LocalError> {
        let (start, end) = {
            let st = p.lock().map_err(|e| LocalError::Storage(e.to_string()))?;
            (st.log.log_start_offset(), st.high_watermark())
        };
        match req.offset {
            Some(o) if o < start || o > end => Err(LocalError::OffsetOutOfRange {
                offset: o,
                start,
                end,
            }),
            Some(o) => Ok(o),
            None => match stored {
                Some(o) if o < start || o > end => {
                    tracing::info!(
                        consumer = req.consumer_id,
                        topic = req.topic,
                        partition = req.partition,
                        position = o,
                        start,
                        end,
                        "consumer position is outside the log; restarting at the oldest record"
                    );
                    Ok(start)
                }
                Some(o) => Ok(o),
                None => Ok(start),
            },
        }
    }

    /// Sets a consumer's position: its next consume starts at `offset`.
    pub async fn commit(
        &self,
        consumer_id: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LocalError> {
        validate_consumer_id(consumer_id)?;
        let t = self.topic(topic)?;
        let p = self.partition(&t, partition)?;
        // Cluster mode: positions live with the partition's leader, which serves the reads.
        let leads = p
            .lock()
            .map(|st| st.replica.as_ref().is_none_or(|r| r.is_leader()))
            .unwrap_or(true);
        if !leads {
            let refused = Err(LocalError::Rejected {
                error: ResponseError::NotLeaderOrFollower,
                message: None,
            });
            return self.redirect(topic, partition, refused);
        }
        if offset < 0 {
            return Err(LocalError::Invalid(format!(
                "offset must be 0 or more, not {offset}"
            )));
        }
        let shard = shard_of(consumer_id, topic, partition);
        let _serialized = self.position_locks[shard].lock().await;
        self.commit_locked(consumer_id, topic, partition, offset)
            .await
    }

    /// A consumer's position in a partition: the offset its next consume starts at, if it has
    /// consumed or committed there before. Cluster mode: from the coordinator of the group
    /// `json:<id>`, wherever it is.
    pub async fn position(
        &self,
        consumer_id: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LocalError> {
        let group = consumer_group(consumer_id);
        if self.broker.cluster.get().is_none() {
            return Ok(self.broker.groups.committed(&group, topic, partition));
        }
        let committed = crate::cluster::group_calls::committed(&self.broker, &group, topic)
            .await
            .map_err(coordinator_refusal)?;
        Ok(committed
            .into_iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, o)| o))
    }

    /// The committed offsets of any group in `topic`, as (partition, offset). Cluster mode:
    /// from the group's coordinator, wherever it is.
    pub async fn committed(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, LocalError> {
        let t = self.topic(topic)?;
        if self.broker.cluster.get().is_none() {
            return Ok((0..t.partition_count())
                .filter_map(|p| Some((p, self.broker.groups.committed(group, topic, p)?)))
                .collect());
        }
        crate::cluster::group_calls::committed(&self.broker, group, topic)
            .await
            .map_err(coordinator_refusal)
    }

    async fn commit_locked(
        &self,
        consumer_id: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LocalError> {
        let group = consumer_group(consumer_id);
        if self.broker.cluster.get().is_some() {
            let offset = strom_cluster::messages::TxnOffset {
                group: group.clone(),
                topic: topic.to_string(),
                partition,
                offset,
                leader_epoch: -1,
                metadata: String::new(),
            };
            return crate::cluster::group_calls::commit(&self.broker, &group, vec![offset])
                .await
                .map_err(coordinator_refusal);
        }
        let offsets = [NewOffset::new(topic, partition, offset)];
        let results = self
            .broker
            .groups
            .commit(&group, Committer::NONE, &offsets, -1)
            .await;
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(e) => Err(LocalError::Group(e)),
        }
    }

    fn lock_shard(&self, req: &ConsumeRequest<'_>) -> usize {
        shard_of(req.consumer_id, req.topic, req.partition)
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>, LocalError> {
        self.broker
            .topics
            .get(name)
            .ok_or_else(|| LocalError::UnknownTopic(name.to_string()))
    }

    pub(crate) fn partition(
        &self,
        topic: &Topic,
        index: i32,
    ) -> Result<Arc<Partition>, LocalError> {
        topic
            .partition(index)
            .ok_or_else(|| LocalError::UnknownPartition {
                topic: topic.name(),
                partition: index,
                count: topic.partition_count(),
            })
    }
}

/// A group coordinator's refusal (cluster mode) as the JSON protocol reports it.
fn coordinator_refusal(code: i16) -> LocalError {
    LocalError::Rejected {
        error: ResponseError::try_from_code(code).unwrap_or(ResponseError::CoordinatorNotAvailable),
        message: Some("the consumer's positions are not available now; retry".into()),
    }
}

/// The consumer group that stores a consumer id's positions.
pub fn consumer_group(consumer_id: &str) -> String {
    format!("{CONSUMER_GROUP_PREFIX}{consumer_id}")
}

fn validate_consumer_id(id: &str) -> Result<(), LocalError> {
    if id.is_empty() {
        return Err(LocalError::Invalid("consumer_id must not be empty".into()));
    }
    if id.len() > CONSUMER_ID_MAX_BYTES {
        return Err(LocalError::Invalid(format!(
            "consumer_id is longer than {CONSUMER_ID_MAX_BYTES} bytes"
        )));
    }
    Ok(())
}

fn shard_of(consumer_id: &str, topic: &str, partition: i32) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let h =
        BuildHasherDefault::<DefaultHasher>::default().hash_one((consumer_id, topic, partition));
    (h % POSITION_LOCK_SHARDS as u64) as usize
}

/// One record as a v2 batch without producer id (not idempotent), uncompressed.
fn encode_batch(record: NewRecord, timestamp_ms: i64) -> Result<Bytes, LocalError> {
    let mut headers = IndexMap::new();
    for (name, value) in record.headers {
        headers.insert(StrBytes::from_string(name), value);
    }
    plain_batch([(record.key, record.value, headers)], timestamp_ms)
        .map_err(|e| LocalError::Invalid(format!("cannot encode the record: {e}")))
}

/// (key, value, headers) of a record the broker writes itself.
pub(crate) type PlainRecord = (
    Option<Bytes>,
    Option<Bytes>,
    IndexMap<StrBytes, Option<Bytes>>,
);

/// Records the broker writes itself (JSON produce, group coordinator records) as one
/// uncompressed v2 batch without producer id, all with `timestamp_ms`.
pub(crate) fn plain_batch(
    records: impl IntoIterator<Item = PlainRecord>,
    timestamp_ms: i64,
) -> Result<Bytes, String> {
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value, headers))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: timestamp_ms,
            key,
            value,
            headers,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Waits until the partition has a record at or after `offset` or `wait` has passed, on the
/// partition's append notifier (no polling loop).
pub(crate) async fn wait_for_data(partition: &Partition, offset: i64, wait: Duration) {
    let wait = wait.min(Duration::from_millis(READ_WAIT_MS_MAX));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register interest before looking, so an append in between is not missed.
        let notified = partition.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match partition.lock() {
            Ok(state) if state.high_watermark() <= offset => {}
            // Data to read, or an offline partition whose error the read reports.
            _ => return,
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return;
        }
    }
}

/// Reads whole batches from `offset` on and decodes up to `max_messages` records at or after it.
/// The records it decompresses add up to at most `decompressed_max_bytes`: a read stops before
/// the batch that would pass it, and a first batch that alone passes it (a compression bomb)
/// is an error, not an exhausted memory.
pub(crate) fn read_from(
    partition: &Partition,
    offset: i64,
    max_messages: usize,
    decompressed_max_bytes: usize,
) -> Result<Read, LocalError> {
    let mut d = Decoding::new(partition, offset, max_messages, decompressed_max_bytes);
    let mut bytes_read = 0usize;
    while d.messages.len() < d.max_messages && bytes_read < READ_BYTES_MAX {
        let (slice, high_watermark) = {
            let st = partition
                .lock()
                .map_err(|e| LocalError::Storage(e.to_string()))?;
            // Cluster mode: only the leader serves reads, as it does Kafka fetches.
            if st.replica.as_ref().is_some_and(|r| !r.is_leader()) {
                return Err(LocalError::Rejected {
                    error: ResponseError::NotLeaderOrFollower,
                    message: None,
                });
            }
            let high_watermark = st.high_watermark();
            if d.next >= high_watermark && d.next >= st.log.log_start_offset() {
                break;
            }
            let slice = st
                .read_visible(d.next, READ_CHUNK_BYTES)
                .map_err(|e| match e {
                    LogError::OffsetOutOfRange { offset, start, end } => {
                        LocalError::OffsetOutOfRange { offset, start, end }
                    }
                    e => LocalError::Storage(e.to_string()),
                })?;
            (slice, high_watermark)
        };
        let data = slice
            .read_bytes()
            .map_err(|e| LocalError::Storage(e.to_string()))?;
        if data.is_empty() {
            break;
        }
        bytes_read += data.len();
        if d.decode(data, high_watermark)? {
            break;
        }
    }
    Ok(d.into_read())
}

/// Cluster mode: reads a partition another node leads, through that node (one chunk of up to
/// [`READ_CHUNK_BYTES`] below its high watermark), decoded as [`read_from`] does.
pub(crate) async fn read_remote(
    broker: &Broker,
    partition: &Partition,
    offset: i64,
    max_messages: usize,
    decompressed_max_bytes: usize,
) -> Result<Read, LocalError> {
    use strom_cluster::messages::{ReplicaError, ReplicaFetchRequest, Request, Response};
    let not_leader = || LocalError::Rejected {
        error: ResponseError::NotLeaderOrFollower,
        message: None,
    };
    let cluster = broker.cluster.get().ok_or_else(not_leader)?;
    let leader = cluster
        .image()
        .partition(&partition.topic, partition.index)
        .map(|p| p.leader)
        .filter(|&l| l != strom_cluster::NO_LEADER && l != broker.node_id())
        .ok_or_else(not_leader)?;
    let request = Request::ConsumerRead(ReplicaFetchRequest {
        replica_id: -1,
        topic: partition.topic.clone(),
        partition: partition.index,
        leader_epoch: -1,
        fetch_offset: offset,
        max_bytes: READ_CHUNK_BYTES as u32,
        max_wait_ms: 0,
    });
    let answer = cluster
        .node
        .call(leader, &request, &[], cluster.node.request_timeout())
        .await
        .map_err(|e| LocalError::Storage(e.to_string()))?;
    let (Response::ReplicaFetch(resp), data) = answer else {
        return Err(LocalError::Storage(format!(
            "unexpected answer to a read from node {leader}"
        )));
    };
    match resp.error {
        ReplicaError::None => {}
        ReplicaError::OffsetOutOfRange => {
            return Err(LocalError::OffsetOutOfRange {
                offset,
                start: resp.log_start_offset,
                end: resp.high_watermark,
            })
        }
        ReplicaError::NotLeader | ReplicaError::UnknownPartition => return Err(not_leader()),
        other => {
            return Err(LocalError::Storage(format!(
                "node {leader} refused a read: {other:?}"
            )))
        }
    }
    let mut d = Decoding::new(partition, offset, max_messages, decompressed_max_bytes);
    if !data.is_empty() {
        d.decode(data, resp.high_watermark)?;
    }
    Ok(d.into_read())
}

/// Records decoded from chunks of whole batches, from `next` on.
struct Decoding<'a> {
    partition: &'a Partition,
    messages: Vec<Message>,
    next: i64,
    max_messages: usize,
    decompressed_bytes: usize,
    decompressed_max_bytes: usize,
}

impl<'a> Decoding<'a> {
    fn new(
        partition: &'a Partition,
        offset: i64,
        max_messages: usize,
        decompressed_max_bytes: usize,
    ) -> Self {
        Decoding {
            partition,
            messages: Vec::new(),
            next: offset,
            max_messages: max_messages.clamp(1, READ_MESSAGES_MAX),
            decompressed_bytes: 0,
            decompressed_max_bytes,
        }
    }

    fn into_read(self) -> Read {
        Read {
            messages: self.messages,
            next_offset: self.next,
        }
    }

    /// Decodes one chunk; true when the read is complete (enough messages, the high
    /// watermark, or the decompression budget).
    fn decode(&mut self, data: Bytes, high_watermark: i64) -> Result<bool, LocalError> {
        let partition = self.partition;
        let next = self.next;
        // The same checks a produce passed before the bytes went to disk (CRC included).
        let headers = validate_batches(&data).map_err(|e| {
            LocalError::Storage(format!(
                "corrupt batch in {} partition {} at offset {next}: {e}",
                partition.topic, partition.index
            ))
        })?;
        let mut position = 0usize;
        for h in headers {
            let mut batch = data.slice(position..position + h.total_size());
            position += h.total_size();
            let last = h.base_offset + i64::from(h.last_offset_delta);
            if last < self.next {
                continue;
            }
            // A replicated log holds batches past the high watermark: never serve them.
            if h.base_offset >= high_watermark {
                return Ok(true);
            }
            if !h.is_control() {
                // Uncompressed records count too, but only compressed ones are bounded here:
                // the stored bytes read are bounded already.
                let budget = self
                    .decompressed_max_bytes
                    .saturating_sub(self.decompressed_bytes);
                let decoded = match decode_batch(&mut batch, budget) {
                    Ok(decoded) => decoded,
                    // The messages so far are served; the next read starts at this batch.
                    Err(RecordsError::TooLarge { .. }) if !self.messages.is_empty() => {
                        return Ok(true);
                    }
                    Err(e) => {
                        let setting = match e {
                            RecordsError::TooLarge { .. } => " (decompressed.batch.max.bytes)",
                            _ => "",
                        };
                        return Err(LocalError::Storage(format!(
                            "cannot decode the batch at offset {} of {} partition {}: {e}{setting}",
                            h.base_offset, partition.topic, partition.index
                        )));
                    }
                };
                self.decompressed_bytes += decoded.records_bytes;
                for r in decoded.set.records {
                    if r.offset < self.next || r.control {
                        continue;
                    }
                    if self.messages.len() == self.max_messages {
                        return Ok(true);
                    }
                    self.next = r.offset + 1;
                    self.messages.push(Message {
                        offset: r.offset,
                        key: r.key,
                        value: r.value,
                        headers: r
                            .headers
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                        timestamp_ms: r.timestamp,
                    });
                }
            }
            self.next = self.next.max(last + 1);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_ids_are_bounded() {
        assert!(validate_consumer_id("c1").is_ok());
        assert!(validate_consumer_id("").is_err());
        assert!(validate_consumer_id(&"x".repeat(CONSUMER_ID_MAX_BYTES + 1)).is_err());
        assert_eq!(consumer_group("c1"), "json:c1");
    }

    #[test]
    fn one_record_batches_pass_the_produce_checks() {
        let batch = encode_batch(
            NewRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v")),
                headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
                ..Default::default()
            },
            1234,
        )
        .unwrap();
        let headers = validate_batches(&batch).unwrap();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].records_count, 1);
        assert_eq!(headers[0].base_timestamp, 1234);
    }
}
