//! The transaction APIs answer as Kafka's `TransactionCoordinator`, `KafkaApis` and
//! `UnifiedLog` do, to the error code: InitProducerId with a transactional id, FindCoordinator
//! key type 1, AddPartitionsToTxn (single and batched, verify-only), AddOffsetsToTxn,
//! TxnOffsetCommit (KIP-447), EndTxn, and what read_committed fetches and ListOffsets see.

mod conformance_common;

use std::sync::Arc;

use bytes::Bytes;
use conformance_common::*;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::*;
use strom_broker::Broker;
use strom_protocol::ResponseError as E;

const TID: &str = "tx-1";

fn tid(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

async fn init(
    b: &Arc<Broker>,
    version: i16,
    id: &str,
    pid: i64,
    epoch: i16,
) -> InitProducerIdResponse {
    call(
        b,
        ApiKey::InitProducerId,
        version,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(tid(id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
    )
    .await
}

fn topics(topic: &str, partitions: Vec<i32>) -> Vec<AddPartitionsToTxnTopic> {
    vec![AddPartitionsToTxnTopic::default()
        .with_name(tn(topic))
        .with_partitions(partitions)]
}

/// AddPartitionsToTxn v3: (partition, error) pairs of the first topic answered.
async fn add(
    b: &Arc<Broker>,
    version: i16,
    pid: i64,
    epoch: i16,
    topic: &str,
    parts: Vec<i32>,
) -> Vec<(i32, i16)> {
    let r: AddPartitionsToTxnResponse = call(
        b,
        ApiKey::AddPartitionsToTxn,
        version,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(tid(TID))
            .with_v3_and_below_producer_id(ProducerId(pid))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(topics(topic, parts)),
    )
    .await;
    let mut out: Vec<(i32, i16)> = r
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| (p.partition_index, p.partition_error_code))
        })
        .collect();
    out.sort();
    out
}

async fn end(b: &Arc<Broker>, version: i16, pid: i64, epoch: i16, commit: bool) -> i16 {
    let r: EndTxnResponse = call(
        b,
        ApiKey::EndTxn,
        version,
        &EndTxnRequest::default()
            .with_transactional_id(tid(TID))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit),
    )
    .await;
    r.error_code
}

/// A transactional batch (attribute bit 4) of `values` from `pid` at `epoch`.
fn txn_batch(values: &[&[u8]], pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = batch_with(
        values,
        BatchSpec {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            ..BatchSpec::default()
        },
    )
    .to_vec();
    b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    fix_crc(&mut b);
    Bytes::from(b)
}

async fn fetch_committed(b: &Arc<Broker>, topic: &str) -> fetch_response::PartitionData {
    let resp: FetchResponse = call(
        b,
        ApiKey::Fetch,
        12,
        &fetch_request(topic, 0, 0, 1 << 20).with_isolation_level(1),
    )
    .await;
    resp.responses[0].partitions[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_id_bumps_epochs_and_fences() {
    let (_d, b) = open_with(&[("transaction.max.timeout.ms", "60000")]).await;
    let first = init(&b, 4, TID, -1, -1).await;
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let second = init(&b, 4, TID, -1, -1).await;
    assert_eq!(
        (second.error_code, second.producer_id, second.producer_epoch),
        (0, first.producer_id, 1)
    );
    // KIP-360: the current pair bumps; a stale pair is fenced (INVALID_PRODUCER_EPOCH before
    // v4, which predates PRODUCER_FENCED).
    let third = init(&b, 4, TID, first.producer_id.0, 1).await;
    assert_eq!((third.error_code, third.producer_epoch), (0, 2));
    // The answer was lost and the client retries with the pair it sent: the same answer.
    let retried = init(&b, 4, TID, first.producer_id.0, 1).await;
    assert_eq!((retried.error_code, retried.producer_epoch), (0, 2));
    assert_eq!(
        init(&b, 4, TID, first.producer_id.0, 0).await.error_code,
        E::ProducerFenced.code()
    );
    assert_eq!(
        init(&b, 3, TID, first.producer_id.0, 0).await.error_code,
        E::InvalidProducerEpoch.code()
    );
    let too_long: InitProducerIdResponse = call(
        &b,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(tid("other")))
            .with_transaction_timeout_ms(60_001)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!(too_long.error_code, E::InvalidTransactionTimeout.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_serves_transactional_ids() {
    let (_d, b) = open().await;
    let r: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("tx"), s("")]),
    )
    .await;
    assert_eq!(
        (r.coordinators[0].error_code, r.coordinators[0].node_id),
        (0, BrokerId(1))
    );
    assert_eq!(r.coordinators[1].error_code, E::InvalidRequest.code());
    let r: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_key(s("tx")),
    )
    .await;
    assert_eq!((r.error_code, r.node_id), (0, BrokerId(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_partitions_checks_the_producer_and_each_partition() {
    let (_d, b) = open().await;
    create(&b, "t", 2).await;
    assert_eq!(
        add(&b, 3, 77, 0, "t", vec![0]).await,
        vec![(0, E::InvalidProducerIdMapping.code())]
    );
    let p = init(&b, 4, TID, -1, -1).await;
    let pid = p.producer_id.0;
    assert_eq!(
        add(&b, 3, pid, 1, "t", vec![0]).await,
        vec![(0, E::ProducerFenced.code())]
    );
    assert_eq!(
        add(&b, 1, pid, 1, "t", vec![0]).await,
        vec![(0, E::InvalidProducerEpoch.code())]
    );
    // One unknown partition: it gets UNKNOWN_TOPIC_OR_PARTITION, the rest are not attempted.
    assert_eq!(
        add(&b, 3, pid, 0, "t", vec![0, 5]).await,
        vec![
            (0, E::OperationNotAttempted.code()),
            (5, E::UnknownTopicOrPartition.code())
        ]
    );
    assert_eq!(add(&b, 3, pid, 0, "t", vec![0]).await, vec![(0, 0)]);
    // KIP-890's verify-only form (v4+, batched): which partitions are in the transaction.
    let r: AddPartitionsToTxnResponse = call(
        &b,
        ApiKey::AddPartitionsToTxn,
        4,
        &AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(tid(TID))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_verify_only(true)
                .with_topics(topics("t", vec![0, 1])),
        ]),
    )
    .await;
    let codes: Vec<(i32, i16)> = r.results_by_transaction[0].topic_results[0]
        .results_by_partition
        .iter()
        .map(|p| (p.partition_index, p.partition_error_code))
        .collect();
    assert_eq!(codes, vec![(0, 0), (1, E::InvalidTxnState.code())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_markers_lso_and_read_committed() {
    let (_d, b) = open().await;
    create(&b, "t", 2).await;
    let p = init(&b, 4, TID, -1, -1).await;
    let pid = p.producer_id.0;
    // Not added yet: refused, nothing written.
    let r = produce(&b, "t", 0, txn_batch(&[b"early"], pid, 0, 0)).await;
    assert_eq!(r.error_code, E::InvalidTxnState.code());
    assert_eq!(
        produce(&b, "t", 0, batch(&[b"plain-0"])).await.error_code,
        0
    );
    assert_eq!(add(&b, 3, pid, 0, "t", vec![0]).await, vec![(0, 0)]);
    assert_eq!(
        produce(&b, "t", 0, txn_batch(&[b"a", b"b"], pid, 0, 0))
            .await
            .error_code,
        0
    );
    assert_eq!(
        produce(&b, "t", 0, batch(&[b"plain-1"])).await.error_code,
        0
    );
    // The open transaction starts at offset 1: read_committed stops there.
    let f = fetch_committed(&b, "t").await;
    assert_eq!((f.high_watermark, f.last_stable_offset), (4, 1));
    assert_eq!(f.aborted_transactions.as_deref(), Some(&[][..]));
    let records = f.records.unwrap();
    assert_eq!(strom_log::validate_batches(&records).unwrap().len(), 1);
    let lo: ListOffsetsResponse = call(
        &b,
        ApiKey::ListOffsets,
        5,
        &ListOffsetsRequest::default()
            .with_isolation_level(1)
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(tn("t"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                ])]),
    )
    .await;
    assert_eq!(lo.topics[0].partitions[0].offset, 1);

    // EndTxn: Empty -> INVALID_TXN_STATE elsewhere; abort here; a retried abort is NONE and a
    // commit after it INVALID_TXN_STATE.
    assert_eq!(end(&b, 3, pid, 0, false).await, 0);
    assert_eq!(end(&b, 3, pid, 0, false).await, 0);
    assert_eq!(end(&b, 3, pid, 0, true).await, E::InvalidTxnState.code());
    let f = fetch_committed(&b, "t").await;
    assert_eq!((f.high_watermark, f.last_stable_offset), (5, 5));
    let aborted = f.aborted_transactions.unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id, aborted[0].first_offset),
        (ProducerId(pid), 1)
    );
    // The marker is a control batch in Kafka's layout at offset 4.
    let headers = strom_log::validate_batches(&f.records.unwrap()).unwrap();
    let marker = headers.last().unwrap();
    assert!(marker.is_control() && marker.is_transactional());
    assert_eq!((marker.base_offset, marker.producer_id), (4, pid));
    // read_uncommitted: no aborted-transaction list at all.
    let plain = fetch(&b, "t", 0, 0).await;
    assert_eq!(plain.aborted_transactions, None);
    // After the abort, the transaction's batches are refused again.
    let r = produce(&b, "t", 0, txn_batch(&[b"late"], pid, 0, 2)).await;
    assert_eq!(r.error_code, E::InvalidTxnState.code());
    // DescribeProducers shows the producer without an open transaction.
    let d: DescribeProducersResponse = call(
        &b,
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![
            describe_producers_request::TopicRequest::default()
                .with_name(tn("t"))
                .with_partition_indexes(vec![0]),
        ]),
    )
    .await;
    let producers = &d.topics[0].partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(
        (
            producers[0].producer_id,
            producers[0].current_txn_start_offset
        ),
        (ProducerId(pid), -1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_offset_commit_checks_the_group_and_commits_with_the_transaction() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let p = init(&b, 4, TID, -1, -1).await;
    let pid = p.producer_id.0;
    let commit = |generation: i32, epoch: i16| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(tid(TID))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_generation_id(generation)
            .with_member_id(s(""))
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(tn("t"))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(42),
                    ]),
            ])
    };
    let code = |r: TxnOffsetCommitResponse| r.topics[0].partitions[0].error_code;
    // The group was not added with AddOffsetsToTxn.
    let r = call(&b, ApiKey::TxnOffsetCommit, 3, &commit(-1, 0)).await;
    assert_eq!(code(r), E::InvalidTxnState.code());
    let r: AddOffsetsToTxnResponse = call(
        &b,
        ApiKey::AddOffsetsToTxn,
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(tid(TID))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
            .with_group_id(GroupId(s("g"))),
    )
    .await;
    assert_eq!(r.error_code, 0);
    // KIP-447: a generation for a group that does not exist; a stale producer epoch.
    let r = call(&b, ApiKey::TxnOffsetCommit, 3, &commit(5, 0)).await;
    assert_eq!(code(r), E::IllegalGeneration.code());
    let r = call(&b, ApiKey::TxnOffsetCommit, 3, &commit(-1, 7)).await;
    assert_eq!(code(r), E::InvalidProducerEpoch.code());
    let r = call(&b, ApiKey::TxnOffsetCommit, 3, &commit(-1, 0)).await;
    assert_eq!(code(r), 0);
    // Staged, not visible until the commit.
    assert_eq!(b.groups.committed("g", "t", 0), None);
    assert_eq!(end(&b, 3, pid, 0, true).await, 0);
    assert_eq!(b.groups.committed("g", "t", 0), Some(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_completes_prepared_transactions_and_keeps_open_ones_open() {
    let dir = tempfile::tempdir().unwrap();
    let open_at = |dir: &std::path::Path| {
        let mut config = strom_broker::ConfigBuilder::new();
        config
            .set("data.dir", dir.to_str().unwrap(), "test")
            .unwrap();
        config.set("log.retention.ms", "-1", "test").unwrap();
        Broker::open(config.build().unwrap()).unwrap()
    };
    let b = open_at(dir.path());
    create(&b, "t", 1).await;
    let pid = init(&b, 4, TID, -1, -1).await.producer_id.0;
    assert_eq!(add(&b, 3, pid, 0, "t", vec![0]).await, vec![(0, 0)]);
    assert_eq!(
        produce(&b, "t", 0, txn_batch(&[b"a"], pid, 0, 0))
            .await
            .error_code,
        0
    );
    b.shutdown().await;
    drop(b);
    let b = open_at(dir.path());
    // Still open after the restart: the LSO stays at the transaction's first offset.
    let f = fetch_committed(&b, "t").await;
    assert_eq!((f.high_watermark, f.last_stable_offset), (1, 0));
    assert_eq!(
        b.txn_for(TID).unwrap().describe(TID).unwrap().state,
        strom_broker::txn::TxnState::Ongoing
    );
    assert_eq!(end(&b, 3, pid, 0, true).await, 0);
    let f = fetch_committed(&b, "t").await;
    let mut headers = strom_log::validate_batches(f.records.as_ref().unwrap()).unwrap();
    for o in 1..3 {
        let g = fetch(&b, "t", 0, o).await;
        headers.extend(strom_log::validate_batches(g.records.as_ref().unwrap()).unwrap());
    }
    assert_eq!(
        (f.high_watermark, f.last_stable_offset),
        (2, 2),
        "{headers:?}"
    );
    b.shutdown().await;
}
