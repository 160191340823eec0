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
//!
//! Membership is held in memory only: after a restart or a coordinator failover members get
//! UNKNOWN_MEMBER_ID and rejoin with epoch 0, as after being fenced; committed offsets are
//! durable as for every group.

mod assignor;
mod classic_members;
mod classic_wire;
mod describe;
mod heartbeat;
mod model;
mod reconcile;

pub(crate) use classic_members::{
    heartbeat as classic_heartbeat, join as classic_join, leave as classic_leave,
    sync as classic_sync,
};
pub(crate) use heartbeat::on_timers;
pub(crate) use model::ConsumerGroup;
