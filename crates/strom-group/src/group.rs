//! The in-memory model of one classic group: members, state, generation, chosen protocol and
//! committed offsets. No I/O and no wire types here except the member metadata bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;

use crate::store::{CommittedOffset, StoredGroup, StoredMember};

/// Kafka waits this long for a brand-new member's JoinGroup before dropping it: a new member
/// has no member id yet, so it cannot heartbeat (Kafka's `NewMemberJoinTimeoutMs`).
pub(crate) const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a waiting JoinGroup is answered with (turned into a `JoinGroupResponse` per version).
#[derive(Debug, Clone, Default)]
pub(crate) struct JoinOutcome {
    pub error: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// (member id, group instance id, metadata of the chosen protocol); only for the leader.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub(crate) fn error(member_id: &str, error: i16) -> Self {
        JoinOutcome {
            error,
            generation_id: -1,
            member_id: member_id.to_string(),
            ..Default::default()
        }
    }
}

/// What a waiting SyncGroup is answered with.
#[derive(Debug, Clone, Default)]
pub(crate) struct SyncOutcome {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub(crate) fn error(error: i16) -> Self {
        SyncOutcome {
            error,
            ..Default::default()
        }
    }
}

#[derive(Debug)]
pub(crate) struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Set while the member's JoinGroup waits for the rebalance to complete.
    pub awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    /// Set while the member's SyncGroup waits for the leader's assignment.
    pub awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
    /// Joined during the current rebalance and has not been answered yet.
    pub is_new: bool,
    /// When the member is dropped unless it heartbeats (or is answered, for a new member).
    pub session_deadline_ms: i64,
}

impl Member {
    pub(crate) fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Same protocols in the same order with the same metadata.
    pub(crate) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub(crate) fn complete_join(&mut self, outcome: JoinOutcome) {
        if let Some(tx) = self.awaiting_join.take() {
            // The receiver is gone if the client disconnected; nothing to do then.
            let _ = tx.send(outcome);
        }
    }

    pub(crate) fn complete_sync(&mut self, outcome: SyncOutcome) {
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(outcome);
        }
    }
}

/// Where the PreparingRebalance phase ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum JoinPhase {
    /// Kafka's InitialDelayedJoin: wait `delay` for more joiners, then extend while new members
    /// keep arriving, as long as `remaining_ms` of the rebalance timeout is left.
    InitialDelay { deadline_ms: i64, remaining_ms: i64 },
    /// Kafka's DelayedJoin: complete when everyone has rejoined or at the deadline.
    Rebalance { deadline_ms: i64 },
}

#[derive(Debug)]
pub(crate) struct Group {
    pub group_id: String,
    pub state: GroupState,
    /// When the group entered its current state; `None` for groups replayed from disk, whose
    /// offsets then age from their own commit time (as Kafka does without a state timestamp).
    pub state_since_ms: Option<i64>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// Members in join order; the first one becomes leader when a leader is needed.
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet -> expiry time.
    pub pending_members: HashMap<String, i64>,
    /// A member joined during the initial delay (extends it once more).
    pub new_member_added: bool,
    pub join_phase: Option<JoinPhase>,
    /// Deadline for every member to send SyncGroup while CompletingRebalance.
    pub sync_deadline_ms: Option<i64>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync: BTreeSet<String>,
    /// Topics of the members' consumer-protocol subscriptions, when the protocol type is
    /// "consumer" and every subscription parsed; `None` means unknown.
    pub subscribed_topics: Option<BTreeSet<String>>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// The group metadata record last written to the log (kept for compaction), if any.
    pub stored: Option<StoredGroup>,
    /// A generation completed (or the group became Empty) since `stored` was written; the
    /// coordinator writes a new group metadata record after the operation.
    pub metadata_dirty: bool,
    /// Set when the group uses the consumer protocol of KIP-848; its classic fields above
    /// then stay Empty and only `offsets` is shared.
    pub consumer: Option<Box<crate::consumer::ConsumerGroup>>,
    /// The KIP-848 group record last written to the log (kept for compaction), if any.
    pub stored_consumer: Option<bytes::Bytes>,
}

impl Group {
    pub(crate) fn new(group_id: &str, now_ms: Option<i64>) -> Self {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            new_member_added: false,
            join_phase: None,
            sync_deadline_ms: None,
            pending_sync: BTreeSet::new(),
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            stored: None,
            metadata_dirty: false,
            consumer: None,
            stored_consumer: None,
        }
    }

    /// No member of either protocol: what "Empty" means for offsets retention, simple
    /// commits and deletion.
    pub(crate) fn has_no_members(&self) -> bool {
        self.is(GroupState::Empty) && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    /// The group's current generation as a group metadata record (Kafka's
    /// `groupMetadataValue`). Only meaningful in Stable or Empty.
    pub(crate) fn to_stored(&self) -> StoredGroup {
        StoredGroup {
            group: self.group_id.clone(),
            protocol_type: self.protocol_type.clone(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            state_since_ms: self.state_since_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restores the stored generation after a restart, as Kafka's `GroupMetadata.loadGroup`:
    /// Stable with its members if it has any, otherwise Empty. Every member's session timer
    /// starts at `now_ms`, so consumers that keep heartbeating continue without a rebalance
    /// and the others expire as usual. A record that does not describe a consistent group
    /// (no protocol, a leader that is not a member, a duplicate id) is restored as Empty: its
    /// members then rejoin, which is what happened before membership was persisted.
    pub(crate) fn restore(&mut self, stored: &StoredGroup, now_ms: i64) {
        self.state = GroupState::Empty;
        self.state_since_ms = (stored.state_since_ms >= 0).then_some(stored.state_since_ms);
        self.generation_id = stored.generation_id;
        self.protocol_type = stored.protocol_type.clone();
        self.protocol_name = None;
        self.leader_id = None;
        self.members.clear();
        self.static_members.clear();
        self.subscribed_topics = None;
        let protocol_type = stored.protocol_type.clone().unwrap_or_default();
        for m in &stored.members {
            let duplicate = self.members.contains_key(&m.member_id)
                || m.group_instance_id
                    .as_ref()
                    .is_some_and(|i| self.static_members.contains_key(i));
            if duplicate {
                tracing::warn!(group = %self.group_id, member = %m.member_id, "duplicate member in stored group; restoring it Empty");
                self.members.clear();
                self.static_members.clear();
                break;
            }
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: protocol_type.clone(),
                    protocols: m.protocols.clone(),
                    assignment: m.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    session_deadline_ms: now_ms
                        .saturating_add(i64::from(m.session_timeout_ms.max(0))),
                },
            );
        }
        let consistent = !self.members.is_empty()
            && stored.protocol_name.is_some()
            && stored
                .leader_id
                .as_ref()
                .is_some_and(|l| self.members.contains_key(l));
        if consistent {
            self.state = GroupState::Stable;
            self.protocol_name = stored.protocol_name.clone();
            self.leader_id = stored.leader_id.clone();
            self.compute_subscribed_topics();
        } else {
            if !stored.members.is_empty() {
                tracing::warn!(group = %self.group_id, "inconsistent stored group; restoring it Empty");
            }
            self.members.clear();
            self.static_members.clear();
        }
        self.stored = Some(stored.clone());
    }

    pub(crate) fn transition(&mut self, to: GroupState, now_ms: i64) {
        debug_assert!(
            valid_transition(self.state, to),
            "{:?} -> {:?}",
            self.state,
            to
        );
        self.state = to;
        self.state_since_ms = Some(now_ms);
    }

    pub(crate) fn is(&self, s: GroupState) -> bool {
        self.state == s
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol list; otherwise
    /// the type must match and one of the protocols must be supported by every member.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.is(GroupState::Empty) || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in iter {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    /// Kafka's `selectProtocol`: every member votes for its most preferred candidate; most
    /// votes wins. Ties go to the candidate the first member prefers (deterministic).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        if candidates.is_empty() {
            return None;
        }
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (name, count) in votes {
            let better = match &best {
                None => true,
                Some((_, b)) => count > *b,
            };
            if better {
                best = Some((name, count));
            }
        }
        best.map(|(n, _)| n)
    }

    pub(crate) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub(crate) fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    pub(crate) fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.pending_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member; answers its waiting requests with UNKNOWN_MEMBER_ID and moves the
    /// leadership to the oldest remaining member.
    pub(crate) fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let mut member = self.members.shift_remove(member_id)?;
        member.complete_join(JoinOutcome::error(
            member_id,
            crate::codes::UNKNOWN_MEMBER_ID,
        ));
        member.complete_sync(SyncOutcome::error(crate::codes::UNKNOWN_MEMBER_ID));
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        if self.members.is_empty() {
            // Kafka keeps the protocol type of an Empty group for listing; we do too.
            self.leader_id = None;
        }
        Some(member)
    }

    /// The member id a group.instance.id is bound to.
    pub(crate) fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.static_members.get(instance_id).map(String::as_str)
    }

    /// Kafka's `ClassicGroup.validateMember`.
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), i16> {
        match instance_id {
            Some(instance) => match self.static_member_id(instance) {
                None => Err(crate::codes::UNKNOWN_MEMBER_ID),
                Some(existing) if existing != member_id => Err(crate::codes::FENCED_INSTANCE_ID),
                Some(_) => Ok(()),
            },
            None if !self.members.contains_key(member_id) => Err(crate::codes::UNKNOWN_MEMBER_ID),
            None => Ok(()),
        }
    }

    /// The leader's view of the group for its JoinGroup response.
    pub(crate) fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect()
    }

    pub(crate) fn join_outcome_for(&self, member_id: &str) -> JoinOutcome {
        let leader = self.is_leader(member_id);
        JoinOutcome {
            error: crate::codes::NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: if leader {
                self.member_list()
            } else {
                Vec::new()
            },
        }
    }

    /// Recomputes the subscribed topics from the members' metadata for the chosen protocol.
    pub(crate) fn compute_subscribed_topics(&mut self) {
        self.subscribed_topics = None;
        if self.protocol_type.as_deref() != Some("consumer") {
            return;
        }
        let Some(protocol) = self.protocol_name.clone() else {
            return;
        };
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            match parse_subscription_topics(&m.metadata_for(&protocol)) {
                Some(t) => topics.extend(t),
                None => return,
            }
        }
        self.subscribed_topics = Some(topics);
    }

    /// Checks the group's invariants. Called after every operation in debug builds (tests
    /// run them all); compiled out of release builds, which must never panic on input.
    pub(crate) fn debug_check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let id = &self.group_id;
        assert!(
            !self.is(GroupState::Dead),
            "{id}: a Dead group is still in the map"
        );
        match &self.leader_id {
            Some(leader) => assert!(
                self.members.contains_key(leader),
                "{id}: leader {leader} is not a member"
            ),
            None => assert!(self.members.is_empty(), "{id}: members but no leader"),
        }
        if self.is(GroupState::Empty) {
            assert!(self.members.is_empty(), "{id}: Empty with members");
        }
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            assert!(
                !self.members.is_empty(),
                "{id}: {:?} without members",
                self.state
            );
            assert!(
                self.protocol_name.is_some(),
                "{id}: {:?} without a protocol",
                self.state
            );
        }
        assert_eq!(
            self.join_phase.is_some(),
            self.is(GroupState::PreparingRebalance),
            "{id}: join phase set outside PreparingRebalance or missing in it"
        );
        for (instance, member_id) in &self.static_members {
            let m = self.members.get(member_id);
            assert!(
                m.is_some_and(|m| m.group_instance_id.as_deref() == Some(instance.as_str())),
                "{id}: static mapping {instance} -> {member_id} is stale"
            );
        }
        for m in self.members.values() {
            if let Some(instance) = &m.group_instance_id {
                assert_eq!(
                    self.static_members.get(instance),
                    Some(&m.member_id),
                    "{id}: static member {} is not mapped",
                    m.member_id
                );
            }
            if m.awaiting_sync.is_some() {
                assert!(
                    self.is(GroupState::CompletingRebalance),
                    "{id}: {} waits for an assignment in {:?}",
                    m.member_id,
                    self.state
                );
            }
        }
        for p in &self.pending_sync {
            assert!(
                self.members.contains_key(p),
                "{id}: pending sync of non-member {p}"
            );
        }
    }

    /// Kafka's `isSubscribedToTopic`: unknown subscriptions count as subscribed.
    pub(crate) fn is_subscribed_to(&self, topic: &str) -> bool {
        if let Some(cg) = &self.consumer {
            return cg.subscribed_names().contains(topic);
        }
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => true,
        }
    }
}

fn valid_transition(from: GroupState, to: GroupState) -> bool {
    use GroupState::*;
    match to {
        // Kafka: Dead is reachable from every state.
        Dead => true,
        PreparingRebalance => matches!(from, Stable | CompletingRebalance | Empty),
        CompletingRebalance => from == PreparingRebalance,
        Stable => from == CompletingRebalance,
        Empty => from == PreparingRebalance,
    }
}

/// The topics of a ConsumerProtocolSubscription (any version): `version i16`, then
/// `topics: [string]` (i32 count, each i16 length + UTF-8). Hand-parsed and bounds-checked so
/// that a hostile count can never allocate more than the bytes present. `None` if malformed.
pub(crate) fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if buf.len() < n {
            return None;
        }
        let (h, t) = buf.split_at(n);
        buf = t;
        Some(h)
    };
    let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    // Each topic needs at least its 2-byte length.
    if count > metadata.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let name = std::str::from_utf8(take(len)?).ok()?;
        topics.push(name.to_string());
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn subscription(topics: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            b.extend_from_slice(&(t.len() as i16).to_be_bytes());
            b.extend_from_slice(t.as_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes()); // user data: null
        b
    }

    #[test]
    fn parses_subscription_topics() {
        assert_eq!(
            parse_subscription_topics(&subscription(&["a", "bb"])),
            Some(vec!["a".to_string(), "bb".to_string()])
        );
        assert_eq!(parse_subscription_topics(&[]), None);
        // A huge count with no bytes behind it is refused without allocating.
        assert_eq!(
            parse_subscription_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]),
            None
        );
        let full = subscription(&["abc"]);
        for cut in 0..8 {
            assert_eq!(parse_subscription_topics(&full[..cut]), None);
        }
    }
}
