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
use crate::topic_config::{self, describe_value, TOPIC_CONFIGS};
use crate::topics::{validate_topic_name, TopicError};

/// Kafka's config source code for a topic override, and for a default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// `Errors.UNKNOWN_TOPIC_ID.message()`, which the controller's ApiError carries.
const UNKNOWN_TOPIC_ID_MESSAGE: &str = "This server does not host this topic ID.";

/// Names that appear more than once in a request (ControllerApis answers each once with
/// INVALID_REQUEST "Duplicate topic name." and leaves them out of the real work).
fn duplicated<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut dups = Vec::new();
    for n in names {
        if !seen.insert(n) && !dups.iter().any(|d: &String| d == n) {
            dups.push(n.to_string());
        }
    }
    dups
}

/// The broker ids a manual assignment may name: this node, or (cluster mode) every registered
/// broker.
fn registered_brokers(broker: &Broker) -> Vec<i32> {
    match broker.cluster.get() {
        Some(c) => c.image().brokers.keys().copied().collect(),
        None => vec![broker.node_id()],
    }
}

/// ReplicationControlManager.validateManualPartitionAssignment for one partition's replica
/// list.
fn check_replicas(
    broker_ids: &[i32],
    registered: &[i32],
    replication: Option<usize>,
) -> Result<(), String> {
    if broker_ids.is_empty() {
        return Err("The manual partition assignment includes an empty replica list.".into());
    }
    let mut sorted = broker_ids.to_vec();
    sorted.sort_unstable();
    let mut prev = None;
    for id in &sorted {
        if !registered.contains(id) {
            return Err(format!(
                "The manual partition assignment includes broker {id}, but no such broker is registered."
            ));
        }
        if prev == Some(*id) {
            return Err(format!(
                "The manual partition assignment includes the broker {id} more than once."
            ));
        }
        prev = Some(*id);
    }
    if let Some(rf) = replication.filter(|rf| *rf != sorted.len()) {
        return Err(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
            sorted.len()
        ));
    }
    Ok(())
}

/// One topic of CreateTopics in cluster mode: through the metadata quorum, replicas spread
/// over the live brokers.
async fn create_replicated(
    broker: &Broker,
    cluster: &crate::cluster::Cluster,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    configs: BTreeMap<String, String>,
    assigned: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<CreatableTopicResult, (i16, String)> {
    use crate::cluster::CreateError;
    let name = t.name.0.to_string();
    if cluster.image().topics.contains_key(&name) {
        let e = TopicError::AlreadyExists(name);
        return Err((e.code(), e.to_string()));
    }
    let result = |id: Uuid, partitions: i32, rf: i16| {
        CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_topic_id(id)
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    };
    let created = if let Some(assignments) = assigned {
        let (partitions, rf) = (assignments.len() as i32, assignments[0].len() as i16);
        if validate_only {
            return Ok(result(Uuid::nil(), partitions, rf));
        }
        cluster
            .create_topic_assigned(broker, &name, assignments, configs)
            .await
            .map(|id| result(id, partitions, rf))
    } else {
        if t.replication_factor < -1 || t.replication_factor == 0 {
            return Err((
                E::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
        }
        if t.num_partitions < -1 || t.num_partitions == 0 {
            return Err((
                E::InvalidPartitions.code(),
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        let rf = if t.replication_factor == -1 {
            broker.config.default_replication_factor
        } else {
            t.replication_factor
        };
        let partitions = if t.num_partitions == -1 {
            broker.config.num_partitions
        } else {
            t.num_partitions
        };
        let live = cluster.image().live_brokers().len();
        if rf as usize > live {
            return Err((
                E::InvalidReplicationFactor.code(),
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {live} broker(s) are registered."),
            ));
        }
        if validate_only {
            return Ok(result(Uuid::nil(), partitions, rf));
        }
        cluster
            .create_topic(broker, &name, partitions, rf as usize, configs)
            .await
            .map(|id| result(id, partitions, rf))
    };
    match created {
        Ok(r) => Ok(r),
        Err(CreateError::Exists) => {
            let e = TopicError::AlreadyExists(name);
            Err((e.code(), e.to_string()))
        }
        Err(CreateError::ReplicationFactor(m)) => Err((E::InvalidReplicationFactor.code(), m)),
        Err(e @ CreateError::Quorum(_)) => Err((E::RequestTimedOut.code(), e.to_string())),
    }
}

/// A CreateTopics manual assignment checked as ReplicationControlManager.createTopic does:
/// each partition's replicas, in partition order.
fn manual_assignments(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    registered: &[i32],
) -> Result<Vec<Vec<i32>>, (i16, String)> {
    if t.replication_factor != -1 {
        return Err((E::InvalidRequest.code(), "A manual partition assignment was specified, but replication factor was not set to -1.".into()));
    }
    if t.num_partitions != -1 {
        return Err((
            E::InvalidRequest.code(),
            "A manual partition assignment was specified, but numPartitions was not set to -1."
                .into(),
        ));
    }
    let bad = |m: String| (E::InvalidReplicaAssignment.code(), m);
    let mut by_index = BTreeMap::new();
    let mut replication = None;
    for a in &t.assignments {
        if by_index.contains_key(&a.partition_index) {
            return Err(bad(format!(
                "Found multiple manual partition assignments for partition {}",
                a.partition_index
            )));
        }
        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
        check_replicas(&ids, registered, replication).map_err(bad)?;
        replication = Some(ids.len());
        by_index.insert(a.partition_index, ids);
    }
    let count = t.assignments.len() as i32;
    if (0..count).any(|i| !by_index.contains_key(&i)) {
        return Err(bad(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    Ok(by_index.into_values().collect())
}

/// CreateTopics in the order of ControllerApis.createTopics and
/// ReplicationControlManager.createTopics: duplicates, the name, existence, the configs, then
/// assignments, replication factor and partition count.
pub async fn create_topics(
    broker: &Arc<Broker>,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let duplicates = duplicated(req.topics.iter().map(|t| t.name.0.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        if duplicates.contains(&name) {
            continue;
        }
        let fail = |code: i16, msg: String| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(Some(sb(msg)))
        };
        if let Err(e) = validate_topic_name(&name) {
            results.push(fail(e.code(), e.to_string()));
            continue;
        }
        if broker.topics.get(&name).is_some() {
            let e = TopicError::AlreadyExists(name.clone());
            results.push(fail(e.code(), e.to_string()));
            continue;
        }
        if let Some(other) = broker.topics.colliding(&name) {
            results.push(fail(
                E::InvalidTopicException.code(),
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
            continue;
        }
        let mut configs = BTreeMap::new();
        let mut config_error = None;
        for c in &t.configs {
            let result = match &c.value {
                Some(v) => topic_config::validate(c.name.as_str(), v.as_str())
                    .map(|()| configs.insert(c.name.to_string(), v.to_string())),
                None => Err(format!(
                    "Null value not supported for topic configs: {}",
                    c.name.as_str()
                )),
            };
            if let Err(msg) = result {
                config_error = Some(msg);
                break;
            }
        }
        if let Some(msg) = config_error {
            results.push(fail(E::InvalidConfig.code(), msg));
            continue;
        }
        let assigned = if t.assignments.is_empty() {
            None
        } else {
            match manual_assignments(&t, &registered_brokers(broker)) {
                Ok(a) => Some(a),
                Err((code, m)) => {
                    results.push(fail(code, m));
                    continue;
                }
            }
        };
        if let Some(cluster) = broker.cluster.get() {
            results.push(
                create_replicated(broker, cluster, &t, configs, assigned, req.validate_only)
                    .await
                    .unwrap_or_else(|(code, msg)| fail(code, msg)),
            );
            continue;
        }
        let partitions = if let Some(assigned) = &assigned {
            assigned.len() as i32
        } else if t.replication_factor < -1 || t.replication_factor == 0 {
            results.push(fail(
                E::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
            continue;
        } else if t.num_partitions < -1 || t.num_partitions == 0 {
            results.push(fail(
                E::InvalidPartitions.code(),
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
            continue;
        } else if t.replication_factor > 1 {
            let rf = t.replication_factor;
            results.push(fail(
                E::InvalidReplicationFactor.code(),
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
            ));
            continue;
        } else {
            t.num_partitions
        };
        match broker
            .topics
            .create(&name, partitions, configs, req.validate_only)
            .await
        {
            Ok(topic) => {
                let meta = topic.meta.read().clone();
                // A validate-only answer carries the id the topic would have had: the
                // controller builds the same result and only drops its records.
                let mut r = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_topic_id(meta.topic_id)
                    .with_num_partitions(meta.partitions)
                    .with_replication_factor(1);
                if version >= 5 {
                    // computeEffectiveTopicConfigs, sorted by name.
                    let mut names: Vec<&str> = TOPIC_CONFIGS.iter().map(|(n, _)| *n).collect();
                    names.sort_unstable();
                    let configs = names
                        .into_iter()
                        .map(|n| {
                            let (value, is_default) =
                                describe_value(&broker.config, &meta.configs, n);
                            CreatableTopicConfigs::default()
                                .with_name(sb(n))
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
    for name in duplicates {
        results.push(
            CreatableTopicResult::default()
                .with_name(super::topic_name(name))
                .with_error_code(E::InvalidRequest.code())
                .with_error_message(Some(sb("Duplicate topic name."))),
        );
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// DeleteTopics as ControllerApis.deleteTopics resolves names and ids: one of the two per
/// entry, no duplicates, a name mapping to an id also given is refused; a deleted topic is
/// answered with both its name and id.
pub async fn delete_topics(
    broker: &Arc<Broker>,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let mut responses = Vec::new();
    let answer = |name: Option<String>, id: Uuid, code: i16, msg: Option<&str>| {
        DeletableTopicResult::default()
            .with_name(name.map(super::topic_name))
            .with_topic_id(id)
            .with_error_code(code)
            .with_error_message(msg.map(sb))
    };
    // (name, id) as given; v0-5 only have names.
    let given: Vec<(Option<String>, Uuid)> = if version >= 6 {
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
    let mut names: Vec<String> = Vec::new();
    let mut ids: Vec<Uuid> = Vec::new();
    for (name, id) in &given {
        match (name, id.is_nil()) {
            (None, true) => responses.push(answer(
                None,
                Uuid::nil(),
                E::InvalidRequest.code(),
                Some("Neither topic name nor id were specified."),
            )),
            (None, false) => ids.push(*id),
            (Some(n), true) => names.push(n.clone()),
            (Some(n), false) => responses.push(answer(
                Some(n.clone()),
                *id,
                E::InvalidRequest.code(),
                Some("You may not specify both topic name and topic id."),
            )),
        }
    }
    let dup_names = duplicated(names.iter().map(String::as_str));
    let mut seen_ids = HashSet::new();
    let mut dup_ids = Vec::new();
    for id in &ids {
        if !seen_ids.insert(*id) && !dup_ids.contains(id) {
            dup_ids.push(*id);
        }
    }
    // Resolve ids to names, then names to ids; `targets` is what will be deleted.
    let mut targets: Vec<(String, Uuid)> = Vec::new();
    for id in ids.iter().filter(|id| !dup_ids.contains(id)) {
        if targets.iter().any(|(_, t)| t == id) {
            continue;
        }
        match broker.topics.get_by_id(*id) {
            Some(t) => targets.push((t.name(), *id)),
            None => responses.push(answer(
                None,
                *id,
                E::UnknownTopicId.code(),
                Some(UNKNOWN_TOPIC_ID_MESSAGE),
            )),
        }
    }
    let mut unique_names: Vec<&String> = Vec::new();
    for n in names.iter().filter(|n| !dup_names.contains(n)) {
        if !unique_names.contains(&n) {
            unique_names.push(n);
        }
    }
    for n in unique_names {
        match broker.topics.get(n) {
            None => {
                let e = TopicError::UnknownTopic;
                responses.push(answer(
                    Some(n.clone()),
                    Uuid::nil(),
                    e.code(),
                    Some(&e.to_string()),
                ));
            }
            Some(t) => {
                let id = t.id();
                if let Some(i) = targets.iter().position(|(_, tid)| *tid == id) {
                    targets.remove(i);
                    responses.push(answer(
                        Some(n.clone()),
                        id,
                        E::InvalidRequest.code(),
                        Some("The provided topic name maps to an ID that was already supplied."),
                    ));
                } else {
                    targets.push((n.clone(), id));
                }
            }
        }
    }
    for n in dup_names {
        responses.push(answer(
            Some(n),
            Uuid::nil(),
            E::InvalidRequest.code(),
            Some("Duplicate topic name."),
        ));
    }
    for id in dup_ids {
        responses.push(answer(
            None,
            id,
            E::InvalidRequest.code(),
            Some("Duplicate topic id."),
        ));
    }
    for (name, id) in targets {
        // The registry drops the topic's committed offsets too (see `TopicHooks`); in
        // cluster mode every node's reconciler deletes it once the log says so.
        let deleted = if broker.cluster.get().is_some() {
            crate::cluster::topics::delete(broker, &name, id).await
        } else {
            broker.topics.delete(&name).await
        };
        let entry = match deleted {
            Ok(deleted_id) => answer(Some(name), deleted_id, 0, None),
            Err(e) => answer(Some(name), id, e.code(), Some(&e.to_string())),
        };
        responses.push(entry);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// CreatePartitions as ControllerApis and ReplicationControlManager.createPartitions answer.
pub async fn create_partitions(
    broker: &Arc<Broker>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let duplicates = duplicated(req.topics.iter().map(|t| t.name.0.as_str()));
    let mut results = Vec::with_capacity(req.topics.len());
    for name in &duplicates {
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(super::topic_name(name.clone()))
                .with_error_code(E::InvalidRequest.code())
                .with_error_message(Some(sb("Duplicate topic name."))),
        );
    }
    for t in req.topics {
        if duplicates.iter().any(|d| d == t.name.0.as_str()) {
            continue;
        }
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let fail = |code: i16, msg: Option<String>| {
            r.clone()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
        };
        let Some(topic) = broker.topics.get(t.name.0.as_str()) else {
            // UnknownTopicOrPartitionException() carries no message.
            results.push(fail(E::UnknownTopicOrPartition.code(), None));
            continue;
        };
        let current = topic.partition_count();
        let clustered = broker.cluster.get().is_some();
        // The replicas each new partition has: the topic's first partition's count.
        let replication = match broker.cluster.get() {
            Some(c) => c
                .image()
                .topics
                .get(t.name.0.as_str())
                .and_then(|i| i.partitions.first())
                .map_or(1, |p| p.replicas.len()),
            None => 1,
        };
        let mut assigned = None;
        if t.count > current {
            if let Some(assignments) = &t.assignments {
                let registered = registered_brokers(broker);
                let additional = t.count as i64 - current as i64;
                let bad = if assignments.len() as i64 != additional {
                    Some(format!(
                        "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                        assignments.len()
                    ))
                } else {
                    assignments.iter().find_map(|a| {
                        let ids: Vec<i32> = a.broker_ids.iter().map(|b| b.0).collect();
                        check_replicas(&ids, &registered, Some(replication)).err()
                    })
                };
                if let Some(m) = bad {
                    results.push(fail(E::InvalidReplicaAssignment.code(), Some(m)));
                    continue;
                }
                assigned = Some(
                    assignments
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect(),
                );
            }
        }
        let name = t.name.0.as_str();
        // Cluster mode checks here, then changes every node through the metadata log.
        let validate_here = req.validate_only || clustered;
        let mut outcome = broker
            .topics
            .create_partitions(name, t.count, validate_here)
            .await;
        if outcome.is_ok() && clustered && !req.validate_only {
            outcome =
                crate::cluster::topics::create_partitions(broker, name, t.count, assigned).await;
        }
        let r = match outcome {
            Ok(()) => r,
            Err(e) => fail(e.code(), Some(e.to_string())),
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
            let compact_only = topic
                .as_ref()
                .is_some_and(|t| broker.topics.effective_config(t).compact);
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
                    // Partition.deleteRecordsOnLeader: only topics whose cleanup.policy
                    // includes "delete" may have records deleted.
                    if compact_only {
                        return r.with_error_code(E::PolicyViolation.code());
                    }
                    // The log finds its files itself (a delete that ran since `get` points it at
                    // the trash), so this never touches a re-created topic's directory.
                    let Ok(mut state) = partition.lock() else {
                        return r.with_error_code(E::KafkaStorageError.code());
                    };
                    // Kafka refuses offsets past the high watermark; -1 means "up to it".
                    let end = state.high_watermark();
                    let target = if p.offset == -1 { end } else { p.offset };
                    if target < 0 || target > end {
                        return r.with_error_code(E::OffsetOutOfRange.code());
                    }
                    // Writes and fsyncs the log-start-offset file, and may delete segments.
                    match crate::blocking::off_worker(|| state.log.delete_records_before(target)) {
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
