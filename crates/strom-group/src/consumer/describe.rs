//! ConsumerGroupDescribe (KIP-848): each group's epochs, assignor, and every member's current
//! and target assignment, with topic names beside the ids.

use std::collections::HashMap;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as WireAssignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::model::Assignment;
use crate::codes;
use crate::coordinator::GroupCoordinator;

/// Kafka's "unknown" authorized operations (INT32_MIN) when they were not asked for.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl GroupCoordinator {
    /// Describes the named groups; a group that does not exist or is a classic group is
    /// answered GROUP_ID_NOT_FOUND, as Kafka does.
    pub fn consumer_group_describe(
        &self,
        req: &ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let names: HashMap<Uuid, String> = self
            .catalog
            .topic_names()
            .into_iter()
            .filter_map(|n| Some((self.catalog.topic_id(&n)?, n)))
            .collect();
        let wire = |a: &Assignment| {
            WireAssignment::default().with_topic_partitions(
                a.iter()
                    .map(|(id, ps)| {
                        TopicPartitions::default()
                            .with_topic_id(*id)
                            .with_topic_name(TopicName(s(names.get(id).map_or("", String::as_str))))
                            .with_partitions(ps.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        let default_assignor = self
            .config
            .consumer_assignors
            .first()
            .map(String::as_str)
            .unwrap_or(super::assignor::UNIFORM);
        let st = self.state.lock();
        let groups = req
            .group_ids
            .iter()
            .map(|id| {
                let described = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_authorized_operations(OPERATIONS_NOT_REQUESTED);
                let Some(cg) = st.groups.get(id.as_str()).and_then(|g| g.consumer.as_ref()) else {
                    let message = if st.groups.contains_key(id.as_str()) {
                        format!("Group {} is not a consumer group.", id.as_str())
                    } else {
                        format!("Group {} not found.", id.as_str())
                    };
                    return described
                        .with_error_code(codes::GROUP_ID_NOT_FOUND)
                        .with_error_message(Some(StrBytes::from_string(message)))
                        .with_group_state(s("Dead"));
                };
                let members = cg
                    .members
                    .values()
                    .map(|m| {
                        let mut topics: Vec<TopicName> = m
                            .subscribed_topic_names
                            .iter()
                            .map(|t| TopicName(s(t)))
                            .collect();
                        topics.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                        Member::default()
                            .with_member_id(s(&m.member_id))
                            .with_instance_id(m.instance_id.as_deref().map(s))
                            .with_rack_id(m.rack_id.as_deref().map(s))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host))
                            .with_subscribed_topic_names(topics)
                            .with_subscribed_topic_regex(m.subscribed_topic_regex.as_deref().map(s))
                            .with_assignment(wire(&m.assigned))
                            .with_target_assignment(wire(
                                cg.target.get(&m.member_id).unwrap_or(&Assignment::new()),
                            ))
                            // 1: the member uses the consumer protocol (KIP-1099).
                            .with_member_type(1)
                    })
                    .collect();
                described
                    .with_group_state(s(cg.state_name()))
                    .with_group_epoch(cg.group_epoch)
                    .with_assignment_epoch(cg.assignment_epoch)
                    .with_assignor_name(s(cg.preferred_assignor(default_assignor)))
                    .with_members(members)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }
}
