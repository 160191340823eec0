//! Kafka's checks in front of the transaction APIs (KafkaApis): WRITE on the transactional
//! id to add partitions or offsets, commit offsets and end a transaction (else
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED), WRITE on each topic added, READ on the group whose
//! offsets join the transaction, DESCRIBE on a transactional id to see it, READ on a topic to
//! describe its producers. AddPartitionsToTxn v4+ is the broker-to-broker form: CLUSTER_ACTION.
//! With the authorizer off, requests pass untouched to `txn` and `producers`.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::{producers, txn};
use crate::broker::Broker;
use crate::security::acl::op;

/// Each (topic, partition) with its outcome, as `txn::topic_results` takes them.
type PartitionResults = Vec<((String, i32), Result<(), i16>)>;

const TXN_DENIED: i16 = E::TransactionalIdAuthorizationFailed.code();

fn txn_denied(authz: &Authz, id: &str) -> bool {
    authz.enforcing() && !authz.transactional_id(op::WRITE, id)
}

/// AddPartitionsToTxn v0-3 for one transaction: the per-partition errors Kafka answers when a
/// check fails (then nothing is added), or `None` to go ahead.
fn refused_partitions(
    broker: &Broker,
    authz: &Authz,
    id: &str,
    topics: &[AddPartitionsToTxnTopic],
) -> Option<PartitionResults> {
    let partitions = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)));
    if txn_denied(authz, id) {
        return Some(partitions.map(|tp| (tp, Err(TXN_DENIED))).collect());
    }
    let write_denied = |topic: &str| !authz.topic(op::WRITE, topic);
    if !topics.iter().any(|t| write_denied(t.name.0.as_str())) {
        return None;
    }
    // One refused topic fails the whole transaction's request: the rest are not attempted.
    let code = |topic: &str, index: i32| {
        if write_denied(topic) {
            E::TopicAuthorizationFailed.code()
        } else if broker
            .topics
            .get(topic)
            .and_then(|t| t.partition(index))
            .is_none()
        {
            E::UnknownTopicOrPartition.code()
        } else {
            E::OperationNotAttempted.code()
        }
    };
    Some(
        partitions
            .map(|(t, p)| {
                let c = code(&t, p);
                ((t, p), Err(c))
            })
            .collect(),
    )
}

pub async fn add_partitions(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if !authz.enforcing() {
        return txn::add_partitions(broker, req, version).await;
    }
    if version >= 4 {
        // Only brokers send the batched form.
        if !authz.cluster(op::CLUSTER_ACTION) {
            return AddPartitionsToTxnResponse::default()
                .with_error_code(E::ClusterAuthorizationFailed.code());
        }
        return txn::add_partitions(broker, req, version).await;
    }
    match refused_partitions(
        broker,
        authz,
        &req.v3_and_below_transactional_id,
        &req.v3_and_below_topics,
    ) {
        Some(results) => AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(txn::topic_results(results)),
        None => txn::add_partitions(broker, req, version).await,
    }
}

pub async fn add_offsets(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    if txn_denied(authz, &req.transactional_id) {
        return AddOffsetsToTxnResponse::default().with_error_code(TXN_DENIED);
    }
    if authz.enforcing() && !authz.group(op::READ, &req.group_id) {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(E::GroupAuthorizationFailed.code());
    }
    txn::add_offsets(broker, req, version).await
}

fn offset_topic_result(
    t: &txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    code: i16,
) -> TxnOffsetCommitResponseTopic {
    TxnOffsetCommitResponseTopic::default()
        .with_name(t.name.clone())
        .with_partitions(
            t.partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect(),
        )
}

pub async fn txn_offset_commit(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    if !authz.enforcing() {
        return txn::txn_offset_commit(broker, req, version).await;
    }
    let whole = if !authz.transactional_id(op::WRITE, &req.transactional_id) {
        Some(TXN_DENIED)
    } else if !authz.group(op::READ, &req.group_id) {
        Some(E::GroupAuthorizationFailed.code())
    } else {
        None
    };
    if let Some(code) = whole {
        let topics = req
            .topics
            .iter()
            .map(|t| offset_topic_result(t, code))
            .collect();
        return TxnOffsetCommitResponse::default().with_topics(topics);
    }
    let (denied, allowed): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| !authz.topic(op::READ, t.name.0.as_str()));
    req.topics = allowed;
    let mut response = if req.topics.is_empty() {
        TxnOffsetCommitResponse::default()
    } else {
        txn::txn_offset_commit(broker, req, version).await
    };
    let code = E::TopicAuthorizationFailed.code();
    response
        .topics
        .extend(denied.iter().map(|t| offset_topic_result(t, code)));
    response
}

pub async fn end_txn(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    if txn_denied(authz, &req.transactional_id) {
        return EndTxnResponse::default()
            .with_error_code(TXN_DENIED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    txn::end_txn(broker, req, version).await
}

pub fn describe(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: DescribeTransactionsRequest,
    version: i16,
) -> DescribeTransactionsResponse {
    let mut response = txn::describe(broker, req, version);
    if !authz.enforcing() {
        return response;
    }
    for state in &mut response.transaction_states {
        if !authz.transactional_id(op::DESCRIBE, &state.transactional_id) {
            // Nothing about a transaction the principal may not see, not even its state.
            *state = TransactionState::default()
                .with_transactional_id(state.transactional_id.clone())
                .with_error_code(E::TransactionalIdAuthorizationFailed.code());
        } else {
            state
                .topics
                .retain(|t| authz.topic(op::DESCRIBE, t.topic.0.as_str()));
        }
    }
    response
}

pub fn list(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let mut response = txn::list(broker, req, version);
    if authz.enforcing() {
        response
            .transaction_states
            .retain(|s| authz.transactional_id(op::DESCRIBE, &s.transactional_id));
    }
    response
}

pub fn describe_producers(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: DescribeProducersRequest,
    version: i16,
) -> DescribeProducersResponse {
    let mut response = producers::describe(broker, req, version);
    if !authz.enforcing() {
        return response;
    }
    for topic in &mut response.topics {
        if !authz.topic(op::READ, topic.name.0.as_str()) {
            for p in &mut topic.partitions {
                p.error_code = E::TopicAuthorizationFailed.code();
                p.active_producers.clear();
            }
        }
    }
    response
}
