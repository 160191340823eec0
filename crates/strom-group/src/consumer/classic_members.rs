//! Classic-protocol members inside a KIP-848 group (Kafka 4's online migration): a live
//! classic group whose members use the embedded consumer protocol becomes a consumer group
//! when a `group.protocol=consumer` member joins it; its classic members stay, and go on
//! speaking JoinGroup, SyncGroup, Heartbeat and LeaveGroup. The coordinator assigns for them
//! too: JoinGroup answers at once with the member epoch as generation and no leader, SyncGroup
//! returns the member's assignment, and Heartbeat answers REBALANCE_IN_PROGRESS when the
//! member must rejoin to move on. Kafka's `classicGroup*ToConsumerGroup` are the reference.
//!
//! The way back, when the last consumer-protocol member leaves, is `downgrade`.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::classic_wire;
use super::heartbeat::{compute_target, refresh_subscription, revocation_deadline};
use super::model::{Assignment, ClassicMeta, ConsumerGroup, ConsumerMember, MemberState};
use super::reconcile::reconcile;
use crate::codes;
use crate::group::{Group, GroupState, JoinOutcome, SyncOutcome};
use crate::membership::{JoinArgs, SyncArgs};
use crate::{GroupConfig, TopicCatalog};

const PROTOCOL_TYPE: &str = "consumer";

fn by_id(
    catalog: &dyn TopicCatalog,
    named: BTreeMap<String, std::collections::BTreeSet<i32>>,
) -> Assignment {
    named
        .into_iter()
        .filter_map(|(name, ps)| Some((catalog.topic_id(&name)?, ps)))
        .filter(|(_, ps)| !ps.is_empty())
        .collect()
}

/// JoinGroup from a classic member of a KIP-848 group.
pub(crate) fn join(
    config: &GroupConfig,
    catalog: &dyn TopicCatalog,
    g: &mut Group,
    a: &JoinArgs<'_>,
    now_ms: i64,
) -> JoinOutcome {
    let Some(cg) = g.consumer.as_mut() else {
        return JoinOutcome::error(a.member_id, codes::UNKNOWN_SERVER_ERROR);
    };
    let unknown = a.member_id.is_empty();
    let member_id = if unknown {
        Uuid::new_v4().to_string()
    } else {
        a.member_id.to_string()
    };
    if cg.members.len() >= config.consumer_max_size && !cg.members.contains_key(&member_id) {
        return JoinOutcome::error(&member_id, codes::GROUP_MAX_SIZE_REACHED);
    }
    let subscription = a
        .protocols
        .first()
        .and_then(|(_, metadata)| classic_wire::subscription(metadata));
    let Some(subscription) = subscription.filter(|_| a.protocol_type == PROTOCOL_TYPE) else {
        return JoinOutcome::error(&member_id, codes::INCONSISTENT_GROUP_PROTOCOL);
    };
    if unknown && a.require_known_member_id && a.instance_id.is_none() {
        return JoinOutcome::error(&member_id, codes::MEMBER_ID_REQUIRED);
    }
    // A static member coming back under a new member id takes its predecessor's place.
    let replaced = a
        .instance_id
        .as_ref()
        .and_then(|i| cg.static_members.get(i).cloned())
        .filter(|previous| *previous != member_id);
    let mut member = match replaced.and_then(|previous| {
        let target = cg.target.remove(&previous);
        cg.remove_member(&previous).map(|m| (m, target))
    }) {
        Some((mut m, target)) => {
            m.member_id = member_id.clone();
            if let Some(t) = target {
                cg.target.insert(member_id.clone(), t);
            }
            m
        }
        None => cg
            .members
            .get(&member_id)
            .cloned()
            .unwrap_or_else(|| ConsumerMember::new(member_id.clone())),
    };
    let before = member.clone();
    let joined = !cg.members.contains_key(&member_id);
    member.instance_id = a.instance_id.clone();
    member.rack_id = subscription.rack_id.clone();
    member.rebalance_timeout_ms = a.rebalance_timeout_ms;
    member.server_assignor = None;
    member.subscribed_topic_regex = None;
    member.subscribed_topic_names = subscription.topics.clone();
    member.client_id = a.client_id.to_string();
    member.client_host = a.client_host.to_string();
    member.classic = Some(ClassicMeta {
        session_timeout_ms: a.session_timeout_ms,
        protocols: a.protocols.clone(),
    });
    let mut bump = joined || member.subscribed_topic_names != before.subscribed_topic_names;
    if let Some(instance) = &member.instance_id {
        cg.static_members
            .insert(instance.clone(), member_id.clone());
    }
    cg.members.insert(member_id.clone(), member.clone());
    bump |= refresh_subscription(catalog, cg);
    if bump {
        cg.group_epoch += 1;
        tracing::info!(group = %g.group_id, epoch = cg.group_epoch, "consumer group epoch bumped by a classic member");
    }
    if cg.group_epoch > cg.assignment_epoch {
        compute_target(config, cg);
    }
    let owned = Some(by_id(catalog, subscription.owned));
    let target = cg.target.get(&member_id).cloned().unwrap_or_default();
    let mut next = reconcile(&member, cg.assignment_epoch, &target, &owned, |t, p| {
        cg.owned_by_other(&member_id, t, p)
    });
    next.session_deadline_ms = now_ms.saturating_add(i64::from(a.session_timeout_ms.max(0)));
    next.revocation_deadline_ms = revocation_deadline(&before, &next, now_ms);
    // Kafka's sync timeout: SyncGroup must follow within the rebalance timeout.
    next.classic_deadline_ms = Some(rebalance_deadline(&next, now_ms));
    let outcome = JoinOutcome {
        error: codes::NONE,
        generation_id: next.member_epoch,
        protocol_type: Some(PROTOCOL_TYPE.into()),
        protocol_name: a.protocols.first().map(|(n, _)| n.clone()),
        leader: String::new(),
        skip_assignment: false,
        member_id: member_id.clone(),
        members: Vec::new(),
    };
    cg.members.insert(member_id, next);
    outcome
}

/// When a classic member that must join or sync is fenced: its rebalance timeout from now.
fn rebalance_deadline(m: &ConsumerMember, now_ms: i64) -> i64 {
    now_ms.saturating_add(i64::from(m.rebalance_timeout_ms.max(0)))
}

/// The classic member named by a request, with Kafka's identity checks.
fn classic_member<'c>(
    cg: &'c mut ConsumerGroup,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<&'c mut ConsumerMember, i16> {
    let m = cg
        .members
        .get_mut(member_id)
        .ok_or(codes::UNKNOWN_MEMBER_ID)?;
    if instance_id.is_some() && m.instance_id.as_deref() != instance_id {
        return Err(codes::FENCED_INSTANCE_ID);
    }
    if m.classic.is_none() {
        return Err(codes::UNKNOWN_MEMBER_ID);
    }
    Ok(m)
}

/// SyncGroup from a classic member: its current assignment, unless it must rejoin first.
pub(crate) fn sync(g: &mut Group, a: &SyncArgs<'_>, now_ms: i64) -> SyncOutcome {
    let Some(cg) = g.consumer.as_mut() else {
        return SyncOutcome::error(codes::UNKNOWN_SERVER_ERROR);
    };
    let group_epoch = cg.group_epoch;
    let m = match classic_member(cg, a.member_id, a.instance_id) {
        Ok(m) => m,
        Err(code) => return SyncOutcome::error(code),
    };
    if a.generation_id != m.member_epoch {
        return SyncOutcome::error(codes::ILLEGAL_GENERATION);
    }
    let Some(classic) = m.classic.clone() else {
        return SyncOutcome::error(codes::UNKNOWN_MEMBER_ID);
    };
    let protocol = classic.protocol_name();
    if a.protocol_type.is_some_and(|t| t != PROTOCOL_TYPE)
        || a.protocol_name.is_some_and(|n| n != protocol)
    {
        return SyncOutcome::error(codes::INCONSISTENT_GROUP_PROTOCOL);
    }
    if group_epoch > m.member_epoch && m.state != MemberState::UnrevokedPartitions {
        m.classic_deadline_ms
            .get_or_insert(rebalance_deadline(m, now_ms));
        return SyncOutcome::error(codes::REBALANCE_IN_PROGRESS);
    }
    m.classic_deadline_ms = None;
    m.session_deadline_ms = now_ms.saturating_add(i64::from(classic.session_timeout_ms.max(0)));
    let assigned = m.assigned.clone();
    SyncOutcome {
        error: codes::NONE,
        protocol_type: Some(PROTOCOL_TYPE.into()),
        protocol_name: Some(protocol.to_string()),
        assignment: cg.encode_assignment(classic.version(), &assigned),
    }
}

/// Heartbeat from a classic member: REBALANCE_IN_PROGRESS when it must rejoin (a new group
/// epoch, partitions to revoke, or partitions that were waited for are free now).
pub(crate) fn heartbeat(
    g: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation_id: i32,
    now_ms: i64,
) -> i16 {
    let Some(cg) = g.consumer.as_mut() else {
        return codes::UNKNOWN_SERVER_ERROR;
    };
    let group_epoch = cg.group_epoch;
    let waiting = {
        let target = cg.target.get(member_id).cloned().unwrap_or_default();
        target.iter().any(|(t, ps)| {
            ps.iter().any(|p| {
                cg.members.get(member_id).is_some_and(|m| !m.owns(t, *p))
                    && cg.owned_by_other(member_id, t, *p)
            })
        })
    };
    let m = match classic_member(cg, member_id, instance_id) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if generation_id != m.member_epoch {
        return codes::ILLEGAL_GENERATION;
    }
    let session = m.classic.as_ref().map_or(0, |c| c.session_timeout_ms);
    m.session_deadline_ms = now_ms.saturating_add(i64::from(session.max(0)));
    let rejoin = m.member_epoch < group_epoch
        || m.state == MemberState::UnrevokedPartitions
        || (m.state == MemberState::UnreleasedPartitions && !waiting);
    if rejoin {
        // Kafka's join timeout: the member is fenced unless it rejoins in time.
        m.classic_deadline_ms
            .get_or_insert(rebalance_deadline(m, now_ms));
        codes::REBALANCE_IN_PROGRESS
    } else {
        codes::NONE
    }
}

/// LeaveGroup for one classic member (by member id, or by instance id for static members).
pub(crate) fn leave(g: &mut Group, member_id: &str, instance_id: Option<&str>) -> i16 {
    let Some(cg) = g.consumer.as_mut() else {
        return codes::UNKNOWN_SERVER_ERROR;
    };
    let target = match instance_id {
        Some(instance) => match cg.static_members.get(instance) {
            None => return codes::UNKNOWN_MEMBER_ID,
            Some(existing) if !member_id.is_empty() && existing != member_id => {
                return codes::FENCED_INSTANCE_ID
            }
            Some(existing) => existing.clone(),
        },
        None => member_id.to_string(),
    };
    if cg.remove_member(&target).is_none() {
        return codes::UNKNOWN_MEMBER_ID;
    }
    cg.group_epoch += 1;
    tracing::info!(group = %g.group_id, member = %target, epoch = cg.group_epoch, "classic member left the consumer group");
    codes::NONE
}

/// Converts a live classic group whose members use the embedded consumer protocol into a
/// KIP-848 group (Kafka's `ConsumerGroup.fromClassicGroup`): every member keeps its current
/// assignment at the group's generation, as a classic member. Waiting JoinGroup and SyncGroup
/// calls are answered REBALANCE_IN_PROGRESS so their members rejoin. False (nothing changed)
/// when a member's metadata or assignment does not parse.
pub(crate) fn upgrade(catalog: &dyn TopicCatalog, g: &mut Group, now_ms: i64) -> bool {
    if g.protocol_type.as_deref() != Some(PROTOCOL_TYPE) {
        tracing::info!(group = %g.group_id, "cannot upgrade: the group does not use the consumer protocol");
        return false;
    }
    let mut cg = ConsumerGroup {
        group_epoch: g.generation_id.max(0),
        assignment_epoch: g.generation_id.max(0),
        ..ConsumerGroup::default()
    };
    for m in g.members.values() {
        let metadata = match &g.protocol_name {
            Some(p) => m.metadata_for(p),
            None => m
                .protocols
                .first()
                .map(|(_, md)| md.clone())
                .unwrap_or_default(),
        };
        let Some(sub) = classic_wire::subscription(&metadata) else {
            tracing::warn!(group = %g.group_id, member = %m.member_id, "cannot upgrade: the member's subscription does not parse");
            return false;
        };
        let Some(assigned) = classic_wire::assignment(&m.assignment) else {
            tracing::warn!(group = %g.group_id, member = %m.member_id, "cannot upgrade: the member's assignment does not parse");
            return false;
        };
        let mut member = ConsumerMember::new(m.member_id.clone());
        member.instance_id = m.group_instance_id.clone();
        member.rack_id = sub.rack_id;
        member.client_id = m.client_id.clone();
        member.client_host = m.client_host.clone();
        member.rebalance_timeout_ms = m.rebalance_timeout_ms;
        member.subscribed_topic_names = sub.topics;
        member.member_epoch = g.generation_id.max(0);
        member.assigned = by_id(catalog, assigned);
        member.state = MemberState::Stable;
        member.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms.max(0)));
        // The chosen protocol first: it is the one the member's assignment is in.
        let mut protocols = m.protocols.clone();
        if let Some(chosen) = &g.protocol_name {
            protocols.sort_by_key(|(name, _)| name != chosen);
        }
        member.classic = Some(ClassicMeta {
            session_timeout_ms: m.session_timeout_ms,
            protocols,
        });
        if let Some(instance) = &member.instance_id {
            cg.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        cg.target
            .insert(member.member_id.clone(), member.assigned.clone());
        cg.members.insert(member.member_id.clone(), member);
    }
    refresh_subscription(catalog, &mut cg);
    for m in g.members.values_mut() {
        m.complete_join(JoinOutcome::error(
            &m.member_id,
            codes::REBALANCE_IN_PROGRESS,
        ));
        m.complete_sync(SyncOutcome::error(codes::REBALANCE_IN_PROGRESS));
    }
    tracing::info!(group = %g.group_id, members = cg.members.len(), epoch = cg.group_epoch,
        "live classic group upgraded to a consumer group");
    g.members.clear();
    g.static_members.clear();
    g.pending_members.clear();
    g.pending_sync.clear();
    g.join_phase = None;
    g.sync_deadline_ms = None;
    g.leader_id = None;
    g.protocol_type = None;
    g.protocol_name = None;
    g.subscribed_topics = None;
    g.state = GroupState::Empty;
    g.state_since_ms = Some(now_ms);
    // The stored classic generation must not come back as live members after a restart.
    g.metadata_dirty = true;
    g.consumer = Some(Box::new(cg));
    true
}
