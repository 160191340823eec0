//! Offset look-ups shared by the consumer and the admin: a partition's earliest or latest
//! offset (ListOffsets, sent to each partition's leader) and a group's committed offsets
//! (OffsetFetch, sent to the group coordinator).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    BrokerId, GroupId, ListOffsetsRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Client;
use crate::connection::Connection;
use crate::error::{ClientError, Result};

/// A topic and a partition.
pub type TopicPartition = (String, i32);

/// Which offset ListOffsets should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still in the log.
    Earliest,
    /// The offset the next produced record will get (the high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

/// Asks each partition's leader for the offset `spec` names.
pub async fn list_offsets(
    client: &Client,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<HashMap<TopicPartition, i64>> {
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for (topic, partition) in partitions {
        let leader = client.leader(topic, *partition).await?;
        by_leader
            .entry(leader)
            .or_default()
            .entry(topic.clone())
            .or_default()
            .push(*partition);
    }
    let mut out = HashMap::new();
    for (leader, topics) in by_leader {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_timeout_ms(client.config().request_timeout.as_millis() as i32)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, parts)| {
                        ListOffsetsTopic::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|p| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(p)
                                            .with_current_leader_epoch(-1)
                                            .with_timestamp(spec.timestamp())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let conn = client.broker_connection(leader).await?;
        let response = conn.send(&request).await?;
        for topic in response.topics {
            let name = topic.name.0.to_string();
            for p in topic.partitions {
                ClientError::check(p.error_code, || {
                    format!("offsets of topic {name} partition {}", p.partition_index)
                })?;
                out.insert((name.clone(), p.partition_index), p.offset);
            }
        }
    }
    Ok(out)
}

/// The offsets `group` committed: for the given partitions, or for every partition the group
/// has committed when `partitions` is `None`. Partitions without a commit are left out.
pub async fn committed_offsets(
    coordinator: &Connection,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<HashMap<TopicPartition, i64>> {
    let topics = partitions.map(|parts| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in parts {
            by_topic.entry(t.as_str()).or_default().push(*p);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(topic_name(t))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics);
    let response = coordinator.send(&request).await?;
    ClientError::check(response.error_code, || {
        format!("committed offsets of group {group}")
    })?;
    let mut out = HashMap::new();
    for topic in response.topics {
        let name = topic.name.0.to_string();
        for p in topic.partitions {
            ClientError::check(p.error_code, || {
                format!(
                    "committed offset of group {group} topic {name} partition {}",
                    p.partition_index
                )
            })?;
            if p.committed_offset >= 0 {
                out.insert((name.clone(), p.partition_index), p.committed_offset);
            }
        }
    }
    Ok(out)
}
