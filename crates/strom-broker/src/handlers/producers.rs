//! DescribeProducers (KIP-664): the active producers of each partition, with the start offset
//! of each one's open transaction, from the partition's producer state.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

pub fn describe(
    broker: &Arc<Broker>,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.name.0.as_str());
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let resp = PartitionResponse::default().with_partition_index(index);
                    let Some(p) = topic.as_ref().and_then(|t| t.partition(index)) else {
                        return resp.with_error_code(E::UnknownTopicOrPartition.code());
                    };
                    let Ok(state) = p.lock() else {
                        return resp.with_error_code(E::KafkaStorageError.code());
                    };
                    let producers = state
                        .producers
                        .views()
                        .into_iter()
                        .map(|v| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(v.producer_id))
                                .with_producer_epoch(i32::from(v.epoch))
                                .with_last_sequence(v.last_sequence)
                                .with_last_timestamp(v.last_timestamp)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(v.current_txn_start_offset)
                        })
                        .collect();
                    resp.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
