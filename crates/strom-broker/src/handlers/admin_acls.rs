//! Kafka's checks in front of the topic admin APIs and InitProducerId: CREATE on the
//! cluster or the topic to create it, DELETE on the topic to delete it (denied entries get
//! TOPIC_AUTHORIZATION_FAILED), and for an idempotent producer IDEMPOTENT_WRITE on the
//! cluster or WRITE on some topic (KIP-679), else CLUSTER_AUTHORIZATION_FAILED; a
//! transactional one needs WRITE on its transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::{admin_topics, producer_id, sb};
use crate::broker::Broker;
use crate::security::acl::op;

const DENIED_MESSAGE: &str = "Authorization failed.";

pub async fn create_topics(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    if !authz.enforcing() || authz.cluster(op::CREATE) {
        return admin_topics::create_topics(broker, req, version).await;
    }
    let (denied, allowed): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| !authz.topic(op::CREATE, t.name.as_str()));
    req.topics = allowed;
    let mut response = admin_topics::create_topics(broker, req, version).await;
    response.topics.extend(denied.into_iter().map(|t| {
        CreatableTopicResult::default()
            .with_name(t.name)
            .with_error_code(E::TopicAuthorizationFailed.code())
            .with_error_message(Some(sb(DENIED_MESSAGE)))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    }));
    response
}

pub async fn delete_topics(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    if !authz.enforcing() {
        return admin_topics::delete_topics(broker, req, version).await;
    }
    let may_delete = |name: &str| authz.topic(op::DELETE, name);
    let mut denied: Vec<DeletableTopicResult> = Vec::new();
    let refuse = |name: Option<String>, id: uuid::Uuid| {
        DeletableTopicResult::default()
            .with_name(name.map(super::topic_name))
            .with_topic_id(id)
            .with_error_code(E::TopicAuthorizationFailed.code())
            .with_error_message(Some(sb(DENIED_MESSAGE)))
    };
    if version >= 6 {
        req.topics.retain(|t| {
            let name = match &t.name {
                Some(n) => Some(n.to_string()),
                None => broker.topics.get_by_id(t.topic_id).map(|tp| tp.name()),
            };
            match name {
                Some(n) if !may_delete(&n) => {
                    // A topic named by id alone is not revealed to who may not delete it.
                    denied.push(refuse(t.name.as_ref().map(|n| n.to_string()), t.topic_id));
                    false
                }
                _ => true,
            }
        });
    } else {
        req.topic_names.retain(|n| {
            let ok = may_delete(n.as_str());
            if !ok {
                denied.push(refuse(Some(n.to_string()), uuid::Uuid::nil()));
            }
            ok
        });
    }
    let mut response = admin_topics::delete_topics(broker, req, version).await;
    response.responses.extend(denied);
    response
}

pub async fn init_producer_id(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    if authz.enforcing() {
        let refused = match req.transactional_id.as_deref() {
            Some(id) if !authz.transactional_id(op::WRITE, id) => {
                Some(E::TransactionalIdAuthorizationFailed)
            }
            None if !authz.cluster(op::IDEMPOTENT_WRITE) && !authz.any_topic(op::WRITE) => {
                Some(E::ClusterAuthorizationFailed)
            }
            _ => None,
        };
        if let Some(e) = refused {
            return InitProducerIdResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
    }
    producer_id::handle(broker, req, version).await
}

/// CreatePartitions: ALTER on each topic. A name given twice stays for `admin_topics` to
/// refuse as INVALID_REQUEST, which Kafka decides first.
pub async fn create_partitions(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: CreatePartitionsRequest,
    version: i16,
) -> CreatePartitionsResponse {
    if !authz.enforcing() {
        return admin_topics::create_partitions(broker, req, version).await;
    }
    let names: Vec<String> = req.topics.iter().map(|t| t.name.0.to_string()).collect();
    let twice = |n: &str| names.iter().filter(|m| m.as_str() == n).count() > 1;
    let (denied, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| !twice(t.name.0.as_str()) && !authz.topic(op::ALTER, t.name.0.as_str()));
    req.topics = kept;
    let mut response = admin_topics::create_partitions(broker, req, version).await;
    response.results.extend(denied.into_iter().map(|t| {
        create_partitions_response::CreatePartitionsTopicResult::default()
            .with_name(t.name)
            .with_error_code(E::TopicAuthorizationFailed.code())
            .with_error_message(Some(sb(DENIED_MESSAGE)))
    }));
    response
}

/// DeleteRecords: DELETE on each topic.
pub fn delete_records(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: DeleteRecordsRequest,
    version: i16,
) -> DeleteRecordsResponse {
    if !authz.enforcing() {
        return admin_topics::delete_records(broker, req, version);
    }
    let (denied, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| !authz.topic(op::DELETE, t.name.0.as_str()));
    req.topics = kept;
    let mut response = admin_topics::delete_records(broker, req, version);
    response.topics.extend(denied.into_iter().map(|t| {
        delete_records_response::DeleteRecordsTopicResult::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        delete_records_response::DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(E::TopicAuthorizationFailed.code())
                    })
                    .collect(),
            )
    }));
    response
}
