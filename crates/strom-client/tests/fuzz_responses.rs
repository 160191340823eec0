//! A hostile broker cannot crash the client: a scripted broker answers every request of the
//! producer, the consumer (assigned and in a group) and the admin with a valid response of
//! the right type, then mutates most of them (flipped bytes, cuts, lengths of 2^31, garbage
//! appended). Whatever arrives, each call must return (`Ok` or an error) within a bound, and
//! no thread may panic.
//!
//! Story: the client's response handling had never met a broker that lies. The generated
//! decoders reserve memory from array lengths on the wire; that is why this binary installs
//! the allocation guard the `strom` binary uses (and the crate docs tell programs that talk to
//! untrusted brokers to do the same). Everything after decoding (record batches, which the
//! client decodes itself, assignments, coordinator answers, offsets) must hold without it.
//!
//! `STROM_FUZZ_SEED=<hex>` replays a run; `STROM_FUZZ_CASES=<n>` runs more cases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, HeaderVersion, Message as _, Request, StrBytes,
};
use strom_client::consumer::assignor::{encode_assignment, encode_subscription};
use strom_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: strom_client::HugeAllocationGuard = strom_client::HugeAllocationGuard;

/// How far the calls got across all cases, so the test cannot pass by failing early.
static CONNECTED: AtomicUsize = AtomicUsize::new(0);
static SENT: AtomicUsize = AtomicUsize::new(0);
static POLLED: AtomicUsize = AtomicUsize::new(0);
static JOINED: AtomicUsize = AtomicUsize::new(0);

/// A call that takes longer than this under a hostile broker is a hang.
const CALL_BOUND: Duration = Duration::from_secs(20);

/// SplitMix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn topic(s: &str) -> TopicName {
    TopicName(name(s))
}

/// A real record batch for fetch answers, written by the client's own producer path.
fn record_batch() -> Bytes {
    // base offset 0, one record "v" with a repeated header; built by hand (magic 2).
    let mut records = BytesMut::new();
    let body: &[u8] = &[
        0, 0, 0, 2, b'k', 2, b'v', 4, 2, b'h', 2, b'1', 2, b'h', 2, b'2',
    ];
    records.put_u8((body.len() as u8) << 1);
    records.put_slice(body);
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32(0);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(0);
    b.put_i32(0);
    b.put_i64(1_700_000_000_000);
    b.put_i64(1_700_000_000_000);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(1);
    b.put_slice(&records);
    let len = (b.len() - 12) as i32;
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

fn encode<R: Encodable + HeaderVersion>(correlation_id: i32, r: &R, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    r.encode(&mut buf, version).unwrap();
    buf
}

/// A valid answer to one request, or `None` for an API this broker does not script.
fn answer(api_key: i16, version: i16, correlation_id: i32, port: i32) -> Option<BytesMut> {
    let c = correlation_id;
    let v = version;
    let key = ApiKey::try_from(api_key).ok()?;
    Some(match key {
        ApiKey::ApiVersions => {
            let keys = [
                (ProduceRequest::KEY, ProduceRequest::VERSIONS.max),
                (FetchRequest::KEY, FetchRequest::VERSIONS.max),
                (ListOffsetsRequest::KEY, ListOffsetsRequest::VERSIONS.max),
                (MetadataRequest::KEY, MetadataRequest::VERSIONS.max),
                (OffsetCommitRequest::KEY, OffsetCommitRequest::VERSIONS.max),
                (OffsetFetchRequest::KEY, OffsetFetchRequest::VERSIONS.max),
                (
                    FindCoordinatorRequest::KEY,
                    FindCoordinatorRequest::VERSIONS.max,
                ),
                (JoinGroupRequest::KEY, JoinGroupRequest::VERSIONS.max),
                (HeartbeatRequest::KEY, HeartbeatRequest::VERSIONS.max),
                (LeaveGroupRequest::KEY, LeaveGroupRequest::VERSIONS.max),
                (SyncGroupRequest::KEY, SyncGroupRequest::VERSIONS.max),
                (ApiVersionsRequest::KEY, 3),
                (
                    InitProducerIdRequest::KEY,
                    InitProducerIdRequest::VERSIONS.max,
                ),
            ];
            let r = ApiVersionsResponse::default().with_api_keys(
                keys.iter()
                    .map(|(k, max)| {
                        ApiVersion::default()
                            .with_api_key(*k)
                            .with_min_version(0)
                            .with_max_version(*max)
                    })
                    .collect(),
            );
            encode(c, &r, v)
        }
        ApiKey::Metadata => {
            let partitions = (0..2)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(0))
                        .with_replica_nodes(vec![BrokerId(0)])
                        .with_isr_nodes(vec![BrokerId(0)])
                })
                .collect();
            let r = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(BrokerId(0))
                    .with_host(name("127.0.0.1"))
                    .with_port(port)])
                .with_controller_id(BrokerId(0))
                .with_topics(vec![MetadataResponseTopic::default()
                    .with_name(Some(topic("t")))
                    .with_partitions(partitions)]);
            encode(c, &r, v)
        }
        ApiKey::Produce => {
            let r =
                ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                    .with_name(topic("t"))
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(0)
                        .with_base_offset(7)])]);
            encode(c, &r, v)
        }
        ApiKey::Fetch => {
            let r =
                FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(topic("t"))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(0)
                        .with_high_watermark(1)
                        .with_records(Some(record_batch()))])]);
            encode(c, &r, v)
        }
        ApiKey::ListOffsets => {
            let r = ListOffsetsResponse::default().with_topics(vec![
                ListOffsetsTopicResponse::default()
                    .with_name(topic("t"))
                    .with_partitions(
                        (0..2)
                            .map(|p| {
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p)
                                    .with_offset(0)
                            })
                            .collect(),
                    ),
            ]);
            encode(c, &r, v)
        }
        ApiKey::FindCoordinator => {
            let r = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(0))
                .with_host(name("127.0.0.1"))
                .with_port(port);
            encode(c, &r, v)
        }
        ApiKey::JoinGroup => {
            let sub = encode_subscription(&["t".to_string()]).unwrap();
            let r = JoinGroupResponse::default()
                .with_generation_id(1)
                .with_protocol_type(Some(name("consumer")))
                .with_protocol_name(Some(name("range")))
                .with_leader(name("m1"))
                .with_member_id(name("m1"))
                .with_members(vec![JoinGroupResponseMember::default()
                    .with_member_id(name("m1"))
                    .with_metadata(sub)]);
            encode(c, &r, v)
        }
        ApiKey::SyncGroup => {
            let mut parts = std::collections::BTreeMap::new();
            parts.insert("t".to_string(), vec![0, 1]);
            let r = SyncGroupResponse::default()
                .with_protocol_type(Some(name("consumer")))
                .with_protocol_name(Some(name("range")))
                .with_assignment(encode_assignment(&parts).unwrap());
            encode(c, &r, v)
        }
        ApiKey::Heartbeat => encode(c, &HeartbeatResponse::default(), v),
        ApiKey::LeaveGroup => encode(c, &LeaveGroupResponse::default(), v),
        ApiKey::OffsetCommit => encode(c, &OffsetCommitResponse::default(), v),
        ApiKey::OffsetFetch => {
            let r = OffsetFetchResponse::default().with_topics(vec![
                OffsetFetchResponseTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![OffsetFetchResponsePartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(-1)]),
            ]);
            encode(c, &r, v)
        }
        ApiKey::InitProducerId => {
            let r = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(1))
                .with_producer_epoch(0);
            encode(c, &r, v)
        }
        _ => return None,
    })
}

/// Damages a response the way a buggy or hostile broker might; the correlation id (the
/// first four bytes) is kept so the answer reaches the request it lies to.
fn mutate(rng: &mut Rng, mut buf: BytesMut) -> BytesMut {
    if buf.len() <= 4 {
        return buf;
    }
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = 4 + rng.below(buf.len() - 4);
                buf[i] ^= 1 << rng.below(8);
            }
        }
        1 => {
            let keep = 4 + rng.below(buf.len() - 4);
            buf.truncate(keep);
        }
        2 | 3 => {
            // A length or count of 2^31-1, -1 or 2^31 at a random place.
            let huge: [[u8; 4]; 3] = [[0x7f, 0xff, 0xff, 0xff], [0xff; 4], [0x80, 0, 0, 0]];
            let value = huge[rng.below(3)];
            if buf.len() >= 8 {
                let i = 4 + rng.below(buf.len() - 7);
                buf[i..i + 4].copy_from_slice(&value);
            }
        }
        4 => {
            for _ in 0..rng.below(64) {
                buf.put_u8(rng.next() as u8);
            }
        }
        _ => {
            let i = 4 + rng.below(buf.len() - 4);
            for b in buf[i..].iter_mut() {
                *b = 0xff;
            }
        }
    }
    buf
}

/// Serves one connection: ApiVersions honestly, everything else damaged `damage_percent` of
/// the time.
async fn serve(mut stream: TcpStream, port: i32, rng: Arc<Mutex<Rng>>, damage_percent: usize) {
    loop {
        let Ok(size) = stream.read_i32().await else {
            return;
        };
        let Ok(size) = usize::try_from(size) else {
            return;
        };
        let mut body = BytesMut::zeroed(size.min(64 << 20));
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut body = body.freeze();
        let Ok(header) = decode_request_header_from_buffer(&mut body) else {
            return;
        };
        let _ = body.remaining();
        if header.request_api_key == ProduceRequest::KEY {
            // acks=0 requests get no answer; this script only serves acks=all.
        }
        let Some(valid) = answer(
            header.request_api_key,
            header.request_api_version,
            header.correlation_id,
            port,
        ) else {
            return;
        };
        let out = {
            let mut rng = rng.lock().unwrap();
            if header.request_api_key != ApiVersionsRequest::KEY && rng.below(100) < damage_percent
            {
                mutate(&mut rng, valid)
            } else {
                valid
            }
        };
        let mut frame = BytesMut::with_capacity(out.len() + 4);
        frame.put_i32(out.len() as i32);
        frame.put_slice(&out);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// Runs every client call once against a fresh hostile broker.
async fn one_case(seed: u64, damage_percent: usize) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let rng = Arc::new(Mutex::new(Rng(seed)));
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, i32::from(port), rng.clone(), damage_percent));
        }
    });
    let client_config = ClientConfig {
        request_timeout: Duration::from_millis(1500),
        connect_attempts_max: 1,
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(50),
        request_retries_max: 2,
        ..ClientConfig::default()
    };
    let bounded = |what: &'static str| {
        move |r: Result<(), tokio::time::error::Elapsed>| {
            assert!(r.is_ok(), "seed {seed:#x}: {what} hung for {CALL_BOUND:?}");
        }
    };
    let config = client_config.clone();
    let a = addr.clone();
    bounded("producer")(
        tokio::time::timeout(CALL_BOUND, async move {
            let Ok(client) = Client::connect_with(&a, config).await else {
                return;
            };
            CONNECTED.fetch_add(1, Ordering::Relaxed);
            let producer = Producer::from_client(
                client,
                ProducerConfig {
                    delivery_timeout_ms: 2_000,
                    max_block_ms: 500,
                    ..ProducerConfig::default()
                },
            );
            for i in 0..3 {
                let record = ProducerRecord::new("t", format!("v{i}")).partition(0);
                if producer.send_record(record).await.is_ok() {
                    SENT.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = producer.close().await;
        })
        .await,
    );
    let config = client_config.clone();
    let a = addr.clone();
    bounded("assigned consumer")(
        tokio::time::timeout(CALL_BOUND, async move {
            let Ok(mut consumer) = Consumer::connect_with(
                &a,
                ConsumerConfig {
                    client: config,
                    ..ConsumerConfig::default()
                },
            )
            .await
            else {
                return;
            };
            if consumer.assign_topic("t").await.is_ok() {
                for _ in 0..3 {
                    if let Ok(m) = consumer.poll(Duration::from_millis(100)).await {
                        POLLED.fetch_add(m.len(), Ordering::Relaxed);
                    }
                }
                let _ = consumer.end_offsets().await;
            }
        })
        .await,
    );
    let config = client_config.clone();
    let a = addr.clone();
    bounded("group consumer")(
        tokio::time::timeout(CALL_BOUND, async move {
            let Ok(mut consumer) = Consumer::connect_with(
                &a,
                ConsumerConfig {
                    client: config,
                    heartbeat_interval_ms: 50,
                    ..ConsumerConfig::with_group("g")
                },
            )
            .await
            else {
                return;
            };
            if consumer.subscribe(&["t"]).await.is_ok() {
                for _ in 0..2 {
                    let _ = consumer.poll(Duration::from_millis(200)).await;
                }
                if !consumer.assignment().is_empty() {
                    JOINED.fetch_add(1, Ordering::Relaxed);
                }
                let _ = consumer.commit().await;
            }
            let _ = consumer.close().await;
        })
        .await,
    );
    let a = addr.clone();
    bounded("admin")(
        tokio::time::timeout(CALL_BOUND, async move {
            if let Ok(admin) = Admin::connect_with(&a, client_config).await {
                let _ = admin.list_topics().await;
                let _ = admin.describe_topic("t").await;
            }
        })
        .await,
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_broker_never_crashes_the_client() {
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let seed = std::env::var("STROM_FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let cases: u64 = std::env::var("STROM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    eprintln!("fuzz seed {seed:#x} ({cases} cases); replay with STROM_FUZZ_SEED={seed:x}");
    // Case 0 is undamaged: the script itself must let every call through.
    for case in 0..=cases {
        one_case(seed.wrapping_add(case), if case == 0 { 0 } else { 70 }).await;
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "a client thread panicked in case {case}; replay with STROM_FUZZ_SEED={seed:x}"
        );
    }
    let progress = [&CONNECTED, &SENT, &POLLED, &JOINED].map(|c| c.load(Ordering::Relaxed));
    eprintln!(
        "connected {}, sent {}, polled {}, joined {}",
        progress[0], progress[1], progress[2], progress[3]
    );
    assert!(
        progress.iter().all(|n| *n > 0),
        "the hostile broker must let some calls through (connected, sent, polled, joined): {progress:?}"
    );
}
