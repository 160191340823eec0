//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest-local (-4),
//! latest-tiered (-5) and by timestamp, answered as Kafka's `KafkaApis.handleListOffsetRequest`
//! and `UnifiedLog.fetchOffsetByTimestamp` do for a log without remote storage.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use crate::broker::Broker;
use crate::security::acl::op;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(
    broker: &Arc<Broker>,
    req: ListOffsetsRequest,
    version: i16,
    authz: &Authz<'_>,
) -> ListOffsetsResponse {
    let read_committed = version >= 2 && req.isolation_level == 1;
    let clustered = broker.cluster.get().is_some();
    // ListOffsetsRequest.duplicatePartitions: every occurrence of a partition named twice is
    // answered INVALID_REQUEST.
    let mut seen = HashSet::new();
    let duplicates: HashSet<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .filter(|k| !seen.insert(k.clone()))
        .collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let topic = broker.topics.get(&name);
            let denied = authz.enforcing() && !authz.topic(op::DESCRIBE, &name);
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    if denied {
                        return resp.with_error_code(E::TopicAuthorizationFailed.code());
                    }
                    // KafkaApis checks duplicates before it looks the partition up.
                    if duplicates.contains(&(name.clone(), p.partition_index)) {
                        return resp.with_error_code(E::InvalidRequest.code());
                    }
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return resp.with_error_code(E::UnknownTopicOrPartition.code());
                    };
                    let Ok(state) = partition.lock() else {
                        return resp.with_error_code(E::KafkaStorageError.code());
                    };
                    // Cluster mode: only the leader answers.
                    if clustered && !state.replica.as_ref().is_some_and(|r| r.is_leader()) {
                        return resp.with_error_code(E::NotLeaderOrFollower.code());
                    }
                    // Partition.fetchOffsetForTimestamp: a client ahead of our leader epoch gets
                    // UNKNOWN_LEADER_EPOCH, one behind it FENCED_LEADER_EPOCH; -1 skips the check.
                    let leader_epoch = state.leader_epoch();
                    if p.current_leader_epoch > leader_epoch {
                        return resp.with_error_code(E::UnknownLeaderEpoch.code());
                    }
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < leader_epoch {
                        return resp.with_error_code(E::FencedLeaderEpoch.code());
                    }
                    let log = &state.log;
                    let found = match p.timestamp {
                        // The high watermark, as Kafka answers a consumer; the last stable
                        // offset for read_committed (isolation level 1, v2+).
                        LATEST if read_committed => Ok(Some((state.last_stable_offset(), -1))),
                        LATEST => Ok(Some((state.high_watermark(), -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        // Without tiered storage Kafka answers offset -1, timestamp -1 and
                        // leader epoch -1, error NONE.
                        LATEST_TIERED => return resp,
                        MAX_TIMESTAMP => Ok(log.max_timestamp()),
                        // Every other value, negative ones included, is a timestamp search:
                        // the first record at or after it (Kafka has no other check).
                        ts => log.offset_for_timestamp(ts).map_err(|e| {
                            tracing::error!(error = %e, "offset lookup by timestamp failed");
                            E::KafkaStorageError.code()
                        }),
                    };
                    match found {
                        Ok(Some((offset, ts))) => {
                            // leader_epoch exists from v4 on.
                            let epoch = if version >= 4 { leader_epoch } else { -1 };
                            resp.with_offset(offset)
                                .with_timestamp(ts)
                                .with_leader_epoch(epoch)
                        }
                        Ok(None) => resp,
                        Err(code) => resp.with_error_code(code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
