//! Metadata and DescribeCluster: this broker is the leader of every partition.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError;
use uuid::Uuid;

use super::{sb, topic_name};
use crate::broker::Broker;
use crate::topics::{Topic, TopicError};

/// Kafka's "authorized operations were not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn topic_entry(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.node_id());
    let partitions = (0..topic.partition_count())
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name())))
        .with_topic_id(topic.id())
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn error_entry(name: Option<String>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(topic_name))
        .with_topic_id(id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub async fn handle(broker: &Arc<Broker>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let (host, port) = broker.config.advertised();
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(sb(host))
        .with_port(port)];
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create =
        broker.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let topics = match requested {
        None => broker
            .topics
            .all()
            .iter()
            .map(|t| topic_entry(broker, t))
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for t in list {
                let entry = match t.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        let found = if auto_create {
                            broker.topics.get_or_auto_create(&name).await
                        } else {
                            broker.topics.get(&name).ok_or(TopicError::UnknownTopic)
                        };
                        match found {
                            Ok(topic) => topic_entry(broker, &topic),
                            Err(TopicError::InvalidTopic(_)) => error_entry(
                                Some(name),
                                Uuid::nil(),
                                ResponseError::InvalidTopicException.code(),
                            ),
                            Err(e) => error_entry(Some(name), Uuid::nil(), e.code()),
                        }
                    }
                    None => match broker.topics.get_by_id(t.topic_id) {
                        Some(topic) => topic_entry(broker, &topic),
                        None => error_entry(None, t.topic_id, ResponseError::UnknownTopicId.code()),
                    },
                };
                out.push(entry);
            }
            out
        }
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(sb(broker.meta.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

pub fn describe_cluster(
    broker: &Arc<Broker>,
    _req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let (host, port) = broker.config.advertised();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(sb(broker.meta.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(broker.node_id()))
            .with_host(sb(host))
            .with_port(port)])
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
