//! Strom's cluster metadata: a replicated metadata log on openraft (no home-made consensus),
//! the [`image::MetadataImage`] every node applies it to, the controller duties of the raft
//! leader (fencing brokers whose heartbeats stopped, which moves their leaderships), and the
//! inter-node RPC that also carries the data plane's replica fetches.
//!
//! Layout:
//! - [`settings`]: `node.id`, `controller.quorum.voters`, `controller.listen` and the timings.
//! - [`image`]: the metadata image and the commands of the log (pure; leader election lives
//!   here so every node decides it the same way).
//! - [`store`]: the durable raft log and vote, and the state machine.
//! - [`rpc`], [`messages`], [`network`]: frames over tokio TCP, bounded and with deadlines.
//! - [`node`]: one node of the quorum: raft, its RPC server, registration, heartbeats and the
//!   controller loop.
//!
//! Partition data never goes through raft: the broker replicates it Kafka-style (followers
//! fetch from the leader through [`node::DataPlane`]), see `docs/cluster.md`.

pub mod image;
pub mod messages;
pub mod network;
pub mod node;
pub mod rpc;
pub mod settings;
pub mod store;

pub use image::{Command, CommandResult, MetadataImage, PartitionImage, NO_LEADER};
pub use node::{ClusterNode, DataPlane};
pub use settings::ClusterSettings;

// `declare_raft_types!` names the default snapshot type `Cursor<Vec<u8>>` unqualified.
use std::io::Cursor;

/// Raft node ids are Kafka `node.id`s.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's types for the metadata log.
    pub TypeConfig:
        D = image::Command,
        R = image::CommandResult,
);

pub type Raft = openraft::Raft<TypeConfig>;
