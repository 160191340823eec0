//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest-local (-4) and
//! by timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub fn handle(broker: &Arc<Broker>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let resp = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return resp.with_error_code(E::UnknownTopicOrPartition.code());
                    };
                    let state = partition.state.lock();
                    let log = &state.log;
                    let found = match p.timestamp {
                        LATEST => Ok(Some((log.log_end_offset(), -1))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
                        LATEST_TIERED => Ok(Some((log.log_start_offset() - 1, -1))),
                        MAX_TIMESTAMP => Ok(log.max_timestamp()),
                        ts if ts < 0 => Err(E::InvalidRequest.code()),
                        ts => log.offset_for_timestamp(ts).map_err(|e| {
                            tracing::error!(error = %e, "offset lookup by timestamp failed");
                            E::KafkaStorageError.code()
                        }),
                    };
                    match found {
                        Ok(Some((offset, ts))) => {
                            // leader_epoch exists from v4 on.
                            let epoch = if version >= 4 { 0 } else { -1 };
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
