//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (resource type 2);
//! the broker resource (type 4) can be described but not altered at runtime.

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response as inc;
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::sb;
use crate::broker::Broker;
use crate::config::setting_names;
use crate::topic_config::{describe_value, TopicOverrides, TOPIC_CONFIGS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn entry(name: &str, value: String, source: i8, version: i16) -> DescribeConfigsResourceResult {
    let _ = version;
    DescribeConfigsResourceResult::default()
        .with_name(sb(name))
        .with_value(Some(sb(value)))
        .with_read_only(false)
        .with_config_source(source)
}

pub fn describe(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let wanted = |n: &str| {
                r.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == n))
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                RESOURCE_TOPIC => match broker.topics.get(r.resource_name.as_str()) {
                    None => result
                        .with_error_code(E::UnknownTopicOrPartition.code())
                        .with_error_message(Some(sb("Topic does not exist"))),
                    Some(topic) => {
                        let overrides = topic.meta.read().configs.clone();
                        let configs = TOPIC_CONFIGS
                            .iter()
                            .filter(|(n, _)| wanted(n))
                            .map(|(n, _)| {
                                let (value, is_default) =
                                    describe_value(&broker.config, &overrides, n);
                                entry(
                                    n,
                                    value,
                                    if is_default {
                                        SOURCE_DEFAULT
                                    } else {
                                        SOURCE_TOPIC
                                    },
                                    version,
                                )
                            })
                            .collect();
                        result.with_configs(configs)
                    }
                },
                RESOURCE_BROKER => {
                    let id = broker.node_id().to_string();
                    if !r.resource_name.is_empty() && r.resource_name.as_str() != id {
                        return result
                            .with_error_code(E::InvalidRequest.code())
                            .with_error_message(Some(sb(format!(
                                "unknown broker {}",
                                r.resource_name.as_str()
                            ))));
                    }
                    let configs = setting_names()
                        .filter(|n| wanted(n))
                        .filter_map(|n| {
                            broker_setting_value(broker, n)
                                .map(|v| entry(n, v, SOURCE_STATIC_BROKER, version))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(E::InvalidRequest.code())
                    .with_error_message(Some(sb(format!("unsupported resource type {other}")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn broker_setting_value(broker: &Broker, name: &str) -> Option<String> {
    let c = &broker.config;
    Some(match name {
        "num.partitions" => c.num_partitions.to_string(),
        "auto.create.topics.enable" => c.auto_create_topics.to_string(),
        "log.segment.bytes" => c.log_segment_bytes.to_string(),
        "log.roll.ms" => c.log_roll_ms.to_string(),
        "log.retention.ms" => c.log_retention_ms.to_string(),
        "log.retention.bytes" => c.log_retention_bytes.to_string(),
        "log.retention.check.interval.ms" => c.log_retention_check_interval_ms.to_string(),
        "message.max.bytes" => c.message_max_bytes.to_string(),
        "socket.request.max.bytes" => c.socket_request_max_bytes.to_string(),
        "log.flush.interval.messages" => c.log_flush_interval_messages.to_string(),
        "log.flush.interval.ms" => c.log_flush_interval_ms.to_string(),
        "node.id" => c.node_id.to_string(),
        "group.initial.rebalance.delay.ms" => c.group_initial_rebalance_delay_ms.to_string(),
        "offsets.retention.minutes" => c.offsets_retention_minutes.to_string(),
        _ => return None,
    })
}

/// Applies a full set of topic overrides; shared by both alter APIs.
async fn apply(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: &str,
    configs: TopicOverrides,
    validate_only: bool,
) -> (i16, Option<String>) {
    if resource_type != RESOURCE_TOPIC {
        return (
            E::InvalidRequest.code(),
            Some("only topic configs can be altered at runtime".into()),
        );
    }
    match broker
        .topics
        .alter_configs(name, configs, validate_only)
        .await
    {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(e.to_string())),
    }
}

pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let configs: TopicOverrides = r
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let (code, msg) = apply(
            broker,
            r.resource_type,
            r.resource_name.as_str(),
            configs,
            req.validate_only,
        )
        .await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Operations of IncrementalAlterConfigs: SET, DELETE (back to default), APPEND, SUBTRACT.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub async fn incremental_alter(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let current = broker
            .topics
            .get(r.resource_name.as_str())
            .map(|t| t.meta.read().configs.clone());
        let (code, msg) = match (r.resource_type, current) {
            (RESOURCE_TOPIC, None) => (E::UnknownTopicOrPartition.code(), None),
            (RESOURCE_TOPIC, Some(mut configs)) => {
                let mut bad = None;
                for c in &r.configs {
                    match (c.config_operation, &c.value) {
                        (OP_SET, Some(v)) => {
                            configs.insert(c.name.to_string(), v.to_string());
                        }
                        (OP_DELETE, _) => {
                            configs.remove(c.name.as_str());
                        }
                        _ => {
                            bad = Some(format!(
                                "unsupported operation {} on {}",
                                c.config_operation,
                                c.name.as_str()
                            ))
                        }
                    }
                }
                match bad {
                    Some(m) => (E::InvalidRequest.code(), Some(m)),
                    None => {
                        apply(
                            broker,
                            r.resource_type,
                            r.resource_name.as_str(),
                            configs,
                            req.validate_only,
                        )
                        .await
                    }
                }
            }
            (other, _) => {
                apply(
                    broker,
                    other,
                    r.resource_name.as_str(),
                    TopicOverrides::new(),
                    req.validate_only,
                )
                .await
            }
        };
        responses.push(
            inc::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
