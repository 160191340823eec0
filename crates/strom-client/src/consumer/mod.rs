//! [`Consumer`]: reads messages from assigned partitions, either chosen by hand
//! ([`Consumer::assign`]) or given by a consumer group ([`Consumer::subscribe`]).
//!
//! The consumer tracks a position per partition: the offset of the next message to return.
//! A position starts at the group's committed offset, else where `auto_offset_reset` says,
//! moves as `poll` returns messages, and jumps with `seek`. `commit` stores the positions in the
//! group (OffsetCommit), which is where the next consumer of the group resumes.
//!
//! `poll` returns at most `max_poll_records` messages; the rest of a fetch waits in the
//! consumer for the next `poll`. Fetches go to every partition leader at once, one in flight
//! per broker, and go on between polls (prefetching; see `fetcher`), up to
//! `buffered_max_bytes` of records waiting. Paused partitions are not fetched. With
//! `enable_auto_commit`, positions are committed every `auto_commit_interval_ms` during
//! `poll`, before a rebalance takes partitions away, and on `close`; without it, what was
//! handled is committed with `commit`. Delivery is at least once either way: a consumer that
//! dies after handling messages and before the commit leaves them to the next owner.

pub(crate) mod aborted;
pub mod assignor;
mod commit;
mod consumer_protocol;
mod fetch;
mod fetcher;
mod group;
mod group_metadata;
mod reconcile;
pub mod sticky;
mod stream;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cluster::{Client, ClientConfig};
use crate::error::{ClientError, ResponseError, Result};
pub use crate::offsets::IsolationLevel;
use crate::offsets::{self, OffsetSpec, TopicPartition};
pub use crate::records::Message;
use consumer_protocol::ConsumerMembership;
pub use consumer_protocol::GroupProtocol;
use fetch::Outcome;
use fetcher::{Completed, Fetcher};
pub use group_metadata::ConsumerGroupMetadata;
pub use stream::MessageStream;

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

/// A partition assignment strategy offered in JoinGroup (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// `range`, eager: every member gives up all its partitions at each rebalance.
    Range,
    /// `cooperative-sticky` (KIP-429): members keep their partitions across rebalances and
    /// give up only those that move, which are assigned in a second rebalance.
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => assignor::RANGE_ASSIGNOR,
            Assignor::CooperativeSticky => sticky::COOPERATIVE_STICKY_ASSIGNOR,
        }
    }
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// The consumer group; required by `subscribe` and `commit`.
    pub group_id: Option<String>,
    /// The group protocol of `subscribe` (`group.protocol`): `Classic` (the default) or
    /// `Consumer` (KIP-848), where the coordinator assigns and the broker's
    /// `group.consumer.heartbeat.interval.ms` and `group.consumer.session.timeout.ms` stand in
    /// for `heartbeat_interval_ms` and `session_timeout_ms`.
    pub group_protocol: GroupProtocol,
    /// With `GroupProtocol::Consumer`, the server assignor to ask for (`group.remote.assignor`,
    /// e.g. `uniform` or `range`); `None` leaves the choice to the broker.
    pub group_remote_assignor: Option<String>,
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
    /// The most messages one `poll` returns (`max.poll.records`).
    pub max_poll_records: usize,
    /// Commit positions during `poll`, before partitions are revoked, and on `close`
    /// (`enable.auto.commit`).
    pub enable_auto_commit: bool,
    /// How often `poll` commits with `enable_auto_commit` (`auto.commit.interval.ms`).
    pub auto_commit_interval_ms: u64,
    /// A group member that does not call `poll` for this long leaves the group, so its
    /// partitions go to members that make progress (`max.poll.interval.ms`); the next `poll`
    /// rejoins.
    pub max_poll_interval_ms: u64,
    /// Static membership (`group.instance.id`, KIP-345): a member that restarts with the
    /// same id within the session timeout gets its partitions back without a rebalance, and
    /// `close` does not leave the group.
    pub group_instance_id: Option<String>,
    /// Assignors offered to the group, preferred first; the group uses one every member
    /// offers. The default is the Java client's: `range`, then `cooperative-sticky`, so a group
    /// can move to cooperative rebalancing one member at a time.
    pub assignors: Vec<Assignor>,
    /// Which records `poll` returns (`isolation.level`): `ReadUncommitted` (the default, as
    /// in Kafka) or `ReadCommitted`, which reads only committed transactions and stops at the
    /// last stable offset.
    pub isolation_level: IsolationLevel,
    /// Bytes of fetched records (keys, values, headers) waiting for `poll` at which no more
    /// fetches are sent (librdkafka's `queued.max.messages.kbytes`). Each broker's response
    /// adds at most `fetch_max_bytes` past it.
    pub buffered_max_bytes: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
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
            max_poll_records: 500,
            enable_auto_commit: false,
            auto_commit_interval_ms: 5_000,
            max_poll_interval_ms: 300_000,
            group_instance_id: None,
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            isolation_level: IsolationLevel::ReadUncommitted,
            buffered_max_bytes: 64 * 1024 * 1024,
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

/// Told when a group rebalance moves partitions; see [`Consumer::set_rebalance_listener`].
/// With `enable_auto_commit`, positions are committed before `on_partitions_revoked` runs.
pub trait RebalanceListener: Send {
    /// These partitions are about to be taken away (the member rejoins the group).
    fn on_partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
    /// The group gave this member these partitions.
    fn on_partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
    }
    /// These partitions were lost without a clean hand-over (the member was dropped from the
    /// group); their positions may already belong to another member.
    fn on_partitions_lost(&mut self, partitions: &[TopicPartition]) {
        let _ = partitions;
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
    /// Shared with the fetch tasks.
    config: Arc<ConsumerConfig>,
    /// Position per assigned partition; `None` until resolved from the committed offset or
    /// `auto_offset_reset`.
    positions: BTreeMap<TopicPartition, Option<i64>>,
    /// Topics this consumer subscribed to as a group member (empty: manual assignment).
    subscription: Vec<String>,
    membership: Option<Membership>,
    /// Membership with `GroupProtocol::Consumer`, instead of `membership`.
    consumer_membership: Option<ConsumerMembership>,
    /// Partitions whose position went out of range: resolved by the reset policy only.
    reset_pending: BTreeSet<TopicPartition>,
    /// Partition counts of the subscribed topics when the group last assigned them.
    partition_counts: BTreeMap<String, usize>,
    /// When `partition_counts` was last compared with the broker's metadata.
    metadata_checked: Instant,
    /// Fetches in flight and records fetched but not yet returned.
    fetcher: Fetcher,
    /// Counts fetches sent, to rotate which partition comes first in each.
    fetch_rotation: usize,
    /// Partitions not fetched until resumed.
    paused: BTreeSet<TopicPartition>,
    listener: Option<Box<dyn RebalanceListener>>,
    /// When auto-commit last committed.
    auto_committed: Instant,
    /// Milliseconds since `created` of the last `poll`, read by the heartbeat task for
    /// `max_poll_interval_ms`.
    last_poll_ms: Arc<AtomicU64>,
    created: Instant,
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
            config: Arc::new(config),
            positions: BTreeMap::new(),
            subscription: Vec::new(),
            membership: None,
            consumer_membership: None,
            reset_pending: BTreeSet::new(),
            partition_counts: BTreeMap::new(),
            metadata_checked: Instant::now(),
            fetcher: Fetcher::new(),
            fetch_rotation: 0,
            paused: BTreeSet::new(),
            listener: None,
            auto_committed: Instant::now(),
            last_poll_ms: Arc::new(AtomicU64::new(0)),
            created: Instant::now(),
        }
    }

    /// The consumer as a `Stream` of messages (see [`MessageStream`]); `into_inner` gives the
    /// consumer back.
    pub fn into_stream(self) -> MessageStream {
        MessageStream::new(self)
    }

    /// Calls `listener` when a rebalance revokes, assigns or loses partitions.
    pub fn set_rebalance_listener(&mut self, listener: impl RebalanceListener + 'static) {
        self.listener = Some(Box::new(listener));
    }

    /// Stops fetching these partitions until [`Consumer::resume`]; messages already fetched
    /// for them are dropped and will be fetched again.
    pub fn pause(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if self.positions.contains_key(tp) {
                self.paused.insert(tp.clone());
            }
        }
        self.fetcher.drop_partitions(|tp| partitions.contains(tp));
    }

    /// Fetches these partitions again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.paused.remove(tp);
        }
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.paused.iter().cloned().collect()
    }

    /// The underlying cluster handle.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The group, generation and member ids for
    /// [`crate::Producer::send_offsets_to_transaction`]. Generation -1 and an empty member
    /// id until the consumer joined its group (or when it assigns partitions by hand).
    pub fn group_metadata(&self) -> Result<ConsumerGroupMetadata> {
        let group_id = self.config.group_id.clone().ok_or_else(|| {
            ClientError::Invalid(
                "group metadata needs a group id (ConsumerConfig::group_id)".into(),
            )
        })?;
        let mut metadata = ConsumerGroupMetadata::new(group_id);
        metadata.group_instance_id = self.config.group_instance_id.clone();
        if let Some(m) = &self.membership {
            metadata.generation_id = m.generation_id;
            metadata.member_id = m.member_id.clone();
        }
        if let Some(m) = &self.consumer_membership {
            // KIP-848 commits carry the member epoch where the generation was.
            (metadata.member_id, metadata.generation_id) = m.identity();
        }
        Ok(metadata)
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
        if let Some(m) = &self.consumer_membership {
            m.set_subscription(&self.subscription);
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
        let key = (topic.to_string(), partition);
        self.fetcher.drop_partitions(|tp| *tp == key);
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
        self.fetcher.clear();
        let found =
            offsets::list_offsets_isolated(&self.client, &parts, spec, self.config.isolation_level)
                .await?;
        for (tp, offset) in found {
            self.positions.insert(tp, Some(offset));
        }
        Ok(())
    }

    /// The log end offset (the offset the next produced message gets) of each assigned
    /// partition; lets a caller stop at the end of what exists now.
    pub async fn end_offsets(&self) -> Result<HashMap<TopicPartition, i64>> {
        offsets::list_offsets_isolated(
            &self.client,
            &self.assignment(),
            OffsetSpec::Latest,
            self.config.isolation_level,
        )
        .await
    }

    /// Waits up to `timeout` for messages and returns what arrived (possibly nothing).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>> {
        self.last_poll_ms
            .store(self.created.elapsed().as_millis() as u64, Ordering::Release);
        self.maybe_auto_commit().await;
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_membership().await?;
            // Fetches that came back while the application worked.
            while let Some(completed) = self.fetcher.try_completed() {
                self.take_fetch(completed)?;
            }
            if self.fetcher.has_buffered() {
                let messages = self
                    .fetcher
                    .take(self.config.max_poll_records.max(1), &mut self.positions);
                // Prefetch: what was just emptied is fetched while the caller handles this.
                self.send_fetches().await?;
                return Ok(messages);
            }
            self.resolve_positions().await?;
            self.send_fetches().await?;
            let round_started = Instant::now();
            match self.fetcher.next_completed(deadline).await {
                Some(completed) => self.take_fetch(completed)?,
                None if round_started.elapsed() < IDLE_PAUSE => {
                    // Nothing to fetch (all paused, no leader): pause instead of spinning.
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(remaining.min(IDLE_PAUSE)).await;
                }
                None => {}
            }
            if !self.fetcher.has_buffered() && Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// Commits the current positions to the group (synchronously).
    pub async fn commit(&mut self) -> Result<()> {
        self.commit_positions().await
    }

    /// Commits the given offsets (each the offset of the next message to read) to the group.
    /// A member of a `group.protocol=consumer` group commits with its member epoch.
    pub async fn commit_offsets(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<()> {
        let group = self.group()?.to_string();
        let group = group.as_str();
        if offsets.is_empty() {
            return Ok(());
        }
        if self.consumer_membership.is_some() {
            return self.commit_with_member_epoch(group, offsets).await;
        }
        let (generation, member_id, conn) = match &self.membership {
            Some(m) => (m.generation_id, m.member_id.clone(), m.coordinator.clone()),
            None => {
                let addr = self.client.find_coordinator(group).await?;
                (-1, String::new(), self.client.connection(&addr).await?)
            }
        };
        let request = commit::commit_request(group, generation, &member_id, offsets);
        let response = match conn.send(&request).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(m) = &self.membership {
                    m.note_error(&e);
                }
                return Err(e);
            }
        };
        if let Some((topic, partition, code)) = commit::first_error(&response) {
            let err = ClientError::kafka(code, "commit");
            match &self.membership {
                Some(m) => m.note_error(&err),
                None if err.code() == Some(ResponseError::NotCoordinator) => {
                    self.client.invalidate_connection(conn.addr())
                }
                None => {}
            }
            return Err(ClientError::kafka(
                code,
                format!("committing offsets of group {group} topic {topic} partition {partition}"),
            ));
        }
        Ok(())
    }

    /// Leaves the group (if a member) so the others take over at once.
    pub async fn close(mut self) -> Result<()> {
        if self.config.enable_auto_commit && self.config.group_id.is_some() {
            self.fetcher.clear();
            if let Err(e) = self.commit().await {
                tracing::warn!(error = %e, "auto-commit on close failed");
            }
        }
        if self.consumer_membership.is_some() {
            return self.leave_consumer_group().await;
        }
        if let Some(m) = self.membership.take() {
            if self.config.group_instance_id.is_some() {
                // A static member keeps its place until the session timeout (KIP-345).
                return Ok(());
            }
            m.leave().await?;
        }
        Ok(())
    }

    /// With `enable_auto_commit`, commits the positions when the interval has passed.
    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.config.group_id.is_none()
            || self.auto_committed.elapsed()
                < Duration::from_millis(self.config.auto_commit_interval_ms)
        {
            return;
        }
        self.auto_committed = Instant::now();
        if let Err(e) = self.commit_positions().await {
            tracing::debug!(error = %e, "auto-commit failed; retrying at the next interval");
        }
    }

    /// Commits the positions of returned messages (not of buffered ones).
    async fn commit_positions(&mut self) -> Result<()> {
        let positions: Vec<(TopicPartition, i64)> = self
            .positions
            .iter()
            .filter_map(|(tp, pos)| pos.map(|p| (tp.clone(), p)))
            .collect();
        self.commit_offsets(&positions).await
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
        if self.config.group_protocol == GroupProtocol::Consumer {
            return self.ensure_consumer_membership().await;
        }
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
        let owned: Vec<TopicPartition> = self.positions.keys().cloned().collect();
        let lost = self.membership.as_ref().is_some_and(|m| m.lost());
        let cooperative = self.membership.as_ref().is_some_and(|m| m.cooperative);
        if !owned.is_empty() {
            self.fetcher.clear();
            if lost {
                if let Some(l) = self.listener.as_mut() {
                    l.on_partitions_lost(&owned);
                }
            } else if !cooperative {
                // Eager: everything is given up before rejoining.
                if self.config.enable_auto_commit {
                    if let Err(e) = self.commit_positions().await {
                        tracing::debug!(error = %e, "commit before the rebalance failed");
                    }
                }
                if let Some(l) = self.listener.as_mut() {
                    l.on_partitions_revoked(&owned);
                }
            }
        }
        let still_owned: Vec<TopicPartition> = if lost || !cooperative {
            Vec::new()
        } else {
            owned.clone()
        };
        let previous = self.membership.take();
        let membership = Membership::join(
            &self.client,
            &self.config,
            &group,
            &self.subscription,
            &still_owned,
            previous,
            group::PollClock {
                created: self.created,
                last_poll_ms: self.last_poll_ms.clone(),
            },
        )
        .await?;
        let new: Vec<TopicPartition> = membership.assignment.clone();
        let revoked: Vec<TopicPartition> = still_owned
            .iter()
            .filter(|tp| !new.contains(tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = if membership.cooperative {
            new.iter()
                .filter(|tp| !still_owned.contains(tp))
                .cloned()
                .collect()
        } else {
            new.clone()
        };
        let cooperative_now = membership.cooperative;
        self.membership = Some(membership);
        if !revoked.is_empty() {
            // Cooperative: give up only what moves, commit it first, and rejoin at once so
            // the group can hand it to its new member.
            if self.config.enable_auto_commit {
                let offsets: Vec<(TopicPartition, i64)> = revoked
                    .iter()
                    .filter_map(|tp| {
                        self.positions
                            .get(tp)
                            .copied()
                            .flatten()
                            .map(|p| (tp.clone(), p))
                    })
                    .collect();
                if let Err(e) = self.commit_offsets(&offsets).await {
                    tracing::debug!(error = %e, "commit of revoked partitions failed");
                }
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_partitions_revoked(&revoked);
            }
            if let Some(m) = &self.membership {
                m.rejoin.store(true, Ordering::Release);
            }
        }
        // Keep positions of partitions we still own; the rest start from the commit.
        let old = std::mem::take(&mut self.positions);
        for tp in &new {
            let pos = old.get(tp).copied().flatten();
            self.positions.insert(tp.clone(), pos);
        }
        self.paused.retain(|tp| new.contains(tp));
        if let Some(l) = self.listener.as_mut() {
            if !added.is_empty() || !cooperative_now {
                l.on_partitions_assigned(&added);
            }
        }
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
            found.extend(
                offsets::list_offsets_isolated(
                    &self.client,
                    &rest,
                    spec,
                    self.config.isolation_level,
                )
                .await?,
            );
        }
        for (tp, offset) in found {
            self.reset_pending.remove(&tp);
            if let Some(pos) = self.positions.get_mut(&tp) {
                *pos = Some(offset);
            }
        }
        Ok(())
    }

    /// Sends a fetch to every broker that has none in flight, for each partition it leads
    /// that is assigned, has a position, is not paused and is not in a fetch in flight: from
    /// the end of its buffered records, or from its position.
    async fn send_fetches(&mut self) -> Result<()> {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, pos) in &self.positions {
            let Some(pos) = pos else { continue };
            if self.paused.contains(tp) || self.fetcher.is_in_flight(tp) {
                continue;
            }
            let pos = self.fetcher.buffered_end(tp).unwrap_or(*pos);
            match self.client.leader(&tp.0, tp.1).await {
                Ok(leader) => by_leader.entry(leader).or_default().push((tp.clone(), pos)),
                Err(e) if e.is_retriable() => {
                    tracing::debug!(topic = %tp.0, partition = tp.1, error = %e, "no leader yet");
                    self.client.invalidate_topic(&tp.0);
                }
                Err(e) => return Err(e),
            }
        }
        for (leader, mut asked) in by_leader {
            if self
                .fetcher
                .may_fetch_from(leader, self.config.buffered_max_bytes)
            {
                // A batch larger than `partition_max_bytes` is returned only for the first
                // partition of a fetch (KIP-74): each partition takes its turn at the front,
                // or one that is always fetched ahead would starve the others.
                self.fetch_rotation = self.fetch_rotation.wrapping_add(1);
                let turn = self.fetch_rotation % asked.len();
                asked.rotate_left(turn);
                self.fetcher.send(&self.client, &self.config, leader, asked);
            }
        }
        Ok(())
    }

    /// Takes in a fetch that came back: buffers the records of partitions whose fetch offset
    /// is still the one asked for (a seek, pause or rebalance since drops them) and handles
    /// partition errors.
    fn take_fetch(&mut self, completed: Completed) -> Result<()> {
        let Completed {
            broker,
            asked,
            result,
        } = completed;
        let outcomes = match result {
            Ok(o) => o,
            Err(e) if e.is_retriable() => {
                tracing::debug!(broker, error = %e, "fetch failed, retrying");
                // The leader may have moved: look again before the next fetch.
                for (tp, _) in &asked {
                    self.client.invalidate_topic(&tp.0);
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for (tp, outcome) in outcomes {
            let Some(&(_, from)) = asked.iter().find(|(a, _)| *a == tp) else {
                continue;
            };
            let position = self.positions.get(&tp).copied().flatten();
            let fetch_offset = position.map(|p| self.fetcher.buffered_end(&tp).unwrap_or(p));
            if fetch_offset != Some(from) || self.paused.contains(&tp) {
                continue; // sought, paused or revoked while the fetch was out
            }
            match outcome {
                Outcome::Data {
                    messages,
                    next_offset,
                } => {
                    let after = messages.last().map(|m| m.offset + 1);
                    let end = after.max(next_offset).unwrap_or(from).max(from);
                    if messages.is_empty() && self.fetcher.buffered_end(&tp).is_none() {
                        // Only control batches or aborted records: skip past them.
                        self.positions.insert(tp, Some(end));
                    } else {
                        self.fetcher.buffer(tp, messages, end);
                    }
                }
                Outcome::Error(code) => self.partition_error(&tp, code)?,
            }
        }
        Ok(())
    }

    fn partition_error(&mut self, tp: &TopicPartition, code: i16) -> Result<()> {
        let context = || format!("fetching topic {} partition {}", tp.0, tp.1);
        match ResponseError::try_from_code(code) {
            Some(ResponseError::OffsetOutOfRange)
                if self.config.auto_offset_reset != OffsetReset::None =>
            {
                tracing::debug!(topic = %tp.0, partition = tp.1, "offset out of range, resetting");
                self.fetcher.drop_partitions(|t| t == tp);
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
