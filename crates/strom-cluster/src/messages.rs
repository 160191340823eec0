//! The inter-node requests and answers carried by [`crate::rpc`] frames.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::image::{Command, CommandResult};
use crate::{NodeId, TypeConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A metadata command for the raft leader to append (forwarded by another node).
    Propose(Command),
    /// A broker says it is alive, to the raft leader (the controller).
    Heartbeat {
        node_id: i32,
    },
    /// The quorum as this node sees it.
    Status,
    /// A follower reads a partition from its leader; records come back as the payload.
    ReplicaFetch(ReplicaFetchRequest),
    /// A follower asks where the leader's log of `epoch` ends, to truncate before following.
    EpochEnd(EpochEndRequest),
    /// A consumer's read on behalf of a client of another node (the JSON protocol's group
    /// members): records below the high watermark, no follower bookkeeping; the answer is a
    /// `ReplicaFetch`. `replica_id` and `leader_epoch` are ignored.
    ConsumerRead(ReplicaFetchRequest),
    /// A transaction coordinator asks partition leaders to write a transaction's markers
    /// (Kafka's WriteTxnMarkers).
    WriteTxnMarkers(WriteTxnMarkersRequest),
    /// Transactional offsets between a group coordinator and a transaction coordinator on
    /// different nodes (and the JSON protocol's position commits, as `Commit`).
    TxnOffsets(TxnOffsetsRequest),
    /// A group's committed offsets in one topic, from its coordinator (the JSON protocol's
    /// positions, read by the partition leader that serves the consume).
    CommittedOffsets {
        group: String,
        topic: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Propose(Result<CommandResult, ProposeError>),
    Heartbeat {
        accepted: bool,
    },
    Status(QuorumStatus),
    ReplicaFetch(ReplicaFetchResponse),
    EpochEnd(EpochEndResponse),
    /// One Kafka error code per partition of the request, in its order (0: written and
    /// replicated to the ISR).
    WriteTxnMarkers(Vec<i16>),
    /// One Kafka error code per offset (0: done), or one code for them all.
    TxnOffsets(Result<Vec<i16>, i16>),
    /// (partition, offset) for each committed partition, or the coordinator's refusal.
    CommittedOffsets(Result<Vec<(i32, i64)>, i16>),
    /// The node cannot serve this kind of request (e.g. its broker is not started yet).
    Unavailable(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    #[error("not the metadata quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("{0}")]
    Failed(String),
}

/// What `strom cluster status` shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub voters: Vec<NodeId>,
    /// On the leader: each voter's last replicated log index.
    pub replication: Vec<(NodeId, Option<u64>)>,
    /// Registered brokers: id, host:port, fenced.
    pub brokers: Vec<(i32, String, bool)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFetchRequest {
    pub replica_id: i32,
    pub topic: String,
    pub partition: i32,
    /// The leader epoch the follower follows; the leader refuses any other.
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaError {
    None,
    /// The node does not lead this partition (now).
    NotLeader,
    /// The follower's epoch is older than the leader's.
    FencedLeaderEpoch,
    /// The follower's epoch is newer than the leader's (its metadata is ahead).
    UnknownLeaderEpoch,
    OffsetOutOfRange,
    UnknownPartition,
    Storage,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaFetchResponse {
    pub error: ReplicaError,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochEndRequest {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    /// The epoch of the follower's last batch.
    pub epoch: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochEndResponse {
    pub error: ReplicaError,
    /// The largest epoch at or below the one asked for in the leader's log, and the offset
    /// where it ends (the start of the next epoch, or the log end).
    pub epoch: i32,
    pub end_offset: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteTxnMarkersRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// One offset a transaction commits to a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TxnOffsetsRequest {
    /// To the transaction coordinator: stage these offsets of `group` in the open transaction
    /// (the group coordinator, which got the TxnOffsetCommit, checked the member first).
    Stage {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
        offsets: Vec<TxnOffset>,
    },
    /// To the group coordinator: the offsets of one group that a committed transaction
    /// carries.
    Commit {
        group: String,
        offsets: Vec<TxnOffset>,
    },
}
