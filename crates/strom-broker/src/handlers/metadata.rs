//! Metadata and DescribeCluster: this broker is the leader of every partition.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError;
use uuid::Uuid;

use super::authz::Authz;
use super::{sb, topic_name};
use crate::broker::{Broker, RequestContext};
use crate::topics::{Topic, TopicError};

/// Kafka's "authorized operations were not requested" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// `AclOperation` codes, for the authorized-operations bit fields (bit = code).
const OP_READ: u8 = 3;
const OP_WRITE: u8 = 4;
const OP_CREATE: u8 = 5;
const OP_DELETE: u8 = 6;
const OP_ALTER: u8 = 7;
const OP_DESCRIBE: u8 = 8;
const OP_CLUSTER_ACTION: u8 = 9;
const OP_DESCRIBE_CONFIGS: u8 = 10;
const OP_ALTER_CONFIGS: u8 = 11;
const OP_IDEMPOTENT_WRITE: u8 = 12;

const fn bits(ops: &[u8]) -> i32 {
    let mut field = 0i32;
    let mut i = 0;
    while i < ops.len() {
        field |= 1 << ops[i];
        i += 1;
    }
    field
}

/// With no authorizer, Kafka's `AuthHelper.authorizedOperations` reports every operation
/// `AclEntry.supportedOperations` lists for the resource type.
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = bits(&[
    OP_READ,
    OP_WRITE,
    OP_CREATE,
    OP_DESCRIBE,
    OP_DELETE,
    OP_ALTER,
    OP_DESCRIBE_CONFIGS,
    OP_ALTER_CONFIGS,
]);
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = bits(&[
    OP_CREATE,
    OP_CLUSTER_ACTION,
    OP_DESCRIBE_CONFIGS,
    OP_ALTER_CONFIGS,
    OP_IDEMPOTENT_WRITE,
    OP_ALTER,
    OP_DESCRIBE,
]);
/// The topic operations the principal may do, as Kafka's `AuthHelper.authorizedOperations`.
fn topic_authorized_operations(authz: &Authz, name: &str) -> i32 {
    if !authz.enforcing() {
        return TOPIC_AUTHORIZED_OPERATIONS;
    }
    (0..32)
        .filter(|op| TOPIC_AUTHORIZED_OPERATIONS & (1 << op) != 0)
        .filter(|op| authz.topic(*op as i8, name))
        .fold(0, |bits, op| bits | (1 << op))
}

fn cluster_authorized_operations(authz: &Authz) -> i32 {
    if !authz.enforcing() {
        return CLUSTER_AUTHORIZED_OPERATIONS;
    }
    (0..32)
        .filter(|op| CLUSTER_AUTHORIZED_OPERATIONS & (1 << op) != 0)
        .filter(|op| authz.cluster(*op as i8))
        .fold(0, |bits, op| bits | (1 << op))
}

/// DescribeCluster's endpoint type for brokers (KIP-919); a broker serves no other.
const ENDPOINT_TYPE_BROKER: i8 = 1;

/// A topic as the metadata image describes it (cluster mode): every replica, the leader and
/// its epoch, the ISR; a partition without a leader is LEADER_NOT_AVAILABLE.
fn cluster_topic_entry(
    image: &strom_cluster::MetadataImage,
    topic: &Topic,
) -> Option<MetadataResponseTopic> {
    let name = topic.name();
    let t = image.topics.get(&name)?;
    let ids = |v: &[i32]| v.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|r| image.brokers.get(r).is_none_or(|b| b.fenced))
                .collect();
            let entry = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline));
            if p.leader == strom_cluster::NO_LEADER {
                entry.with_error_code(ResponseError::LeaderNotAvailable.code())
            } else {
                entry
            }
        })
        .collect();
    Some(
        MetadataResponseTopic::default()
            .with_is_internal(crate::cluster::is_internal_topic(&name))
            .with_name(Some(topic_name(name)))
            .with_topic_id(t.topic_id)
            .with_partitions(partitions)
            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
    )
}

fn topic_entry(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    if let Some(cluster) = broker.cluster.get() {
        if let Some(entry) = cluster_topic_entry(&cluster.image(), topic) {
            return entry;
        }
        // Local files the quorum does not know (yet): nobody serves them.
        return error_entry(
            Some(topic.name()),
            topic.id(),
            ResponseError::UnknownTopicOrPartition.code(),
        );
    }
    let node = BrokerId(broker.node_id());
    let partitions = topic
        .partitions
        .read()
        .iter()
        .map(|p| {
            let entry = MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if p.lock().is_ok() {
                return entry;
            }
            // A partition whose only replica's log is offline (failed disk, damaged log) has
            // no leader: Kafka answers LEADER_NOT_AVAILABLE, leader -1, and lists the replica
            // as offline, so clients neither write to it nor give up on the topic.
            entry
                .with_error_code(ResponseError::LeaderNotAvailable.code())
                .with_leader_id(BrokerId(-1))
                .with_offline_replicas(vec![node])
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

pub async fn handle(
    broker: &Arc<Broker>,
    req: MetadataRequest,
    version: i16,
    ctx: &RequestContext,
) -> MetadataResponse {
    // KafkaApis.handleTopicMetadataRequest: v10 and v11 have the fields but not the feature;
    // a null name or a topic id there fails the whole request, each topic INVALID_REQUEST.
    if version < 12 {
        if let Some(list) = &req.topics {
            if list
                .iter()
                .any(|t| t.name.is_none() || !t.topic_id.is_nil())
            {
                let topics = list
                    .iter()
                    .map(|t| {
                        error_entry(
                            Some(t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default()),
                            t.topic_id,
                            ResponseError::InvalidRequest.code(),
                        )
                    })
                    .collect();
                return MetadataResponse::default().with_topics(topics);
            }
        }
    }
    let authz = Authz::new(broker, ctx);
    let with_topic_ops = version >= 8 && req.include_topic_authorized_operations;
    let cluster_ops = if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        cluster_authorized_operations(&authz)
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let entry = |topic: &Topic| {
        let e = topic_entry(broker, topic);
        if with_topic_ops {
            e.with_topic_authorized_operations(topic_authorized_operations(&authz, &topic.name()))
        } else {
            e
        }
    };
    // Topics the principal may not DESCRIBE: left out of "all topics", refused when named.
    let describable = |name: &str| !authz.enforcing() || authz.topic(OP_DESCRIBE as i8, name);
    let denied_entry = |name: Option<String>, id: Uuid| {
        error_entry(name, id, ResponseError::TopicAuthorizationFailed.code())
    };
    let (brokers, controller) = brokers_and_controller(broker, ctx);
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
            .filter(|t| describable(&t.name()))
            .map(|t| entry(t))
            .filter(|e| e.error_code == 0 || broker.cluster.get().is_none())
            .collect(),
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            // Kafka collects the requested names and ids into sets: one entry each.
            let mut seen_names = std::collections::HashSet::new();
            let mut seen_ids = std::collections::HashSet::new();
            for mut t in list {
                // v12+: a topic id, when given, names the topic; the name is ignored (the
                // Java admin sends an empty name with describeTopics(TopicCollection.ofTopicIds)).
                if !t.topic_id.is_nil() {
                    t.name = None;
                }
                let fresh = match &t.name {
                    Some(n) => seen_names.insert(n.0.to_string()),
                    None => seen_ids.insert(t.topic_id),
                };
                if !fresh {
                    continue;
                }
                let entry = match t.name {
                    Some(name) if !describable(name.0.as_str()) => {
                        denied_entry(Some(name.0.to_string()), Uuid::nil())
                    }
                    Some(name) => {
                        let name = name.0.to_string();
                        // Auto-creation needs CREATE on the cluster or the topic; without
                        // it a missing topic is TOPIC_AUTHORIZATION_FAILED even for a
                        // principal with WRITE (KafkaApis' unauthorizedForCreateTopics).
                        let may_create = || {
                            !authz.enforcing()
                                || authz.cluster(OP_CREATE as i8)
                                || authz.topic(OP_CREATE as i8, &name)
                        };
                        if auto_create && broker.topics.get(&name).is_none() && !may_create() {
                            out.push(denied_entry(Some(name), Uuid::nil()));
                            continue;
                        }
                        let found = if auto_create && broker.cluster.get().is_some() {
                            crate::cluster::topics::get_or_auto_create(broker, &name).await
                        } else if auto_create {
                            broker.topics.get_or_auto_create(&name).await
                        } else {
                            // Without auto-creation Kafka still validates the name, so an
                            // illegal one is INVALID_TOPIC_EXCEPTION, not unknown.
                            broker.topics.get(&name).ok_or_else(|| {
                                match crate::topics::validate_topic_name(&name) {
                                    Err(e) => e,
                                    Ok(()) => TopicError::UnknownTopic,
                                }
                            })
                        };
                        match found {
                            Ok(topic) => entry(&topic),
                            Err(TopicError::InvalidTopic(_)) => error_entry(
                                Some(name),
                                Uuid::nil(),
                                ResponseError::InvalidTopicException.code(),
                            ),
                            Err(e) => error_entry(Some(name), Uuid::nil(), e.code()),
                        }
                    }
                    None => match broker.topics.get_by_id(t.topic_id) {
                        Some(topic) if !describable(&topic.name()) => {
                            denied_entry(None, t.topic_id)
                        }
                        Some(topic) => entry(&topic),
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
        .with_cluster_id(Some(sb(broker.cluster_id())))
        .with_controller_id(BrokerId(controller))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops)
}

/// The address of the listener the client came in on.
pub fn advertised(broker: &Broker, ctx: &RequestContext) -> (String, i32) {
    ctx.advertised
        .clone()
        .unwrap_or_else(|| broker.config.advertised())
}

/// The brokers clients may use and the controller: this node alone, or (cluster mode) every
/// live broker of the image and the metadata quorum's leader.
/// A single node answers with the address of the listener the client came in on; cluster
/// nodes register one address each, so there every listener sees those.
fn brokers_and_controller(
    broker: &Broker,
    ctx: &RequestContext,
) -> (Vec<MetadataResponseBroker>, i32) {
    if let Some(cluster) = broker.cluster.get() {
        let image = cluster.image();
        let brokers = image
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, b)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(*id))
                    .with_host(sb(b.host.clone()))
                    .with_port(b.port)
            })
            .collect();
        let controller = cluster.node.leader().map_or(-1, |l| l as i32);
        return (brokers, controller);
    }
    let (host, port) = advertised(broker, ctx);
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(sb(host))
        .with_port(port)];
    (brokers, broker.node_id())
}

pub fn describe_cluster(
    broker: &Arc<Broker>,
    req: DescribeClusterRequest,
    version: i16,
    ctx: &RequestContext,
) -> DescribeClusterResponse {
    // KafkaApis.handleDescribeCluster: a broker listener only describes brokers.
    if version >= 1 && req.endpoint_type != ENDPOINT_TYPE_BROKER {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(sb("The broker only supports endpoint type BROKER")))
            .with_endpoint_type(req.endpoint_type)
            .with_cluster_id(sb(broker.cluster_id()))
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    let cluster_ops = if req.include_cluster_authorized_operations {
        cluster_authorized_operations(&Authz::new(broker, ctx))
    } else {
        AUTHORIZED_OPERATIONS_OMITTED
    };
    let (brokers, controller) = brokers_and_controller(broker, ctx);
    DescribeClusterResponse::default()
        .with_endpoint_type(ENDPOINT_TYPE_BROKER)
        .with_cluster_id(sb(broker.cluster_id()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(
            brokers
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(b.node_id)
                        .with_host(b.host)
                        .with_port(b.port)
                })
                .collect(),
        )
        .with_cluster_authorized_operations(cluster_ops)
}
