//! The transaction APIs over the coordinator in `crate::txn`: AddPartitionsToTxn (v0-3 single
//! transaction, v4-5 batched with KIP-890's verify-only form), AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, DescribeTransactions and ListTransactions. Domain errors become
//! Kafka codes here, in [`txn_error_code`].

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use strom_group::Committer;
use strom_protocol::ResponseError as E;

use super::{sb, topic_name};
use crate::broker::Broker;
use crate::txn::{PendingOffset, TxnError, TxnState};

/// The one mapping of coordinator errors to Kafka codes.
pub fn txn_error_code(e: TxnError) -> i16 {
    match e {
        TxnError::InvalidProducerIdMapping => E::InvalidProducerIdMapping,
        TxnError::ProducerFenced => E::ProducerFenced,
        TxnError::InvalidProducerEpoch => E::InvalidProducerEpoch,
        TxnError::ConcurrentTransactions => E::ConcurrentTransactions,
        TxnError::InvalidTxnState => E::InvalidTxnState,
        TxnError::InvalidTransactionTimeout => E::InvalidTransactionTimeout,
        TxnError::InvalidRequest => E::InvalidRequest,
        TxnError::Storage => E::CoordinatorNotAvailable,
        TxnError::NotCoordinator => E::NotCoordinator,
    }
    .code()
}

/// Old clients (EndTxn, AddPartitionsToTxn and AddOffsetsToTxn below the KIP-588 versions)
/// know INVALID_PRODUCER_EPOCH, not PRODUCER_FENCED, as Kafka's handlers translate.
fn fenced_for_version(code: i16, version: i16, fenced_from: i16) -> i16 {
    if code == E::ProducerFenced.code() && version < fenced_from {
        E::InvalidProducerEpoch.code()
    } else {
        code
    }
}

pub(super) fn topic_results(
    results: Vec<((String, i32), Result<(), i16>)>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut by_topic: BTreeMap<String, Vec<AddPartitionsToTxnPartitionResult>> = BTreeMap::new();
    for ((topic, index), r) in results {
        by_topic.entry(topic).or_default().push(
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(index)
                .with_partition_error_code(r.err().unwrap_or(0)),
        );
    }
    by_topic
        .into_iter()
        .map(|(name, parts)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic_name(name))
                .with_results_by_partition(parts)
        })
        .collect()
}

fn flatten(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.0.to_string(), p)))
        .collect()
}

async fn add_one(
    broker: &Arc<Broker>,
    id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let partitions = flatten(topics);
    let added = match broker.txn_for(id) {
        Ok(txn) => txn
            .add_partitions(
                broker,
                id,
                producer_id,
                epoch,
                partitions.clone(),
                verify_only,
            )
            .await
            .map_err(|e| fenced_for_version(txn_error_code(e), version, 2)),
        Err(code) => Err(code),
    };
    let results = match added {
        Ok(r) => r,
        Err(code) => partitions.into_iter().map(|tp| (tp, Err(code))).collect(),
    };
    topic_results(results)
}

pub async fn add_partitions(
    broker: &Arc<Broker>,
    req: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version < 4 {
        let results = add_one(
            broker,
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            &req.v3_and_below_topics,
            false,
            version,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut results = Vec::with_capacity(req.transactions.len());
    for t in &req.transactions {
        let topics = add_one(
            broker,
            &t.transactional_id,
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
            version,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(topics),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

pub async fn add_offsets(
    broker: &Arc<Broker>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let code = match broker.txn_for(&req.transactional_id) {
        Ok(txn) => match txn
            .add_offsets(
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                &req.group_id,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => fenced_for_version(txn_error_code(e), version, 2),
        },
        Err(code) => code,
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub async fn txn_offset_commit(
    broker: &Arc<Broker>,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.to_string();
    let offsets: Vec<PendingOffset> = req
        .topics
        .iter()
        .flat_map(|t| {
            let group = group.clone();
            t.partitions.iter().map(move |p| PendingOffset {
                group: group.clone(),
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_deref().unwrap_or("").to_string(),
            })
        })
        .collect();
    // KIP-447 (v3+): the member and generation of the consumer whose offsets these are.
    let committer = if version >= 3 {
        Committer {
            member_id: req.member_id.as_str(),
            instance_id: req.group_instance_id.as_deref(),
            generation_id: req.generation_id,
        }
    } else {
        Committer::NONE
    };
    // The group's coordinator (this node, or the request is refused) checks the member; the
    // transaction's coordinator, wherever it is, stages the offsets.
    let validated = broker.coordinator_for(&group).and_then(|c| {
        c.validate_transactional_commit(&group, committer)
            .map_err(|e| e.kafka_code())
    });
    let staged = match validated {
        Ok(()) => {
            crate::cluster::txn_calls::stage_offsets(
                broker,
                &req.transactional_id,
                (req.producer_id.0, req.producer_epoch),
                &group,
                offsets,
            )
            .await
        }
        Err(code) => Err(code),
    };
    let mut results = match staged {
        Ok(r) => r.into_iter(),
        Err(code) => {
            vec![Err(code); req.topics.iter().map(|t| t.partitions.len()).sum()].into_iter()
        }
    };
    let topics = req
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(results.next().and_then(|r| r.err()).unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub async fn end_txn(broker: &Arc<Broker>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let code = match broker.txn_for(&req.transactional_id) {
        Ok(txn) => match txn
            .end_txn(
                broker,
                &req.transactional_id,
                req.producer_id.0,
                req.producer_epoch,
                req.committed,
            )
            .await
        {
            Ok(()) => 0,
            Err(e) => fenced_for_version(txn_error_code(e), version, 2),
        },
        Err(code) => code,
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

pub fn describe(
    broker: &Arc<Broker>,
    req: DescribeTransactionsRequest,
    _version: i16,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| {
            let base = TransactionState::default()
                .with_transactional_id(id.clone())
                .with_transaction_state(sb(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            let txn = match broker.txn_for(id) {
                Ok(txn) => txn,
                Err(code) => return base.with_error_code(code),
            };
            let Some(m) = txn.describe(id) else {
                return base.with_error_code(E::TransactionalIdNotFound.code());
            };
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in &m.partitions {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            base.with_transaction_state(sb(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(topic_name(t))
                                .with_partitions(ps)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub fn list(
    broker: &Arc<Broker>,
    req: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    let known = |s: &str| TxnState::ALL.iter().any(|t| t.name() == s);
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|s| !known(s))
        .cloned()
        .collect();
    let now = crate::topics::now_ms();
    let states = broker
        .txn_coordinators()
        .iter()
        .flat_map(|c| c.list())
        .filter(|m| {
            req.state_filters.is_empty()
                || req
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == m.state.name())
        })
        .filter(|m| {
            req.producer_id_filters.is_empty()
                || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
        })
        // v1 (KIP-994): only transactions running longer than the duration.
        .filter(|m| {
            version < 1
                || req.duration_filter < 0
                || (m.state == TxnState::Ongoing
                    && m.start_ms >= 0
                    && now - m.start_ms > req.duration_filter)
        })
        .map(|m| {
            ListedState::default()
                .with_transactional_id(TransactionalId(sb(m.transactional_id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(sb(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}
