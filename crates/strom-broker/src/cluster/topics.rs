//! Topic creation in cluster mode goes through the metadata quorum (any node forwards it to the
//! raft leader); the reconciler then makes the local files on every node.

use std::sync::Arc;

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
