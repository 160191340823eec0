//! The consumer protocol's member metadata and assignments, and the `range` assignor the group
//! leader runs.
//!
//! Both travel as opaque bytes through JoinGroup and SyncGroup: a big-endian `i16` version
//! followed by the `ConsumerProtocolSubscription` or `ConsumerProtocolAssignment` body. This
//! client writes version 0 (understood by every broker and client) and reads any version.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use crate::error::{ClientError, Result};
use crate::offsets::topic_name;

/// The assignor this client offers in JoinGroup.
pub const RANGE_ASSIGNOR: &str = "range";

const WRITE_VERSION: i16 = 0;

/// Member metadata for JoinGroup: the topics this member subscribes to.
pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    encode_versioned(&sub)
}

/// Member metadata with the partitions the member owns now (subscription version 1), which
/// the `cooperative-sticky` assignor needs to keep them in place.
pub fn encode_subscription_owned(
    topics: &[String],
    owned: &[crate::offsets::TopicPartition],
) -> Result<Bytes> {
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as Owned;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in owned {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    Owned::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let mut buf = BytesMut::new();
    buf.put_i16(1);
    sub.encode(&mut buf, 1)
        .map_err(|e| ClientError::protocol(format!("cannot encode consumer protocol data: {e}")))?;
    Ok(buf.freeze())
}

/// Reads a member's subscribed topics.
pub fn decode_subscription(bytes: &[u8]) -> Result<ConsumerProtocolSubscription> {
    decode_versioned(bytes)
}

/// A member's assignment for SyncGroup.
pub fn encode_assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Result<Bytes> {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    encode_versioned(&assignment)
}

/// Reads an assignment from SyncGroup or DescribeGroups.
pub fn decode_assignment(bytes: &[u8]) -> Result<ConsumerProtocolAssignment> {
    decode_versioned(bytes)
}

fn encode_versioned<T: Encodable>(value: &T) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(WRITE_VERSION);
    value
        .encode(&mut buf, WRITE_VERSION)
        .map_err(|e| ClientError::protocol(format!("cannot encode consumer protocol data: {e}")))?;
    Ok(buf.freeze())
}

fn decode_versioned<T: Decodable + Message>(bytes: &[u8]) -> Result<T> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err(ClientError::protocol(
            "consumer protocol data shorter than its version",
        ));
    }
    // Newer versions only append fields, so a newer body decodes as the newest we know.
    let version = buf.get_i16().min(T::VERSIONS.max);
    T::decode(&mut buf, version)
        .map_err(|e| ClientError::protocol(format!("cannot decode consumer protocol data: {e}")))
}

/// The `range` assignor: per topic, members subscribed to it in member-id order each take a
/// contiguous range of partitions, the first `partitions % members` one more than the rest.
///
/// `members` maps member id to subscribed topics; `partition_counts` maps topic to its number
/// of partitions (topics missing from it are skipped). Every member appears in the result.
pub fn range_assign(
    members: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut result: BTreeMap<String, BTreeMap<String, Vec<i32>>> = members
        .keys()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    let topics: BTreeSet<&String> = members.values().flatten().collect();
    for topic in topics {
        let Some(&count) = partition_counts.get(topic) else {
            continue;
        };
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, ts)| ts.contains(topic))
            .map(|(m, _)| m)
            .collect();
        let n = subscribers.len() as i32;
        let per_member = count / n;
        let extra = count % n;
        for (i, member) in subscribers.into_iter().enumerate() {
            let i = i as i32;
            let start = i * per_member + i.min(extra);
            let len = per_member + i32::from(i < extra);
            if len > 0 {
                result
                    .get_mut(member)
                    .expect("every member has an entry")
                    .insert(topic.clone(), (start..start + len).collect());
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    #[test]
    fn range_splits_partitions_like_the_java_assignor() {
        let m = members(&[("c1", &["t"]), ("c2", &["t"])]);
        let counts = BTreeMap::from([("t".to_string(), 3)]);
        let a = range_assign(&m, &counts);
        assert_eq!(a["c1"]["t"], vec![0, 1]);
        assert_eq!(a["c2"]["t"], vec![2]);
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let counts = BTreeMap::from([("t".to_string(), 2)]);
        let a = range_assign(&m, &counts);
        assert_eq!(a["a"]["t"], vec![0]);
        assert_eq!(a["b"]["t"], vec![1]);
        assert!(a["c"].is_empty());
    }

    #[test]
    fn each_topic_is_ranged_over_its_own_subscribers() {
        let m = members(&[("a", &["x", "y"]), ("b", &["y"])]);
        let counts = BTreeMap::from([("x".to_string(), 2), ("y".to_string(), 4)]);
        let a = range_assign(&m, &counts);
        assert_eq!(a["a"]["x"], vec![0, 1]);
        assert_eq!(a["a"]["y"], vec![0, 1]);
        assert_eq!(a["b"]["y"], vec![2, 3]);
        // Every partition is assigned exactly once.
        let total: usize = a.values().flat_map(|t| t.values()).map(|p| p.len()).sum();
        assert_eq!(total, 6);
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let bytes = encode_subscription(&["a".into(), "b".into()]).unwrap();
        assert_eq!(&bytes[..2], &[0, 0], "version 0 prefix");
        let sub = decode_subscription(&bytes).unwrap();
        assert_eq!(sub.topics.len(), 2);
        assert_eq!(sub.topics[1].as_str(), "b");

        let parts = BTreeMap::from([("t".to_string(), vec![0, 2])]);
        let bytes = encode_assignment(&parts).unwrap();
        let a = decode_assignment(&bytes).unwrap();
        assert_eq!(a.assigned_partitions[0].topic.0.as_str(), "t");
        assert_eq!(a.assigned_partitions[0].partitions, vec![0, 2]);
    }
}
