//! OffsetForLeaderEpoch: clients use it to validate their position after a leader change
//! (KIP-320). A single broker has one leader epoch, 0, for every partition, so the end offset of
//! epoch 0 is the log end offset.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

/// The leader epoch of every partition on this broker.
pub const LEADER_EPOCH: i32 = 0;

pub fn handle(
    broker: &Arc<Broker>,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.topic.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition))
                    else {
                        return r.with_error_code(E::UnknownTopicOrPartition.code());
                    };
                    if broker.cluster.get().is_some() {
                        return clustered(&partition, &p, r);
                    }
                    // Kafka: a client ahead of the leader's epoch gets UNKNOWN_LEADER_EPOCH (one
                    // behind it would be fenced, but no epoch is below 0; -1 skips the check).
                    if p.current_leader_epoch > LEADER_EPOCH {
                        return r.with_error_code(E::UnknownLeaderEpoch.code());
                    }
                    // LeaderEpochFileCache.endOffsetFor: -1 and epochs above the latest are
                    // undefined; an epoch below the earliest gets the start offset of the
                    // first epoch (ours starts at the log start offset) under its own number.
                    if p.leader_epoch > LEADER_EPOCH || p.leader_epoch == -1 {
                        return r;
                    }
                    let Ok(state) = partition.lock() else {
                        return r.with_error_code(E::KafkaStorageError.code());
                    };
                    if p.leader_epoch < -1 {
                        return r
                            .with_leader_epoch(p.leader_epoch)
                            .with_end_offset(state.log.log_start_offset());
                    }
                    r.with_leader_epoch(LEADER_EPOCH)
                        .with_end_offset(state.log.log_end_offset())
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// Cluster mode: the leader answers from its log's batch epochs (`cluster::epochs`), after
/// Kafka's leader and epoch checks.
fn clustered(
    partition: &crate::partition::Partition,
    p: &kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderPartition,
    r: EpochEndOffset,
) -> EpochEndOffset {
    let Ok(state) = partition.lock() else {
        return r.with_error_code(E::KafkaStorageError.code());
    };
    let Some(replica) = state.replica.as_ref().filter(|x| x.is_leader()) else {
        return r.with_error_code(E::NotLeaderOrFollower.code());
    };
    if p.current_leader_epoch > replica.leader_epoch {
        return r.with_error_code(E::UnknownLeaderEpoch.code());
    }
    if p.current_leader_epoch >= 0 && p.current_leader_epoch < replica.leader_epoch {
        return r.with_error_code(E::FencedLeaderEpoch.code());
    }
    if p.leader_epoch == -1 || p.leader_epoch > replica.leader_epoch {
        return r;
    }
    if p.leader_epoch == replica.leader_epoch {
        return r
            .with_leader_epoch(p.leader_epoch)
            .with_end_offset(state.log.log_end_offset());
    }
    match crate::cluster::epochs::end_of_epoch(&state.log, p.leader_epoch) {
        Ok((-1, _)) => r
            .with_leader_epoch(p.leader_epoch)
            .with_end_offset(state.log.log_start_offset()),
        Ok((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
        Err(_) => r.with_error_code(E::KafkaStorageError.code()),
    }
}
