//! The state of one KIP-848 consumer group: its members, the group epoch, and the target
//! assignment computed at the assignment epoch.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use uuid::Uuid;

/// Partitions by topic id, as the protocol names them.
pub(crate) type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// Where a member is on its way to its target assignment (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// At the target epoch, owning everything it was given.
    Stable,
    /// Must first revoke `pending_revocation`; its epoch stays until it does.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: BTreeSet<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: MemberState,
    /// What the member owns and may consume.
    pub assigned: Assignment,
    /// What it still owns but must give up before anyone else gets it.
    pub pending_revocation: Assignment,
    pub session_deadline_ms: i64,
    /// Set for a member that speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat)
    /// inside this group, as Kafka 4 lets members of a live classic group stay on while the
    /// group moves to the new protocol.
    pub classic: Option<ClassicMeta>,
    /// Set while the member is in `UnrevokedPartitions`: it is fenced if it has not revoked
    /// by then (its rebalance timeout).
    pub revocation_deadline_ms: Option<i64>,
    /// A classic member told to rejoin (REBALANCE_IN_PROGRESS) is fenced if no JoinGroup
    /// comes by then; one that joined, if no SyncGroup comes by then (its rebalance timeout,
    /// Kafka's join and sync timeouts). Not stored: a restart gives a fresh start.
    pub classic_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    pub(crate) fn new(member_id: String) -> Self {
        ConsumerMember {
            member_id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: i64::MAX,
            classic: None,
            revocation_deadline_ms: None,
            classic_deadline_ms: None,
        }
    }

    /// The subscription as the assignor sees it: named topics plus the regex's matches.
    pub(crate) fn subscribed_topics(
        &self,
        regex_matches: &BTreeMap<String, BTreeSet<String>>,
    ) -> BTreeSet<String> {
        let mut topics = self.subscribed_topic_names.clone();
        if let Some(matched) = self
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| regex_matches.get(r))
        {
            topics.extend(matched.iter().cloned());
        }
        topics
    }

    pub(crate) fn owns(&self, topic_id: &Uuid, partition: i32) -> bool {
        let has = |a: &Assignment| a.get(topic_id).is_some_and(|p| p.contains(&partition));
        has(&self.assigned) || has(&self.pending_revocation)
    }
}

/// What a classic-protocol member joined with.
#[derive(Debug, Clone)]
pub(crate) struct ClassicMeta {
    pub session_timeout_ms: i32,
    /// (protocol name, metadata) in the member's order of preference; the first is used.
    pub protocols: Vec<(String, bytes::Bytes)>,
}

impl ClassicMeta {
    pub(crate) fn protocol_name(&self) -> &str {
        self.protocols.first().map_or("", |(n, _)| n.as_str())
    }

    /// The embedded protocol version the member speaks (its assignment is sent in it).
    pub(crate) fn version(&self) -> i16 {
        self.protocols
            .first()
            .and_then(|(_, m)| m.get(..2))
            .map_or(0, |v| i16::from_be_bytes([v[0], v[1]]))
    }
}

/// A subscribed topic as the coordinator last saw it; a change of either field bumps the
/// group epoch (a topic re-created under the same name has a new id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicShape {
    pub id: Uuid,
    pub partitions: i32,
}

#[derive(Debug, Default)]
pub(crate) struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// Members in join order.
    pub members: IndexMap<String, ConsumerMember>,
    /// group instance id -> member id, for static members.
    pub static_members: BTreeMap<String, String>,
    /// Each member's target assignment at `assignment_epoch`.
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics that exist, at the last epoch bump.
    pub subscription: BTreeMap<String, TopicShape>,
    /// Topics each subscribed regex matched at the last refresh.
    pub regex_matches: BTreeMap<String, BTreeSet<String>>,
}

/// ConsumerGroupDescribe's group states.
impl ConsumerGroup {
    pub(crate) fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.state != MemberState::Stable || m.member_epoch != self.assignment_epoch)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Whether another member than `except` owns the partition (Kafka's
    /// `currentPartitionEpoch(..) != -1`).
    pub(crate) fn owned_by_other(&self, except: &str, topic_id: &Uuid, partition: i32) -> bool {
        self.members
            .values()
            .any(|m| m.member_id != except && m.owns(topic_id, partition))
    }

    /// Every topic some member subscribes to, by name.
    pub(crate) fn subscribed_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed_topics(&self.regex_matches))
            .collect()
    }

    /// The assignor that members asked for (the most requested, ties to the first), else
    /// `default`.
    pub(crate) fn preferred_assignor<'a>(&'a self, default: &'a str) -> &'a str {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *counts.entry(a.as_str()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(name, _)| name)
            .unwrap_or(default)
    }

    /// `assignment` as a classic `ConsumerProtocolAssignment` (topic names, partitions, no
    /// user data), for classic members and for observers, who read both kinds of group alike.
    pub(crate) fn encode_assignment(&self, version: i16, assignment: &Assignment) -> bytes::Bytes {
        let named = assignment.iter().filter_map(|(id, ps)| {
            let name = self.subscription.iter().find(|(_, s)| s.id == *id)?.0;
            Some((name.as_str(), ps))
        });
        super::classic_wire::encode_assignment(version, named)
    }

    pub(crate) fn remove_member(&mut self, member_id: &str) -> Option<ConsumerMember> {
        let m = self.members.shift_remove(member_id)?;
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.target.remove(member_id);
        Some(m)
    }

    /// The earliest session or revocation deadline of any member.
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| {
                [
                    Some(m.session_deadline_ms),
                    m.revocation_deadline_ms,
                    m.classic_deadline_ms,
                ]
            })
            .flatten()
            .min()
    }
}

impl ConsumerGroup {
    /// Kafka's `ConsumerGroup.validateOffsetCommit`: without a member epoch a commit is only
    /// accepted while the group has no members; otherwise the member must exist and commit
    /// at its current epoch (STALE_MEMBER_EPOCH tells it to heartbeat for its new one).
    pub(crate) fn validate_commit(
        &self,
        committer: crate::Committer<'_>,
    ) -> Result<(), crate::CoordinatorError> {
        if committer.generation_id < 0 && self.members.is_empty() {
            return Ok(());
        }
        let member = self
            .members
            .get(committer.member_id)
            .ok_or(crate::CoordinatorError::UnknownMemberId)?;
        if committer.generation_id != member.member_epoch {
            return Err(crate::CoordinatorError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch` (OffsetFetch v9 with a member): the
    /// Kafka error code for the group, or NONE.
    pub(crate) fn validate_fetch(&self, member_id: Option<&str>, member_epoch: i32) -> i16 {
        let Some(member_id) = member_id else {
            return crate::codes::NONE;
        };
        if member_epoch < 0 && member_id.is_empty() {
            return crate::codes::NONE;
        }
        match self.members.get(member_id) {
            None => crate::codes::UNKNOWN_MEMBER_ID,
            Some(m) if m.member_epoch != member_epoch => crate::codes::STALE_MEMBER_EPOCH,
            Some(_) => crate::codes::NONE,
        }
    }
}
