//! Applies each new metadata image to this node: creates the local files of new topics,
//! deletes those of deleted ones, and sets each partition's role (leader, follower, or not a
//! replica) with its leader epoch and ISR. A new leader epoch on a follower starts a fetcher
//! for it; the old fetcher sees the change and stops.
//!
//! Nothing happens before this start's registration is in the log, so a restarted node never
//! acts on a leadership the image gave it before the restart (its registration moves it away).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use strom_cluster::{MetadataImage, PartitionImage, NO_LEADER};

use super::state::ReplicaState;
use crate::broker::Broker;
use crate::partition::Partition;

pub async fn run(broker: Arc<Broker>) {
    let Some(cluster) = broker.cluster.get().cloned() else {
        return;
    };
    cluster.node.wait_registered().await;
    let mut rx = cluster.node.subscribe();
    let mut previous: Option<Arc<MetadataImage>> = None;
    loop {
        let image = rx.borrow_and_update().clone();
        apply(&broker, &image, previous.as_deref()).await;
        previous = Some(image);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = broker.shutting_down() => return,
        }
    }
}

async fn apply(broker: &Arc<Broker>, image: &MetadataImage, previous: Option<&MetadataImage>) {
    super::shared_docs::apply_image(broker, image);
    let me = broker.node_id();
    for (name, topic) in &image.topics {
        let local = match broker.topics.get(name) {
            Some(local) if local.id() == topic.topic_id => local,
            Some(local) => {
                tracing::error!(topic = %name, local_id = %local.id(), cluster_id = %topic.topic_id, "a local topic of this name has another id; leaving it alone");
                continue;
            }
            None => {
                let made = broker
                    .topics
                    .create_with_id(
                        name,
                        topic.partitions.len() as i32,
                        topic.configs.clone(),
                        false,
                        Some(topic.topic_id),
                    )
                    .await;
                match made {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(topic = %name, error = %e, "cannot create the local files of a replicated topic");
                        continue;
                    }
                }
            }
        };
        let wanted = topic.partitions.len() as i32;
        if local.partition_count() < wanted {
            // CreatePartitions went through the log.
            if let Err(e) = broker.topics.create_partitions(name, wanted, false).await {
                tracing::error!(topic = %name, error = %e, "cannot create the local files of new partitions");
            }
        }
        let configs = crate::topics::without_removed(topic.configs.clone());
        if local.meta.read().configs != configs {
            // AlterConfigs went through the log.
            if let Err(e) = broker.topics.alter_configs(name, configs, false).await {
                tracing::error!(topic = %name, error = %e, "cannot apply the topic's new configs");
            }
        }
        for (i, p) in topic.partitions.iter().enumerate() {
            if let Some(partition) = local.partition(i as i32) {
                set_role(broker, &partition, p, me);
                let leads = p.leader == me;
                if name == super::groups::OFFSETS_TOPIC {
                    super::groups::on_role(broker, &partition, leads, p.leader_epoch);
                } else if name == super::txns::TXN_TOPIC {
                    super::txns::on_role(broker, &partition, leads, p.leader_epoch);
                }
            }
        }
    }
    // Only topics this node saw in the image and that left it are deleted: an image replayed
    // at start before the log is fully applied never deletes anything.
    if let Some(previous) = previous {
        for (name, topic) in &previous.topics {
            if image.topics.contains_key(name) {
                continue;
            }
            if broker
                .topics
                .get(name)
                .is_some_and(|t| t.id() == topic.topic_id)
            {
                if let Err(e) = broker.topics.delete(name).await {
                    tracing::error!(topic = %name, error = %e, "cannot delete a topic the quorum deleted");
                }
            }
        }
    }
}

fn set_role(broker: &Arc<Broker>, partition: &Arc<Partition>, p: &PartitionImage, me: i32) {
    let start_fetcher = {
        let Ok(mut state) = partition.lock() else {
            return;
        };
        let known_hw = state.high_watermark();
        match &mut state.replica {
            Some(r) if r.leader == p.leader && r.leader_epoch == p.leader_epoch => {
                r.isr = p.isr.clone();
                r.replicas = p.replicas.clone();
                false
            }
            _ => {
                tracing::info!(
                    topic = %partition.topic,
                    partition = partition.index,
                    leader = p.leader,
                    epoch = p.leader_epoch,
                    role = if p.leader == me { "leader" } else if p.replicas.contains(&me) { "follower" } else { "none" },
                    "partition role changed"
                );
                state.replica = Some(Box::new(ReplicaState {
                    me,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr.clone(),
                    replicas: p.replicas.clone(),
                    followers: HashMap::new(),
                    high_watermark: known_hw,
                    since: Instant::now(),
                }));
                p.leader != me && p.leader != NO_LEADER && p.replicas.contains(&me)
            }
        }
    };
    // A new ISR or role can move the high watermark, or end waits for acks=all.
    partition.appended.notify_waiters();
    if start_fetcher {
        tokio::spawn(super::fetcher::run(
            broker.clone(),
            partition.clone(),
            p.leader,
            p.leader_epoch,
        ));
    }
}
