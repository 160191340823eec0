//! [`ConsumerGroupMetadata`]: what a transactional producer needs to know of a consumer's
//! group membership to commit offsets inside a transaction (Java's `ConsumerGroupMetadata`).

/// A consumer's group, generation and member ids, from [`crate::Consumer::group_metadata`].
/// The group coordinator checks the generation and member id of a transactional offset commit
/// (KIP-447), so a consumer that lost its partitions in a rebalance cannot commit for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation the member joined, -1 when not (yet) a member.
    pub generation_id: i32,
    /// The member id the coordinator gave, empty when not (yet) a member.
    pub member_id: String,
    /// `group.instance.id` for static membership.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata for a group without membership details: the coordinator then checks no
    /// generation (as for a consumer that assigns its partitions by hand).
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}
