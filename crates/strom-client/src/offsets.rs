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

/// Which records a consumer reads (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record up to the high watermark, those of open and aborted transactions too
    /// (Kafka's default).
    #[default]
    ReadUncommitted,
    /// Only records of committed transactions (and non-transactional ones): fetches stop at
    /// the last stable offset and records of aborted transactions are dropped.
    ReadCommitted,
}

impl IsolationLevel {
    /// The protocol's value in Fetch and ListOffsets.
    pub fn as_i8(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// Kafka's `isolation.level` names, as the Java client and kcat take them.
impl std::str::FromStr for IsolationLevel {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read_committed" => Ok(IsolationLevel::ReadCommitted),
            other => Err(format!(
                "unknown isolation level '{other}' (expected read_committed or read_uncommitted)"
            )),
        }
    }
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

/// Asks each partition's leader for the offset `spec` names. A partition whose leader moved
/// (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION and other retriable errors) or whose
/// leader is unreachable is asked again after a metadata refresh, up to
/// `request_retries_max` times.
pub async fn list_offsets(
    client: &Client,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<HashMap<TopicPartition, i64>> {
    list_offsets_isolated(client, partitions, spec, IsolationLevel::ReadUncommitted).await
}

/// [`list_offsets`] at an isolation level: `Latest` with `ReadCommitted` answers the last
/// stable offset, where a read_committed consumer's reading ends.
pub async fn list_offsets_isolated(
    client: &Client,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
    isolation: IsolationLevel,
) -> Result<HashMap<TopicPartition, i64>> {
    let mut out = HashMap::new();
    let mut todo: Vec<TopicPartition> = partitions.to_vec();
    let mut attempt = 0;
    loop {
        let mut retry: Vec<(TopicPartition, ClientError)> = Vec::new();
        let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
        for (topic, partition) in todo {
            match client.leader(&topic, partition).await {
                Ok(leader) => by_leader
                    .entry(leader)
                    .or_default()
                    .entry(topic)
                    .or_default()
                    .push(partition),
                Err(e) if e.is_retriable() => retry.push(((topic, partition), e)),
                Err(e) => return Err(e),
            }
        }
        for (leader, topics) in by_leader {
            let asked: Vec<TopicPartition> = topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| (t.clone(), *p)))
                .collect();
            match list_offsets_from(client, leader, topics, spec, isolation).await {
                Ok(answers) => {
                    for (tp, answer) in answers {
                        match answer {
                            Ok(offset) => {
                                out.insert(tp, offset);
                            }
                            Err(e) if e.is_retriable() => retry.push((tp, e)),
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) if e.is_retriable() => {
                    retry.extend(asked.into_iter().map(|tp| (tp, e.duplicate())))
                }
                Err(e) => return Err(e),
            }
        }
        if retry.is_empty() {
            return Ok(out);
        }
        if attempt >= client.config().request_retries_max {
            return Err(retry.swap_remove(0).1);
        }
        for ((topic, _), e) in &retry {
            tracing::debug!(topic, error = %e, "ListOffsets will be retried after a metadata refresh");
            client.invalidate_topic(topic);
        }
        client.backoff(attempt).await;
        attempt += 1;
        todo = retry.into_iter().map(|(tp, _)| tp).collect();
    }
}

/// One ListOffsets request to one leader: the answer per partition.
async fn list_offsets_from(
    client: &Client,
    leader: i32,
    topics: BTreeMap<String, Vec<i32>>,
    spec: OffsetSpec,
    isolation: IsolationLevel,
) -> Result<Vec<(TopicPartition, Result<i64>)>> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation.as_i8())
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
    let mut out = Vec::new();
    for topic in response.topics {
        let name = topic.name.0.to_string();
        for p in topic.partitions {
            let answer = ClientError::check(p.error_code, || {
                format!("offsets of topic {name} partition {}", p.partition_index)
            })
            .map(|()| p.offset);
            out.push(((name.clone(), p.partition_index), answer));
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
