//! Topic changes in cluster mode go through the metadata quorum (any node forwards them to the
//! raft leader): creation, deletion, new partitions and config changes. The reconciler then
//! changes the local files on every node; the calls here answer once this node has done so
//! (bounded), so a client that asks this node again sees its own change.

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_cluster::{Command, CommandResult};
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::CreateError;
use crate::topics::{validate_topic_name, Topic, TopicError};

/// Metadata's auto-creation (`auto.create.topics.enable`) with `num.partitions` and
/// `default.replication.factor`.
pub async fn get_or_auto_create(broker: &Broker, name: &str) -> Result<Arc<Topic>, TopicError> {
    let Some(cluster) = broker.cluster.get() else {
        return broker.topics.get_or_auto_create(name).await;
    };
    if cluster.image().topics.contains_key(name) {
        return broker.topics.get(name).ok_or(TopicError::UnknownTopic);
    }
    validate_topic_name(name)?;
    let created = cluster
        .create_topic(
            broker,
            name,
            broker.config.num_partitions,
            broker.config.default_replication_factor as usize,
            Default::default(),
        )
        .await;
    match created {
        Ok(_) | Err(CreateError::Exists) => broker.topics.get(name).ok_or(TopicError::UnknownTopic),
        Err(e) => Err(TopicError::InvalidConfig(e.to_string())),
    }
}

/// A topic made through the quorum with `default.replication.factor` replicas (the JSON
/// protocol's and the HTTP console's create), answered once this node has it.
pub async fn create(
    broker: &Broker,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
) -> Result<Arc<Topic>, TopicError> {
    let cluster = broker.cluster.get().ok_or(TopicError::UnknownTopic)?;
    validate_topic_name(name)?;
    // The local checks of partitions and configs, without making anything.
    broker
        .topics
        .create_with_id(name, partitions, configs.clone(), true, None)
        .await?;
    let partitions = if partitions == -1 {
        broker.config.num_partitions
    } else {
        partitions
    };
    let rf = broker.config.default_replication_factor as usize;
    match cluster
        .create_topic(broker, name, partitions, rf, configs)
        .await
    {
        Ok(_) => broker.topics.get(name).ok_or(TopicError::UnknownTopic),
        Err(CreateError::Exists) => Err(TopicError::AlreadyExists(name.to_string())),
        Err(CreateError::ReplicationFactor(m)) => Err(TopicError::InvalidReplicationFactor(m)),
        Err(e @ CreateError::Quorum(_)) => Err(TopicError::QuorumUnavailable(e.to_string())),
    }
}

/// How long a change waits for this node's reconciler to apply it locally.
const LOCAL_APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits (bounded) until `applied` holds for this node's local topics.
async fn until_applied(applied: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + LOCAL_APPLY_WAIT;
    while !applied() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Proposes `command`; a refusal in the log (the topic went meanwhile) is UNKNOWN_TOPIC.
async fn propose(cluster: &crate::cluster::Cluster, command: Command) -> Result<(), TopicError> {
    match cluster.node.propose(command).await {
        Ok(CommandResult::Done) => Ok(()),
        Ok(CommandResult::Refused(_)) => Err(TopicError::UnknownTopic),
        Err(e) => Err(TopicError::QuorumUnavailable(format!(
            "metadata quorum unavailable: {e}"
        ))),
    }
}

/// CreatePartitions in cluster mode, after the local checks passed: the new partitions get the
/// replicas the request assigned (checked by the caller), or replicas round-robin over the
/// live brokers, as many as the topic's first partition has.
pub async fn create_partitions(
    broker: &Broker,
    name: &str,
    count: i32,
    assigned: Option<Vec<Vec<i32>>>,
) -> Result<(), TopicError> {
    let cluster = broker.cluster.get().ok_or(TopicError::UnknownTopic)?;
    let image = cluster.image();
    let topic = image.topics.get(name).ok_or(TopicError::UnknownTopic)?;
    let current = topic.partitions.len() as i32;
    let rf = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let assignments = match assigned {
        Some(a) => a,
        None => strom_cluster::image::assign_replicas_from(
            &image.live_brokers(),
            current,
            count - current,
            rf,
        )
        .map_err(TopicError::InvalidReplicationFactor)?,
    };
    let command = Command::CreatePartitions {
        name: name.to_string(),
        assignments,
    };
    propose(cluster, command).await?;
    until_applied(|| {
        broker
            .topics
            .get(name)
            .is_some_and(|t| t.partition_count() >= count)
    })
    .await;
    Ok(())
}

/// AlterConfigs in cluster mode, after the local checks passed: the topic's whole new set
/// of overrides goes through the log.
pub async fn alter_configs(
    broker: &Broker,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<(), TopicError> {
    let cluster = broker.cluster.get().ok_or(TopicError::UnknownTopic)?;
    let command = Command::AlterTopicConfigs {
        name: name.to_string(),
        configs: configs.clone(),
    };
    propose(cluster, command).await?;
    until_applied(|| {
        broker
            .topics
            .get(name)
            .is_some_and(|t| t.meta.read().configs == configs)
    })
    .await;
    Ok(())
}

/// DeleteTopics in cluster mode: the topic leaves the image and every node deletes its files.
pub async fn delete(broker: &Broker, name: &str, id: Uuid) -> Result<Uuid, TopicError> {
    let cluster = broker.cluster.get().ok_or(TopicError::UnknownTopic)?;
    if !cluster.image().topics.contains_key(name) {
        return Err(TopicError::UnknownTopic);
    }
    propose(
        cluster,
        Command::DeleteTopic {
            name: name.to_string(),
        },
    )
    .await?;
    until_applied(|| broker.topics.get(name).is_none_or(|t| t.id() != id)).await;
    Ok(id)
}
