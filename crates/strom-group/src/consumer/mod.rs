//! The consumer group protocol of KIP-848 (`group.protocol=consumer`): the coordinator owns
//! the assignment. Members heartbeat with their subscription and the partitions they own;
//! the coordinator bumps the group epoch when the membership, a subscription or a subscribed
//! topic's partition count changes, computes a target assignment with a server-side assignor,
//! and moves each member towards it without two members ever owning a partition at once
//! (a partition is handed out only after its previous owner reported it revoked).
//!
//! - `model`: the group and member state (epochs, target and current assignments).
//! - `reconcile`: Kafka's CurrentAssignmentBuilder, one member's step towards its target.
//! - `assignor`: the `uniform` and `range` server assignors.
//! - `heartbeat`: the ConsumerGroupHeartbeat handler, leaving, and the session and
//!   revocation timers.
//! - `describe`: ConsumerGroupDescribe.
//! - `classic_members`: members that keep the classic protocol inside a KIP-848 group, and
//!   the online upgrade of a live classic group (Kafka 4's migration).
//! - `classic_wire`: the embedded consumer protocol those members speak.
//! - `downgrade`: back to a classic group when the last consumer-protocol member leaves.
//!
//! - `persist`: the group as one record of the offsets log, so that members carry on at their
//!   epochs after a restart or a coordinator failover.

mod assignor;
mod classic_members;
mod classic_wire;
mod describe;
mod downgrade;
mod heartbeat;
mod model;
mod persist;
mod reader;
mod reconcile;

pub(crate) use classic_members::{
    heartbeat as classic_heartbeat, join as classic_join, leave as classic_leave,
    sync as classic_sync,
};
pub(crate) use heartbeat::on_timers;
pub(crate) use model::ConsumerGroup;

/// The group's record for the offsets log.
pub(crate) fn snapshot(cg: &ConsumerGroup) -> bytes::Bytes {
    persist::encode(cg)
}

/// Restores a KIP-848 group from its last record, deadlines counted from `now_ms`.
pub(crate) fn restore(
    g: &mut crate::group::Group,
    snapshot: &[u8],
    session_timeout_ms: i32,
    now_ms: i64,
) {
    match persist::decode(snapshot, session_timeout_ms, now_ms) {
        Some(cg) => g.consumer = Some(Box::new(cg)),
        None => {
            tracing::warn!(group = %g.group_id, "unreadable consumer group record; its members will rejoin")
        }
    }
}
