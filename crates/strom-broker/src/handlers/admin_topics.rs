//! CreateTopics, DeleteTopics, CreatePartitions and DeleteRecords.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;
use uuid::Uuid;

use super::sb;
use crate::broker::Broker;
use crate::topic_config::{describe_value, TOPIC_CONFIGS};
use crate::topics::TopicError;

/// Kafka's config source code for a topic override, and for a default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let fail = |code: i16, msg: String| {
            result
                .clone()
                .with_error_code(code)
                .with_error_message(Some(sb(msg)))
        };
        if duplicates.contains(&name) {
            results.push(fail(
                E::InvalidRequest.code(),
                format!("Create topics request from client contains duplicate topic {name}"),
            ));
            continue;
        }
        if t.replication_factor != -1 && t.replication_factor != 1 && t.assignments.is_empty() {
            results.push(fail(
                E::InvalidReplicationFactor.code(),
                format!("Unable to replicate the partition {} time(s): The target replication factor of {} cannot be reached because only 1 broker(s) are registered.", t.replication_factor, t.replication_factor),
            ));
            continue;
        }
        let mut partitions = t.num_partitions;
        if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                results.push(fail(E::InvalidRequest.code(), "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into()));
                continue;
            }
            let node = broker.node_id();
            if t.assignments
                .iter()
                .any(|a| a.broker_ids.iter().any(|b| b.0 != node) || a.broker_ids.len() != 1)
            {
                results.push(fail(
                    E::InvalidReplicaAssignment.code(),
                    "replica assignment names brokers that do not exist".into(),
                ));
                continue;
            }
            partitions = t.assignments.len() as i32;
        }
        let mut configs = BTreeMap::new();
        let mut null_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => null_config = Some(c.name.to_string()),
            }
        }
        if let Some(n) = null_config {
            results.push(fail(
                E::InvalidConfig.code(),
                format!("Null value not supported for topic configs: {n}"),
            ));
            continue;
        }
        match broker
            .topics
            .create(&name, partitions, configs, req.validate_only)
            .await
        {
            Ok(topic) => {
                let meta = topic.meta.read().clone();
                let mut r = result
                    .with_topic_id(if req.validate_only {
                        Uuid::nil()
                    } else {
                        meta.topic_id
                    })
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(1);
                if version >= 5 {
                    let configs = TOPIC_CONFIGS
                        .iter()
                        .map(|(n, _)| {
                            let (value, is_default) =
                                describe_value(&broker.config, &meta.configs, n);
                            CreatableTopicConfigs::default()
                                .with_name(sb(*n))
                                .with_value(Some(sb(value)))
                                .with_config_source(if is_default {
                                    SOURCE_DEFAULT
                                } else {
                                    SOURCE_TOPIC
                                })
                        })
                        .collect();
                    r = r.with_configs(Some(configs));
                }
                results.push(r);
            }
            Err(e) => results.push(fail(e.code(), e.to_string())),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v0-5 name topics; v6 may name them or give their ids.
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => broker.topics.get_by_id(id).map(|t| t.name()),
        };
        let entry = DeletableTopicResult::default()
            .with_name(name.clone().map(super::topic_name))
            .with_topic_id(id);
        let entry = match resolved {
            None => entry.with_error_code(E::UnknownTopicId.code()),
            Some(n) => match broker.topics.delete(&n).await {
                Ok(deleted_id) => {
                    // As Kafka does: a topic re-created under this name must not resume from
                    // the old topic's committed offsets.
                    if let Err(e) = broker.groups.on_topic_deleted(&n) {
                        tracing::warn!(topic = %n, error = %e, "could not drop committed offsets of deleted topic");
                    }
                    let id = if id.is_nil() && version >= 6 {
                        deleted_id
                    } else {
                        id
                    };
                    entry
                        .with_name(Some(super::topic_name(n)))
                        .with_topic_id(id)
                }
                Err(e) => entry
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(e.to_string()))),
            },
        };
        responses.push(entry);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let r = match broker
            .topics
            .create_partitions(t.name.0.as_str(), t.count, req.validate_only)
            .await
        {
            Ok(()) => r,
            Err(e) => r
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.to_string()))),
        };
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub fn delete_records(
    broker: &Arc<Broker>,
    req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = broker.topics.get(t.name.0.as_str());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return r.with_error_code(TopicError::UnknownTopic.code());
                    };
                    let mut state = partition.state.lock();
                    let end = state.log.log_end_offset();
                    // -1 means "up to the high watermark".
                    let target = if p.offset == -1 { end } else { p.offset };
                    if target < 0 || target > end {
                        return r.with_error_code(E::OffsetOutOfRange.code());
                    }
                    match state.log.delete_records_before(target) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => {
                            tracing::error!(error = %e, "delete records failed");
                            r.with_error_code(E::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
