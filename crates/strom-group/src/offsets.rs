//! OffsetCommit (v2-v9), OffsetFetch (v1-v9), OffsetDelete (v0) and offsets retention.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::codes;
use crate::coordinator::State;
use crate::domain::{Committer, CoordinatorError, NewOffset};
use crate::group::{Group, GroupState};
use crate::store::Record;
use crate::GroupCoordinator;

/// OffsetCommit v2-v4 `retention_time_ms` meaning "use the broker's retention".
const DEFAULT_RETENTION_TIME_MS: i64 = -1;

/// One partition of a fetch answer: (partition, offset, leader epoch, metadata, error).
type FetchedPartition = (i32, i64, i32, String, i16);

impl GroupCoordinator {
    /// OffsetCommit v2-v9: the Kafka adapter over [`GroupCoordinator::commit`]. With `fsync`
    /// configured, answers after the commit is on disk.
    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let expire_ms = if (2..=4).contains(&version)
            && req.retention_time_ms != DEFAULT_RETENTION_TIME_MS
            && req.retention_time_ms > 0
        {
            self.clock.now_ms().saturating_add(req.retention_time_ms)
        } else {
            -1
        };
        let offsets: Vec<NewOffset> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| NewOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
                })
            })
            .collect();
        let committer = Committer {
            member_id: req.member_id.as_str(),
            instance_id: req.group_instance_id.as_deref(),
            generation_id: req.generation_id_or_member_epoch,
        };
        let mut results = self
            .commit(req.group_id.as_str(), committer, &offsets, expire_ms)
            .await
            .into_iter();
        let topics = req
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let code = match results.next() {
                                    Some(Err(e)) => e.kafka_code(),
                                    Some(Ok(())) | None => codes::NONE,
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Kafka's `validateOffsetCommit` for classic groups. A commit outside group management
    /// (generation -1) is accepted when the group does not exist yet (the caller creates it)
    /// or is Empty.
    pub(crate) fn validate_commit_locked(
        &self,
        st: &mut State,
        group_id: &str,
        committer: Committer<'_>,
        now_ms: i64,
    ) -> Result<(), CoordinatorError> {
        let generation_id = committer.generation_id;
        let member_id = committer.member_id;
        let instance_id = committer.instance_id;
        let Some(g) = st.groups.get_mut(group_id) else {
            // No group: only a commit outside group management may create one.
            return if generation_id < 0 {
                Ok(())
            } else {
                Err(CoordinatorError::IllegalGeneration)
            };
        };
        if let Some(cg) = &g.consumer {
            return cg.validate_commit(committer);
        }
        if generation_id < 0 && g.is(GroupState::Empty) {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance_id.is_some() {
            g.validate_member(member_id, instance_id)
                .or_else(CoordinatorError::from_code)?;
            if generation_id != g.generation_id {
                return Err(CoordinatorError::IllegalGeneration);
            }
        } else if !g.is(GroupState::Empty) {
            // A commit without member id and generation is only accepted for an Empty group.
            return Err(CoordinatorError::UnknownMemberId);
        }
        match g.state {
            GroupState::CompletingRebalance => Err(CoordinatorError::RebalanceInProgress),
            GroupState::Stable | GroupState::PreparingRebalance => {
                // A commit proves the member is alive, like a heartbeat.
                if let Some(m) = g.members.get_mut(member_id) {
                    m.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
                }
                Ok(())
            }
            GroupState::Empty => Ok(()),
            GroupState::Dead => Err(CoordinatorError::UnknownMemberId),
        }
    }

    /// OffsetFetch v9's member check, for KIP-848 groups only.
    fn consumer_fetch_check(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> i16 {
        let st = self.state.lock();
        match st.groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(cg) => cg.validate_fetch(member_id, epoch),
            None => codes::NONE,
        }
    }

    /// OffsetFetch v1-v9: the single-group form up to v7, the multi-group form from v8.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let groups = req
                .groups
                .iter()
                .map(|rg| {
                    let wanted: Option<Vec<(String, Vec<i32>)>> = rg.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let member_check = if version >= 9 {
                        self.consumer_fetch_check(
                            rg.group_id.as_str(),
                            rg.member_id.as_deref(),
                            rg.member_epoch,
                        )
                    } else {
                        codes::NONE
                    };
                    let (error, topics) = if member_check == codes::NONE {
                        self.fetch_group(rg.group_id.as_str(), wanted)
                    } else {
                        (member_check, Vec::new())
                    };
                    OffsetFetchResponseGroup::default()
                        .with_group_id(rg.group_id.clone())
                        .with_error_code(error)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(name, parts)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(StrBytes::from_string(name)))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, o, e, m, code)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(o)
                                                        .with_committed_leader_epoch(e)
                                                        .with_metadata(Some(StrBytes::from_string(
                                                            m,
                                                        )))
                                                        .with_error_code(code)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }

        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let (error, mut topics) = self.fetch_group(req.group_id.as_str(), wanted);
        if version < 2 && error != codes::NONE {
            // v1 has no top-level error code: report it on every partition.
            for (_, parts) in topics.iter_mut() {
                for p in parts.iter_mut() {
                    p.4 = error;
                }
            }
        }
        let topics = topics
            .into_iter()
            .map(|(name, parts)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, o, e, m, code)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(if version >= 5 { e } else { -1 })
                                    .with_metadata(Some(StrBytes::from_string(m)))
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        let mut resp = OffsetFetchResponse::default().with_topics(topics);
        if version >= 2 {
            resp.error_code = error;
        }
        resp
    }

    /// The committed offsets of one group: `wanted = None` means every committed partition.
    /// Partitions without a commit answer offset -1, like Kafka.
    fn fetch_group(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> (i16, Vec<(String, Vec<FetchedPartition>)>) {
        if group_id.is_empty() {
            let topics = wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .into_iter()
                        .map(|p| (p, -1, -1, String::new(), codes::NONE))
                        .collect();
                    (t, parts)
                })
                .collect();
            return (codes::INVALID_GROUP_ID, topics);
        }
        let st = self.state.lock();
        let offsets = st.groups.get(group_id).map(|g| &g.offsets);
        let lookup = |t: &str, p: i32| -> FetchedPartition {
            match offsets.and_then(|o| o.get(&(t.to_string(), p))) {
                Some(v) => (p, v.offset, v.leader_epoch, v.metadata.clone(), codes::NONE),
                None => (p, -1, -1, String::new(), codes::NONE),
            }
        };
        let topics = match wanted {
            Some(ts) => ts
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps.into_iter().map(|p| lookup(&t, p)).collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<FetchedPartition>> = BTreeMap::new();
                for ((t, p), v) in offsets.into_iter().flatten() {
                    by_topic.entry(t.clone()).or_default().push((
                        *p,
                        v.offset,
                        v.leader_epoch,
                        v.metadata.clone(),
                        codes::NONE,
                    ));
                }
                by_topic.into_iter().collect()
            }
        };
        (codes::NONE, topics)
    }

    /// OffsetDelete v0.
    pub async fn offset_delete(
        &self,
        req: OffsetDeleteRequest,
        _version: i16,
    ) -> OffsetDeleteResponse {
        let group_id = req.group_id.as_str();
        if group_id.is_empty() {
            return OffsetDeleteResponse::default().with_error_code(codes::INVALID_GROUP_ID);
        }
        let mut st = self.state.lock();
        let Some(g) = st.groups.get_mut(group_id) else {
            return OffsetDeleteResponse::default().with_error_code(codes::GROUP_ID_NOT_FOUND);
        };
        let consumer_group = g.protocol_type.as_deref() == Some("consumer") || g.consumer.is_some();
        let check_subscription = match g.state {
            GroupState::Dead => {
                return OffsetDeleteResponse::default().with_error_code(codes::GROUP_ID_NOT_FOUND)
            }
            GroupState::Empty if g.has_no_members() => false,
            _ if consumer_group => true,
            _ => return OffsetDeleteResponse::default().with_error_code(codes::NON_EMPTY_GROUP),
        };
        let mut records = Vec::new();
        let mut out = Vec::new();
        for t in &req.topics {
            let topic = t.name.as_str();
            let count = self.catalog.partition_count(topic);
            let subscribed = check_subscription && g.is_subscribed_to(topic);
            let mut parts = Vec::new();
            for p in &t.partitions {
                let idx = p.partition_index;
                let code = if !count.is_some_and(|c| idx >= 0 && idx < c) {
                    codes::UNKNOWN_TOPIC_OR_PARTITION
                } else if subscribed {
                    codes::GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    if g.offsets.contains_key(&(topic.to_string(), idx)) {
                        records.push(Record::OffsetTombstone {
                            group: group_id.to_string(),
                            topic: topic.to_string(),
                            partition: idx,
                        });
                    }
                    codes::NONE
                };
                parts.push((idx, code));
            }
            out.push((t.name.clone(), parts));
        }
        let mut top_error = codes::NONE;
        if !records.is_empty() {
            // Release the group borrow for the append; re-fetch afterwards.
            match self.append_offsets_locked(&mut st, &records) {
                Ok(_) => {
                    if let Some(g) = st.groups.get_mut(group_id) {
                        for r in &records {
                            if let Record::OffsetTombstone {
                                topic, partition, ..
                            } = r
                            {
                                g.offsets.remove(&(topic.clone(), *partition));
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "appending offset tombstones failed");
                    top_error = e.kafka_code();
                }
            }
        }
        drop(st);
        if top_error != codes::NONE {
            return OffsetDeleteResponse::default().with_error_code(top_error);
        }
        let topics = out
            .into_iter()
            .map(|(name, parts)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, code)| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetDeleteResponse::default().with_topics(topics)
    }

    /// Drops every group's committed offsets for `topic` and, with fsync configured, returns
    /// once the drop is on disk. Kafka does this when a topic is deleted, so that a topic
    /// re-created under the same name starts with no offsets; the broker also calls it before
    /// creating a topic, which catches offsets left by a delete that crashed or failed before
    /// its drop was durable. Blocking (an fsync): call it off the async workers. Returns how
    /// many offsets were removed.
    pub fn on_topic_deleted(&self, topic: &str) -> Result<usize, crate::GroupError> {
        let (count, seq) = {
            let mut st = self.state.lock();
            let mut records = Vec::new();
            for g in st.groups.values() {
                for (t, p) in g.offsets.keys() {
                    if t == topic {
                        records.push(Record::OffsetTombstone {
                            group: g.group_id.clone(),
                            topic: t.clone(),
                            partition: *p,
                        });
                    }
                }
            }
            if records.is_empty() {
                return Ok(0);
            }
            let seq = self.append_offsets_locked(&mut st, &records)?;
            for g in st.groups.values_mut() {
                g.offsets.retain(|(t, _), _| t != topic);
            }
            (records.len(), seq)
        };
        if self.config.fsync {
            self.sync_blocking(seq)?;
        }
        Ok(count)
    }

    /// Kafka's offsets retention (KIP-211): offsets of a group that has been Empty for
    /// `offsets_retention_ms` go; offsets of a group that never had members (a simple
    /// consumer's, or any group after a restart) age from their own commit time; an explicit
    /// v2-v4 expiry wins; a Stable consumer group loses offsets of topics it no longer
    /// subscribes to (KIP-496). Empty groups left with no offsets are removed.
    pub(crate) fn expire_offsets_locked(&self, st: &mut State, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let mut records = Vec::new();
        let mut expired: Vec<(String, String, i32)> = Vec::new();
        for g in st.groups.values() {
            let empty = g.has_no_members();
            let simple = g.protocol_type.is_none() && g.consumer.is_none();
            let stable_consumer = (g.is(GroupState::Stable) && g.subscribed_topics.is_some())
                || (g.consumer.is_some() && !empty);
            for ((topic, partition), v) in &g.offsets {
                let gone = if v.expire_ms >= 0 {
                    now_ms >= v.expire_ms
                } else if simple {
                    // Never had members (or membership is unknown after a restart): each
                    // offset ages from its own commit, so a committing simple consumer keeps it.
                    now_ms >= v.commit_ms.saturating_add(retention_ms)
                } else if empty {
                    let base_ms = g.state_since_ms.unwrap_or(v.commit_ms);
                    now_ms >= base_ms.saturating_add(retention_ms)
                } else if stable_consumer && !g.is_subscribed_to(topic) {
                    now_ms >= v.commit_ms.saturating_add(retention_ms)
                } else {
                    false
                };
                if gone {
                    expired.push((g.group_id.clone(), topic.clone(), *partition));
                    records.push(Record::OffsetTombstone {
                        group: g.group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                    });
                }
            }
        }
        if !records.is_empty() {
            if let Err(e) = self.append_offsets_locked(st, &records) {
                tracing::error!(error = %e, "writing expired-offset tombstones failed; retrying later");
                return;
            }
            tracing::info!(count = records.len(), "expired committed offsets");
            for (group, topic, partition) in expired {
                if let Some(g) = st.groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
        }
        let is_gone =
            |g: &Group| g.has_no_members() && g.offsets.is_empty() && g.pending_members.is_empty();
        // A group with a stored metadata record gets a tombstone (Kafka writes one when a
        // group becomes Dead), so that a later group of the same id does not inherit its
        // protocol, generation and Empty-since time after a restart.
        let tombstones: Vec<Record> = st
            .groups
            .values()
            .filter(|g| is_gone(g) && (g.stored.is_some() || g.stored_consumer.is_some()))
            .map(|g| Record::GroupTombstone {
                group: g.group_id.clone(),
            })
            .collect();
        if !tombstones.is_empty() {
            if let Err(e) = self.append_offsets_locked(st, &tombstones) {
                tracing::error!(error = %e, "writing tombstones of expired groups failed; retrying later");
                st.groups.retain(|_, g| {
                    !is_gone(g) || g.stored.is_some() || g.stored_consumer.is_some()
                });
                return;
            }
        }
        st.groups.retain(|_, g| !is_gone(g));
    }
}
