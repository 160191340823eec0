//! Consumer group members for front ends that do not speak Kafka (the JSON protocol's
//! `join_group`, group `consume`, `heartbeat`, `leave_group`), over the broker's real group
//! coordinator: a JSON member is an ordinary member of an ordinary Kafka consumer group
//! (protocol type `consumer`, assignor `range`, client id `strom-json`), so `strom group
//! describe`, kcat and the admin APIs see it with its assignment and lag, and Kafka-protocol
//! consumers can share a group with JSON members.
//!
//! A JSON client cannot run the classic protocol itself (it would have to heartbeat, notice a
//! rebalance, rejoin and, as leader, compute the assignment), so the broker does it for it:
//! each JSON member has an **agent**, a task that heartbeats for the member while the client
//! keeps polling, rejoins as soon as the group rebalances, and computes the `range`
//! assignment when it is the leader. When the client stops polling for its session timeout,
//! the agent leaves the group and the group rebalances without it, as the issue asks.
//!
//! A group consume reads the member's partitions from the group's committed offsets and
//! commits the new positions with the member's generation before answering. If the commit is
//! refused because the group moved to a new generation, the messages are dropped (not
//! answered) and the read starts over with the new assignment: a partition's new owner starts
//! exactly where the old owner's last successful commit left it, so no message is delivered
//! twice or skipped, even across rebalances.
//!
//! Cluster mode: a JSON group lives where any group does, with the coordinator of its
//! `__consumer_offsets` partition, so its members and commits are replicated like a Kafka
//! client's. Another node answers [`LocalError::NotCoordinator`] naming that node (the JSON
//! client goes there); the coordinator reads partitions other nodes lead through them. When
//! the coordinator moves, its agents end and the members rejoin at the new one, which has
//! the group's commits.
//!
//! Bounds: at most [`JSON_MEMBERS_MAX`] JSON members; a poll waits at most
//! [`crate::local::READ_WAIT_MS_MAX`]; the agent checks in every
//! [`AGENT_TICK_MS_MAX`] at most.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message as _, StrBytes};
use parking_lot::Mutex;
use strom_group::{Committer, CoordinatorError, GroupCoordinator, JoinParams, NewOffset};
use tokio::sync::{watch, Notify};

use crate::local::{
    read_from, read_remote, wait_for_data, Local, LocalError, Message, READ_WAIT_MS_MAX,
};
use crate::partition::Partition;

/// The client id JSON members have in the group (DescribeGroups shows it).
pub const JSON_CLIENT_ID: &str = "strom-json";
/// The only assignor JSON members offer; Kafka clients offer it by default too.
pub const RANGE_ASSIGNOR: &str = "range";
/// Session timeout of a JSON member unless it asks for another.
pub const SESSION_TIMEOUT_MS_DEFAULT: i32 = 10_000;
/// Most JSON group members at once, over all groups.
pub const JSON_MEMBERS_MAX: usize = 10_000;
/// The agent heartbeats (and notices a rebalance) at least this often. In-process heartbeats
/// are cheap, and a short tick keeps rebalances of JSON-only groups quick.
pub const AGENT_TICK_MS_MAX: u64 = 250;
/// Times a poll starts over after its commit lost a race with a rebalance.
const POLL_ATTEMPTS_MAX: usize = 5;
/// Join attempts when the coordinator answers "rebalancing, try again".
const JOIN_ATTEMPTS_MAX: usize = 5;
/// Cluster mode: how often a poll whose partitions are led by other nodes asks them again
/// while it waits (their appends wake no waiter here).
const REMOTE_POLL_MS: u64 = 100;
/// The consumer protocol version written (every broker and client reads version 0).
const CONSUMER_PROTOCOL_VERSION: i16 = 0;

/// A member's view of the group: its generation and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub generation_id: i32,
    /// (topic, partition), sorted.
    pub partitions: Vec<(String, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Active(Assignment),
    /// The agent is rejoining; polls wait for it.
    Rejoining,
    /// Left or expired; the member id is no longer valid.
    Gone,
}

/// A message with the topic and partition it came from.
pub type TopicMessage = (String, i32, Message);

/// What a group consume returns.
#[derive(Debug, Clone)]
pub struct GroupRead {
    pub member_id: String,
    pub assignment: Assignment,
    /// (topic, partition, message), in partition order.
    pub messages: Vec<TopicMessage>,
}

/// A join's answer.
#[derive(Debug, Clone)]
pub struct Membership {
    pub group: String,
    pub member_id: String,
    pub assignment: Assignment,
}

struct Agent {
    group: String,
    member_id: String,
    /// The subscription, sorted.
    topics: Vec<String>,
    session_timeout_ms: i32,
    status: watch::Sender<Status>,
    last_seen: Mutex<tokio::time::Instant>,
    /// One poll at a time per member, so two connections of one member cannot both read.
    poll_lock: tokio::sync::Mutex<()>,
    stop: Notify,
}

impl Agent {
    fn touch(&self) {
        *self.last_seen.lock() = tokio::time::Instant::now();
    }
}

/// The JSON members of every group, by (group, member id).
#[derive(Default)]
pub struct GroupMembers {
    agents: Mutex<HashMap<(String, String), Arc<Agent>>>,
}

impl Local {
    /// Joins `group` as a new member subscribed to `topics` (or rejoins as `member_id`, e.g.
    /// after a broker restart) and waits for the group's assignment.
    pub async fn join_group(
        self: &Arc<Self>,
        group: &str,
        topics: &[String],
        member_id: Option<&str>,
        session_timeout_ms: Option<i32>,
        client_host: &str,
    ) -> Result<Membership, LocalError> {
        if group.is_empty() {
            return Err(LocalError::Invalid("group must not be empty".into()));
        }
        if topics.is_empty() {
            return Err(LocalError::Invalid("topics must not be empty".into()));
        }
        for t in topics {
            self.topic(t)?;
        }
        if self.group_members.agents.lock().len() >= JSON_MEMBERS_MAX {
            return Err(LocalError::Invalid(format!(
                "too many JSON group members (at most {JSON_MEMBERS_MAX})"
            )));
        }
        let session_timeout_ms = session_timeout_ms.unwrap_or(SESSION_TIMEOUT_MS_DEFAULT);
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let mut params = JoinParams {
            group_id: group.to_string(),
            member_id: member_id.unwrap_or("").to_string(),
            client_id: JSON_CLIENT_ID.to_string(),
            client_host: client_host.to_string(),
            session_timeout_ms,
            // A member that stops polling delays a rebalance by at most its session.
            rebalance_timeout_ms: session_timeout_ms,
            protocol_type: "consumer".to_string(),
            protocols: vec![(RANGE_ASSIGNOR.to_string(), encode_subscription(&topics)?)],
        };
        if let Some(old) = member_id {
            let key = (group.to_string(), old.to_string());
            let live = self.group_members.agents.lock().get(&key).cloned();
            if let Some(agent) = live {
                agent.touch();
                let status = agent.status.borrow().clone();
                match status {
                    // Still a live member with the same subscription: nothing to rejoin.
                    Status::Active(a) if agent.topics == topics => {
                        return Ok(Membership {
                            group: group.to_string(),
                            member_id: old.to_string(),
                            assignment: a,
                        });
                    }
                    // A new subscription: retire this agent and rejoin with it below (the
                    // group rebalances because the member's metadata changed).
                    _ => {
                        self.group_members.agents.lock().remove(&key);
                        agent.status.send_replace(Status::Gone);
                        agent.stop.notify_one();
                    }
                }
            }
        }
        let (member_id, assignment) = match self.join_and_sync(&mut params).await {
            // The old member id is unknown (its session ended): join as a new member.
            Err(LocalError::Group(CoordinatorError::UnknownMemberId)) if member_id.is_some() => {
                params.member_id.clear();
                self.join_and_sync(&mut params).await?
            }
            other => other?,
        };
        let (status, _) = watch::channel(Status::Active(assignment.clone()));
        let agent = Arc::new(Agent {
            group: group.to_string(),
            member_id: member_id.clone(),
            topics,
            session_timeout_ms,
            status,
            last_seen: Mutex::new(tokio::time::Instant::now()),
            poll_lock: tokio::sync::Mutex::new(()),
            stop: Notify::new(),
        });
        self.group_members
            .agents
            .lock()
            .insert((group.to_string(), member_id.clone()), agent.clone());
        tracing::info!(group, member = %member_id, generation = assignment.generation_id, partitions = ?assignment.partitions, "JSON member joined");
        tokio::spawn(run_agent(self.clone(), agent, params));
        Ok(Membership {
            group: group.to_string(),
            member_id,
            assignment,
        })
    }

    /// Leaves the group at once (the group rebalances without waiting for the session).
    pub fn leave_group(&self, group: &str, member_id: &str) -> Result<(), LocalError> {
        let agent = self
            .group_members
            .agents
            .lock()
            .remove(&(group.to_string(), member_id.to_string()));
        let Some(agent) = agent else {
            return Err(unknown_member(group, member_id));
        };
        agent.status.send_replace(Status::Gone);
        agent.stop.notify_one();
        // A coordinator that moved away has forgotten the member anyway.
        let Ok(groups) = self.coordinator(group) else {
            return Ok(());
        };
        match groups.leave(group, member_id) {
            Ok(()) | Err(CoordinatorError::UnknownMemberId) => Ok(()),
            Err(e) => Err(LocalError::Group(e)),
        }
    }

    /// Keeps the member alive without reading; answers its current assignment (waiting for a
    /// running rejoin).
    pub async fn group_heartbeat(
        &self,
        group: &str,
        member_id: &str,
    ) -> Result<Assignment, LocalError> {
        let agent = self.agent(group, member_id)?;
        agent.touch();
        current_assignment(&agent).await
    }

    /// Reads up to `max_messages` from the member's partitions, from the group's committed
    /// offsets, and commits past them before answering (see the module docs). Waits up to
    /// `wait` when there is nothing to read.
    pub async fn group_consume(
        &self,
        group: &str,
        member_id: &str,
        only: Option<(&str, i32)>,
        max_messages: usize,
        wait: Duration,
    ) -> Result<GroupRead, LocalError> {
        let agent = self.agent(group, member_id)?;
        let _one_poll = agent.poll_lock.lock().await;
        agent.touch();
        let wait = wait.min(Duration::from_millis(READ_WAIT_MS_MAX));
        let deadline = tokio::time::Instant::now() + wait;
        let mut assignment = current_assignment(&agent).await?;
        let mut attempts = 0;
        while attempts < POLL_ATTEMPTS_MAX {
            attempts += 1;
            if let Some((topic, partition)) = only {
                if !assignment
                    .partitions
                    .iter()
                    .any(|(t, p)| t == topic && *p == partition)
                {
                    return Err(LocalError::NotAssigned {
                        member_id: member_id.to_string(),
                        topic: topic.to_string(),
                        partition,
                        assigned: format!("{:?}", assignment.partitions),
                    });
                }
                assignment
                    .partitions
                    .retain(|(t, p)| t == topic && *p == partition);
            }
            let remote = assignment
                .partitions
                .iter()
                .any(|(t, i)| self.led_elsewhere(t, *i));
            let wait_until = if remote {
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(REMOTE_POLL_MS))
            } else {
                deadline
            };
            let mut changed = agent.status.subscribe();
            self.wait_for_any(group, &assignment, wait_until, &mut changed)
                .await;
            agent.touch();
            let latest = current_assignment(&agent).await?;
            if latest.generation_id != assignment.generation_id {
                // A rebalance while waiting: start over with the new assignment.
                assignment = latest;
                continue;
            }
            let (messages, positions) =
                self.read_assigned(group, &assignment, max_messages).await?;
            if messages.is_empty()
                && positions.is_empty()
                && remote
                && tokio::time::Instant::now() < deadline
            {
                // Nothing yet on the other nodes: ask again after the next short wait.
                attempts -= 1;
                continue;
            }
            if positions.is_empty() {
                return Ok(GroupRead {
                    member_id: member_id.to_string(),
                    assignment,
                    messages,
                });
            }
            let committer = Committer {
                member_id,
                instance_id: None,
                generation_id: assignment.generation_id,
            };
            let results = self
                .coordinator(group)?
                .commit(group, committer, &positions, -1)
                .await;
            match results.into_iter().find_map(Result::err) {
                None => {
                    return Ok(GroupRead {
                        member_id: member_id.to_string(),
                        assignment,
                        messages,
                    })
                }
                Some(
                    CoordinatorError::IllegalGeneration | CoordinatorError::RebalanceInProgress,
                ) => {
                    // The group moved on: these partitions may be someone else's now. Drop
                    // the read; the next attempt reads the new assignment.
                    tracing::debug!(
                        group,
                        member = member_id,
                        "commit lost to a rebalance; reading again"
                    );
                    let mut changed = agent.status.subscribe();
                    let _ = tokio::time::timeout(
                        Duration::from_millis(2 * AGENT_TICK_MS_MAX),
                        changed.changed(),
                    )
                    .await;
                    assignment = current_assignment(&agent).await?;
                }
                Some(CoordinatorError::UnknownMemberId) => {
                    return Err(unknown_member(group, member_id))
                }
                Some(e) => return Err(LocalError::Group(e)),
            }
        }
        Ok(GroupRead {
            member_id: member_id.to_string(),
            assignment,
            messages: Vec::new(),
        })
    }

    /// The topics a member subscribed to (what a front end authorizes a group read against).
    pub fn member_topics(&self, group: &str, member_id: &str) -> Result<Vec<String>, LocalError> {
        Ok(self.agent(group, member_id)?.topics.clone())
    }

    fn agent(&self, group: &str, member_id: &str) -> Result<Arc<Agent>, LocalError> {
        self.group_members
            .agents
            .lock()
            .get(&(group.to_string(), member_id.to_string()))
            .cloned()
            .ok_or_else(|| unknown_member(group, member_id))
    }

    /// Waits until one of the assigned partitions has data past the group's position, the
    /// assignment changes, or the deadline passes.
    async fn wait_for_any(
        &self,
        group: &str,
        assignment: &Assignment,
        deadline: tokio::time::Instant,
        changed: &mut watch::Receiver<Status>,
    ) {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        let mut waits = tokio::task::JoinSet::new();
        for (topic, index) in &assignment.partitions {
            let Ok(p) = self.topic(topic).and_then(|t| self.partition(&t, *index)) else {
                continue;
            };
            if self.led_elsewhere(topic, *index) {
                continue; // Nothing here wakes a wait for it; the caller polls it.
            }
            let Ok(from) = self.group_start(group, topic, &p) else {
                continue; // Offline: the read below reports it.
            };
            waits.spawn(async move { wait_for_data(&p, from, deadline - now).await });
        }
        tokio::select! {
            _ = waits.join_next(), if !waits.is_empty() => {}
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
        waits.abort_all();
    }

    /// The coordinator of `group`: the broker's own on a single node; in cluster mode this
    /// node's coordinator of the group's `__consumer_offsets` partition, or
    /// [`LocalError::NotCoordinator`] naming the node that has it.
    fn coordinator(&self, group: &str) -> Result<Arc<GroupCoordinator>, LocalError> {
        if self.broker.cluster.get().is_none() {
            return Ok(self.broker.groups.clone());
        }
        self.broker.coordinator_for(group).map_err(|_| {
            let coordinator = crate::cluster::groups::coordinator_node(&self.broker, group)
                .ok()
                .filter(|(id, _, _)| *id != self.broker.node_id())
                .map(|(id, host, port)| (id, format!("{host}:{port}")));
            LocalError::NotCoordinator {
                group: group.to_string(),
                coordinator,
            }
        })
    }

    /// Cluster mode: whether another node leads the partition (its records are read there).
    fn led_elsewhere(&self, topic: &str, index: i32) -> bool {
        let Some(cluster) = self.broker.cluster.get() else {
            return false;
        };
        cluster
            .image()
            .partition(topic, index)
            .is_some_and(|p| p.leader != self.broker.node_id())
    }

    /// Where the group reads a partition next: its committed offset, or the oldest record
    /// when it has none or it is outside the log (`auto.offset.reset=earliest`). For a
    /// partition led elsewhere the committed offset is tried as it is (the leader's answer
    /// tells whether it is outside its log).
    fn group_start(&self, group: &str, topic: &str, p: &Partition) -> Result<i64, LocalError> {
        let committed = self.coordinator(group)?.committed(group, topic, p.index);
        if self.led_elsewhere(topic, p.index) {
            return Ok(committed.unwrap_or(0));
        }
        let (start, end) = {
            let st = p.lock().map_err(|e| LocalError::Storage(e.to_string()))?;
            (st.log.log_start_offset(), st.high_watermark())
        };
        Ok(match committed {
            Some(o) if (start..=end).contains(&o) => o,
            _ => start,
        })
    }

    /// Reads the assigned partitions from the group's positions, at most `max_messages` in
    /// all; returns the messages and the new positions of the partitions that moved.
    async fn read_assigned(
        &self,
        group: &str,
        assignment: &Assignment,
        max_messages: usize,
    ) -> Result<(Vec<TopicMessage>, Vec<NewOffset>), LocalError> {
        let mut messages = Vec::new();
        let mut positions = Vec::new();
        for (topic, index) in &assignment.partitions {
            let left = max_messages.saturating_sub(messages.len());
            if left == 0 {
                break;
            }
            // A partition deleted since the assignment is skipped until the next rebalance.
            let Ok(p) = self.topic(topic).and_then(|t| self.partition(&t, *index)) else {
                continue;
            };
            let from = self.group_start(group, topic, &p)?;
            let bound = self.decompressed_max();
            let read = match self.read_partition(&p, from, left, bound).await {
                Err(LocalError::OffsetOutOfRange { start, .. }) => {
                    self.read_partition(&p, start, left, bound).await?
                }
                other => other?,
            };
            if read.next_offset != from
                || self.coordinator(group)?.committed(group, topic, *index) != Some(from)
            {
                positions.push(NewOffset::new(topic, *index, read.next_offset));
            }
            messages.extend(
                read.messages
                    .into_iter()
                    .map(|m| (topic.clone(), *index, m)),
            );
        }
        Ok((messages, positions))
    }

    /// Reads here, or (cluster mode) through the node that leads the partition.
    async fn read_partition(
        &self,
        p: &Partition,
        from: i64,
        max_messages: usize,
        bound: usize,
    ) -> Result<crate::local::Read, LocalError> {
        if self.led_elsewhere(&p.topic, p.index) {
            read_remote(&self.broker, p, from, max_messages, bound).await
        } else {
            read_from(p, from, max_messages, bound)
        }
    }

    /// Joins (or rejoins as `params.member_id`), computes the assignment when leader, and
    /// syncs. Retries a bounded number of times while the group keeps rebalancing.
    async fn join_and_sync(
        &self,
        params: &mut JoinParams,
    ) -> Result<(String, Assignment), LocalError> {
        let groups = self.coordinator(&params.group_id)?;
        let mut last = CoordinatorError::RebalanceInProgress;
        for _ in 0..JOIN_ATTEMPTS_MAX {
            let joined = match groups.join(params).await {
                Ok(j) => j,
                Err(CoordinatorError::RebalanceInProgress) => {
                    last = CoordinatorError::RebalanceInProgress;
                    continue;
                }
                Err(e) => return Err(LocalError::Group(e)),
            };
            params.member_id = joined.member_id.clone();
            let assignments = if joined.is_leader() {
                self.assign(&joined.members)
            } else {
                Vec::new()
            };
            match groups
                .sync(
                    &params.group_id,
                    &joined.member_id,
                    joined.generation_id,
                    &assignments,
                )
                .await
            {
                Ok(bytes) => {
                    let partitions = decode_assignment(&bytes).unwrap_or_else(|e| {
                        tracing::warn!(group = %params.group_id, error = %e, "undecodable assignment from the group leader; treating it as empty");
                        Vec::new()
                    });
                    return Ok((
                        joined.member_id,
                        Assignment {
                            generation_id: joined.generation_id,
                            partitions,
                        },
                    ));
                }
                Err(
                    e @ (CoordinatorError::RebalanceInProgress
                    | CoordinatorError::IllegalGeneration),
                ) => {
                    last = e;
                }
                Err(e) => return Err(LocalError::Group(e)),
            }
        }
        Err(LocalError::Group(last))
    }

    /// The leader's `range` assignment over every member's subscription (JSON and Kafka
    /// members alike), encoded as consumer protocol assignments.
    fn assign(&self, members: &[(String, Bytes)]) -> Vec<(String, Bytes)> {
        let subscriptions: BTreeMap<String, Vec<String>> = members
            .iter()
            .map(|(id, metadata)| {
                (
                    id.clone(),
                    decode_subscription(metadata).unwrap_or_default(),
                )
            })
            .collect();
        let counts: BTreeMap<String, i32> = subscriptions
            .values()
            .flatten()
            .filter_map(|t| {
                self.broker
                    .topics
                    .get(t)
                    .map(|topic| (t.clone(), topic.partition_count()))
            })
            .collect();
        range_assign(&subscriptions, &counts)
            .into_iter()
            .map(|(id, parts)| (id, encode_assignment(&parts)))
            .collect()
    }
}

/// The agent of one JSON member: heartbeats while the client polls, rejoins on a rebalance,
/// leaves when the client has not polled for its session timeout (or asked to leave).
async fn run_agent(local: Arc<Local>, agent: Arc<Agent>, mut params: JoinParams) {
    let tick =
        Duration::from_millis((agent.session_timeout_ms.max(3) as u64 / 3).min(AGENT_TICK_MS_MAX));
    let session = Duration::from_millis(agent.session_timeout_ms.max(0) as u64);
    let key = (agent.group.clone(), agent.member_id.clone());
    loop {
        tokio::select! {
            _ = agent.stop.notified() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        if *agent.status.borrow() == Status::Gone {
            return;
        }
        let Ok(groups) = local.coordinator(&agent.group) else {
            // Cluster mode: the group's coordinator moved to another node, which does not
            // know this member; the client rejoins there.
            tracing::info!(group = %agent.group, member = %agent.member_id, "the group's coordinator moved away; ending the JSON member here");
            break;
        };
        if agent.poll_lock.try_lock().is_err() {
            // A poll is waiting for messages (up to READ_WAIT_MS_MAX, which may be longer
            // than the session): the client is there.
            agent.touch();
        }
        let idle = agent.last_seen.lock().elapsed();
        if idle >= session {
            tracing::info!(group = %agent.group, member = %agent.member_id, idle_ms = idle.as_millis() as u64, "JSON member stopped polling for its session timeout; removing it from the group");
            let _ = groups.leave(&agent.group, &agent.member_id);
            break;
        }
        let generation = match &*agent.status.borrow() {
            Status::Active(a) => a.generation_id,
            _ => -1,
        };
        match groups.heartbeat_member(&agent.group, &agent.member_id, generation) {
            Ok(()) => continue,
            Err(CoordinatorError::RebalanceInProgress | CoordinatorError::IllegalGeneration) => {
                agent.status.send_replace(Status::Rejoining);
                params.member_id = agent.member_id.clone();
                match local.join_and_sync(&mut params).await {
                    Ok((_, assignment)) => {
                        tracing::info!(group = %agent.group, member = %agent.member_id, generation = assignment.generation_id, partitions = ?assignment.partitions, "JSON member rejoined");
                        agent.status.send_replace(Status::Active(assignment));
                    }
                    Err(LocalError::Group(CoordinatorError::UnknownMemberId)) => break,
                    Err(e) => {
                        // Try again at the next tick; polls wait for the outcome meanwhile.
                        tracing::debug!(group = %agent.group, member = %agent.member_id, error = %e, "JSON member rejoin failed; retrying");
                        agent.status.send_replace(Status::Active(Assignment {
                            generation_id: -1,
                            partitions: Vec::new(),
                        }));
                    }
                }
            }
            Err(e) => {
                tracing::info!(group = %agent.group, member = %agent.member_id, error = %e, "JSON member is no longer in the group");
                break;
            }
        }
    }
    agent.status.send_replace(Status::Gone);
    let mut agents = local.group_members.agents.lock();
    if agents.get(&key).is_some_and(|a| Arc::ptr_eq(a, &agent)) {
        agents.remove(&key);
    }
}

fn unknown_member(group: &str, member_id: &str) -> LocalError {
    LocalError::UnknownMember {
        group: group.to_string(),
        member_id: member_id.to_string(),
    }
}

/// The member's assignment, waiting (bounded by its session timeout) while it rejoins.
async fn current_assignment(agent: &Agent) -> Result<Assignment, LocalError> {
    let mut rx = agent.status.subscribe();
    let cap = Duration::from_millis(agent.session_timeout_ms.max(0) as u64 * 2);
    let waited = tokio::time::timeout(cap, async {
        loop {
            let status = rx.borrow_and_update().clone();
            match status {
                Status::Rejoining => {
                    if rx.changed().await.is_err() {
                        return Status::Gone;
                    }
                }
                other => return other,
            }
        }
    })
    .await;
    match waited {
        Ok(Status::Active(a)) => Ok(a),
        Ok(_) => Err(unknown_member(&agent.group, &agent.member_id)),
        Err(_) => Err(LocalError::Group(CoordinatorError::RebalanceInProgress)),
    }
}

/// The `range` assignor, as Kafka's `RangeAssignor`: per topic, the members subscribed to it
/// in member-id order each take a contiguous range of partitions, the first
/// `partitions % members` one more than the rest. Every member appears in the result.
fn range_assign(
    members: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut result: BTreeMap<String, Vec<(String, i32)>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    for topic in topics {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let n = subscribers.len() as i32;
        let (per_member, extra) = (count / n, count % n);
        for (i, member) in subscribers.into_iter().enumerate() {
            let i = i as i32;
            let start = i * per_member + i.min(extra);
            let len = per_member + i32::from(i < extra);
            if let Some(parts) = result.get_mut(member) {
                parts.extend((start..start + len).map(|p| (topic.clone(), p)));
            }
        }
    }
    result
}

fn encode_subscription(topics: &[String]) -> Result<Bytes, LocalError> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    sub.encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| LocalError::Invalid(format!("cannot encode the subscription: {e}")))?;
    Ok(buf.freeze())
}

/// A member's subscribed topics; any consumer protocol version (newer ones only append).
fn decode_subscription(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err("subscription shorter than its version".into());
    }
    let version = buf
        .get_i16()
        .clamp(0, ConsumerProtocolSubscription::VERSIONS.max);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

fn encode_assignment(partitions: &[(String, i32)]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    // Encoding a version-0 assignment of valid names cannot fail; an empty one is still valid.
    if assignment
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .is_err()
    {
        buf.truncate(2);
        buf.put_i32(0);
        buf.put_i32(-1);
    }
    buf.freeze()
}

/// (topic, partition) pairs of an assignment, sorted; an empty byte string is no partitions.
fn decode_assignment(bytes: &[u8]) -> Result<Vec<(String, i32)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err("assignment shorter than its version".into());
    }
    let version = buf
        .get_i16()
        .clamp(0, ConsumerProtocolAssignment::VERSIONS.max);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| e.to_string())?;
    let mut out: Vec<(String, i32)> = a
        .assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| (tp.topic.to_string(), *p))
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_splits_three_partitions_over_two_and_three_members() {
        let subs = |ids: &[&str]| -> BTreeMap<String, Vec<String>> {
            ids.iter()
                .map(|m| (m.to_string(), vec!["t".to_string()]))
                .collect()
        };
        let counts = BTreeMap::from([("t".to_string(), 3)]);
        let a = range_assign(&subs(&["a", "b"]), &counts);
        assert_eq!(a["a"], vec![("t".into(), 0), ("t".into(), 1)]);
        assert_eq!(a["b"], vec![("t".into(), 2)]);
        let a = range_assign(&subs(&["a", "b", "c", "d"]), &counts);
        assert!(a["d"].is_empty());
        let all: Vec<_> = a.values().flatten().cloned().collect();
        assert_eq!(all.len(), 3, "every partition exactly once: {all:?}");
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        let sub = encode_subscription(&["x".into(), "y".into()]).unwrap();
        assert_eq!(decode_subscription(&sub).unwrap(), vec!["x", "y"]);
        let parts = vec![
            ("y".to_string(), 2),
            ("x".to_string(), 0),
            ("y".to_string(), 0),
        ];
        let bytes = encode_assignment(&parts);
        assert_eq!(
            decode_assignment(&bytes).unwrap(),
            vec![("x".into(), 0), ("y".into(), 0), ("y".into(), 2)]
        );
        assert_eq!(decode_assignment(&[]).unwrap(), vec![]);
        assert!(decode_assignment(&[0]).is_err());
    }
}
