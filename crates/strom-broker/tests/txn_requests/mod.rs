//! Valid requests of the transaction APIs, shared by the every-version and fuzz tests. They
//! name the topic both tests create ("t" in every_version, the fuzz topic elsewhere does not
//! matter: an unknown topic still takes the handler's main path).

#![allow(dead_code)]

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn tid() -> TransactionalId {
    TransactionalId(s("tx"))
}

pub fn add_partitions(version: i16) -> AddPartitionsToTxnRequest {
    let topics = vec![AddPartitionsToTxnTopic::default()
        .with_name(TopicName(s("t")))
        .with_partitions(vec![0])];
    if version >= 4 {
        AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(tid())
                .with_producer_id(ProducerId(1))
                .with_verify_only(true)
                .with_topics(topics),
        ])
    } else {
        AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid())
            .with_v3_and_below_producer_id(ProducerId(1))
            .with_v3_and_below_topics(topics)
    }
}

pub fn add_offsets() -> AddOffsetsToTxnRequest {
    AddOffsetsToTxnRequest::default()
        .with_transactional_id(tid())
        .with_group_id(GroupId(s("g")))
}

pub fn txn_offset_commit() -> TxnOffsetCommitRequest {
    TxnOffsetCommitRequest::default()
        .with_transactional_id(tid())
        .with_group_id(GroupId(s("g")))
        .with_generation_id(-1)
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)])])
}

pub fn end_txn() -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(tid())
        .with_committed(true)
}

pub fn describe_transactions() -> DescribeTransactionsRequest {
    DescribeTransactionsRequest::default().with_transactional_ids(vec![tid()])
}

pub fn describe_producers() -> DescribeProducersRequest {
    DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(s("t")))
        .with_partition_indexes(vec![0])])
}
