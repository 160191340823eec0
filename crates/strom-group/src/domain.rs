//! The coordinator's domain calls, in domain types: join, sync, heartbeat, leave, commit and
//! the committed offsets. The Kafka handlers (`membership`, `offsets`) and the JSON protocol's
//! group members (`strom_broker::local_group`) are two adapters over them, so a second front
//! end never builds a Kafka request to reach the coordinator.
//!
//! Errors are one enum, [`CoordinatorError`]; its Kafka error code is given in one place
//! ([`CoordinatorError::kafka_code`]), used only by the Kafka adapter.
//!
//! Known limit: the membership state machine underneath still decides in Kafka error codes
//! (it was written against the wire protocol); `CoordinatorError::from_code` turns them into
//! domain errors at this boundary, so callers never see a code.

use bytes::Bytes;

use crate::codes;
use crate::membership::{JoinArgs, SyncArgs};
use crate::store::{CommittedOffset, Record};
use crate::GroupCoordinator;

/// Why a coordinator call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("unknown member id (it left, or its session expired)")]
    UnknownMemberId,
    #[error("the member's generation is not the group's current generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the group instance id belongs to another member")]
    FencedInstanceId,
    #[error("the member's protocols are not compatible with the group's")]
    InconsistentGroupProtocol,
    #[error("session timeout outside group.min.session.timeout.ms..group.max.session.timeout.ms")]
    InvalidSessionTimeout,
    #[error("the group has group.max.size members")]
    GroupMaxSizeReached,
    #[error("the member epoch is not the member's current epoch")]
    StaleMemberEpoch,
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("offset metadata longer than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge,
    #[error("writing the offsets log failed")]
    Storage,
    /// A code the state machine answered that has no domain meaning of its own.
    #[error("coordinator error (Kafka code {0})")]
    Other(i16),
}

impl CoordinatorError {
    /// The state machine's answer as a domain result.
    pub(crate) fn from_code(code: i16) -> Result<(), CoordinatorError> {
        Err(match code {
            codes::NONE => return Ok(()),
            codes::INVALID_GROUP_ID => CoordinatorError::InvalidGroupId,
            codes::UNKNOWN_MEMBER_ID => CoordinatorError::UnknownMemberId,
            codes::ILLEGAL_GENERATION => CoordinatorError::IllegalGeneration,
            codes::REBALANCE_IN_PROGRESS => CoordinatorError::RebalanceInProgress,
            codes::FENCED_INSTANCE_ID => CoordinatorError::FencedInstanceId,
            codes::INCONSISTENT_GROUP_PROTOCOL => CoordinatorError::InconsistentGroupProtocol,
            codes::INVALID_SESSION_TIMEOUT => CoordinatorError::InvalidSessionTimeout,
            codes::STALE_MEMBER_EPOCH => CoordinatorError::StaleMemberEpoch,
            codes::GROUP_MAX_SIZE_REACHED => CoordinatorError::GroupMaxSizeReached,
            codes::UNKNOWN_TOPIC_OR_PARTITION => CoordinatorError::UnknownTopicOrPartition,
            codes::OFFSET_METADATA_TOO_LARGE => CoordinatorError::OffsetMetadataTooLarge,
            codes::UNKNOWN_SERVER_ERROR => CoordinatorError::Storage,
            other => CoordinatorError::Other(other),
        })
    }

    /// The error a request gets when writing its records failed.
    pub(crate) fn from_write(e: &crate::GroupError) -> Self {
        match e.kafka_code() {
            codes::UNKNOWN_SERVER_ERROR => CoordinatorError::Storage,
            code => CoordinatorError::Other(code),
        }
    }

    /// The Kafka error code for this error: the Kafka adapter's one mapping.
    pub fn kafka_code(&self) -> i16 {
        match self {
            CoordinatorError::InvalidGroupId => codes::INVALID_GROUP_ID,
            CoordinatorError::UnknownMemberId => codes::UNKNOWN_MEMBER_ID,
            CoordinatorError::IllegalGeneration => codes::ILLEGAL_GENERATION,
            CoordinatorError::RebalanceInProgress => codes::REBALANCE_IN_PROGRESS,
            CoordinatorError::FencedInstanceId => codes::FENCED_INSTANCE_ID,
            CoordinatorError::InconsistentGroupProtocol => codes::INCONSISTENT_GROUP_PROTOCOL,
            CoordinatorError::InvalidSessionTimeout => codes::INVALID_SESSION_TIMEOUT,
            CoordinatorError::StaleMemberEpoch => codes::STALE_MEMBER_EPOCH,
            CoordinatorError::GroupMaxSizeReached => codes::GROUP_MAX_SIZE_REACHED,
            CoordinatorError::UnknownTopicOrPartition => codes::UNKNOWN_TOPIC_OR_PARTITION,
            CoordinatorError::OffsetMetadataTooLarge => codes::OFFSET_METADATA_TOO_LARGE,
            CoordinatorError::Storage => codes::UNKNOWN_SERVER_ERROR,
            CoordinatorError::Other(code) => *code,
        }
    }
}

/// Who commits: a member of a generation, or nobody (`member_id` empty, generation -1: a
/// commit outside group management, accepted only while the group has no members).
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation_id: i32,
}

impl Committer<'_> {
    /// A commit outside group management.
    pub const NONE: Committer<'static> = Committer {
        member_id: "",
        instance_id: None,
        generation_id: -1,
    };
}

/// One offset to commit.
#[derive(Debug, Clone)]
pub struct NewOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl NewOffset {
    pub fn new(topic: &str, partition: i32, offset: i64) -> NewOffset {
        NewOffset {
            topic: topic.to_string(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }
}

/// What a member joins with.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub group_id: String,
    /// Empty for a new member; a member id the group knows for a rejoin.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

/// A completed join: the generation the member is in, and for the leader the members to
/// assign (member id, metadata of the chosen protocol).
#[derive(Debug, Clone)]
pub struct Joined {
    pub member_id: String,
    pub generation_id: i32,
    pub leader_id: String,
    pub protocol_name: Option<String>,
    pub members: Vec<(String, Bytes)>,
}

impl Joined {
    pub fn is_leader(&self) -> bool {
        self.member_id == self.leader_id
    }
}

impl GroupCoordinator {
    /// Joins (or rejoins) a group and waits, bounded by the rebalance timeout, until the join
    /// phase completes. No KIP-394 round trip: an in-process caller cannot lose the answer.
    pub async fn join(&self, p: &JoinParams) -> Result<Joined, CoordinatorError> {
        let outcome = self
            .join_outcome(JoinArgs {
                group_id: &p.group_id,
                member_id: &p.member_id,
                instance_id: None,
                client_id: &p.client_id,
                client_host: &p.client_host,
                session_timeout_ms: p.session_timeout_ms,
                rebalance_timeout_ms: p.rebalance_timeout_ms,
                protocol_type: p.protocol_type.clone(),
                protocols: p.protocols.clone(),
                require_known_member_id: false,
                supports_skip_assignment: false,
            })
            .await;
        CoordinatorError::from_code(outcome.error)?;
        Ok(Joined {
            member_id: outcome.member_id,
            generation_id: outcome.generation_id,
            leader_id: outcome.leader,
            protocol_name: outcome.protocol_name,
            members: outcome
                .members
                .into_iter()
                .map(|(id, _, metadata)| (id, metadata))
                .collect(),
        })
    }

    /// Completes a join: the leader hands in every member's assignment; everyone gets their
    /// own (waiting, bounded, for the leader's).
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
        assignments: &[(String, Bytes)],
    ) -> Result<Bytes, CoordinatorError> {
        let outcome = self
            .sync_outcome(SyncArgs {
                group_id,
                member_id,
                instance_id: None,
                generation_id,
                protocol_type: None,
                protocol_name: None,
                assignments: assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.clone()))
                    .collect(),
            })
            .await;
        CoordinatorError::from_code(outcome.error)?;
        Ok(outcome.assignment)
    }

    /// Keeps a member's session alive. `RebalanceInProgress` means: rejoin.
    pub fn heartbeat_member(
        &self,
        group_id: &str,
        member_id: &str,
        generation_id: i32,
    ) -> Result<(), CoordinatorError> {
        CoordinatorError::from_code(self.heartbeat_code(group_id, member_id, None, generation_id))
    }

    /// Removes a member at once (the group rebalances without waiting for its session).
    pub fn leave(&self, group_id: &str, member_id: &str) -> Result<(), CoordinatorError> {
        CoordinatorError::from_code(self.leave_code(group_id, member_id))
    }

    /// Commits offsets for `group_id`, durably when the config asks for fsync. The result has
    /// one entry per offset, in order: the group check (member, generation, state) applies
    /// to all of them, the topic and metadata checks to each.
    ///
    /// `expire_ms`: when the offsets expire (OffsetCommit v2-v4's retention), or -1.
    pub async fn commit(
        &self,
        group_id: &str,
        committer: Committer<'_>,
        offsets: &[NewOffset],
        expire_ms: i64,
    ) -> Vec<Result<(), CoordinatorError>> {
        self.commit_checked(group_id, Some(committer), offsets, expire_ms)
            .await
    }

    /// Kafka's `validateOffsetCommit` for a TxnOffsetCommit (KIP-447): a member or generation
    /// that is given must match the group's, but the group's state does not matter (the
    /// offsets only become visible when the transaction commits).
    pub fn validate_transactional_commit(
        &self,
        group_id: &str,
        committer: Committer<'_>,
    ) -> Result<(), CoordinatorError> {
        if group_id.is_empty() || group_id.len() > usize::from(u16::MAX) {
            return Err(CoordinatorError::InvalidGroupId);
        }
        let mut st = self.state.lock();
        let Some(g) = st.groups.get_mut(group_id) else {
            return if committer.generation_id < 0 {
                Ok(())
            } else {
                Err(CoordinatorError::IllegalGeneration)
            };
        };
        if let Some(cg) = &g.consumer {
            return cg.validate_commit(committer);
        }
        if committer.generation_id < 0 && g.is(crate::group::GroupState::Empty) {
            return Ok(());
        }
        if g.is(crate::group::GroupState::Dead) {
            return Err(CoordinatorError::UnknownMemberId);
        }
        if committer.generation_id >= 0
            || !committer.member_id.is_empty()
            || committer.instance_id.is_some()
        {
            g.validate_member(committer.member_id, committer.instance_id)
                .or_else(CoordinatorError::from_code)?;
            if committer.generation_id != g.generation_id {
                return Err(CoordinatorError::IllegalGeneration);
            }
        }
        Ok(())
    }

    /// Writes the offsets of a committed transaction: they were checked when the transaction
    /// staged them (TxnOffsetCommit), so no member or generation check applies now.
    pub async fn commit_transactional(
        &self,
        group_id: &str,
        offsets: &[NewOffset],
    ) -> Vec<Result<(), CoordinatorError>> {
        self.commit_checked(group_id, None, offsets, -1).await
    }

    async fn commit_checked(
        &self,
        group_id: &str,
        committer: Option<Committer<'_>>,
        offsets: &[NewOffset],
        expire_ms: i64,
    ) -> Vec<Result<(), CoordinatorError>> {
        let now_ms = self.clock.now_ms();
        if group_id.is_empty() || group_id.len() > usize::from(u16::MAX) {
            return vec![Err(CoordinatorError::InvalidGroupId); offsets.len()];
        }
        let mut results: Vec<Result<(), CoordinatorError>> = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        for o in offsets {
            let count = self.catalog.partition_count(&o.topic);
            if !count.is_some_and(|c| o.partition >= 0 && o.partition < c) {
                results.push(Err(CoordinatorError::UnknownTopicOrPartition));
            } else if o.metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Err(CoordinatorError::OffsetMetadataTooLarge));
            } else {
                results.push(Ok(()));
                records.push(Record::Commit {
                    group: group_id.to_string(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                    value: CommittedOffset {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_ms: now_ms,
                        expire_ms,
                    },
                });
            }
        }
        let fail_valid = |results: &mut Vec<Result<(), CoordinatorError>>, e: CoordinatorError| {
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        };
        let seq = {
            let mut st = self.state.lock();
            if let Some(committer) = committer {
                if let Err(e) = self.validate_commit_locked(&mut st, group_id, committer, now_ms) {
                    fail_valid(&mut results, e);
                    return results;
                }
            }
            if records.is_empty() {
                return results;
            }
            match self.append_offsets_locked(&mut st, &records) {
                Ok(seq) => {
                    let g = st
                        .groups
                        .entry(group_id.to_string())
                        .or_insert_with(|| crate::group::Group::new(group_id, Some(now_ms)));
                    for r in records {
                        if let Record::Commit {
                            topic,
                            partition,
                            value,
                            ..
                        } = r
                        {
                            g.offsets.insert((topic, partition), value);
                        }
                    }
                    seq
                }
                Err(e) => {
                    tracing::error!(error = %e, group = group_id, "appending offset commit failed");
                    fail_valid(&mut results, CoordinatorError::from_write(&e));
                    return results;
                }
            }
        };
        if let Err(e) = self.wait_durable(seq).await {
            tracing::error!(error = %e, "making the offset commit durable failed");
            fail_valid(&mut results, CoordinatorError::from_write(&e));
        }
        results
    }

    /// The committed offset of one partition for `group_id`, if any.
    pub fn committed(&self, group_id: &str, topic: &str, partition: i32) -> Option<i64> {
        let st = self.state.lock();
        st.groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_string(), partition))
            .map(|v| v.offset)
    }
}
