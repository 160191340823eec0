//! Membership in a consumer group with the consumer protocol of KIP-848
//! (`group.protocol=consumer`): the coordinator computes the assignment; the member
//! heartbeats (ConsumerGroupHeartbeat) to learn it and to report the partitions it owns.
//!
//! A background task heartbeats at the interval the coordinator asks for and keeps the
//! coordinator's latest assignment for this member (the target). The consumer's `poll` does
//! the rest (`reconcile`): it gives up partitions no longer in the target (commit,
//! `on_partitions_revoked`), takes the new ones, and wakes the task to report what it now
//! owns; only then does the coordinator hand the freed partitions to other members. Kafka's
//! `ConsumerMembershipManager` and `ConsumerHeartbeatRequestManager` are the reference.
//!
//! Every heartbeat is a full one (subscription, rebalance timeout, owned partitions), where
//! Kafka's client sends only what changed: a lost response then never leaves member and
//! coordinator disagreeing, for a few bytes more per heartbeat.
//!
//! The member id is a UUID the client makes (ConsumerGroupHeartbeat v1) and keeps for its
//! lifetime. A member that is fenced (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID, as after a
//! coordinator restart) or that left after `max_poll_interval_ms` is *lost*: the consumer
//! drops its partitions (`on_partitions_lost`) and rejoins with epoch 0.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use super::group::PollClock;
use super::ConsumerConfig;
use crate::cluster::Client;
use crate::connection::Connection;
use crate::error::{ClientError, ResponseError, Result};
use crate::offsets::{group_id, topic_name, TopicPartition};

/// The member epoch that leaves the group for good.
const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member leaves with: the coordinator keeps its partitions until
/// it comes back or its session ends (KIP-345 for KIP-848).
const STATIC_LEAVE_EPOCH: i32 = -2;
/// Consecutive failed heartbeats after which the backoff stops growing.
const BACKOFF_STEPS_MAX: u32 = 5;

/// Partitions by topic id, as the coordinator names them.
pub(crate) type IdAssignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the heartbeat task and the consumer share. Locked briefly, never across an await.
struct State {
    member_id: String,
    member_epoch: i32,
    subscription: Vec<String>,
    /// The partitions the consumer owns, sent in every heartbeat.
    owned: IdAssignment,
    /// The coordinator's latest assignment for this member; `None` until it answered a join.
    target: Option<IdAssignment>,
    /// The member is out of the group; the consumer drops its partitions and rejoins.
    lost: bool,
    /// An answer the member cannot recover from (an unsupported assignor, a group at its
    /// maximum size, a broker without KIP-848); every `poll` returns it.
    fatal: Option<ClientError>,
    /// The coordinator, once found; `None` makes the next heartbeat look for it again.
    coordinator: Option<Arc<Connection>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the task to heartbeat at once: an acknowledgement, a rejoin, a stale epoch.
    wake: Notify,
    /// Notified after every heartbeat round trip.
    answered: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("member state poisoned")
    }
}

/// This consumer's place in a `group.protocol=consumer` group.
pub(crate) struct ConsumerMembership {
    pub group: String,
    instance_id: Option<String>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// The target last reconciled, by topic name; `None` before the first (so that the first
    /// assignment, even an empty one, is announced to the listener).
    pub reconciled: Option<BTreeSet<TopicPartition>>,
    /// Topic names by id, learned from the metadata of the subscribed topics.
    pub topic_names: HashMap<Uuid, String>,
    /// When metadata was last asked for an id not in `topic_names`.
    pub names_refreshed: Option<Instant>,
}

impl ConsumerMembership {
    /// Starts joining the group: the heartbeat task sends the first heartbeat at once and
    /// the next `poll` reconciles what the coordinator answers.
    pub fn start(
        client: &Client,
        config: &ConsumerConfig,
        group: &str,
        topics: &[String],
        clock: PollClock,
    ) -> ConsumerMembership {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                member_id: Uuid::new_v4().to_string(),
                member_epoch: 0,
                subscription: topics.to_vec(),
                owned: IdAssignment::new(),
                target: None,
                lost: false,
                fatal: None,
                coordinator: None,
            }),
            wake: Notify::new(),
            answered: Notify::new(),
        });
        let beat = Beat {
            client: client.clone(),
            group: group.to_string(),
            instance_id: config.group_instance_id.clone(),
            server_assignor: config.group_remote_assignor.clone(),
            // As Kafka's client: a member has until its next poll to revoke.
            rebalance_timeout_ms: i32::try_from(config.max_poll_interval_ms).unwrap_or(i32::MAX),
            fallback_interval: Duration::from_millis(config.heartbeat_interval_ms),
            max_poll_interval: Duration::from_millis(config.max_poll_interval_ms),
            clock,
        };
        let task = tokio::spawn(heartbeat_loop(beat, shared.clone()));
        ConsumerMembership {
            group: group.to_string(),
            instance_id: config.group_instance_id.clone(),
            shared,
            task,
            reconciled: None,
            topic_names: HashMap::new(),
            names_refreshed: None,
        }
    }

    /// The member id and epoch, for commits and [`super::ConsumerGroupMetadata`].
    pub fn identity(&self) -> (String, i32) {
        let st = self.shared.lock();
        (st.member_id.clone(), st.member_epoch)
    }

    /// The coordinator's latest assignment for this member, if it answered.
    pub fn target(&self) -> Option<IdAssignment> {
        self.shared.lock().target.clone()
    }

    /// Whether the member is out of the group and must drop its partitions.
    pub fn is_lost(&self) -> bool {
        self.shared.lock().lost
    }

    /// The error that stopped the member, if one did.
    pub fn fatal(&self) -> Option<ClientError> {
        self.shared
            .lock()
            .fatal
            .as_ref()
            .map(ClientError::duplicate)
    }

    /// Subscribes to other topics from the next heartbeat on.
    pub fn set_subscription(&self, topics: &[String]) {
        self.shared.lock().subscription = topics.to_vec();
        self.shared.wake.notify_one();
    }

    /// Reports the partitions the consumer now owns, at once: the coordinator frees what
    /// this member gave up only when it hears so.
    pub fn report_owned(&self, owned: IdAssignment) {
        self.shared.lock().owned = owned;
        self.shared.wake.notify_one();
    }

    /// After the consumer dropped its lost partitions: joins again with epoch 0.
    pub fn rejoin(&mut self) {
        {
            let mut st = self.shared.lock();
            st.member_epoch = 0;
            st.owned.clear();
            st.target = None;
            st.lost = false;
        }
        self.reconciled = None;
        self.shared.wake.notify_one();
    }

    /// The coordinator's connection, found again if the heartbeat task has none.
    pub async fn coordinator(&self, client: &Client) -> Result<Arc<Connection>> {
        let known = self.shared.lock().coordinator.clone();
        match known {
            Some(c) if !c.is_broken() => Ok(c),
            _ => {
                let addr = client.find_coordinator(&self.group).await?;
                client.connection(&addr).await
            }
        }
    }

    /// Reacts to an error of a request to the coordinator other than a heartbeat: a moved
    /// coordinator is looked up again.
    pub fn note_error(&self, err: &ClientError) {
        if matches!(
            err.code(),
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
        ) {
            self.shared.lock().coordinator = None;
        }
    }

    /// Heartbeats now and waits (at most `timeout`) for the answer, which carries the member
    /// epoch the coordinator expects in commits (after STALE_MEMBER_EPOCH).
    pub async fn refresh_epoch(&self, timeout: Duration) {
        if self.is_lost() || self.fatal().is_some() {
            return; // no heartbeat comes until the consumer rejoins
        }
        let answered = self.shared.answered.notified();
        tokio::pin!(answered);
        answered.as_mut().enable();
        self.shared.wake.notify_one();
        let _ = tokio::time::timeout(timeout, answered).await;
    }

    /// Stops heartbeating and leaves the group (a static member with epoch -2, keeping its
    /// partitions for its return), so the others get its partitions at once.
    pub async fn leave(self, client: &Client) -> Result<()> {
        self.task.abort();
        let (member_id, lost) = {
            let st = self.shared.lock();
            (st.member_id.clone(), st.lost)
        };
        if lost {
            return Ok(()); // not a member any more
        }
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_member_id(StrBytes::from_string(member_id))
            .with_member_epoch(leave_epoch(&self.instance_id))
            .with_instance_id(self.instance_id.clone().map(StrBytes::from_string));
        let conn = self.coordinator(client).await?;
        let response = conn.send(&request).await?;
        match ResponseError::try_from_code(response.error_code) {
            // Already out of the group: nothing to leave.
            None | Some(ResponseError::UnknownMemberId | ResponseError::FencedMemberEpoch) => {
                Ok(())
            }
            Some(_) => Err(ClientError::kafka_with_message(
                response.error_code,
                format!("leaving group {}", self.group),
                response.error_message.as_deref(),
            )),
        }
    }
}

impl Drop for ConsumerMembership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the heartbeat task needs besides the shared state.
struct Beat {
    client: Client,
    group: String,
    instance_id: Option<String>,
    server_assignor: Option<String>,
    rebalance_timeout_ms: i32,
    /// Used until the coordinator says how often to heartbeat.
    fallback_interval: Duration,
    max_poll_interval: Duration,
    clock: PollClock,
}

impl Beat {
    /// Whether the consumer stopped calling `poll` for longer than `max_poll_interval_ms`.
    fn stalled(&self) -> bool {
        let since_poll = self
            .clock
            .created
            .elapsed()
            .saturating_sub(Duration::from_millis(
                self.clock.last_poll_ms.load(Ordering::Acquire),
            ));
        since_poll > self.max_poll_interval
    }
}

/// How the task waits before its next heartbeat.
enum Next {
    After(Duration),
    /// Until woken: the member is lost or stopped, and the consumer acts next.
    Woken,
}

async fn heartbeat_loop(beat: Beat, shared: Arc<Shared>) {
    let mut next = Next::After(Duration::ZERO);
    let mut failures = 0u32;
    loop {
        match next {
            Next::After(pause) => tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shared.wake.notified() => {}
            },
            Next::Woken => shared.wake.notified().await,
        }
        let idle = {
            let st = shared.lock();
            st.lost || st.fatal.is_some()
        };
        next = if idle {
            Next::Woken
        } else if beat.stalled() {
            leave_stalled(&beat, &shared).await;
            Next::Woken
        } else {
            beat_once(&beat, &shared, &mut failures).await
        };
        // Whoever waits for a new epoch stops waiting, whatever came of it.
        shared.answered.notify_waiters();
    }
}

/// A heartbeat, and when to send the next: at the coordinator's interval, or after a
/// backoff growing with each failure in a row.
async fn beat_once(beat: &Beat, shared: &Shared, failures: &mut u32) -> Next {
    match heartbeat(beat, shared).await {
        Ok(next) => {
            *failures = 0;
            next
        }
        Err(e) => {
            tracing::debug!(group = %beat.group, error = %e, "heartbeat failed; retrying");
            *failures = (*failures + 1).min(BACKOFF_STEPS_MAX);
            let base = beat.client.config().retry_backoff;
            Next::After(
                base.saturating_mul(1 << *failures)
                    .min(beat.client.config().retry_backoff_max),
            )
        }
    }
}

/// One heartbeat round trip. Errors are the retriable ones; the rest end in the state.
async fn heartbeat(beat: &Beat, shared: &Shared) -> Result<Next> {
    let known = shared.lock().coordinator.clone();
    let conn = match known {
        Some(c) if !c.is_broken() => c,
        _ => {
            let addr = beat.client.find_coordinator(&beat.group).await?;
            let conn = Arc::new(beat.client.dedicated_connection(&addr).await?);
            shared.lock().coordinator = Some(conn.clone());
            conn
        }
    };
    let request = {
        let st = shared.lock();
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group_id(&beat.group))
            .with_member_id(StrBytes::from_string(st.member_id.clone()))
            .with_member_epoch(st.member_epoch)
            .with_instance_id(beat.instance_id.clone().map(StrBytes::from_string))
            .with_rebalance_timeout_ms(beat.rebalance_timeout_ms)
            .with_subscribed_topic_names(Some(
                st.subscription.iter().map(|t| topic_name(t)).collect(),
            ))
            .with_server_assignor(beat.server_assignor.clone().map(StrBytes::from_string))
            .with_topic_partitions(Some(wire_owned(&st.owned)))
    };
    let response = match conn.send(&request).await {
        Ok(r) => r,
        Err(e) if e.is_retriable() => {
            if conn.is_broken() {
                shared.lock().coordinator = None;
            }
            return Err(e);
        }
        Err(e) => {
            // A broker without KIP-848 answers UnsupportedApi: no retry helps.
            shared.lock().fatal = Some(e);
            return Ok(Next::Woken);
        }
    };
    let code = ResponseError::try_from_code(response.error_code);
    let mut st = shared.lock();
    match code {
        None => {
            let interval_ms = response.heartbeat_interval_ms;
            apply(&mut st, response, &beat.group);
            Ok(Next::After(match u64::try_from(interval_ms) {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => beat.fallback_interval,
            }))
        }
        Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
            st.coordinator = None;
            Err(ClientError::kafka(response.error_code, "heartbeat"))
        }
        Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
            tracing::info!(group = %beat.group, member = %st.member_id, code = ?code,
                "fenced from the consumer group; its partitions are lost and it rejoins");
            st.lost = true;
            Ok(Next::Woken)
        }
        Some(e) if e.is_retriable() => Err(ClientError::kafka(response.error_code, "heartbeat")),
        Some(_) => {
            st.fatal = Some(ClientError::kafka_with_message(
                response.error_code,
                format!("heartbeat to consumer group {}", beat.group),
                response.error_message.as_deref(),
            ));
            Ok(Next::Woken)
        }
    }
}

/// Takes in a successful answer: the member id (a v0 coordinator makes it), the epoch and,
/// when the coordinator sent one, the new target assignment.
fn apply(st: &mut State, response: ConsumerGroupHeartbeatResponse, group: &str) {
    if let Some(id) = response.member_id.filter(|id| !id.is_empty()) {
        st.member_id = id.to_string();
    }
    if st.member_epoch != response.member_epoch {
        tracing::debug!(group, member = %st.member_id, epoch = response.member_epoch,
            "member epoch changed");
    }
    st.member_epoch = response.member_epoch;
    if let Some(assignment) = response.assignment {
        let mut target = IdAssignment::new();
        for t in assignment.topic_partitions {
            target.entry(t.topic_id).or_default().extend(t.partitions);
        }
        target.retain(|_, p| !p.is_empty());
        st.target = Some(target);
    }
}

fn leave_epoch(instance_id: &Option<String>) -> i32 {
    if instance_id.is_some() {
        STATIC_LEAVE_EPOCH
    } else {
        LEAVE_EPOCH
    }
}

fn wire_owned(owned: &IdAssignment) -> Vec<TopicPartitions> {
    owned
        .iter()
        .map(|(id, partitions)| {
            TopicPartitions::default()
                .with_topic_id(*id)
                .with_partitions(partitions.iter().copied().collect())
        })
        .collect()
}

/// As Kafka's consumer does: a member that stopped polling leaves, so the group gives its
/// partitions to members that make progress; its next poll finds them lost and rejoins.
async fn leave_stalled(beat: &Beat, shared: &Shared) {
    tracing::warn!(
        group = %beat.group,
        "poll not called within max_poll_interval_ms; leaving the group"
    );
    let (member_id, conn) = {
        let mut st = shared.lock();
        st.lost = true;
        (st.member_id.clone(), st.coordinator.clone())
    };
    let request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(group_id(&beat.group))
        .with_member_id(StrBytes::from_string(member_id))
        .with_member_epoch(leave_epoch(&beat.instance_id))
        .with_instance_id(beat.instance_id.clone().map(StrBytes::from_string));
    if let Some(conn) = conn {
        // Best effort: without it the coordinator drops the member after its session.
        let _ = conn.send(&request).await;
    }
}

/// Which group protocol a subscribing consumer speaks (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup, with the assignment computed by the group leader (the default).
    #[default]
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat: the coordinator assigns, and partitions move one at
    /// a time without stopping the group.
    Consumer,
}

/// Kafka's `group.protocol` names.
impl std::str::FromStr for GroupProtocol {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(GroupProtocol::Classic),
            "consumer" => Ok(GroupProtocol::Consumer),
            other => Err(format!(
                "unknown group protocol '{other}' (expected classic or consumer)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_protocol_takes_kafkas_names() {
        assert_eq!("consumer".parse(), Ok(GroupProtocol::Consumer));
        assert_eq!(" Classic ".parse(), Ok(GroupProtocol::Classic));
        assert!("eager".parse::<GroupProtocol>().is_err());
    }

    #[test]
    fn owned_partitions_go_out_by_topic_id() {
        let id = Uuid::new_v4();
        let owned = IdAssignment::from([(id, BTreeSet::from([2, 0]))]);
        let wire = wire_owned(&owned);
        assert_eq!(wire.len(), 1);
        assert_eq!(
            (wire[0].topic_id, wire[0].partitions.clone()),
            (id, vec![0, 2])
        );
    }
}
