//! Shared by the conformance and fuzz tests: an in-process broker on a temp data dir, a typed
//! request/response round trip through `Broker::handle` (the bytes a socket would carry), and
//! record batches built with `kafka-protocol`'s own encoder.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_broker::{Broker, ConfigBuilder, Reply, RequestContext};

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn tn(v: &str) -> TopicName {
    TopicName(s(v))
}

/// A broker on a fresh temp dir, with `settings` on top of fast test defaults.
pub async fn open_with(settings: &[(&str, &str)]) -> (tempfile::TempDir, Arc<Broker>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ConfigBuilder::new();
    config
        .set("data.dir", dir.path().to_str().unwrap(), "test")
        .unwrap();
    config
        .set("group.initial.rebalance.delay.ms", "0", "test")
        .unwrap();
    config.set("log.fsync", "never", "test").unwrap();
    // Test batches carry fixed 2023 timestamps; the retention pass that runs as the broker
    // starts would otherwise race the first produce and delete them.
    config.set("log.retention.ms", "-1", "test").unwrap();
    for (k, v) in settings {
        config.set(k, v, "test").unwrap();
    }
    let broker = Broker::open(config.build().unwrap()).unwrap();
    (dir, broker)
}

pub async fn open() -> (tempfile::TempDir, Arc<Broker>) {
    open_with(&[]).await
}

pub async fn create(broker: &Arc<Broker>, topic: &str, partitions: i32) {
    broker
        .topics
        .create(topic, partitions, Default::default(), false)
        .await
        .unwrap();
}

pub fn ctx() -> RequestContext {
    RequestContext::anonymous("127.0.0.1")
}

/// Encodes a request frame body (header + body) for `key` at `version`.
pub fn frame<Req: Encodable>(key: ApiKey, version: i16, correlation_id: i32, req: &Req) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("conformance")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// The response bytes of one frame, or None for no response (acks=0). Panics on Close.
pub async fn raw(broker: &Arc<Broker>, frame: Bytes) -> Option<Bytes> {
    match broker.handle(frame, &ctx()).await {
        Reply::Ready(b) => Some(b.freeze()),
        Reply::Deferred(f) => f.await.map(|b| b.freeze()),
        Reply::None => None,
        Reply::Close(reason) => panic!("connection closed: {reason}"),
    }
}

/// One typed round trip through `Broker::handle`.
pub async fn call<Req, Resp>(broker: &Arc<Broker>, key: ApiKey, version: i16, req: &Req) -> Resp
where
    Req: Encodable,
    Resp: Decodable + HeaderVersion,
{
    let mut bytes = raw(broker, frame(key, version, 7, req))
        .await
        .expect("a response");
    let size = i32::from_be_bytes(bytes[..4].try_into().unwrap());
    assert_eq!(size as usize, bytes.len() - 4);
    let _ = bytes.split_to(4);
    let header = ResponseHeader::decode(&mut bytes, Resp::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let resp = Resp::decode(&mut bytes, version).unwrap();
    assert!(
        bytes.is_empty(),
        "{key:?} v{version}: trailing response bytes"
    );
    resp
}

/// Options for [`batch_with`].
#[derive(Clone, Copy)]
pub struct BatchSpec {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub timestamp_ms: i64,
    pub compression: Compression,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            timestamp_ms: 1_700_000_000_000,
            compression: Compression::None,
        }
    }
}

/// One v2 record batch holding `values` (keys "k0", "k1", ...), one millisecond apart.
pub fn batch_with(values: &[&[u8]], spec: BatchSpec) -> Bytes {
    let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| (Some(k.as_bytes()), *v))
        .collect();
    batch_of(&records, spec)
}

/// One v2 record batch of `(key, value)` records (a `None` key: no key), one millisecond
/// apart.
pub fn batch_of(records: &[(Option<&[u8]>, &[u8])], spec: BatchSpec) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: spec.producer_id,
            producer_epoch: spec.producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The codec starts a new batch whenever `offset - sequence` changes.
            sequence: spec.base_sequence.max(0).wrapping_add(i as i32),
            timestamp: spec.timestamp_ms + i as i64,
            key: k.map(Bytes::copy_from_slice),
            value: Some(Bytes::copy_from_slice(v)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: spec.compression,
        },
    )
    .unwrap();
    if spec.base_sequence < 0 {
        buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut buf);
    }
    buf.freeze()
}

pub fn batch(values: &[&[u8]]) -> Bytes {
    batch_with(values, BatchSpec::default())
}

/// Rewrites the CRC-32C of a (possibly edited) v2 batch so only the intended damage remains.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = strom_log::batch::compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

pub fn produce_request(
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(tn(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(records),
            ])])
}

/// Produces `records` at `version` and returns the single partition answer.
pub async fn produce_v(
    broker: &Arc<Broker>,
    version: i16,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> produce_response::PartitionProduceResponse {
    let resp: ProduceResponse = call(
        broker,
        ApiKey::Produce,
        version,
        &produce_request(topic, partition, records, acks),
    )
    .await;
    resp.responses[0].partition_responses[0].clone()
}

pub async fn produce(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    produce_v(broker, 9, topic, partition, Some(records), -1).await
}

pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(tn(topic))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(max_bytes)])])
}

/// Fetches one partition at v12 (names, not ids) and returns its answer.
pub async fn fetch(
    broker: &Arc<Broker>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> fetch_response::PartitionData {
    let resp: FetchResponse = call(
        broker,
        ApiKey::Fetch,
        12,
        &fetch_request(topic, partition, offset, 1 << 20),
    )
    .await;
    resp.responses[0].partitions[0].clone()
}
