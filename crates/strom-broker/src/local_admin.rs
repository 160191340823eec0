//! The admin half of the in-process API, for the HTTP API and console: topic details with
//! storage figures, deleting topics and editing their configs, finding an offset by time,
//! consumer groups with their members' assignments and lag, and resetting an empty group's
//! offsets (what `kafka-consumer-groups --reset-offsets` does). Domain types only.

use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use strom_group::{Committer, GroupSummary, NewOffset};

use crate::local::{Local, LocalError};
use crate::topic_config::{self, TopicOverrides};

/// One partition as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDetails {
    pub partition: i32,
    /// Why the partition is offline, if it is; the figures below are then -1 or 0.
    pub offline: Option<String>,
    pub start_offset: i64,
    pub end_offset: i64,
    pub high_watermark: i64,
    pub flushed_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
}

#[derive(Debug, Clone)]
pub struct TopicDetails {
    pub name: String,
    pub topic_id: String,
    pub partitions: Vec<PartitionDetails>,
    /// The topic's overrides.
    pub overrides: TopicOverrides,
    /// Every topic config with its effective value and whether it is the default.
    pub configs: Vec<(String, String, bool)>,
}

/// A member's assigned partitions, decoded from the consumer protocol.
#[derive(Debug, Clone)]
pub struct MemberAssignment {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partitions); empty when the protocol is not "consumer" or the bytes do not parse.
    pub assignment: Vec<(String, Vec<i32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// `None` when the topic or partition no longer exists or is offline.
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct GroupDetails {
    pub group_id: String,
    pub state: &'static str,
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberAssignment>,
    pub offsets: Vec<PartitionLag>,
}

impl GroupDetails {
    pub fn total_lag(&self) -> i64 {
        self.offsets.iter().filter_map(|o| o.lag).sum()
    }
}

/// Where a reset moves each partition's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    /// The first offset whose record has a timestamp at or after this (ms), else the end.
    Timestamp(i64),
}

impl Local {
    pub fn topic_details(&self, name: &str) -> Result<TopicDetails, LocalError> {
        let topic = self.topic(name)?;
        let partitions = topic
            .partitions
            .read()
            .iter()
            .map(|p| match p.lock() {
                Ok(st) => PartitionDetails {
                    partition: p.index,
                    offline: None,
                    start_offset: st.log.log_start_offset(),
                    end_offset: st.log.log_end_offset(),
                    high_watermark: st.high_watermark(),
                    flushed_offset: st.log.flushed_offset(),
                    size_bytes: st.log.size_bytes(),
                    segments: st.log.segment_count(),
                },
                Err(offline) => PartitionDetails {
                    partition: p.index,
                    offline: Some(offline.reason),
                    start_offset: -1,
                    end_offset: -1,
                    high_watermark: -1,
                    flushed_offset: -1,
                    size_bytes: 0,
                    segments: 0,
                },
            })
            .collect();
        let meta = topic.meta.read();
        let configs = topic_config::TOPIC_CONFIGS
            .iter()
            .map(|(n, _)| {
                let (v, is_default) =
                    topic_config::describe_value(&self.broker.config, &meta.configs, n);
                (n.to_string(), v, is_default)
            })
            .collect();
        Ok(TopicDetails {
            name: meta.name.clone(),
            topic_id: meta.topic_id.to_string(),
            partitions,
            overrides: meta.configs.clone(),
            configs,
        })
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), LocalError> {
        let topic = self.topic(name)?;
        if self.broker.cluster.get().is_some() {
            crate::cluster::topics::delete(&self.broker, name, topic.id()).await?;
        } else {
            self.broker.topics.delete(name).await?;
        }
        Ok(())
    }

    /// Sets and removes overrides (the others stay), as IncrementalAlterConfigs does.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        set: &TopicOverrides,
        remove: &[String],
    ) -> Result<TopicOverrides, LocalError> {
        let topic = self.topic(name)?;
        let mut configs = topic.meta.read().configs.clone();
        for k in remove {
            if !topic_config::TOPIC_CONFIGS.iter().any(|(n, _)| n == k) {
                return Err(LocalError::Invalid(format!(
                    "Unknown topic config name: {k}"
                )));
            }
            configs.remove(k);
        }
        for (k, v) in set {
            configs.insert(k.clone(), v.clone());
        }
        let clustered = self.broker.cluster.get().is_some();
        self.broker
            .topics
            .alter_configs(name, configs.clone(), clustered)
            .await?;
        if clustered {
            let wanted = crate::topics::without_removed(configs.clone());
            crate::cluster::topics::alter_configs(&self.broker, name, wanted).await?;
        }
        Ok(configs)
    }

    /// The first offset of `partition` whose record's timestamp is at or after `timestamp_ms`;
    /// the high watermark when there is none.
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<i64, LocalError> {
        let t = self.topic(topic)?;
        let p = self.partition(&t, partition)?;
        let st = p.lock().map_err(|e| LocalError::Storage(e.to_string()))?;
        let found = st
            .log
            .offset_for_timestamp(timestamp_ms)
            .map_err(|e| LocalError::Storage(e.to_string()))?;
        let hw = st.high_watermark();
        Ok(found.map_or(hw, |(offset, _)| offset.min(hw)))
    }

    /// (log start, high watermark) of one partition.
    pub fn offsets(&self, topic: &str, partition: i32) -> Result<(i64, i64), LocalError> {
        let t = self.topic(topic)?;
        let p = self.partition(&t, partition)?;
        let st = p.lock().map_err(|e| LocalError::Storage(e.to_string()))?;
        Ok((st.log.log_start_offset(), st.high_watermark()))
    }

    pub fn groups(&self) -> Vec<GroupDetails> {
        self.broker
            .group_summaries()
            .into_iter()
            .map(|g| self.details(g))
            .collect()
    }

    /// One group, from this node's coordinator of it (cluster mode: `None` when another node
    /// coordinates it).
    pub fn group(&self, group_id: &str) -> Option<GroupDetails> {
        self.broker
            .coordinator_for(group_id)
            .ok()?
            .summary(group_id)
            .map(|g| self.details(g))
    }

    fn details(&self, g: GroupSummary) -> GroupDetails {
        let consumer = g.protocol_type == "consumer";
        let members = g
            .members
            .into_iter()
            .map(|m| MemberAssignment {
                assignment: if consumer {
                    decode_assignment(&m.assignment)
                } else {
                    Vec::new()
                },
                member_id: m.member_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect();
        let offsets = g
            .offsets
            .into_iter()
            .map(|(topic, partition, committed)| {
                let high_watermark = self.offsets(&topic, partition).ok().map(|(_, hw)| hw);
                PartitionLag {
                    lag: high_watermark.map(|hw| (hw - committed).max(0)),
                    topic,
                    partition,
                    committed,
                    high_watermark,
                }
            })
            .collect();
        GroupDetails {
            group_id: g.group_id,
            state: g.state,
            generation_id: g.generation_id,
            protocol_type: g.protocol_type,
            protocol_name: g.protocol_name,
            members,
            offsets,
        }
    }

    /// Moves the group's committed offsets of `topic` (all its partitions, or `partitions`)
    /// to `to`, durably. Refused while the group has members: they would overwrite it with
    /// their next commit, which is why Kafka refuses too. Returns (partition, new offset).
    pub async fn reset_group_offsets(
        &self,
        group_id: &str,
        topic: &str,
        partitions: Option<&[i32]>,
        to: ResetTo,
    ) -> Result<Vec<(i32, i64)>, LocalError> {
        if group_id.is_empty() {
            return Err(LocalError::Invalid("the group id must not be empty".into()));
        }
        let coordinator =
            self.broker
                .coordinator_for(group_id)
                .map_err(|code| LocalError::Rejected {
                    error: strom_protocol::ResponseError::try_from_code(code)
                        .unwrap_or(strom_protocol::ResponseError::NotCoordinator),
                    message: Some(format!(
                        "group {group_id} is coordinated by another node; ask that node"
                    )),
                })?;
        if let Some(g) = coordinator.summary(group_id) {
            if !g.is_empty() {
                return Err(LocalError::Invalid(format!(
                    "group {group_id} is {} with {} member(s); offsets can only be reset when it is empty (stop its consumers first)",
                    g.state,
                    g.members.len()
                )));
            }
        }
        let t = self.topic(topic)?;
        let all: Vec<i32> = (0..t.partition_count()).collect();
        let chosen = partitions.unwrap_or(&all);
        let mut offsets = Vec::with_capacity(chosen.len());
        for &p in chosen {
            let (start, hw) = self.offsets(topic, p)?;
            let offset = match to {
                ResetTo::Earliest => start,
                ResetTo::Latest => hw,
                // Kafka's tool clamps an offset outside the log to its nearest end.
                ResetTo::Offset(o) => o.clamp(start, hw),
                ResetTo::Timestamp(ts) => self.offset_for_timestamp(topic, p, ts)?,
            };
            offsets.push((p, offset));
        }
        let new: Vec<NewOffset> = offsets
            .iter()
            .map(|&(p, o)| NewOffset::new(topic, p, o))
            .collect();
        let results = coordinator
            .commit(group_id, Committer::NONE, &new, -1)
            .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(LocalError::Group(e));
        }
        Ok(offsets)
    }
}

/// Highest ConsumerProtocolAssignment version this broker decodes; newer ones only add
/// fields, so they decode as this one.
const ASSIGNMENT_VERSION_MAX: i16 = 3;

fn decode_assignment(bytes: &[u8]) -> Vec<(String, Vec<i32>)> {
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, ASSIGNMENT_VERSION_MAX);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
            .collect(),
        Err(_) => Vec::new(),
    }
}
