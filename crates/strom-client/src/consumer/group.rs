//! Membership in a consumer group with the classic protocol: JoinGroup, SyncGroup (the leader
//! computes the assignment with the protocol the group chose, `range` or
//! `cooperative-sticky`), a background Heartbeat task that also watches
//! `max_poll_interval_ms`, LeaveGroup on close (not for static members).
//!
//! The member talks to the coordinator over its own connection, so heartbeats never queue
//! behind a long-polling fetch on the shared one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use super::assignor::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription_owned,
    range_assign,
};
use super::sticky::{cooperative_sticky_assign, MemberState, COOPERATIVE_STICKY_ASSIGNOR};
use super::ConsumerConfig;
use crate::cluster::Client;
use crate::connection::Connection;
use crate::error::{ClientError, ResponseError, Result};
use crate::offsets::{group_id, TopicPartition};

/// How many JoinGroup/SyncGroup round trips one join may take (member id handshake,
/// rebalances started by other members meanwhile).
const JOIN_ATTEMPTS_MAX: u32 = 20;

/// When the consumer last polled, for `max_poll_interval_ms`.
pub(crate) struct PollClock {
    pub created: Instant,
    /// Milliseconds since `created` of the last `poll`.
    pub last_poll_ms: Arc<AtomicU64>,
}

/// This consumer's place in its group.
pub(crate) struct Membership {
    pub group: String,
    pub coordinator: Arc<Connection>,
    pub member_id: String,
    pub generation_id: i32,
    pub assignment: Vec<TopicPartition>,
    /// Whether the group chose the cooperative protocol (`cooperative-sticky`).
    pub cooperative: bool,
    /// Set by the heartbeat task when the coordinator asks the member to rejoin.
    pub rejoin: Arc<AtomicBool>,
    /// Set when the coordinator answered NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: the
    /// next join finds the coordinator again instead of reusing this connection.
    pub coordinator_moved: Arc<AtomicBool>,
    /// Set when the member was dropped from the group (its generation is gone, or it left
    /// after `max_poll_interval_ms`): its partitions are lost, not revoked.
    pub lost: Arc<AtomicBool>,
    /// `group.instance.id` for static membership.
    instance_id: Option<String>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins (or rejoins) the group and starts heartbeating. `previous` keeps the member id.
    pub async fn join(
        client: &Client,
        config: &ConsumerConfig,
        group: &str,
        topics: &[String],
        owned: &[TopicPartition],
        previous: Option<Membership>,
        clock: PollClock,
    ) -> Result<Membership> {
        let instance_id = config
            .group_instance_id
            .as_ref()
            .map(|id| StrBytes::from_string(id.clone()));
        let (mut coordinator, mut member_id) = match previous {
            Some(mut old)
                if !old.coordinator.is_broken()
                    && !old.coordinator_moved.load(Ordering::Acquire) =>
            {
                old.stop_heartbeat();
                (old.coordinator.clone(), old.member_id.clone())
            }
            Some(mut old) => {
                old.stop_heartbeat();
                (
                    connect_coordinator(client, group).await?,
                    old.member_id.clone(),
                )
            }
            None => (connect_coordinator(client, group).await?, String::new()),
        };
        let metadata = encode_subscription_owned(topics, owned)?;
        if config.assignors.is_empty() {
            return Err(ClientError::Invalid(
                "ConsumerConfig::assignors names no assignor".into(),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > JOIN_ATTEMPTS_MAX {
                return Err(ClientError::Invalid(format!(
                    "could not join group {group} after {JOIN_ATTEMPTS_MAX} attempts"
                )));
            }
            // Static membership needs JoinGroup v5, SyncGroup v3, Heartbeat v3, LeaveGroup v3.
            let instance = instance_id
                .clone()
                .filter(|_| coordinator.version_for::<JoinGroupRequest>().unwrap_or(0) >= 5);
            let join = JoinGroupRequest::default()
                .with_group_instance_id(instance.clone())
                .with_group_id(group_id(group))
                .with_session_timeout_ms(config.session_timeout_ms)
                .with_rebalance_timeout_ms(config.rebalance_timeout_ms)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(
                    config
                        .assignors
                        .iter()
                        .map(|a| {
                            JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_static_str(a.name()))
                                .with_metadata(metadata.clone())
                        })
                        .collect(),
                );
            let joined = match coordinator.send(&join).await {
                Ok(j) => j,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(group, error = %e, "JoinGroup failed; finding the coordinator again");
                    client.backoff(attempt.min(5)).await;
                    coordinator = connect_coordinator(client, group).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match ResponseError::try_from_code(joined.error_code) {
                None => {}
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                    // The group moved: ask where it lives now.
                    client.backoff(attempt.min(5)).await;
                    coordinator = connect_coordinator(client, group).await?;
                    continue;
                }
                Some(ResponseError::MemberIdRequired) => {
                    // KIP-394: the coordinator hands out the id; join again with it.
                    member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    member_id.clear();
                    continue;
                }
                Some(e) if e.is_retriable() || e == ResponseError::RebalanceInProgress => {
                    client.backoff(attempt.min(5)).await;
                    continue;
                }
                Some(_) => {
                    return Err(ClientError::kafka(
                        joined.error_code,
                        format!("joining group {group}"),
                    ))
                }
            }
            member_id = joined.member_id.to_string();
            let generation_id = joined.generation_id;
            let protocol = joined
                .protocol_name
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| config.assignors[0].name().to_string());
            let cooperative = protocol == COOPERATIVE_STICKY_ASSIGNOR;
            let assignments = if joined.leader.as_str() == member_id {
                leader_assign(client, &joined.members, cooperative).await?
            } else {
                Vec::new()
            };
            let sync = SyncGroupRequest::default()
                .with_group_instance_id(instance.clone())
                .with_group_id(group_id(group))
                .with_generation_id(generation_id)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(Some(StrBytes::from_string(protocol.clone())))
                .with_assignments(assignments);
            let synced = match coordinator.send(&sync).await {
                Ok(s) => s,
                Err(e) if e.is_retriable() => {
                    tracing::debug!(group, error = %e, "SyncGroup failed; finding the coordinator again");
                    client.backoff(attempt.min(5)).await;
                    coordinator = connect_coordinator(client, group).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match ResponseError::try_from_code(synced.error_code) {
                None => {}
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                    client.backoff(attempt.min(5)).await;
                    coordinator = connect_coordinator(client, group).await?;
                    continue;
                }
                Some(ResponseError::RebalanceInProgress | ResponseError::IllegalGeneration) => {
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    member_id.clear();
                    continue;
                }
                Some(_) => {
                    return Err(ClientError::kafka(
                        synced.error_code,
                        format!("syncing group {group}"),
                    ))
                }
            }
            let mut assignment = Vec::new();
            if !synced.assignment.is_empty() {
                for tp in decode_assignment(&synced.assignment)?.assigned_partitions {
                    let topic = tp.topic.0.to_string();
                    assignment.extend(tp.partitions.into_iter().map(|p| (topic.clone(), p)));
                }
            }
            assignment.sort();
            tracing::debug!(group, member_id, generation_id, ?assignment, "joined group");
            let rejoin = Arc::new(AtomicBool::new(false));
            let coordinator_moved = Arc::new(AtomicBool::new(false));
            let lost = Arc::new(AtomicBool::new(false));
            let heartbeat = tokio::spawn(heartbeat_loop(
                Beat {
                    coordinator: coordinator.clone(),
                    group: group.to_string(),
                    member_id: member_id.clone(),
                    instance_id: instance.clone(),
                    generation_id,
                    interval: Duration::from_millis(config.heartbeat_interval_ms),
                    max_poll_interval: Duration::from_millis(config.max_poll_interval_ms),
                    clock,
                },
                Flags {
                    rejoin: rejoin.clone(),
                    coordinator_moved: coordinator_moved.clone(),
                    lost: lost.clone(),
                },
            ));
            return Ok(Membership {
                group: group.to_string(),
                coordinator,
                member_id,
                generation_id,
                assignment,
                cooperative,
                rejoin,
                coordinator_moved,
                lost,
                instance_id: instance.map(|i| i.to_string()),
                heartbeat: Some(heartbeat),
            });
        }
    }

    /// Whether the coordinator asked this member to rejoin.
    pub fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Acquire) || self.coordinator_moved.load(Ordering::Acquire)
    }

    /// Whether the member was dropped from the group rather than asked to rebalance.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Reacts to an error from the coordinator: NOT_COORDINATOR and COORDINATOR_NOT_AVAILABLE
    /// (or a broken connection) make the next poll find the coordinator and rejoin;
    /// a rebalance or a forgotten member makes it rejoin.
    pub fn note_error(&self, err: &ClientError) {
        match err.code() {
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                self.coordinator_moved.store(true, Ordering::Release)
            }
            Some(ResponseError::IllegalGeneration | ResponseError::UnknownMemberId) => {
                self.lost.store(true, Ordering::Release);
                self.rejoin.store(true, Ordering::Release)
            }
            Some(ResponseError::RebalanceInProgress) => self.rejoin.store(true, Ordering::Release),
            _ if self.coordinator.is_broken() => self.rejoin.store(true, Ordering::Release),
            _ => {}
        }
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Stops heartbeating and leaves the group, so the others rebalance at once rather than
    /// after the session timeout.
    pub async fn leave(mut self) -> Result<()> {
        self.stop_heartbeat();
        let member_id = StrBytes::from_string(self.member_id.clone());
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(&self.group));
        // Version 3 leaves several members at once, listed in `members`.
        if self.coordinator.version_for::<LeaveGroupRequest>()? >= 3 {
            request.members = vec![MemberIdentity::default()
                .with_member_id(member_id)
                .with_group_instance_id(self.instance_id.clone().map(StrBytes::from_string))];
        } else {
            request.member_id = member_id;
        }
        let response = self.coordinator.send(&request).await?;
        ClientError::check(response.error_code, || {
            format!("leaving group {}", self.group)
        })
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

async fn connect_coordinator(client: &Client, group: &str) -> Result<Arc<Connection>> {
    let addr = client.find_coordinator(group).await?;
    Ok(Arc::new(client.dedicated_connection(&addr).await?))
}

/// The leader's job: read every member's subscription (and, for `cooperative-sticky`, the
/// partitions each owns), look up partition counts, run the assignor, and encode each
/// member's share.
async fn leader_assign(
    client: &Client,
    members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    cooperative: bool,
) -> Result<Vec<SyncGroupRequestAssignment>> {
    let mut states: BTreeMap<String, MemberState> = BTreeMap::new();
    for m in members {
        let sub = decode_subscription(&m.metadata)?;
        states.insert(
            m.member_id.to_string(),
            MemberState {
                topics: sub.topics.iter().map(|t| t.to_string()).collect(),
                owned: sub
                    .owned_partitions
                    .iter()
                    .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
                    .collect(),
            },
        );
    }
    let mut counts = BTreeMap::new();
    for topic in states.values().flat_map(|s| &s.topics) {
        if counts.contains_key(topic) {
            continue;
        }
        match client.refresh_topic(topic).await {
            Ok(info) => {
                counts.insert(topic.clone(), info.partitions.len() as i32);
            }
            Err(e) => tracing::warn!(topic, error = %e, "subscribed topic is not available"),
        }
    }
    let assignment = if cooperative {
        cooperative_sticky_assign(&states, &counts)
    } else {
        let subscriptions: BTreeMap<String, Vec<String>> =
            states.into_iter().map(|(m, s)| (m, s.topics)).collect();
        range_assign(&subscriptions, &counts)
    };
    assignment
        .into_iter()
        .map(|(member, parts)| {
            Ok(SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member))
                .with_assignment(encode_assignment(&parts)?))
        })
        .collect()
}

/// What the heartbeat task sends and watches.
struct Beat {
    coordinator: Arc<Connection>,
    group: String,
    member_id: String,
    instance_id: Option<StrBytes>,
    generation_id: i32,
    interval: Duration,
    max_poll_interval: Duration,
    clock: PollClock,
}

/// What the heartbeat task tells the consumer.
struct Flags {
    rejoin: Arc<AtomicBool>,
    coordinator_moved: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
}

async fn heartbeat_loop(beat: Beat, flags: Flags) {
    let Beat {
        coordinator,
        group,
        member_id,
        instance_id,
        generation_id,
        interval,
        max_poll_interval,
        clock,
    } = beat;
    let instance =
        instance_id.filter(|_| coordinator.version_for::<HeartbeatRequest>().unwrap_or(0) >= 3);
    let request = HeartbeatRequest::default()
        .with_group_id(group_id(&group))
        .with_generation_id(generation_id)
        .with_member_id(StrBytes::from_string(member_id.clone()))
        .with_group_instance_id(instance);
    loop {
        tokio::time::sleep(interval).await;
        let since_poll = clock
            .created
            .elapsed()
            .saturating_sub(Duration::from_millis(
                clock.last_poll_ms.load(Ordering::Acquire),
            ));
        if since_poll > max_poll_interval {
            // As Kafka's consumer does: a member that stopped polling leaves, so the group
            // gives its partitions to members that make progress; the next poll rejoins.
            tracing::warn!(
                group,
                since_poll_ms = since_poll.as_millis() as u64,
                "poll not called within max_poll_interval_ms; leaving the group"
            );
            let leave = LeaveGroupRequest::default()
                .with_group_id(group_id(&group))
                .with_member_id(StrBytes::from_string(member_id.clone()));
            let leave = if coordinator.version_for::<LeaveGroupRequest>().unwrap_or(0) >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(group_id(&group))
                    .with_members(vec![MemberIdentity::default()
                        .with_member_id(StrBytes::from_string(member_id.clone()))])
            } else {
                leave
            };
            let _ = coordinator.send(&leave).await;
            flags.lost.store(true, Ordering::Release);
            flags.rejoin.store(true, Ordering::Release);
            return;
        }
        match coordinator.send(&request).await {
            Ok(r) if r.error_code == 0 => {}
            Ok(r) => {
                tracing::debug!(group, code = r.error_code, "heartbeat asks to rejoin");
                match ResponseError::try_from_code(r.error_code) {
                    Some(
                        ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable,
                    ) => flags.coordinator_moved.store(true, Ordering::Release),
                    Some(
                        ResponseError::UnknownMemberId
                        | ResponseError::IllegalGeneration
                        | ResponseError::FencedInstanceId,
                    ) => flags.lost.store(true, Ordering::Release),
                    _ => {}
                }
                flags.rejoin.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::debug!(group, error = %e, "heartbeat failed");
                if coordinator.is_broken() {
                    flags.rejoin.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}
