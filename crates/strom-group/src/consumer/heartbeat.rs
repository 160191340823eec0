//! ConsumerGroupHeartbeat (KIP-848) with Kafka's validation and error codes, leaving (member
//! epoch -1, or -2 for a static member that will come back), and the session and revocation
//! timers. Kafka's `GroupMetadataManager.consumerGroupHeartbeat` is the reference.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions as WireTopic,
};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::assignor::{assign, AssignmentSpec};
use super::model::{Assignment, ConsumerGroup, ConsumerMember, MemberState, TopicShape};
use super::reconcile::reconcile;
use crate::codes;
use crate::coordinator::GroupCoordinator;
use crate::group::{Group, GroupState};
use crate::{GroupConfig, TopicCatalog};

const LEAVE_EPOCH: i32 = -1;
const STATIC_LEAVE_EPOCH: i32 = -2;

/// A refusal: the Kafka error code and its message.
type Refusal = (i16, String);

fn refuse(code: i16, message: impl Into<String>) -> Refusal {
    (code, message.into())
}

fn error_response((code, message): Refusal) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_error_code(code)
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_member_epoch(-1)
}

/// The fields of a heartbeat, in domain types.
struct Beat<'a> {
    group_id: &'a str,
    member_id: String,
    member_epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    rebalance_timeout_ms: i32,
    topic_names: Option<BTreeSet<String>>,
    topic_regex: Option<String>,
    assignor: Option<String>,
    owned: Option<Assignment>,
    client_id: &'a str,
    client_host: &'a str,
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat v0-v1. Membership is in memory, so nothing waits for the log.
    pub fn consumer_group_heartbeat(
        &self,
        req: ConsumerGroupHeartbeatRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> ConsumerGroupHeartbeatResponse {
        if let Err(refusal) = validate(&req, version, &self.config) {
            return error_response(refusal);
        }
        let beat = Beat {
            group_id: req.group_id.as_str(),
            member_id: req.member_id.to_string(),
            member_epoch: req.member_epoch,
            instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
            rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            topic_names: req
                .subscribed_topic_names
                .as_ref()
                .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
            topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
            assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
            owned: req.topic_partitions.as_deref().map(owned_assignment),
            client_id,
            client_host,
        };
        let full_request = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1
                && req.subscribed_topic_names.is_some()
                && req.topic_partitions.is_some());
        let now_ms = self.clock.now_ms();
        let group_id = beat.group_id;
        let mut st = self.state.lock();
        let result = heartbeat_locked(
            &self.config,
            self.catalog.as_ref(),
            &mut st.groups,
            beat,
            full_request,
            now_ms,
        );
        // An upgraded classic group stores that it is no longer one.
        self.persist_locked(&mut st, group_id);
        drop(st);
        self.timers_changed.notify_one();
        match result {
            Ok(response) => response,
            Err(refusal) => error_response(refusal),
        }
    }
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn validate(
    req: &ConsumerGroupHeartbeatRequest,
    version: i16,
    config: &GroupConfig,
) -> Result<(), Refusal> {
    let invalid = |m: &str| Err(refuse(codes::INVALID_REQUEST, m));
    if req.group_id.is_empty() {
        return Err(refuse(codes::INVALID_GROUP_ID, "GroupId can't be empty."));
    }
    if req.instance_id.as_ref().is_some_and(|s| s.is_empty()) {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|s| s.is_empty()) {
        return invalid("RackId can't be empty.");
    }
    match req.member_epoch {
        0 => {
            if version >= 1 && req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if req.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            let names = req
                .subscribed_topic_names
                .as_ref()
                .is_some_and(|n| !n.is_empty());
            let regex = req
                .subscribed_topic_regex
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            if !names && !regex {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        e if e > 0 || e == LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        STATIC_LEAVE_EPOCH => {
            if req.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if req.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(regex) = &req.subscribed_topic_regex {
        if !regex.is_empty() && compile(regex).is_none() {
            return Err(refuse(
                codes::INVALID_REGULAR_EXPRESSION,
                format!("SubscribedTopicRegex `{regex}` is not a valid regular expression."),
            ));
        }
    }
    if let Some(assignor) = &req.server_assignor {
        if !config
            .consumer_assignors
            .iter()
            .any(|a| a == assignor.as_str())
        {
            return Err(refuse(
                codes::UNSUPPORTED_ASSIGNOR,
                format!(
                    "ServerAssignor {assignor} is not supported. Supported assignors: {}.",
                    config.consumer_assignors.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A subscription regex must match the whole topic name (Java's `Matcher.matches`).
fn compile(regex: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?:{regex})$")).ok()
}

fn owned_assignment(topics: &[OwnedTopic]) -> Assignment {
    let mut out = Assignment::new();
    for t in topics {
        out.entry(t.topic_id)
            .or_default()
            .extend(t.partitions.iter().copied());
    }
    out.retain(|_, p| !p.is_empty());
    out
}

fn is_subset(owned: &Option<Assignment>, of: &Assignment) -> bool {
    let Some(owned) = owned else {
        return false;
    };
    owned
        .iter()
        .all(|(topic, partitions)| of.get(topic).is_some_and(|have| partitions.is_subset(have)))
}

/// The group a heartbeat acts on: an empty classic group converts (Kafka converts an empty
/// classic group when a consumer-protocol member joins); a live one is not a consumer group.
fn consumer_group<'g>(
    config: &GroupConfig,
    catalog: &dyn TopicCatalog,
    groups: &'g mut std::collections::HashMap<String, Group>,
    group_id: &str,
    create: bool,
    now_ms: i64,
) -> Result<&'g mut Group, Refusal> {
    let existed = groups.contains_key(group_id);
    // A member heartbeating a group this coordinator does not hold (its record was never
    // written, or was too large to store) is told it is unknown, so that it rejoins; Kafka,
    // which always has the group, answers GROUP_ID_NOT_FOUND only for a group never seen.
    let lost = || {
        refuse(
            codes::UNKNOWN_MEMBER_ID,
            format!("Group {group_id} has no such member here (the coordinator restarted or moved); rejoin."),
        )
    };
    if !existed {
        if !create {
            return Err(lost());
        }
        groups.insert(group_id.to_string(), Group::new(group_id, Some(now_ms)));
    }
    let g = groups
        .get_mut(group_id)
        .ok_or_else(|| refuse(codes::UNKNOWN_SERVER_ERROR, "group vanished"))?;
    if g.consumer.is_none() {
        let empty_classic = g.members.is_empty() && g.is(GroupState::Empty);
        if empty_classic && !create {
            return Err(lost());
        }
        if create
            && !empty_classic
            && config.consumer_migration_policy.upgrade()
            && super::classic_members::upgrade(catalog, g, now_ms)
        {
            return Ok(g);
        }
        if !(create && empty_classic) {
            return Err(refuse(
                codes::GROUP_ID_NOT_FOUND,
                format!("Group {group_id} is not a consumer group"),
            ));
        }
        if existed {
            tracing::info!(group = %group_id, "empty classic group converted to a consumer group");
        }
        g.protocol_type = None;
        g.protocol_name = None;
        g.subscribed_topics = None;
        g.consumer = Some(Box::default());
    }
    Ok(g)
}

fn heartbeat_locked(
    config: &GroupConfig,
    catalog: &dyn TopicCatalog,
    groups: &mut std::collections::HashMap<String, Group>,
    mut beat: Beat<'_>,
    full_request: bool,
    now_ms: i64,
) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
    let g = consumer_group(
        config,
        catalog,
        groups,
        beat.group_id,
        beat.member_epoch == 0,
        now_ms,
    )?;
    let group_id = g.group_id.clone();
    let cg = g
        .consumer
        .as_mut()
        .ok_or_else(|| refuse(codes::UNKNOWN_SERVER_ERROR, "not a consumer group"))?;
    if cg.members.len() >= config.consumer_max_size
        && (beat.member_id.is_empty() || !cg.members.contains_key(&beat.member_id))
    {
        return Err(refuse(
            codes::GROUP_MAX_SIZE_REACHED,
            format!(
                "The consumer group has reached its maximum capacity of {} members.",
                config.consumer_max_size
            ),
        ));
    }
    if beat.member_id.is_empty() {
        beat.member_id = Uuid::new_v4().to_string();
    }
    if beat.member_epoch == LEAVE_EPOCH
        && cg
            .members
            .get(&beat.member_id)
            .is_some_and(|m| m.classic.is_none())
        && super::downgrade::leave_by_downgrade(config, g, &beat.member_id, "it left", now_ms)
    {
        return Ok(left_response(config, &beat));
    }
    let cg = g
        .consumer
        .as_mut()
        .ok_or_else(|| refuse(codes::UNKNOWN_SERVER_ERROR, "not a consumer group"))?;
    if beat.member_epoch == LEAVE_EPOCH || beat.member_epoch == STATIC_LEAVE_EPOCH {
        return leave(config, &group_id, cg, &beat);
    }
    let member = member_for(&group_id, cg, &beat)?;
    let before = member.clone();
    let mut updated = member;
    let joined = !cg.members.contains_key(&updated.member_id);
    if beat.instance_id.is_some() {
        updated.instance_id = beat.instance_id.clone();
    }
    if beat.rack_id.is_some() {
        updated.rack_id = beat.rack_id.clone();
    }
    if beat.rebalance_timeout_ms != -1 {
        updated.rebalance_timeout_ms = beat.rebalance_timeout_ms;
    }
    if let Some(a) = &beat.assignor {
        updated.server_assignor = Some(a.clone());
    }
    if let Some(names) = beat.topic_names.take() {
        updated.subscribed_topic_names = names;
    }
    if let Some(regex) = beat.topic_regex.take() {
        updated.subscribed_topic_regex = (!regex.is_empty()).then_some(regex);
    }
    updated.client_id = beat.client_id.to_string();
    updated.client_host = beat.client_host.to_string();
    let mut bump = joined
        || updated.subscribed_topic_names != before.subscribed_topic_names
        || updated.subscribed_topic_regex != before.subscribed_topic_regex
        || updated.server_assignor != before.server_assignor;
    if let Some(instance) = &updated.instance_id {
        cg.static_members
            .insert(instance.clone(), updated.member_id.clone());
    }
    cg.members
        .insert(updated.member_id.clone(), updated.clone());

    // 1. The group epoch moves when members or what they subscribe to change.
    bump |= refresh_subscription(catalog, cg);
    if bump {
        cg.group_epoch += 1;
        tracing::info!(group = %group_id, epoch = cg.group_epoch, "consumer group epoch bumped");
    }
    // 2. A new target assignment for a new group epoch.
    if cg.group_epoch > cg.assignment_epoch {
        compute_target(config, cg);
    }
    // 3. The member's next step towards its target.
    let target = cg
        .target
        .get(&updated.member_id)
        .cloned()
        .unwrap_or_default();
    let mut next = reconcile(
        &updated,
        cg.assignment_epoch,
        &target,
        &beat.owned,
        |t, p| cg.owned_by_other(&updated.member_id, t, p),
    );
    next.session_deadline_ms = now_ms.saturating_add(i64::from(config.consumer_session_timeout_ms));
    next.revocation_deadline_ms = revocation_deadline(&before, &next, now_ms);
    if next.member_epoch != before.member_epoch || next.state != before.state {
        tracing::debug!(group = %group_id, member = %next.member_id, epoch = next.member_epoch,
            state = next.state.name(), "consumer group member reconciled");
    }
    let changed = joined || next.assigned != before.assigned;
    let response = ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(StrBytes::from_string(next.member_id.clone())))
        .with_member_epoch(next.member_epoch)
        .with_heartbeat_interval_ms(config.consumer_heartbeat_interval_ms)
        .with_assignment((full_request || changed).then(|| wire_assignment(&next.assigned)));
    cg.members.insert(next.member_id.clone(), next);
    Ok(response)
}

/// A member that must revoke gets its rebalance timeout to do so, counted from when it was
/// first asked.
pub(super) fn revocation_deadline(
    before: &ConsumerMember,
    next: &ConsumerMember,
    now_ms: i64,
) -> Option<i64> {
    match (next.state, before.revocation_deadline_ms) {
        (MemberState::UnrevokedPartitions, Some(d)) if before.state == next.state => Some(d),
        (MemberState::UnrevokedPartitions, _) => {
            Some(now_ms.saturating_add(i64::from(next.rebalance_timeout_ms.max(0))))
        }
        _ => None,
    }
}

/// The member a heartbeat is for, with Kafka's checks of its epoch and instance id. A new
/// member is returned but not yet inserted.
fn member_for(
    group_id: &str,
    cg: &mut ConsumerGroup,
    beat: &Beat<'_>,
) -> Result<ConsumerMember, Refusal> {
    let unknown = || {
        refuse(
            codes::UNKNOWN_MEMBER_ID,
            format!(
                "Member {} is not a member of group {group_id}.",
                beat.member_id
            ),
        )
    };
    if let (Some(instance), 0) = (&beat.instance_id, beat.member_epoch) {
        // A static member (re)joining takes over its predecessor's assignment and epoch once
        // that one has left with epoch -2.
        if let Some(previous_id) = cg.static_members.get(instance).cloned() {
            if previous_id != beat.member_id {
                let previous = cg.members.get(&previous_id).cloned().ok_or_else(unknown)?;
                if previous.member_epoch != STATIC_LEAVE_EPOCH {
                    return Err(refuse(
                        codes::UNRELEASED_INSTANCE_ID,
                        format!("Static member {previous_id} with instance id {instance} is not released yet."),
                    ));
                }
                cg.remove_member(&previous_id);
                if let Some(t) = cg.target.remove(&previous_id) {
                    cg.target.insert(beat.member_id.clone(), t);
                }
                let mut m = previous;
                m.member_id = beat.member_id.clone();
                m.member_epoch = m.previous_member_epoch.max(0);
                return Ok(m);
            }
        }
    }
    let Some(member) = cg.members.get(&beat.member_id).cloned() else {
        return if beat.member_epoch == 0 {
            Ok(ConsumerMember::new(beat.member_id.clone()))
        } else {
            Err(unknown())
        };
    };
    if let (Some(given), Some(own)) = (&beat.instance_id, &member.instance_id) {
        if given != own {
            return Err(refuse(
                codes::FENCED_INSTANCE_ID,
                format!(
                    "The static member {} with instance id {own} was fenced by another member.",
                    member.member_id
                ),
            ));
        }
    }
    if beat.member_epoch > member.member_epoch {
        return Err(refuse(
            codes::FENCED_MEMBER_EPOCH,
            format!("The consumer group member has a greater member epoch ({}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", beat.member_epoch, member.member_epoch),
        ));
    }
    if beat.member_epoch < member.member_epoch
        && (beat.member_epoch != member.previous_member_epoch
            || !is_subset(&beat.owned, &member.assigned))
    {
        return Err(refuse(
            codes::FENCED_MEMBER_EPOCH,
            format!("The consumer group member has a smaller member epoch ({}) than the one known by the group coordinator ({}). The member must abandon all its partitions and rejoin.", beat.member_epoch, member.member_epoch),
        ));
    }
    Ok(member)
}

fn leave(
    config: &GroupConfig,
    group_id: &str,
    cg: &mut ConsumerGroup,
    beat: &Beat<'_>,
) -> Result<ConsumerGroupHeartbeatResponse, Refusal> {
    let member = cg.members.get_mut(&beat.member_id).ok_or_else(|| {
        refuse(
            codes::UNKNOWN_MEMBER_ID,
            format!(
                "Member {} is not a member of group {group_id}.",
                beat.member_id
            ),
        )
    })?;
    if beat.member_epoch == STATIC_LEAVE_EPOCH {
        // The static member keeps its assignment until its session ends or it comes back.
        member.member_epoch = STATIC_LEAVE_EPOCH;
        member.revocation_deadline_ms = None;
        tracing::info!(group = %group_id, member = %beat.member_id, "static member left temporarily");
    } else {
        cg.remove_member(&beat.member_id);
        cg.group_epoch += 1;
        tracing::info!(group = %group_id, member = %beat.member_id, epoch = cg.group_epoch, "member left the consumer group");
    }
    Ok(left_response(config, beat))
}

fn left_response(config: &GroupConfig, beat: &Beat<'_>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(StrBytes::from_string(beat.member_id.clone())))
        .with_member_epoch(beat.member_epoch)
        .with_heartbeat_interval_ms(config.consumer_heartbeat_interval_ms)
}

/// Re-resolves regexes and the subscribed topics' ids and partition counts; true when either
/// changed (a topic created, deleted, re-created or given more partitions).
pub(super) fn refresh_subscription(catalog: &dyn TopicCatalog, cg: &mut ConsumerGroup) -> bool {
    let regexes: BTreeSet<String> = cg
        .members
        .values()
        .filter_map(|m| m.subscribed_topic_regex.clone())
        .collect();
    let mut matches: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if !regexes.is_empty() {
        // Internal topics are never matched, as the Java client's pattern subscriptions.
        let names: Vec<String> = catalog
            .topic_names()
            .into_iter()
            .filter(|n| !n.starts_with("__"))
            .collect();
        for r in regexes {
            let found = compile(&r)
                .map(|re| names.iter().filter(|n| re.is_match(n)).cloned().collect())
                .unwrap_or_default();
            matches.insert(r, found);
        }
    }
    cg.regex_matches = matches;
    let subscription: BTreeMap<String, TopicShape> = cg
        .subscribed_names()
        .into_iter()
        .filter_map(|name| {
            let id = catalog.topic_id(&name)?;
            let partitions = catalog.partition_count(&name)?;
            Some((name, TopicShape { id, partitions }))
        })
        .collect();
    if subscription == cg.subscription {
        return false;
    }
    cg.subscription = subscription;
    true
}

pub(super) fn compute_target(config: &GroupConfig, cg: &mut ConsumerGroup) {
    let default = config
        .consumer_assignors
        .first()
        .map(String::as_str)
        .unwrap_or(super::assignor::UNIFORM);
    let assignor = cg.preferred_assignor(default).to_string();
    let members = cg
        .members
        .values()
        .map(|m| (m.member_id.clone(), m.subscribed_topics(&cg.regex_matches)))
        .collect();
    let spec = AssignmentSpec {
        members,
        topics: &cg.subscription,
        previous: &cg.target,
    };
    cg.target = assign(&assignor, &spec);
    cg.assignment_epoch = cg.group_epoch;
}

fn wire_assignment(a: &Assignment) -> WireAssignment {
    WireAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(id, ps)| {
                WireTopic::default()
                    .with_topic_id(*id)
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// Removes members whose session ended, members that did not revoke within their rebalance
/// timeout, and classic members that did not rejoin or sync in time (all are fenced: their
/// partitions go to others). The last consumer-protocol member fenced among classic ones
/// turns the group classic (`downgrade`).
pub(crate) fn on_timers(config: &GroupConfig, g: &mut Group, now_ms: i64) {
    let Some(cg) = g.consumer.as_deref() else {
        return;
    };
    let expired: Vec<(String, &'static str)> = cg
        .members
        .values()
        .filter_map(|m| {
            if m.session_deadline_ms <= now_ms {
                Some((m.member_id.clone(), "its session expired"))
            } else if m.revocation_deadline_ms.is_some_and(|d| d <= now_ms) {
                Some((
                    m.member_id.clone(),
                    "it did not revoke its partitions within its rebalance timeout",
                ))
            } else if m.classic_deadline_ms.is_some_and(|d| d <= now_ms) {
                Some((
                    m.member_id.clone(),
                    "the classic member did not rejoin or sync within its rebalance timeout",
                ))
            } else {
                None
            }
        })
        .collect();
    for (id, why) in expired {
        if super::downgrade::leave_by_downgrade(config, g, &id, why, now_ms) {
            // A classic group now: its own timers take over.
            return;
        }
        let Some(cg) = g.consumer.as_deref_mut() else {
            return;
        };
        cg.remove_member(&id);
        cg.group_epoch += 1;
        tracing::info!(group = %g.group_id, member = %id, epoch = cg.group_epoch, "consumer group member fenced: {why}");
    }
}
