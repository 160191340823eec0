//! Stale metadata is refreshed everywhere: a scripted broker (a single `strom serve` never
//! moves a leader or a coordinator) answers NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION
//! and NOT_COORDINATOR once or until the client asks again, and drops a broker from its
//! cluster; the client must ask Metadata or FindCoordinator again and carry on, as Kafka's
//! clients do.
//!
//! Story: ListOffsets failed at once on NOT_LEADER_OR_FOLLOWER with the stale leader cached,
//! the group join loop retried JoinGroup on the old coordinator's connection after
//! NOT_COORDINATOR until it gave up, and a broker that left the cluster stayed in the cache.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{
    decode_request_header_from_buffer, Encodable, HeaderVersion, Message as _, Request, StrBytes,
};
use strom_client::consumer::assignor::{encode_assignment, encode_subscription};
use strom_client::offsets::{list_offsets, OffsetSpec};
use strom_client::{Client, Consumer, ConsumerConfig, Producer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted broker has been asked, and how it answers next.
#[derive(Default)]
struct Script {
    port: i32,
    metadata: usize,
    find_coordinator: usize,
    list_offsets: usize,
    join_group: usize,
    produce: usize,
    /// Metadata lists a second broker (id 1) until this many Metadata requests were answered.
    second_broker_until: usize,
    /// The first `n` ListOffsets answers carry this error code.
    list_offsets_errors: Vec<i16>,
    /// JoinGroup answers NOT_COORDINATOR until FindCoordinator was asked this many times.
    coordinator_moves_until: usize,
    /// The first Produce answers carry these error codes.
    produce_errors: Vec<i16>,
}

fn name(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
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

fn answer(s: &mut Script, api: i16, v: i16, c: i32) -> Option<BytesMut> {
    let key = ApiKey::try_from(api).ok()?;
    Some(match key {
        ApiKey::ApiVersions => {
            let keys = [
                (ProduceRequest::KEY, ProduceRequest::VERSIONS.max),
                (ListOffsetsRequest::KEY, ListOffsetsRequest::VERSIONS.max),
                (FetchRequest::KEY, FetchRequest::VERSIONS.max),
                (MetadataRequest::KEY, MetadataRequest::VERSIONS.max),
                (
                    FindCoordinatorRequest::KEY,
                    FindCoordinatorRequest::VERSIONS.max,
                ),
                (JoinGroupRequest::KEY, JoinGroupRequest::VERSIONS.max),
                (SyncGroupRequest::KEY, SyncGroupRequest::VERSIONS.max),
                (HeartbeatRequest::KEY, HeartbeatRequest::VERSIONS.max),
                (OffsetFetchRequest::KEY, OffsetFetchRequest::VERSIONS.max),
                (
                    InitProducerIdRequest::KEY,
                    InitProducerIdRequest::VERSIONS.max,
                ),
                (ApiVersionsRequest::KEY, 3),
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
            s.metadata += 1;
            let mut brokers = vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(name("127.0.0.1"))
                .with_port(s.port)];
            if s.metadata <= s.second_broker_until {
                brokers.push(
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(name("127.0.0.1"))
                        .with_port(1),
                );
            }
            let r = MetadataResponse::default()
                .with_brokers(brokers)
                .with_topics(vec![MetadataResponseTopic::default()
                    .with_name(Some(TopicName(name("t"))))
                    .with_partitions(vec![MetadataResponsePartition::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(0))
                        .with_replica_nodes(vec![BrokerId(0)])
                        .with_isr_nodes(vec![BrokerId(0)])])]);
            encode(c, &r, v)
        }
        ApiKey::ListOffsets => {
            s.list_offsets += 1;
            let code = s
                .list_offsets_errors
                .get(s.list_offsets - 1)
                .copied()
                .unwrap_or(0);
            let r = ListOffsetsResponse::default().with_topics(vec![
                ListOffsetsTopicResponse::default()
                    .with_name(TopicName(name("t")))
                    .with_partitions(vec![ListOffsetsPartitionResponse::default()
                        .with_partition_index(0)
                        .with_error_code(code)
                        .with_offset(if code == 0 { 42 } else { -1 })]),
            ]);
            encode(c, &r, v)
        }
        ApiKey::FindCoordinator => {
            s.find_coordinator += 1;
            let r = FindCoordinatorResponse::default()
                .with_node_id(BrokerId(0))
                .with_host(name("127.0.0.1"))
                .with_port(s.port);
            encode(c, &r, v)
        }
        ApiKey::JoinGroup => {
            s.join_group += 1;
            if s.find_coordinator < s.coordinator_moves_until {
                let r = JoinGroupResponse::default().with_error_code(16); // NOT_COORDINATOR
                return Some(encode(c, &r, v));
            }
            let r = JoinGroupResponse::default()
                .with_generation_id(1)
                .with_protocol_type(Some(name("consumer")))
                .with_protocol_name(Some(name("range")))
                .with_leader(name("m1"))
                .with_member_id(name("m1"))
                .with_members(vec![JoinGroupResponseMember::default()
                    .with_member_id(name("m1"))
                    .with_metadata(encode_subscription(&["t".to_string()]).unwrap())]);
            encode(c, &r, v)
        }
        ApiKey::SyncGroup => {
            let mut parts = std::collections::BTreeMap::new();
            parts.insert("t".to_string(), vec![0]);
            let r = SyncGroupResponse::default()
                .with_protocol_type(Some(name("consumer")))
                .with_protocol_name(Some(name("range")))
                .with_assignment(encode_assignment(&parts).unwrap());
            encode(c, &r, v)
        }
        ApiKey::Heartbeat => encode(c, &HeartbeatResponse::default(), v),
        ApiKey::Fetch => encode(c, &FetchResponse::default(), v),
        // No committed offsets.
        ApiKey::OffsetFetch => encode(c, &OffsetFetchResponse::default(), v),
        ApiKey::InitProducerId => {
            let r = InitProducerIdResponse::default()
                .with_producer_id(ProducerId(9))
                .with_producer_epoch(0);
            encode(c, &r, v)
        }
        ApiKey::Produce => {
            s.produce += 1;
            let code = s.produce_errors.get(s.produce - 1).copied().unwrap_or(0);
            let r =
                ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                    .with_name(TopicName(name("t")))
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(0)
                        .with_error_code(code)
                        .with_base_offset(if code == 0 { 5 } else { -1 })])]);
            encode(c, &r, v)
        }
        _ => return None,
    })
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    loop {
        let Ok(size) = stream.read_i32().await else {
            return;
        };
        let mut body = BytesMut::zeroed(size.max(0) as usize);
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let mut body = body.freeze();
        let Ok(h) = decode_request_header_from_buffer(&mut body) else {
            return;
        };
        let out = {
            let mut s = script.lock().unwrap();
            answer(
                &mut s,
                h.request_api_key,
                h.request_api_version,
                h.correlation_id,
            )
        };
        let Some(out) = out else { return };
        let mut frame = BytesMut::new();
        frame.put_i32(out.len() as i32);
        frame.put_slice(&out);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn scripted(script: Script) -> (String, Arc<Mutex<Script>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(Mutex::new(Script {
        port: i32::from(port),
        ..script
    }));
    let shared = script.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, shared.clone()));
        }
    });
    (format!("127.0.0.1:{port}"), script)
}

#[tokio::test]
async fn list_offsets_refreshes_metadata_after_not_leader_and_unknown_partition() {
    let (addr, script) = scripted(Script {
        list_offsets_errors: vec![6, 3], // NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION
        ..Script::default()
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    let parts = [("t".to_string(), 0)];
    let found = list_offsets(&client, &parts, OffsetSpec::Latest)
        .await
        .unwrap();
    assert_eq!(found[&("t".to_string(), 0)], 42);
    let s = script.lock().unwrap();
    assert_eq!(s.list_offsets, 3);
    // Bootstrap (which already names the topic), then one refresh after each error.
    assert_eq!(s.metadata, 3);
}

#[tokio::test]
async fn the_join_loop_finds_the_coordinator_again_after_not_coordinator() {
    let (addr, script) = scripted(Script {
        coordinator_moves_until: 3,
        ..Script::default()
    })
    .await;
    let mut consumer = Consumer::connect_with(&addr, ConsumerConfig::with_group("g"))
        .await
        .unwrap();
    consumer.subscribe(&["t"]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), consumer.poll(Duration::ZERO))
        .await
        .expect("the join finishes")
        .unwrap();
    assert_eq!(consumer.assignment(), vec![("t".to_string(), 0)]);
    let s = script.lock().unwrap();
    assert!(
        s.find_coordinator >= 3,
        "FindCoordinator asked {} times",
        s.find_coordinator
    );
    assert_eq!(s.join_group, 3, "one JoinGroup per coordinator look-up");
}

#[tokio::test]
async fn brokers_that_left_the_cluster_are_forgotten() {
    let (addr, _script) = scripted(Script {
        second_broker_until: 1,
        ..Script::default()
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    assert_eq!(client.brokers().len(), 2);
    client.metadata(None).await.unwrap();
    let ids: Vec<i32> = client.brokers().iter().map(|b| b.id).collect();
    assert_eq!(ids, vec![0], "broker 1 left");
    assert!(client.broker_addr(1).is_err());
}

#[tokio::test]
async fn produce_refreshes_metadata_after_not_leader_and_delivers() {
    let (addr, script) = scripted(Script {
        produce_errors: vec![6],
        ..Script::default()
    })
    .await;
    let producer = Producer::connect(&addr).await.unwrap();
    let before = script.lock().unwrap().metadata;
    assert_eq!(producer.send("t", "v", 0).await.unwrap(), 5);
    let s = script.lock().unwrap();
    assert_eq!(s.produce, 2);
    assert!(
        s.metadata > before,
        "metadata refreshed after NOT_LEADER_OR_FOLLOWER"
    );
}
