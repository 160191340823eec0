//! The OffsetCommit request and the reading of its answer, shared by both group protocols:
//! the classic one commits with its generation id, the consumer protocol (KIP-848) with its
//! member epoch, in the same field.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::protocol::StrBytes;

use crate::offsets::{group_id, topic_name, TopicPartition};

/// An OffsetCommit of `offsets` (each the offset of the next message to read) for `group`,
/// as member `member_id` at `generation_or_epoch` (-1 and empty outside group management).
pub(super) fn commit_request(
    group: &str,
    generation_or_epoch: i32,
    member_id: &str,
    offsets: &[(TopicPartition, i64)],
) -> OffsetCommitRequest {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((topic, partition), offset) in offsets {
        by_topic.entry(topic.as_str()).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::new())),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation_or_epoch)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(parts)
                })
                .collect(),
        )
}

/// The first partition the commit failed for: its topic, partition and error code.
pub(super) fn first_error(response: &OffsetCommitResponse) -> Option<(String, i32, i16)> {
    response.topics.iter().find_map(|t| {
        t.partitions
            .iter()
            .find(|p| p.error_code != 0)
            .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
    })
}
