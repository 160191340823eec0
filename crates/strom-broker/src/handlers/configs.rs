//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (resource type 2);
//! the broker resource (type 4) can be described but not altered at runtime.

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_request as inc_req;
use kafka_protocol::messages::incremental_alter_configs_response as inc;
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::sb;
use crate::broker::Broker;
use crate::config::setting_names;
use crate::handlers::groups::INVALID_REQUEST_MESSAGE;
use crate::topic_config::{config_info, describe_value, TopicOverrides, TOPIC_CONFIGS};
use crate::topics::validate_topic_name;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Resource types Kafka knows besides topics and brokers: BROKER_LOGGER, CLIENT_METRICS,
/// GROUP. Not served here; any other id fails the whole DescribeConfigs request.
const RESOURCE_OTHER_KNOWN: [i8; 3] = [8, 16, 32];
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn synonym(name: &str, value: String, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(sb(name))
        .with_value(Some(sb(value)))
        .with_source(source)
}

/// One topic config as ConfigHelper.createTopicConfigEntry reports it: the override first
/// among the synonyms, then the broker default it falls back to; documentation only when asked.
fn topic_entry(
    broker: &Broker,
    overrides: &TopicOverrides,
    name: &str,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let (value, is_default) = describe_value(&broker.config, overrides, name);
    let (config_type, broker_name, doc) = config_info(name);
    let mut all = Vec::new();
    if !is_default {
        all.push(synonym(name, value.clone(), SOURCE_TOPIC));
    }
    if let Some(broker_name) = broker_name {
        let (default, _) = describe_value(&broker.config, &TopicOverrides::new(), name);
        all.push(synonym(broker_name, default, SOURCE_DEFAULT));
    }
    let source = if is_default {
        SOURCE_DEFAULT
    } else {
        SOURCE_TOPIC
    };
    DescribeConfigsResourceResult::default()
        .with_name(sb(name))
        .with_value(Some(sb(value)))
        .with_read_only(false)
        .with_is_sensitive(false)
        .with_config_source(source)
        .with_config_type(config_type)
        .with_synonyms(if synonyms { all } else { Vec::new() })
        .with_documentation(documentation.then(|| sb(doc)))
}

fn broker_entry(name: &str, value: String, synonyms: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(sb(name))
        .with_value(Some(sb(value.clone())))
        .with_read_only(false)
        .with_config_source(SOURCE_STATIC_BROKER)
        .with_synonyms(if synonyms {
            vec![synonym(name, value, SOURCE_STATIC_BROKER)]
        } else {
            Vec::new()
        })
        .with_documentation(None)
}

pub fn describe(
    broker: &Arc<Broker>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    // KafkaApis.handleDescribeConfigsRequest throws for a resource type it cannot authorize,
    // and the whole request gets the error response: every resource INVALID_REQUEST.
    if req.resources.iter().any(|r| {
        r.resource_type != RESOURCE_TOPIC
            && r.resource_type != RESOURCE_BROKER
            && !RESOURCE_OTHER_KNOWN.contains(&r.resource_type)
    }) {
        let results = req
            .resources
            .into_iter()
            .map(|r| {
                DescribeConfigsResult::default()
                    .with_error_code(E::InvalidRequest.code())
                    .with_error_message(Some(sb(INVALID_REQUEST_MESSAGE)))
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
            })
            .collect();
        return DescribeConfigsResponse::default().with_results(results);
    }
    let synonyms = version >= 1 && req.include_synonyms;
    let documentation = version >= 3 && req.include_documentation;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            // ConfigHelper: null or empty key lists mean every config.
            let wanted = |n: &str| match &r.configuration_keys {
                Some(keys) if !keys.is_empty() => keys.iter().any(|k| k.as_str() == n),
                _ => true,
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let fail = |code: i16, msg: Option<String>| {
                result
                    .clone()
                    .with_error_code(code)
                    .with_error_message(msg.map(sb))
            };
            match r.resource_type {
                RESOURCE_TOPIC => {
                    let name = r.resource_name.as_str();
                    if let Err(e) = validate_topic_name(name) {
                        return fail(e.code(), Some(e.to_string()));
                    }
                    match broker.topics.get(name) {
                        None => fail(E::UnknownTopicOrPartition.code(), None),
                        Some(topic) => {
                            let overrides = topic.meta.read().configs.clone();
                            let configs = TOPIC_CONFIGS
                                .iter()
                                .filter(|(n, _)| wanted(n))
                                .map(|(n, _)| {
                                    topic_entry(broker, &overrides, n, synonyms, documentation)
                                })
                                .collect();
                            result.with_configs(configs)
                        }
                    }
                }
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    // The empty name asks for the cluster-wide dynamic defaults: none here.
                    if name.is_empty() {
                        return result.with_configs(Vec::new());
                    }
                    match name.parse::<i32>() {
                        Err(_) => {
                            return fail(
                                E::InvalidRequest.code(),
                                Some(format!("Broker id must be an integer, but it is: {name}")),
                            )
                        }
                        Ok(id) if id != broker.node_id() => {
                            return fail(
                                E::InvalidRequest.code(),
                                Some(format!(
                                    "Unexpected broker id, expected {} or empty string, but received {name}",
                                    broker.node_id()
                                )),
                            )
                        }
                        Ok(_) => {}
                    }
                    let configs = setting_names()
                        .filter(|n| wanted(n))
                        .filter_map(|n| {
                            broker_setting_value(broker, n).map(|v| broker_entry(n, v, synonyms))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => fail(
                    E::InvalidRequest.code(),
                    Some(format!("Unsupported resource type: {other}")),
                ),
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
    // Cluster mode checks here, then changes every node through the metadata log.
    let clustered = broker.cluster.get().is_some();
    let mut outcome = broker
        .topics
        .alter_configs(name, configs.clone(), validate_only || clustered)
        .await;
    if outcome.is_ok() && clustered && !validate_only {
        let configs = crate::topics::without_removed(configs);
        outcome = crate::cluster::topics::alter_configs(broker, name, configs).await;
    }
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(e.to_string())),
    }
}

/// The resource types `ConfigResource.Type.forId` knows; others are UNKNOWN.
const KNOWN_RESOURCE_TYPES: [i8; 5] = [2, 4, 8, 16, 32];

/// AlterConfigs (the legacy, whole-set API) as ControllerApis.handleLegacyAlterConfigs
/// answers: an unknown resource type is UNSUPPORTED_VERSION, a resource named again is one
/// INVALID_REQUEST "Duplicate resource." answer and neither occurrence is applied.
pub async fn alter(
    broker: &Arc<Broker>,
    req: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let answer =
        |code: i16, msg: Option<String>, t: i8, name: kafka_protocol::protocol::StrBytes| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(t)
                .with_resource_name(name)
        };
    let mut responses = Vec::new();
    let mut pending: Vec<(i8, kafka_protocol::protocol::StrBytes, TopicOverrides)> = Vec::new();
    let mut duplicates: Vec<(i8, String)> = Vec::new();
    for r in req.resources {
        if !KNOWN_RESOURCE_TYPES.contains(&r.resource_type) {
            responses.push(answer(
                E::UnsupportedVersion.code(),
                Some(format!("Unknown resource type {}.", r.resource_type)),
                r.resource_type,
                r.resource_name,
            ));
            continue;
        }
        let key = (r.resource_type, r.resource_name.to_string());
        if duplicates.contains(&key) {
            continue;
        }
        if let Some(i) = pending
            .iter()
            .position(|(t, n, _)| *t == key.0 && n.as_str() == key.1)
        {
            pending.remove(i);
            duplicates.push(key);
            responses.push(answer(
                E::InvalidRequest.code(),
                Some("Duplicate resource.".into()),
                r.resource_type,
                r.resource_name,
            ));
            continue;
        }
        let configs: TopicOverrides = r
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        pending.push((r.resource_type, r.resource_name, configs));
    }
    for (t, name, configs) in pending {
        let (code, msg) = apply(broker, t, name.as_str(), configs, req.validate_only).await;
        responses.push(answer(code, msg, t, name));
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Operations of IncrementalAlterConfigs: SET, DELETE (back to default), APPEND, SUBTRACT.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The values of a list config, from its override or its default (ConfigurationControlManager
/// `getParts`), without empty elements.
fn list_parts(broker: &Broker, configs: &TopicOverrides, name: &str) -> Vec<String> {
    let (value, _) = describe_value(&broker.config, configs, name);
    value
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Applies one resource's operations to its current overrides, as
/// ConfigAdminManager.preprocess and ConfigurationControlManager.incrementalAlterConfigs check
/// them; Err is (code, message).
fn apply_ops(
    broker: &Broker,
    mut configs: TopicOverrides,
    ops: &[inc_req::AlterableConfig],
) -> Result<TopicOverrides, (i16, String)> {
    let mut seen = std::collections::HashSet::new();
    if !ops.iter().all(|c| seen.insert(c.name.as_str())) {
        return Err((
            E::InvalidRequest.code(),
            "Error due to duplicate config keys".into(),
        ));
    }
    let nulls: Vec<&str> = ops
        .iter()
        .filter(|c| c.config_operation != OP_DELETE && c.value.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if !nulls.is_empty() {
        return Err((
            E::InvalidRequest.code(),
            format!("Null value not supported for : {}", nulls.join(", ")),
        ));
    }
    for c in ops {
        let name = c.name.as_str();
        if !TOPIC_CONFIGS.iter().any(|(n, _)| *n == name) && !crate::topic_config::is_removed(name)
        {
            return Err((
                E::InvalidConfig.code(),
                format!("Unknown topic config name: {name}"),
            ));
        }
        let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        match c.config_operation {
            OP_SET => {
                configs.insert(name.to_string(), value);
            }
            OP_DELETE => {
                configs.remove(name);
            }
            op @ (OP_APPEND | OP_SUBTRACT) => {
                if config_info(name).0 != crate::topic_config::config_type::LIST {
                    let verb = if op == OP_APPEND {
                        "APPEND"
                    } else {
                        "SUBTRACT"
                    };
                    return Err((
                        E::InvalidConfig.code(),
                        format!("Can't {verb} to key {name} because its type is not LIST."),
                    ));
                }
                let mut parts = list_parts(broker, &configs, name);
                for v in value.split(',') {
                    if op == OP_APPEND {
                        if !parts.iter().any(|p| p == v) {
                            parts.push(v.to_string());
                        }
                    } else if let Some(i) = parts.iter().position(|p| p == v) {
                        parts.remove(i);
                    }
                }
                configs.insert(name.to_string(), parts.join(","));
            }
            other => {
                return Err((
                    E::InvalidRequest.code(),
                    format!("Unknown alter configs operation type {other}"),
                ))
            }
        }
    }
    Ok(configs)
}

pub async fn incremental_alter(
    broker: &Arc<Broker>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    // ConfigAdminManager.preprocess: a resource named twice fails both entries.
    let mut counts = std::collections::HashMap::new();
    for r in &req.resources {
        *counts
            .entry((r.resource_type, r.resource_name.to_string()))
            .or_insert(0) += 1;
    }
    let mut responses = Vec::new();
    for r in req.resources {
        let duplicated = counts[&(r.resource_type, r.resource_name.to_string())] > 1;
        let (code, msg) = if duplicated {
            (
                E::InvalidRequest.code(),
                Some("Each resource must appear at most once.".to_string()),
            )
        } else if r.resource_type != RESOURCE_TOPIC {
            apply(
                broker,
                r.resource_type,
                r.resource_name.as_str(),
                TopicOverrides::new(),
                req.validate_only,
            )
            .await
        } else {
            match broker.topics.get(r.resource_name.as_str()) {
                None => (E::UnknownTopicOrPartition.code(), None),
                Some(topic) => {
                    let current = topic.meta.read().configs.clone();
                    match apply_ops(broker, current, &r.configs) {
                        Err((code, m)) => (code, Some(m)),
                        Ok(configs) => {
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
