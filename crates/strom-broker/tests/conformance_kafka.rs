//! Conformance with Apache Kafka's answers, one test per behaviour, run in-process through
//! `Broker::handle`. Each test names the Kafka code path whose answer it pins down; the
//! client test suites Strom is checked against expect exactly these error codes.
//!
//! Story: a review against KafkaApis / ReplicaManager / UnifiedLog found answers that real
//! Kafka gives differently — e.g. an empty produce payload, a fetch naming a closed session
//! with epoch 0, ListOffsets -5, or an idempotent producer asking InitProducerId again. Each
//! fix has its regression test here.

mod conformance_common;

use bytes::{Bytes, BytesMut};
use conformance_common::*;
use kafka_protocol::messages::*;
use kafka_protocol::records::Compression;
use strom_protocol::ResponseError as E;

const V: i16 = 9;

// ---------------------------------------------------------------------------------------
// Produce: ProduceRequest.validateRecords, UnifiedLog.analyzeAndValidateRecords, LogValidator
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_payload_framing_errors_match_validate_records() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let good = batch(&[b"a", b"b"]);

    // No records at all, or an empty set: "must have at least one record batch".
    for records in [None, Some(Bytes::new())] {
        let r = produce_v(&b, V, "t", 0, records, -1).await;
        assert_eq!(r.error_code, E::InvalidRecord.code());
        assert_eq!((r.base_offset, r.log_start_offset), (-1, -1));
    }
    // A batch cut short is no batch at all for ByteBufferLogInputStream.
    let cut = good.slice(..good.len() - 1);
    let r = produce_v(&b, V, "t", 0, Some(cut), -1).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());
    // Two whole batches: "exactly one record batch per partition".
    let mut two = BytesMut::from(&good[..]);
    two.extend_from_slice(&good);
    let r = produce_v(&b, V, "t", 0, Some(two.freeze()), -1).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());
    // Magic 1 is a legal older format, refused for v3+ requests: INVALID_RECORD.
    let mut m1 = BytesMut::from(&good[..]);
    m1[16] = 1;
    let r = produce_v(&b, V, "t", 0, Some(m1.freeze()), -1).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());
    // Magic outside 0..=2 is structural damage: CORRUPT_MESSAGE.
    let mut m5 = BytesMut::from(&good[..]);
    m5[16] = 5;
    let r = produce_v(&b, V, "t", 0, Some(m5.freeze()), -1).await;
    assert_eq!(r.error_code, E::CorruptMessage.code());
    // A size field below the smallest record overhead (14): CORRUPT_MESSAGE.
    let mut small = BytesMut::from(&good[..]);
    small[8..12].copy_from_slice(&10i32.to_be_bytes());
    let r = produce_v(&b, V, "t", 0, Some(small.freeze()), -1).await;
    assert_eq!(r.error_code, E::CorruptMessage.code());

    // Nothing of the above was written.
    let f = fetch(&b, "t", 0, 0).await;
    assert_eq!(f.high_watermark, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_trailing_partial_bytes_are_dropped_like_trim_invalid_bytes() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let good = batch(&[b"a"]);
    let mut padded = BytesMut::from(&good[..]);
    padded.extend_from_slice(&[0u8; 11]);
    let r = produce_v(&b, V, "t", 0, Some(padded.freeze()), 1).await;
    assert_eq!(r.error_code, 0);
    let f = fetch(&b, "t", 0, 0).await;
    assert_eq!(f.records.unwrap().len(), good.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_base_offset_must_be_zero() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    // The base offset is outside the CRC, so the batch is otherwise valid.
    let mut m = BytesMut::from(&batch(&[b"a"])[..]);
    m[..8].copy_from_slice(&42i64.to_be_bytes());
    let r = produce_v(&b, V, "t", 0, Some(m.freeze()), -1).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_zstd_needs_v7() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let zstd = batch_with(
        &[b"compressed"],
        BatchSpec {
            compression: Compression::Zstd,
            ..Default::default()
        },
    );
    let r = produce_v(&b, 6, "t", 0, Some(zstd.clone()), -1).await;
    assert_eq!(r.error_code, E::UnsupportedCompressionType.code());
    let r = produce_v(&b, 7, "t", 0, Some(zstd), -1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_invalid_acks_come_after_topic_and_record_checks() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let r = produce_v(&b, V, "t", 0, Some(batch(&[b"a"])), 2).await;
    assert_eq!(r.error_code, E::InvalidRequiredAcks.code());
    let r = produce_v(&b, V, "missing", 0, Some(batch(&[b"a"])), 2).await;
    assert_eq!(r.error_code, E::UnknownTopicOrPartition.code());
    let r = produce_v(&b, V, "t", 7, Some(batch(&[b"a"])), 2).await;
    assert_eq!(r.error_code, E::UnknownTopicOrPartition.code());
    let r = produce_v(&b, V, "t", 0, None, 2).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());
    let f = fetch(&b, "t", 0, 0).await;
    assert_eq!(f.high_watermark, 0, "nothing is appended with invalid acks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_size_then_crc_then_record_checks() {
    let (_d, b) = open().await;
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("max.message.bytes".to_string(), "100".to_string());
    b.topics.create("t", 1, configs, false).await.unwrap();
    let big = batch(&[&[7u8; 200]]);
    let mut big_corrupt = BytesMut::from(&big[..]);
    big_corrupt[70] ^= 0xff;
    // Too large wins over a bad CRC (analyzeAndValidateRecords checks size first).
    let r = produce_v(&b, V, "t", 0, Some(big_corrupt.freeze()), -1).await;
    assert_eq!(r.error_code, E::MessageTooLarge.code());

    let mut corrupt = BytesMut::from(&batch(&[b"a"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let r = produce_v(&b, V, "t", 0, Some(corrupt.freeze()), -1).await;
    assert_eq!(r.error_code, E::CorruptMessage.code());

    // A control batch from a client (attributes bit 5), CRC intact: INVALID_RECORD.
    let mut control = BytesMut::from(&batch(&[b"a"])[..]);
    control[22] |= 0x20;
    fix_crc(&mut control);
    let r = produce_v(&b, V, "t", 0, Some(control.freeze()), -1).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_larger_than_a_segment_is_record_list_too_large() {
    let (_d, b) = open().await;
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("segment.bytes".to_string(), "100".to_string());
    b.topics.create("t", 1, configs, false).await.unwrap();
    let r = produce_v(&b, V, "t", 0, Some(batch(&[&[1u8; 300]])), -1).await;
    assert_eq!(r.error_code, E::RecordListTooLarge.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_idempotent_errors_and_duplicates() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let spec = |epoch: i16, seq: i32| BatchSpec {
        producer_id: 1000,
        producer_epoch: epoch,
        base_sequence: seq,
        ..Default::default()
    };
    // A producer id without a sequence number: LogValidator's INVALID_RECORD.
    let r = produce(&b, "t", 0, batch_with(&[b"x"], spec(0, -1))).await;
    assert_eq!(r.error_code, E::InvalidRecord.code());

    let first = batch_with(&[b"a", b"b"], spec(0, 0));
    let r = produce(&b, "t", 0, first.clone()).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(r.log_append_time_ms, -1);
    // A retry: the original offsets, and (UnifiedLog.append) the batch's own timestamp as
    // log append time.
    let r = produce(&b, "t", 0, first).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_eq!(r.log_append_time_ms, 1_700_000_000_001);
    // A gap.
    let r = produce(&b, "t", 0, batch_with(&[b"c"], spec(0, 5))).await;
    assert_eq!(r.error_code, E::OutOfOrderSequenceNumber.code());
    // A bumped epoch must restart at 0; an older epoch is fenced with INVALID_PRODUCER_EPOCH
    // (not PRODUCER_FENCED, which Kafka keeps for transactional APIs).
    let r = produce(&b, "t", 0, batch_with(&[b"c"], spec(1, 0))).await;
    assert_eq!((r.error_code, r.base_offset), (0, 2));
    let r = produce(&b, "t", 0, batch_with(&[b"d"], spec(0, 2))).await;
    assert_eq!(r.error_code, E::InvalidProducerEpoch.code());
    let f = fetch(&b, "t", 0, 0).await;
    assert_eq!(f.high_watermark, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_batches_carry_the_leader_epoch() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    produce(&b, "t", 0, batch(&[b"a"])).await;
    let records = fetch(&b, "t", 0, 0).await.records.unwrap();
    // partition_leader_epoch, bytes 12..16: stamped with the leader epoch (0) as Kafka does.
    assert_eq!(&records[12..16], &0i32.to_be_bytes());
    assert_eq!(&records[..8], &0i64.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// Fetch: FetchManager.newContext, ReplicaManager.readFromLocalLog
// ---------------------------------------------------------------------------------------

async fn fetch_with(
    b: &std::sync::Arc<strom_broker::Broker>,
    req: FetchRequest,
    version: i16,
) -> FetchResponse {
    call(b, ApiKey::Fetch, version, &req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sessions_open_continue_and_fail_as_fetch_manager_does() {
    let (_d, b) = open().await;
    create(&b, "t", 2).await;
    produce(&b, "t", 0, batch(&[b"a"])).await;
    let mut full = fetch_request("t", 0, 0, 1 << 20).with_session_epoch(0);
    let p1 = full.topics[0].partitions[0].clone().with_partition(1);
    full.topics[0].partitions.push(p1);
    // Epoch 0: a full fetch that opens a session with both partitions.
    let r = fetch_with(&b, full.clone(), 12).await;
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0);
    assert_eq!(r.responses[0].partitions.len(), 2);
    // Epoch 1, nothing new: an empty answer (partition 0 moves on to offset 1).
    let mut next = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tn("t"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(1)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let r = fetch_with(&b, next.clone(), 12).await;
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(r.responses.is_empty(), "{r:?}");
    // Records on partition 1: only it is answered, with its records and new watermark.
    produce(&b, "t", 1, batch(&[b"x", b"y"])).await;
    next.topics.clear();
    let r = fetch_with(&b, next.clone().with_session_epoch(2), 12).await;
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(r.responses.len(), 1);
    let parts = &r.responses[0].partitions;
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0].partition_index, parts[0].high_watermark), (1, 2));
    assert!(!parts[0].records.as_ref().unwrap().is_empty());
    // A repeated epoch, an unknown id, and a v13 request on a v12 session are refused.
    let r = fetch_with(&b, next.clone().with_session_epoch(2), 12).await;
    assert_eq!(
        (r.error_code, r.session_id),
        (E::InvalidFetchSessionEpoch.code(), 0)
    );
    assert!(r.responses.is_empty());
    let r = fetch_with(
        &b,
        next.clone().with_session_id(id ^ 1).with_session_epoch(3),
        12,
    )
    .await;
    assert_eq!(r.error_code, E::FetchSessionIdNotFound.code());
    let r = fetch_with(&b, next.clone().with_session_epoch(3), 13).await;
    assert_eq!(r.error_code, E::FetchSessionTopicIdError.code());
    // Forgetting partition 1: its news is no longer answered.
    next.forgotten_topics_data = vec![fetch_request::ForgottenTopic::default()
        .with_topic(tn("t"))
        .with_partitions(vec![1])];
    let r = fetch_with(&b, next.clone().with_session_epoch(3), 12).await;
    assert_eq!(r.error_code, 0);
    next.forgotten_topics_data.clear();
    produce(&b, "t", 1, batch(&[b"z"])).await;
    let r = fetch_with(&b, next.clone().with_session_epoch(4), 12).await;
    assert_eq!(r.error_code, 0);
    assert!(r.responses.is_empty(), "{r:?}");
    // Epoch -1 closes the session and answers without one.
    let r = fetch_with(
        &b,
        full.clone().with_session_id(id).with_session_epoch(-1),
        12,
    )
    .await;
    assert_eq!((r.error_code, r.session_id), (0, 0));
    let r = fetch_with(&b, next.with_session_epoch(5), 12).await;
    assert_eq!(r.error_code, E::FetchSessionIdNotFound.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_without_session_slots_answers_sessionless() {
    let (_d, b) = open_with(&[("max.incremental.fetch.session.cache.slots", "0")]).await;
    create(&b, "t", 1).await;
    produce(&b, "t", 0, batch(&[b"a"])).await;
    let base = fetch_request("t", 0, 0, 1 << 20);
    for (id, epoch) in [(0, 0), (0, -1), (12345, 0), (12345, -1)] {
        let r = fetch_with(
            &b,
            base.clone().with_session_id(id).with_session_epoch(epoch),
            12,
        )
        .await;
        assert_eq!(r.error_code, 0, "session {id} epoch {epoch}");
        assert_eq!(r.session_id, 0);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
    }
    for (id, epoch) in [(12345, 1), (0, 1), (0, -2)] {
        let r = fetch_with(
            &b,
            base.clone().with_session_id(id).with_session_epoch(epoch),
            12,
        )
        .await;
        assert_eq!(
            r.error_code,
            E::FetchSessionIdNotFound.code(),
            "{id}/{epoch}"
        );
        assert_eq!(r.session_id, 0);
        assert!(r.responses.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_out_of_range_carries_no_offsets() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    produce(&b, "t", 0, batch(&[b"a"])).await;
    for offset in [-1, 2, i64::MAX] {
        let p = fetch(&b, "t", 0, offset).await;
        assert_eq!(p.error_code, E::OffsetOutOfRange.code());
        assert_eq!(
            (p.high_watermark, p.last_stable_offset, p.log_start_offset),
            (-1, -1, -1)
        );
        assert_eq!(p.preferred_read_replica, BrokerId(-1));
    }
    // The log end itself is in range: empty, with the offsets.
    let p = fetch(&b, "t", 0, 1).await;
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (0, 1, 0)
    );
    assert_eq!(p.records.map(|r| r.len()), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_checks_the_current_leader_epoch() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let mut req = fetch_request("t", 0, 0, 1 << 20);
    req.topics[0].partitions[0].current_leader_epoch = 1;
    let r = fetch_with(&b, req.clone(), 12).await;
    assert_eq!(
        r.responses[0].partitions[0].error_code,
        E::UnknownLeaderEpoch.code()
    );
    req.topics[0].partitions[0].current_leader_epoch = 0;
    let r = fetch_with(&b, req, 12).await;
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_read_committed_lists_no_aborted_transactions() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    produce(&b, "t", 0, batch(&[b"a"])).await;
    let req = fetch_request("t", 0, 0, 1 << 20);
    let r = fetch_with(&b, req.clone().with_isolation_level(1), 12).await;
    assert_eq!(
        r.responses[0].partitions[0].aborted_transactions,
        Some(vec![]),
        "{r:?}"
    );
    let r = fetch_with(&b, req.with_isolation_level(0), 12).await;
    assert_eq!(r.responses[0].partitions[0].aborted_transactions, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_byte_budget_cuts_later_partitions_at_the_byte() {
    let (_d, b) = open().await;
    create(&b, "t", 2).await;
    let first = batch(&[&[1u8; 100]]);
    produce(&b, "t", 0, first.clone()).await;
    produce(&b, "t", 1, batch(&[&[2u8; 100]])).await;
    let mut req = fetch_request("t", 0, 0, 1 << 20);
    req.max_bytes = first.len() as i32 + 10;
    let p1 = req.topics[0].partitions[0].clone().with_partition(1);
    req.topics[0].partitions.push(p1);
    let r = fetch_with(&b, req, 12).await;
    let parts = &r.responses[0].partitions;
    // KIP-74: the first partition gets its whole batch; the next one only what is left of
    // the response budget (LogSegment.read with minOneMessage=false).
    assert_eq!(parts[0].records.as_ref().unwrap().len(), first.len());
    assert_eq!(parts[1].records.as_ref().unwrap().len(), 10);
    assert_eq!(parts[1].high_watermark, 1);
}

// ---------------------------------------------------------------------------------------
// ListOffsets: KafkaApis.handleListOffsetRequest, UnifiedLog.fetchOffsetByTimestamp
// ---------------------------------------------------------------------------------------

fn list_offsets_request(parts: &[(i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(tn("t"))
            .with_partitions(
                parts
                    .iter()
                    .map(|(p, ts)| {
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(*ts)
                    })
                    .collect(),
            )])
}

async fn list_offsets(
    b: &std::sync::Arc<strom_broker::Broker>,
    req: ListOffsetsRequest,
) -> Vec<list_offsets_response::ListOffsetsPartitionResponse> {
    let r: ListOffsetsResponse = call(b, ApiKey::ListOffsets, 8, &req).await;
    r.topics[0].partitions.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_special_timestamps() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    produce(&b, "t", 0, batch(&[b"a", b"b", b"c"])).await;
    let got = |p: &list_offsets_response::ListOffsetsPartitionResponse| {
        (p.error_code, p.offset, p.timestamp, p.leader_epoch)
    };
    let r = list_offsets(&b, list_offsets_request(&[(0, -1)])).await;
    assert_eq!(got(&r[0]), (0, 3, -1, 0));
    let r = list_offsets(&b, list_offsets_request(&[(0, -2)])).await;
    assert_eq!(got(&r[0]), (0, 0, -1, 0));
    let r = list_offsets(&b, list_offsets_request(&[(0, -3)])).await;
    assert_eq!(got(&r[0]), (0, 2, 1_700_000_000_002, 0));
    let r = list_offsets(&b, list_offsets_request(&[(0, -4)])).await;
    assert_eq!(got(&r[0]), (0, 0, -1, 0));
    // No tiered storage: offset -1, timestamp -1, epoch -1, and no error.
    let r = list_offsets(&b, list_offsets_request(&[(0, -5)])).await;
    assert_eq!(got(&r[0]), (0, -1, -1, -1));
    // Any other negative value is a timestamp search like a positive one.
    let r = list_offsets(&b, list_offsets_request(&[(0, -100)])).await;
    assert_eq!(got(&r[0]), (0, 0, 1_700_000_000_000, 0));
    // Past the newest record: nothing found, error NONE.
    let r = list_offsets(&b, list_offsets_request(&[(0, 1_800_000_000_000)])).await;
    assert_eq!(got(&r[0]), (0, -1, -1, -1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_duplicates_and_leader_epochs() {
    let (_d, b) = open().await;
    create(&b, "t", 2).await;
    let r = list_offsets(&b, list_offsets_request(&[(0, -1), (1, -1), (0, -2)])).await;
    let codes: Vec<i16> = r.iter().map(|p| p.error_code).collect();
    let bad = E::InvalidRequest.code();
    assert_eq!(codes, vec![bad, 0, bad]);
    let mut req = list_offsets_request(&[(0, -1)]);
    req.topics[0].partitions[0].current_leader_epoch = 1;
    let r = list_offsets(&b, req).await;
    assert_eq!(r[0].error_code, E::UnknownLeaderEpoch.code());
    let r = list_offsets(&b, list_offsets_request(&[(5, -1)])).await;
    assert_eq!(r[0].error_code, E::UnknownTopicOrPartition.code());
}

// ---------------------------------------------------------------------------------------
// Metadata, DescribeCluster
// ---------------------------------------------------------------------------------------

fn metadata_request(names: &[&str], auto_create: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_allow_auto_topic_creation(auto_create)
        .with_topics(Some(
            names
                .iter()
                .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(tn(n))))
                .collect(),
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_names_and_versions() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    // Without auto-creation the name is still validated.
    let r: MetadataResponse = call(
        &b,
        ApiKey::Metadata,
        12,
        &metadata_request(&["bad name", "missing", "t", "t"], false),
    )
    .await;
    let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![
            E::InvalidTopicException.code(),
            E::UnknownTopicOrPartition.code(),
            0
        ],
        "one entry per distinct name"
    );
    // v10/v11 have a topic id field but refuse to use it: INVALID_REQUEST for all topics.
    let req = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(tn("t"))),
        metadata_request::MetadataRequestTopic::default().with_name(None),
    ]));
    let r: MetadataResponse = call(&b, ApiKey::Metadata, 11, &req).await;
    assert!(r
        .topics
        .iter()
        .all(|t| t.error_code == E::InvalidRequest.code()));
    assert!(r.brokers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_operations_without_an_authorizer_are_all_supported_ones() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let req = metadata_request(&["t"], false)
        .with_include_topic_authorized_operations(true)
        .with_include_cluster_authorized_operations(true);
    let r: MetadataResponse = call(&b, ApiKey::Metadata, 10, &req).await;
    // TOPIC: READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS.
    assert_eq!(r.topics[0].topic_authorized_operations, 3576);
    // CLUSTER: CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE.
    assert_eq!(r.cluster_authorized_operations, 8096);
    let r: MetadataResponse =
        call(&b, ApiKey::Metadata, 10, &metadata_request(&["t"], false)).await;
    assert_eq!(r.topics[0].topic_authorized_operations, i32::MIN);

    let req = DescribeClusterRequest::default()
        .with_include_cluster_authorized_operations(true)
        .with_endpoint_type(1);
    let r: DescribeClusterResponse = call(&b, ApiKey::DescribeCluster, 1, &req).await;
    assert_eq!((r.error_code, r.cluster_authorized_operations), (0, 8096));
    let req = DescribeClusterRequest::default().with_endpoint_type(2);
    let r: DescribeClusterResponse = call(&b, ApiKey::DescribeCluster, 1, &req).await;
    assert_eq!(r.error_code, E::UnsupportedEndpointType.code());
}

// ---------------------------------------------------------------------------------------
// InitProducerId, FindCoordinator
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_producer_id_without_transactional_id_always_gives_a_new_id() {
    let (_d, b) = open().await;
    let first: InitProducerIdResponse = call(
        &b,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    // KIP-360's "bump my epoch" request from an idempotent producer: Kafka ignores the id
    // and epoch and answers with a fresh id at epoch 0.
    let again: InitProducerIdResponse = call(
        &b,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(first.producer_id)
            .with_producer_epoch(3),
    )
    .await;
    assert_eq!((again.error_code, again.producer_epoch), (0, 0));
    assert_ne!(again.producer_id, first.producer_id);
    let empty: InitProducerIdResponse = call(
        &b,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(""))))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
    .await;
    assert_eq!(empty.error_code, E::InvalidRequest.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_answers_like_kafka_apis() {
    let (_d, b) = open().await;
    let r: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default().with_key(s("g")),
    )
    .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.error_message.as_deref(), Some("NONE"));
    assert_eq!(r.node_id, BrokerId(1));
    // No check on the group id: the empty one has a coordinator too. v4+ leaves the error
    // message at its schema default, the empty string.
    let r: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s(""), s("g")]),
    )
    .await;
    assert!(r.coordinators.iter().all(|c| c.error_code == 0
        && c.node_id == BrokerId(1)
        && c.error_message.as_deref() == Some("")));
    // An unknown key type fails the request: every key INVALID_REQUEST.
    let r: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(9)
            .with_coordinator_keys(vec![s("a"), s("b")]),
    )
    .await;
    assert_eq!(r.coordinators.len(), 2);
    assert!(r
        .coordinators
        .iter()
        .all(|c| c.error_code == E::InvalidRequest.code() && c.node_id == BrokerId(-1)));
    let r: FindCoordinatorResponse = call(
        &b,
        ApiKey::FindCoordinator,
        2,
        &FindCoordinatorRequest::default()
            .with_key_type(9)
            .with_key(s("a")),
    )
    .await;
    assert_eq!(r.error_code, E::InvalidRequest.code());
}

// ---------------------------------------------------------------------------------------
// CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords: ControllerApis and
// ReplicationControlManager
// ---------------------------------------------------------------------------------------

fn creatable(name: &str, partitions: i32, rf: i16) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(tn(name))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

async fn create_topics(
    b: &std::sync::Arc<strom_broker::Broker>,
    topics: Vec<create_topics_request::CreatableTopic>,
    validate_only: bool,
) -> Vec<create_topics_response::CreatableTopicResult> {
    let req = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(5000)
        .with_validate_only(validate_only);
    let r: CreateTopicsResponse = call(b, ApiKey::CreateTopics, 7, &req).await;
    r.topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_checks_in_controller_order() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let config = |n: &str, v: &str| {
        create_topics_request::CreatableTopicConfig::default()
            .with_name(s(n))
            .with_value(Some(s(v)))
    };
    let r = create_topics(
        &b,
        vec![
            creatable("a b", 1, 3),
            creatable("t", 1, 3),
            creatable("c1", 1, 3).with_configs(vec![config("retention.ms", "soon")]),
            creatable("c2", 1, 0),
            creatable("c3", 0, 1),
            creatable("c4", -2, -1),
            creatable("c5", 1, 3),
        ],
        false,
    )
    .await;
    let got: Vec<(i16, String)> = r
        .iter()
        .map(|t| {
            (
                t.error_code,
                t.error_message.as_deref().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(got[0].0, E::InvalidTopicException.code());
    assert_eq!(got[0].1, "Topic name \"a b\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    assert_eq!(
        got[1],
        (
            E::TopicAlreadyExists.code(),
            "Topic 't' already exists.".into()
        )
    );
    assert_eq!(got[2].0, E::InvalidConfig.code());
    assert_eq!(
        got[3],
        (
            E::InvalidReplicationFactor.code(),
            "Replication factor must be larger than 0, or -1 to use the default value.".into()
        )
    );
    for g in &got[4..6] {
        assert_eq!(
            g,
            &(
                E::InvalidPartitions.code(),
                "Number of partitions was set to an invalid non-positive value.".into()
            )
        );
    }
    assert_eq!(got[6].0, E::InvalidReplicationFactor.code());
    assert!(r
        .iter()
        .all(|t| t.num_partitions == -1 && t.topic_id.is_nil()));
    // Collisions of '.' and '_' names.
    create(&b, "a.b", 1).await;
    let r = create_topics(&b, vec![creatable("a_b", 1, 1)], false).await;
    assert_eq!(r[0].error_code, E::InvalidTopicException.code());
    assert_eq!(
        r[0].error_message.as_deref(),
        Some("Topic 'a_b' collides with existing topic: a.b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_assignments_duplicates_and_validate_only() {
    let (_d, b) = open().await;
    let assign = |p: i32, ids: &[i32]| {
        create_topics_request::CreatableReplicaAssignment::default()
            .with_partition_index(p)
            .with_broker_ids(ids.iter().map(|i| BrokerId(*i)).collect())
    };
    let r = create_topics(
        &b,
        vec![
            creatable("m1", -1, 1).with_assignments(vec![assign(0, &[1])]),
            creatable("m2", 1, -1).with_assignments(vec![assign(0, &[1])]),
            creatable("m3", -1, -1).with_assignments(vec![assign(0, &[1]), assign(0, &[1])]),
            creatable("m4", -1, -1).with_assignments(vec![assign(0, &[2])]),
            creatable("m5", -1, -1).with_assignments(vec![assign(0, &[1, 1])]),
            creatable("m6", -1, -1).with_assignments(vec![assign(0, &[1]), assign(2, &[1])]),
            creatable("m7", -1, -1).with_assignments(vec![assign(1, &[1]), assign(0, &[1])]),
        ],
        false,
    )
    .await;
    let codes: Vec<i16> = r.iter().map(|t| t.error_code).collect();
    let ra = E::InvalidReplicaAssignment.code();
    let ir = E::InvalidRequest.code();
    assert_eq!(codes, vec![ir, ir, ra, ra, ra, ra, 0]);
    assert_eq!(r[6].num_partitions, 2);

    // A name given twice is answered once, INVALID_REQUEST, and not created.
    let r = create_topics(
        &b,
        vec![
            creatable("d", 1, 1),
            creatable("ok", 1, 1),
            creatable("d", 2, 1),
        ],
        false,
    )
    .await;
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].name.0.as_str(), r[0].error_code), ("ok", 0));
    assert_eq!((r[1].name.0.as_str(), r[1].error_code), ("d", ir));
    assert_eq!(r[1].error_message.as_deref(), Some("Duplicate topic name."));
    assert!(b.topics.get("d").is_none());

    // validate_only: the full answer, a topic id included, and nothing created.
    let r = create_topics(&b, vec![creatable("v", 3, -1)], true).await;
    assert_eq!(
        (
            r[0].error_code,
            r[0].num_partitions,
            r[0].replication_factor
        ),
        (0, 3, 1)
    );
    assert!(!r[0].topic_id.is_nil());
    assert!(b.topics.get("v").is_none());
    let names: Vec<String> = r[0]
        .configs
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "configs come sorted by name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_topics_resolves_names_and_ids_like_controller_apis() {
    let (_d, b) = open().await;
    create(&b, "a", 1).await;
    create(&b, "b", 1).await;
    create(&b, "c", 1).await;
    let id_b = b.topics.get("b").unwrap().id();
    let id_c = b.topics.get("c").unwrap().id();
    let state = |name: Option<&str>, id: uuid::Uuid| {
        delete_topics_request::DeleteTopicState::default()
            .with_name(name.map(tn))
            .with_topic_id(id)
    };
    let unknown_id = uuid::Uuid::from_u128(7);
    let req = DeleteTopicsRequest::default().with_topics(vec![
        state(Some("a"), uuid::Uuid::nil()),
        state(None, id_b),
        state(Some("c"), id_c),
        state(None, uuid::Uuid::nil()),
        state(None, unknown_id),
        state(Some("zz"), uuid::Uuid::nil()),
        state(Some("zz"), uuid::Uuid::nil()),
    ]);
    let r: DeleteTopicsResponse = call(&b, ApiKey::DeleteTopics, 6, &req).await;
    let find = |name: Option<&str>, id: uuid::Uuid| {
        r.responses
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == name && t.topic_id == id)
            .unwrap_or_else(|| panic!("no answer for {name:?} {id}: {r:?}"))
    };
    assert_eq!(r.responses.len(), 6);
    let id_a = find(Some("a"), b_id_of(&r, "a")).topic_id;
    assert!(
        !id_a.is_nil(),
        "a topic deleted by name is answered with its id"
    );
    assert_eq!(
        find(Some("b"), id_b).error_code,
        0,
        "by id: answered with its name"
    );
    assert_eq!(find(Some("c"), id_c).error_code, E::InvalidRequest.code());
    assert_eq!(
        find(None, uuid::Uuid::nil()).error_code,
        E::InvalidRequest.code()
    );
    let unknown = find(None, unknown_id);
    assert_eq!(unknown.error_code, E::UnknownTopicId.code());
    assert_eq!(
        unknown.error_message.as_deref(),
        Some("This server does not host this topic ID.")
    );
    let dup = find(Some("zz"), uuid::Uuid::nil());
    assert_eq!(
        (dup.error_code, dup.error_message.as_deref()),
        (E::InvalidRequest.code(), Some("Duplicate topic name."))
    );
    assert!(b.topics.get("a").is_none() && b.topics.get("b").is_none());
    assert!(
        b.topics.get("c").is_some(),
        "both name and id given: not deleted"
    );
}

fn b_id_of(r: &DeleteTopicsResponse, name: &str) -> uuid::Uuid {
    r.responses
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(name))
        .map(|t| t.topic_id)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_partitions_answers_like_the_controller() {
    let (_d, b) = open().await;
    create(&b, "t", 2).await;
    create(&b, "u", 1).await;
    let grow = |name: &str, count: i32, assignments: Option<Vec<Vec<i32>>>| {
        create_partitions_request::CreatePartitionsTopic::default()
            .with_name(tn(name))
            .with_count(count)
            .with_assignments(assignments.map(|a| {
                a.into_iter()
                    .map(|ids| {
                        create_partitions_request::CreatePartitionsAssignment::default()
                            .with_broker_ids(ids.into_iter().map(BrokerId).collect())
                    })
                    .collect()
            }))
    };
    let req = CreatePartitionsRequest::default().with_topics(vec![
        grow("missing", 3, None),
        grow("t", 2, None),
        grow("t", 1, None),
        grow("u", 3, Some(vec![vec![1]])),
        grow("u", 2, None),
    ]);
    let r: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 3, &req).await;
    let by = |name: &str| -> Vec<(i16, Option<String>)> {
        r.results
            .iter()
            .filter(|x| x.name.0.as_str() == name)
            .map(|x| {
                (
                    x.error_code,
                    x.error_message.as_ref().map(|m| m.to_string()),
                )
            })
            .collect()
    };
    assert_eq!(
        by("missing"),
        vec![(E::UnknownTopicOrPartition.code(), None)]
    );
    let dup = (
        E::InvalidRequest.code(),
        Some("Duplicate topic name.".to_string()),
    );
    assert_eq!(by("t"), vec![dup.clone()]);
    assert_eq!(by("u"), vec![dup]);

    let req = CreatePartitionsRequest::default()
        .with_topics(vec![grow("t", 2, None), grow("u", 3, Some(vec![vec![1]]))]);
    let r: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 3, &req).await;
    assert_eq!(
        r.results[0].error_message.as_deref(),
        Some("Topic already has 2 partition(s).")
    );
    assert_eq!(r.results[1].error_code, E::InvalidReplicaAssignment.code());
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![grow("t", 1, None), grow("u", 2, Some(vec![vec![2]]))]);
    let r: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 3, &req).await;
    assert_eq!(
        r.results[0].error_message.as_deref(),
        Some("The topic t currently has 2 partition(s); 1 would not be an increase.")
    );
    assert_eq!(r.results[1].error_code, E::InvalidReplicaAssignment.code());
    let req = CreatePartitionsRequest::default().with_topics(vec![grow(
        "u",
        3,
        Some(vec![vec![1], vec![1]]),
    )]);
    let r: CreatePartitionsResponse = call(&b, ApiKey::CreatePartitions, 3, &req).await;
    assert_eq!(
        (
            r.results[0].error_code,
            r.results[0].error_message.as_deref()
        ),
        (0, None)
    );
    assert_eq!(b.topics.get("u").unwrap().partition_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_on_a_compacted_topic_is_a_policy_violation() {
    let (_d, b) = open().await;
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    b.topics.create("c", 1, configs, false).await.unwrap();
    produce(&b, "c", 0, batch(&[b"a"])).await;
    let req = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(tn("c"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(1),
            ]),
    ]);
    let r: DeleteRecordsResponse = call(&b, ApiKey::DeleteRecords, 2, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.error_code, p.low_watermark),
        (E::PolicyViolation.code(), -1)
    );
}

// ---------------------------------------------------------------------------------------
// DescribeConfigs, AlterConfigs, IncrementalAlterConfigs: ConfigHelper, ConfigAdminManager,
// ConfigurationControlManager
// ---------------------------------------------------------------------------------------

fn describe_resource(
    t: i8,
    name: &str,
    keys: Option<Vec<&str>>,
) -> describe_configs_request::DescribeConfigsResource {
    describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(t)
        .with_resource_name(s(name))
        .with_configuration_keys(keys.map(|k| k.into_iter().map(s).collect()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_resources_types_synonyms_and_docs() {
    let (_d, b) = open().await;
    let mut configs = std::collections::BTreeMap::new();
    configs.insert("retention.ms".to_string(), "1000".to_string());
    b.topics.create("t", 1, configs, false).await.unwrap();
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_resource(2, "missing", None),
        describe_resource(2, "bad name", None),
        describe_resource(4, "", None),
        describe_resource(4, "x", None),
        describe_resource(4, "2", None),
        describe_resource(2, "t", Some(vec![])),
    ]);
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &req).await;
    let res = &r.results;
    assert_eq!(
        (res[0].error_code, res[0].error_message.as_deref()),
        (E::UnknownTopicOrPartition.code(), None)
    );
    assert_eq!(res[1].error_code, E::InvalidTopicException.code());
    assert_eq!((res[2].error_code, res[2].configs.len()), (0, 0));
    assert_eq!(
        res[3].error_message.as_deref(),
        Some("Broker id must be an integer, but it is: x")
    );
    assert_eq!(
        res[4].error_message.as_deref(),
        Some("Unexpected broker id, expected 1 or empty string, but received 2")
    );
    // An empty key list means every config, as null does.
    assert!(res[5].configs.len() > 10);
    let retention = res[5]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(
        (
            retention.config_source,
            retention.config_type,
            retention.read_only
        ),
        (1, 5, false)
    );
    assert!(retention.synonyms.is_empty() && retention.documentation.is_none());

    let req = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(vec![describe_resource(
            2,
            "t",
            Some(vec!["retention.ms", "cleanup.policy"]),
        )]);
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &req).await;
    let configs = &r.results[0].configs;
    assert_eq!(configs.len(), 2);
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    let sources: Vec<i8> = retention.synonyms.iter().map(|x| x.source).collect();
    assert_eq!(
        sources,
        vec![1, 5],
        "the override first, then the broker default"
    );
    assert_eq!(retention.synonyms[0].value.as_deref(), Some("1000"));
    assert!(retention.documentation.is_some());
    let policy = configs
        .iter()
        .find(|c| c.name.as_str() == "cleanup.policy")
        .unwrap();
    assert_eq!((policy.config_source, policy.config_type), (5, 7));

    // One unknown resource type fails the request: every resource INVALID_REQUEST.
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_resource(2, "t", None),
        describe_resource(0, "t", None),
    ]);
    let r: DescribeConfigsResponse = call(&b, ApiKey::DescribeConfigs, 4, &req).await;
    assert!(r
        .results
        .iter()
        .all(|x| x.error_code == E::InvalidRequest.code() && x.configs.is_empty()));
}

fn inc_resource(
    t: i8,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> incremental_alter_configs_request::AlterConfigsResource {
    incremental_alter_configs_request::AlterConfigsResource::default()
        .with_resource_type(t)
        .with_resource_name(s(name))
        .with_configs(
            ops.iter()
                .map(|(n, op, v)| {
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s(n))
                        .with_config_operation(*op)
                        .with_value(v.map(s))
                })
                .collect(),
        )
}

async fn incremental(
    b: &std::sync::Arc<strom_broker::Broker>,
    resources: Vec<incremental_alter_configs_request::AlterConfigsResource>,
) -> Vec<(i16, Option<String>)> {
    let req = IncrementalAlterConfigsRequest::default().with_resources(resources);
    let r: IncrementalAlterConfigsResponse =
        call(b, ApiKey::IncrementalAlterConfigs, 1, &req).await;
    r.responses
        .iter()
        .map(|x| {
            (
                x.error_code,
                x.error_message.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_alter_configs_append_subtract_and_checks() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let policy = |b: &std::sync::Arc<strom_broker::Broker>| {
        b.topics
            .get("t")
            .unwrap()
            .meta
            .read()
            .configs
            .get("cleanup.policy")
            .cloned()
    };
    // APPEND starts from the default ("delete").
    let r = incremental(
        &b,
        vec![inc_resource(
            2,
            "t",
            &[("cleanup.policy", 2, Some("compact"))],
        )],
    )
    .await;
    assert_eq!(r[0].0, 0);
    assert_eq!(policy(&b).as_deref(), Some("delete,compact"));
    let r = incremental(
        &b,
        vec![inc_resource(
            2,
            "t",
            &[("cleanup.policy", 3, Some("delete"))],
        )],
    )
    .await;
    assert_eq!(r[0].0, 0);
    assert_eq!(policy(&b).as_deref(), Some("compact"));

    let r = incremental(
        &b,
        vec![
            inc_resource(2, "t", &[("retention.ms", 2, Some("5"))]),
            inc_resource(2, "missing", &[("retention.ms", 0, Some("5"))]),
        ],
    )
    .await;
    assert_eq!(
        r[0],
        (
            E::InvalidConfig.code(),
            Some("Can't APPEND to key retention.ms because its type is not LIST.".into())
        )
    );
    assert_eq!(r[1].0, E::UnknownTopicOrPartition.code());
    let r = incremental(
        &b,
        vec![inc_resource(
            2,
            "t",
            &[("retention.ms", 0, Some("5")), ("retention.ms", 1, None)],
        )],
    )
    .await;
    assert_eq!(
        r[0],
        (
            E::InvalidRequest.code(),
            Some("Error due to duplicate config keys".into())
        )
    );
    let r = incremental(&b, vec![inc_resource(2, "t", &[("retention.ms", 0, None)])]).await;
    assert_eq!(
        r[0],
        (
            E::InvalidRequest.code(),
            Some("Null value not supported for : retention.ms".into())
        )
    );
    let r = incremental(
        &b,
        vec![
            inc_resource(2, "t", &[("retention.ms", 0, Some("5"))]),
            inc_resource(2, "t", &[("retention.ms", 0, Some("6"))]),
        ],
    )
    .await;
    assert!(r.iter().all(|x| x.0 == E::InvalidRequest.code()));
    let r = incremental(
        &b,
        vec![inc_resource(2, "t", &[("no.such.config", 0, Some("1"))])],
    )
    .await;
    assert_eq!(r[0].0, E::InvalidConfig.code());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_alter_configs_unknown_types_and_duplicates() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let res = |t: i8, v: &str| {
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(t)
            .with_resource_name(s("t"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s("retention.ms"))
                .with_value(Some(s(v)))])
    };
    let req =
        AlterConfigsRequest::default().with_resources(vec![res(0, "1"), res(2, "1"), res(2, "2")]);
    let r: AlterConfigsResponse = call(&b, ApiKey::AlterConfigs, 2, &req).await;
    let codes: Vec<i16> = r.responses.iter().map(|x| x.error_code).collect();
    assert_eq!(
        codes,
        vec![E::UnsupportedVersion.code(), E::InvalidRequest.code()],
        "a duplicated resource gets one answer and is not applied"
    );
    assert!(b.topics.get("t").unwrap().meta.read().configs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_kafka_topic_configs_are_accepted() {
    let (_d, b) = open().await;
    let config = |n: &str, v: &str| {
        create_topics_request::CreatableTopicConfig::default()
            .with_name(s(n))
            .with_value(Some(s(v)))
    };
    let r = create_topics(
        &b,
        vec![
            creatable("x", 1, 1).with_configs(vec![
                config("segment.jitter.ms", "10"),
                config("preallocate", "true"),
                config("min.cleanable.dirty.ratio", "0.3"),
                config("max.compaction.lag.ms", "1000"),
            ]),
            creatable("y", 1, 1).with_configs(vec![config("remote.storage.enable", "true")]),
        ],
        false,
    )
    .await;
    assert_eq!(r[0].error_code, 0);
    assert_eq!(r[1].error_code, E::InvalidConfig.code());
}

// ---------------------------------------------------------------------------------------
// acks=0 failures, OffsetForLeaderEpoch
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_produce_that_fails_closes_the_connection() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    let ok = frame(
        ApiKey::Produce,
        V,
        1,
        &produce_request("t", 0, Some(batch(&[b"a"])), 0),
    );
    assert!(matches!(
        b.handle(ok, &ctx()).await,
        strom_broker::Reply::None
    ));
    // KafkaApis closes the connection so the producer notices and refreshes its metadata.
    for bad in [
        produce_request("missing", 0, Some(batch(&[b"a"])), 0),
        produce_request("t", 0, None, 0),
    ] {
        let reply = b.handle(frame(ApiKey::Produce, V, 2, &bad), &ctx()).await;
        assert!(matches!(reply, strom_broker::Reply::Close(_)));
    }
    assert_eq!(fetch(&b, "t", 0, 0).await.high_watermark, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_follows_the_epoch_cache() {
    let (_d, b) = open().await;
    create(&b, "t", 1).await;
    produce(&b, "t", 0, batch(&[b"a", b"b"])).await;
    let ask = |current: i32, epoch: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(tn("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ])
    };
    let mut got = Vec::new();
    for (current, epoch) in [(0, 0), (-1, 0), (0, 1), (0, -1), (0, -3), (1, 0)] {
        let r: OffsetForLeaderEpochResponse =
            call(&b, ApiKey::OffsetForLeaderEpoch, 4, &ask(current, epoch)).await;
        let p = &r.topics[0].partitions[0];
        got.push((p.error_code, p.leader_epoch, p.end_offset));
    }
    assert_eq!(
        got,
        vec![
            (0, 0, 2),
            (0, 0, 2),
            (0, -1, -1),
            (0, -1, -1),
            (0, -3, 0),
            (E::UnknownLeaderEpoch.code(), -1, -1),
        ]
    );
}

/// Story: a topic whose partitions could not be opened (say, out of file descriptors) stayed
/// on disk with its topic.json, unregistered, and the next start failed to load it. A create
/// that fails now removes what it made (`tests/test_disk_faults.py` shows it on a full disk),
/// and whatever already sits at the topic's path, here a file where partition 0 must go, is
/// moved to the trash instead of blocking (or being adopted by) the new topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_directory_neither_blocks_nor_joins_a_new_topic() {
    let (dir, b) = open().await;
    let topic_dir = dir.path().join("blocked");
    std::fs::create_dir_all(&topic_dir).unwrap();
    std::fs::write(topic_dir.join("partition-0"), b"not a directory").unwrap();
    let r = create_topics(&b, vec![creatable("blocked", 1, 1)], false).await;
    assert_eq!(r[0].error_code, 0);
    assert!(topic_dir.join("partition-0").is_dir());
    let p = b.topics.get("blocked").unwrap().partition(0).unwrap();
    assert_eq!(p.with_log(|log| log.log_end_offset()), Some(0));
    // The data dir still loads.
    let config = b.config.as_ref().clone();
    strom_broker::topics::Topics::load(std::sync::Arc::new(config)).unwrap();
}

/// One v2 batch whose records have the given keys (None: no key) and values "v0", "v1", ...
fn batch_keyed(keys: &[Option<&[u8]>], compression: Compression) -> Bytes {
    let values: Vec<String> = (0..keys.len()).map(|i| format!("v{i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (*k, v.as_bytes()))
        .collect();
    batch_of(
        &records,
        BatchSpec {
            compression,
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_topics_refuse_records_without_a_key_one_record_error_each() {
    let (_d, b) = open().await;
    for (topic, policy) in [("c", "compact"), ("cd", "compact,delete")] {
        let config = [("cleanup.policy".to_string(), policy.to_string())]
            .into_iter()
            .collect();
        b.topics.create(topic, 1, config, false).await.unwrap();
        for compression in [Compression::None, Compression::Lz4] {
            let keyless = batch_keyed(&[Some(b"a"), None, Some(b"c"), None], compression);
            // v8+ lists each keyless record by its index in the batch (LogValidator).
            let r = produce_v(&b, 9, topic, 0, Some(keyless.clone()), -1).await;
            assert_eq!(
                r.error_code,
                E::InvalidRecord.code(),
                "{topic} {compression:?}"
            );
            assert_eq!(r.base_offset, -1);
            let indexes: Vec<i32> = r.record_errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, vec![1, 3]);
            let expected = format!(
                "Compacted topic cannot accept message without key in topic partition {topic}-0."
            );
            assert_eq!(
                r.record_errors[0].batch_index_error_message.as_deref(),
                Some(expected.as_str())
            );
            let message = r.error_message.as_deref().unwrap_or_default().to_string();
            assert!(
                message
                    .starts_with("One or more records have been rejected due to 2 record errors"),
                "{message}"
            );
            // Before v8 the same code, without the per-record list.
            let r = produce_v(&b, 7, topic, 0, Some(keyless), -1).await;
            assert_eq!(r.error_code, E::InvalidRecord.code());
            assert!(r.record_errors.is_empty());
        }
        // Keyed records go in; nothing of the refused batches was written.
        let keyed = batch_keyed(&[Some(b"a"), Some(b"b")], Compression::None);
        let r = produce_v(&b, 9, topic, 0, Some(keyed), -1).await;
        assert_eq!((r.error_code, r.base_offset), (0, 0));
    }
    // A topic that is not compacted takes records without keys.
    create(&b, "plain", 1).await;
    let keyless = batch_keyed(&[None], Compression::None);
    let r = produce_v(&b, 9, "plain", 0, Some(keyless), -1).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_removed_in_kafka_4_are_accepted_and_dropped() {
    let (_d, b) = open().await;
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(tn("old"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("message.format.version"))
                    .with_value(Some(s("2.8-IV1"))),
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("message.downconversion.enable"))
                    .with_value(Some(s("true"))),
            ])]);
    let r: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, 5, &create).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let kept = b.topics.get("old").unwrap().meta.read().configs.clone();
    assert!(kept.is_empty(), "{kept:?}");
    // A value that is not a boolean is still refused, as Kafka 3.x did.
    let bad = create
        .clone()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(tn("old2"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("message.downconversion.enable"))
                    .with_value(Some(s("maybe"))),
            ])]);
    let r: CreateTopicsResponse = call(&b, ApiKey::CreateTopics, 5, &bad).await;
    assert_eq!(r.topics[0].error_code, E::InvalidConfig.code());
    // IncrementalAlterConfigs takes them too.
    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("old"))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("message.format.version"))
                    .with_config_operation(0)
                    .with_value(Some(s("3.0"))),
            ]),
    ]);
    let r: IncrementalAlterConfigsResponse =
        call(&b, ApiKey::IncrementalAlterConfigs, 1, &alter).await;
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
    assert!(b.topics.get("old").unwrap().meta.read().configs.is_empty());
}
