//! [`Consumer`]: reads messages from assigned partitions, either chosen by hand
//! ([`Consumer::assign`]) or given by a consumer group ([`Consumer::subscribe`]).
//!
//! The consumer tracks a position per partition: the offset of the next message to return.
//! A position starts at the group's committed offset, else where `auto_offset_reset` says,
//! moves as `poll` returns messages, and jumps with `seek`. `commit` stores the positions in the
//! group (OffsetCommit), which is where the next consumer of the group resumes.

pub mod assignor;
mod fetch;
mod group;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::OffsetCommitRequest;
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use crate::cluster::{Client, ClientConfig};
use crate::error::{ClientError, ResponseError, Result};
use crate::offsets::{self, group_id, topic_name, OffsetSpec, TopicPartition};
pub use crate::records::Message;
use fetch::Outcome;

/// How long `poll` pauses when a round came back empty without waiting on the broker.
const IDLE_PAUSE: Duration = Duration::from_millis(50);
use group::Membership;

/// Where to start a partition that has no committed offset (or whose offset is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The oldest message still in the log.
    #[default]
    Earliest,
    /// Only messages produced from now on.
    Latest,
    /// Fail the poll with `OffsetOutOfRange` / an error.
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// The consumer group; required by `subscribe` and `commit`.
    pub group_id: Option<String>,
    /// Where to start without a committed offset. Defaults to `Earliest`, so a consumer
    /// started after a producer sees what it wrote.
    pub auto_offset_reset: OffsetReset,
    /// The coordinator drops a member it has not heard from for this long.
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for members to rejoin during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// How often the background task heartbeats.
    pub heartbeat_interval_ms: u64,
    /// The longest a fetch waits on the broker for data.
    pub fetch_max_wait_ms: i32,
    /// The broker answers a fetch once it has this many bytes.
    pub fetch_min_bytes: i32,
    /// Upper bound of one fetch response's bytes.
    pub fetch_max_bytes: i32,
    /// Upper bound of one partition's bytes in a fetch response.
    pub partition_max_bytes: i32,
    /// How often a group member checks whether subscribed topics gained partitions.
    pub metadata_max_age_ms: u64,
    /// Most bytes the records of one fetch response may decompress to. A batch that alone
    /// decompresses past it (a compression bomb a producer wrote) fails the poll with an error
    /// rather than exhausting memory; a response whose batches add up past it is consumed over
    /// several polls.
    pub decompressed_max_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            auto_offset_reset: OffsetReset::Earliest,
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 20_000,
            heartbeat_interval_ms: 1_000,
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            metadata_max_age_ms: 5_000,
            decompressed_max_bytes: strom_protocol::records::DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
        }
    }
}

impl ConsumerConfig {
    /// Default settings with a group id.
    pub fn with_group(group_id: impl Into<String>) -> Self {
        ConsumerConfig {
            group_id: Some(group_id.into()),
            ..Default::default()
        }
    }
}

/// Reads messages from a Kafka-compatible cluster.
///
/// Manual assignment, as in the seed's demo:
///
/// ```no_run
/// # async fn demo() -> Result<(), strom_client::ClientError> {
/// use std::time::Duration;
/// use strom_client::Consumer;
///
/// let mut consumer = Consumer::connect("127.0.0.1:9092").await?;
/// consumer.assign("demo-topic", 0).await?;
/// loop {
///     for msg in consumer.poll(Duration::from_secs(1)).await? {
///         println!("offset {}: {}", msg.offset, msg.value_str());
///     }
/// }
/// # }
/// ```
///
/// As a member of a consumer group:
///
/// ```no_run
/// # async fn demo() -> Result<(), strom_client::ClientError> {
/// use std::time::Duration;
/// use strom_client::{Consumer, ConsumerConfig};
///
/// let mut consumer =
///     Consumer::connect_with("127.0.0.1:9092", ConsumerConfig::with_group("demo-group")).await?;
/// consumer.subscribe(&["demo-topic"]).await?;
/// let messages = consumer.poll(Duration::from_secs(5)).await?;
/// println!("got {} messages from {:?}", messages.len(), consumer.assignment());
/// consumer.commit().await?;
/// consumer.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    /// Position per assigned partition; `None` until resolved from the committed offset or
    /// `auto_offset_reset`.
    positions: BTreeMap<TopicPartition, Option<i64>>,
    /// Topics this consumer subscribed to as a group member (empty: manual assignment).
    subscription: Vec<String>,
    membership: Option<Membership>,
    /// Partitions whose position went out of range: resolved by the reset policy only.
    reset_pending: BTreeSet<TopicPartition>,
    /// Partition counts of the subscribed topics when the group last assigned them.
    partition_counts: BTreeMap<String, usize>,
    /// When `partition_counts` was last compared with the broker's metadata.
    metadata_checked: Instant,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("client", &self.client)
            .field("positions", &self.positions)
            .finish()
    }
}

impl Consumer {
    /// Connects with default settings (no group).
    pub async fn connect(bootstrap: &str) -> Result<Consumer> {
        Self::connect_with(bootstrap, ConsumerConfig::default()).await
    }

    /// Connects with the given settings.
    pub async fn connect_with(bootstrap: &str, config: ConsumerConfig) -> Result<Consumer> {
        let client = Client::connect_with(bootstrap, config.client.clone()).await?;
        Ok(Self::from_client(client, config))
    }

    /// A consumer over an existing client.
    pub fn from_client(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            positions: BTreeMap::new(),
            subscription: Vec::new(),
            membership: None,
            reset_pending: BTreeSet::new(),
            partition_counts: BTreeMap::new(),
            metadata_checked: Instant::now(),
        }
    }

    /// The underlying cluster handle.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Adds a partition to read by hand. It starts at the group's committed offset when a
    /// group is configured, else where `auto_offset_reset` says; `seek` overrides both.
    pub async fn assign(&mut self, topic: &str, partition: i32) -> Result<()> {
        if !self.subscription.is_empty() {
            return Err(ClientError::Invalid(
                "cannot assign partitions by hand while subscribed to a group".into(),
            ));
        }
        self.client.leader(topic, partition).await?;
        self.positions
            .entry((topic.to_string(), partition))
            .or_insert(None);
        Ok(())
    }

    /// Reads every partition of a topic by hand.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<()> {
        let info = self.client.refresh_topic(topic).await?;
        for p in info.partitions {
            self.assign(topic, p.partition).await?;
        }
        Ok(())
    }

    /// Joins the consumer group (`group_id` in the config) for these topics; the group decides
    /// which partitions this consumer reads. The join itself happens in the next `poll`.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        if self.config.group_id.is_none() {
            return Err(ClientError::Invalid(
                "subscribe needs a group id (ConsumerConfig::group_id)".into(),
            ));
        }
        if !self.positions.is_empty() && self.subscription.is_empty() {
            return Err(ClientError::Invalid(
                "cannot subscribe while partitions are assigned by hand".into(),
            ));
        }
        for t in topics {
            self.client.refresh_topic(t).await?;
        }
        self.subscription = topics.iter().map(|t| t.to_string()).collect();
        if let Some(m) = &self.membership {
            m.rejoin.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// The partitions this consumer reads.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// The offset of the next message `poll` returns for a partition, once known.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions
            .get(&(topic.to_string(), partition))
            .copied()
            .flatten()
    }

    /// Moves a partition's position; the next `poll` reads from `offset`.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        match self.positions.get_mut(&(topic.to_string(), partition)) {
            Some(pos) => {
                *pos = Some(offset);
                Ok(())
            }
            None => Err(ClientError::Invalid(format!(
                "topic {topic} partition {partition} is not assigned to this consumer"
            ))),
        }
    }

    /// Moves every assigned partition to its first (`Earliest`) or next (`Latest`) offset.
    pub async fn seek_to(&mut self, spec: OffsetSpec) -> Result<()> {
        self.ensure_membership().await?;
        let parts = self.assignment();
        let found = offsets::list_offsets(&self.client, &parts, spec).await?;
        for (tp, offset) in found {
            self.positions.insert(tp, Some(offset));
        }
        Ok(())
    }

    /// The log end offset (the offset the next produced message gets) of each assigned
    /// partition; lets a caller stop at the end of what exists now.
    pub async fn end_offsets(&self) -> Result<HashMap<TopicPartition, i64>> {
        offsets::list_offsets(&self.client, &self.assignment(), OffsetSpec::Latest).await
    }

    /// Waits up to `timeout` for messages and returns what arrived (possibly nothing).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_membership().await?;
            self.resolve_positions().await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let max_wait_ms = (remaining.as_millis() as i32).min(self.config.fetch_max_wait_ms);
            let round_started = Instant::now();
            let messages = if self.positions.is_empty() {
                Vec::new()
            } else {
                self.fetch_once(max_wait_ms).await?
            };
            if messages.is_empty() && round_started.elapsed() < IDLE_PAUSE {
                // Nothing to fetch, or the broker answered at once (no leader, an error):
                // pause instead of spinning.
                let remaining = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(remaining.min(IDLE_PAUSE)).await;
            }
            if !messages.is_empty() || Instant::now() >= deadline {
                return Ok(messages);
            }
        }
    }

    /// Commits the current positions to the group (synchronously).
    pub async fn commit(&mut self) -> Result<()> {
        let positions: Vec<(TopicPartition, i64)> = self
            .positions
            .iter()
            .filter_map(|(tp, pos)| pos.map(|p| (tp.clone(), p)))
            .collect();
        self.commit_offsets(&positions).await
    }

    /// Commits the given offsets (each the offset of the next message to read) to the group.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group = self.group()?.to_string();
        let group = group.as_str();
        if offsets.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic.entry(topic.as_str()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::new())),
            );
        }
        let (generation, member_id, conn) = match &self.membership {
            Some(m) => (m.generation_id, m.member_id.clone(), m.coordinator.clone()),
            None => {
                let addr = self.client.find_coordinator(group).await?;
                (-1, String::new(), self.client.connection(&addr).await?)
            }
        };
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id))
            .with_retention_time_ms(-1)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let response = match conn.send(&request).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(m) = &self.membership {
                    m.note_error(&e);
                }
                return Err(e);
            }
        };
        for t in response.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    let err = ClientError::kafka(p.error_code, "commit");
                    match &self.membership {
                        Some(m) => m.note_error(&err),
                        None if err.code() == Some(ResponseError::NotCoordinator) => {
                            self.client.invalidate_connection(conn.addr())
                        }
                        None => {}
                    }
                    return Err(ClientError::kafka(
                        p.error_code,
                        format!(
                            "committing offsets of group {group} topic {} partition {}",
                            t.name.0, p.partition_index
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Leaves the group (if a member) so the others take over at once.
    pub async fn close(mut self) -> Result<()> {
        if let Some(m) = self.membership.take() {
            m.leave().await?;
        }
        Ok(())
    }

    fn group(&self) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| {
            ClientError::Invalid(
                "committing offsets needs a group id (ConsumerConfig::group_id)".into(),
            )
        })
    }

    /// Joins or rejoins the group when subscribed and needed; replaces the positions with the
    /// new assignment.
    async fn ensure_membership(&mut self) -> Result<()> {
        if self.subscription.is_empty() {
            return Ok(());
        }
        let mut needs_join = match &self.membership {
            None => true,
            Some(m) => m.needs_rejoin(),
        };
        if !needs_join && self.metadata_checked.elapsed() >= self.metadata_max_age() {
            // Partitions added to a subscribed topic are picked up by rebalancing.
            let counts = self.subscribed_partition_counts().await?;
            needs_join = counts != self.partition_counts;
        }
        if !needs_join {
            return Ok(());
        }
        let group = self.group()?.to_string();
        let previous = self.membership.take();
        let membership = Membership::join(
            &self.client,
            &self.config,
            &group,
            &self.subscription,
            previous,
        )
        .await?;
        // Keep positions of partitions we still own; the rest start from the commit.
        let old = std::mem::take(&mut self.positions);
        for tp in &membership.assignment {
            let pos = old.get(tp).copied().flatten();
            self.positions.insert(tp.clone(), pos);
        }
        self.membership = Some(membership);
        self.partition_counts = self.subscribed_partition_counts().await?;
        Ok(())
    }

    fn metadata_max_age(&self) -> Duration {
        Duration::from_millis(self.config.metadata_max_age_ms)
    }

    /// The partition count of every subscribed topic, fresh from the broker.
    async fn subscribed_partition_counts(&mut self) -> Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for topic in &self.subscription {
            // A subscribed topic that is missing counts as zero partitions.
            let count = match self.client.refresh_topic(topic).await {
                Ok(info) => info.partitions.len(),
                Err(e) if e.code() == Some(ResponseError::UnknownTopicOrPartition) => 0,
                Err(e) => return Err(e),
            };
            counts.insert(topic.clone(), count);
        }
        self.metadata_checked = Instant::now();
        Ok(counts)
    }

    /// Gives every partition without a position one: the committed offset, else the reset
    /// policy.
    async fn resolve_positions(&mut self) -> Result<()> {
        let unknown: Vec<TopicPartition> = self
            .positions
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let mut found = HashMap::new();
        let from_commit: Vec<TopicPartition> = unknown
            .iter()
            .filter(|tp| !self.reset_pending.contains(*tp))
            .cloned()
            .collect();
        if let (Some(group), false) = (self.config.group_id.clone(), from_commit.is_empty()) {
            let committed = match &self.membership {
                Some(m) => {
                    let found =
                        offsets::committed_offsets(&m.coordinator, &group, Some(&from_commit))
                            .await;
                    if let Err(e) = &found {
                        m.note_error(e);
                    }
                    found?
                }
                None => {
                    let addr = self.client.find_coordinator(&group).await?;
                    let conn = self.client.connection(&addr).await?;
                    let found = offsets::committed_offsets(&conn, &group, Some(&from_commit)).await;
                    if matches!(&found, Err(e) if e.code() == Some(ResponseError::NotCoordinator)) {
                        self.client.invalidate_connection(&addr);
                    }
                    found?
                }
            };
            found.extend(committed);
        }
        let rest: Vec<TopicPartition> = unknown
            .into_iter()
            .filter(|tp| !found.contains_key(tp))
            .collect();
        if !rest.is_empty() {
            let spec = match self.config.auto_offset_reset {
                OffsetReset::Earliest => OffsetSpec::Earliest,
                OffsetReset::Latest => OffsetSpec::Latest,
                OffsetReset::None => {
                    return Err(ClientError::Invalid(format!(
                        "no committed offset for {} and auto_offset_reset is None",
                        describe_partitions(&rest)
                    )))
                }
            };
            found.extend(offsets::list_offsets(&self.client, &rest, spec).await?);
        }
        for (tp, offset) in found {
            self.reset_pending.remove(&tp);
            if let Some(pos) = self.positions.get_mut(&tp) {
                *pos = Some(offset);
            }
        }
        Ok(())
    }

    /// One fetch round over every leader; advances positions past what it returns.
    async fn fetch_once(&mut self, max_wait_ms: i32) -> Result<Vec<Message>> {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, pos) in &self.positions {
            let Some(pos) = pos else { continue };
            match self.client.leader(&tp.0, tp.1).await {
                Ok(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), *pos)),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic = %tp.0, partition = tp.1, error = %e, "no leader yet");
                    self.client.invalidate_topic(&tp.0);
                }
                Err(e) => return Err(e),
            }
        }
        let mut messages = Vec::new();
        let mut wait = max_wait_ms.max(0);
        for (leader, positions) in by_leader {
            let conn = match self.client.broker_connection(leader).await {
                Ok(c) => c,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(leader, error = %e, "cannot reach leader");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let outcomes = match fetch::fetch(&conn, &self.config, &positions, wait).await {
                Ok(o) => o,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(leader, error = %e, "fetch failed, retrying on next poll");
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (tp, outcome) in outcomes {
                match outcome {
                    Outcome::Data {
                        messages: mut got,
                        next_offset,
                    } => {
                        let pos = self.positions.get_mut(&tp);
                        let Some(Some(pos)) = pos else { continue };
                        let after = got.last().map(|m| m.offset + 1);
                        *pos = (*pos).max(after.or(next_offset).unwrap_or(*pos));
                        messages.append(&mut got);
                    }
                    Outcome::Error(code) => self.partition_error(&tp, code)?,
                }
            }
            if !messages.is_empty() {
                wait = 0; // data in hand: do not long-poll the other leaders
            }
        }
        Ok(messages)
    }

    fn partition_error(&mut self, tp: &TopicPartition, code: i16) -> Result<()> {
        let context = || format!("fetching topic {} partition {}", tp.0, tp.1);
        match ResponseError::try_from_code(code) {
            Some(ResponseError::OffsetOutOfRange)
                if self.config.auto_offset_reset != OffsetReset::None =>
            {
                tracing::debug!(topic = %tp.0, partition = tp.1, "offset out of range, resetting");
                // Resolve by the reset policy, not the (stale) committed offset.
                self.positions.insert(tp.clone(), None);
                self.reset_pending.insert(tp.clone());
                Ok(())
            }
            Some(e) if e.is_retriable() => {
                self.client.invalidate_topic(&tp.0);
                Ok(())
            }
            _ => Err(ClientError::kafka(code, context())),
        }
    }
}

fn describe_partitions(parts: &[TopicPartition]) -> String {
    parts
        .iter()
        .map(|(t, p)| format!("{t}/{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}
