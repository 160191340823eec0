//! No input can panic the request handlers: property tests that feed `Broker::handle`
//! (in-process, temp data dir) with random frames, valid requests of every served API and
//! version with random mutations, and requests with extreme field values. Each case must
//! return a `Reply` within a time bound; afterwards the broker must still serve a normal
//! produce and fetch with the data written before the fuzzing intact.
//!
//! Story: the handlers turned numbers from the wire into sizes, indexes and durations
//! (`max_bytes as usize`, `partition_index`, `max_wait_ms`). A negative or huge value in any of
//! them is one panic — and one panic in a handler is a dropped connection at best. These tests
//! make every such number a fuzz target.
//!
//! The generated decoders reserve `Vec::with_capacity(n)` from array lengths read off the wire;
//! a mutation that claims 2^31 elements would abort this process the way it once aborted the
//! broker. The `strom` binary guards against that with its global allocator
//! (`strom_protocol::alloc_guard`); this test binary installs the same guard so mutations may
//! claim any length, as a hostile client can.
//!
//! Each test prints its seed on failure; `STROM_FUZZ_SEED=<hex>` replays it and
//! `STROM_FUZZ_CASES=<n>` runs more cases.

mod conformance_common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use conformance_common::*;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use strom_broker::{Broker, Reply};
use strom_protocol::versions::{min_served_version, SUPPORTED};

#[path = "txn_requests/mod.rs"]
mod txn_requests;

// The allocation guard of the `strom` binary.
#[global_allocator]
static GLOBAL: strom_protocol::alloc_guard::HugeAllocationGuard =
    strom_protocol::alloc_guard::HugeAllocationGuard;

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The topic written before fuzzing and checked after; no generated request names it.
const INTACT: &str = "intact-topic";
/// The topic the generated requests aim at.
const FUZZ: &str = "fuzz";
/// A case that takes longer than this is a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(20);

struct Harness {
    rt: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
    kept: Bytes,
}

impl Harness {
    fn new() -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (dir, broker, kept) = rt.block_on(async {
            let (dir, broker) = open().await;
            create(&broker, INTACT, 1).await;
            create(&broker, FUZZ, 2).await;
            let kept = batch(&[b"kept-1", b"kept-2"]);
            let r = produce(&broker, INTACT, 0, kept.clone()).await;
            assert_eq!(r.error_code, 0);
            let r = produce(&broker, FUZZ, 0, batch(&[b"f"])).await;
            assert_eq!(r.error_code, 0);
            (dir, broker, kept)
        });
        Harness {
            rt,
            broker,
            _dir: dir,
            kept,
        }
    }

    /// One frame through `Broker::handle`; Err if it hangs. Panics propagate to proptest.
    fn handle(&self, frame: Bytes) -> Result<(), TestCaseError> {
        let broker = self.broker.clone();
        self.rt.block_on(async move {
            let reply = tokio::time::timeout(CASE_TIMEOUT, broker.handle(frame, &ctx()))
                .await
                .map_err(|_| TestCaseError::fail("handle did not return"))?;
            if let Reply::Deferred(f) = reply {
                tokio::time::timeout(CASE_TIMEOUT, f)
                    .await
                    .map_err(|_| TestCaseError::fail("deferred reply did not finish"))?;
            }
            Ok(())
        })
    }

    /// The data written before fuzzing is still there, and a normal produce/fetch works.
    fn assert_intact(&self) {
        self.rt.block_on(async {
            let more = batch(&[b"after"]);
            let r = produce(&self.broker, INTACT, 0, more.clone()).await;
            assert_eq!(
                (r.error_code, r.base_offset),
                (0, 2),
                "produce after fuzzing"
            );
            let f = fetch(&self.broker, INTACT, 0, 0).await;
            assert_eq!(f.error_code, 0);
            assert_eq!(f.high_watermark, 3);
            let records = f.records.unwrap();
            assert_eq!(records.len(), self.kept.len() + more.len());
            // Everything but the broker-patched base offset and leader epoch is as sent.
            assert_eq!(&records[16..self.kept.len()], &self.kept[16..]);
            assert_eq!(&records[self.kept.len() + 16..], &more[16..]);
        });
    }
}

fn cases(default: u32) -> u32 {
    std::env::var("STROM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `strategy` through `check`, printing the seed on failure, then checks the broker.
fn run<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    check: impl Fn(&Harness, S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let seed: [u8; 32] = match std::env::var("STROM_FUZZ_SEED") {
        Ok(hex) => {
            let mut seed = [0u8; 32];
            for (i, byte) in seed.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16)
                    .expect("STROM_FUZZ_SEED is 64 hex digits");
            }
            seed
        }
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let mut seed = [0u8; 32];
            seed[..16].copy_from_slice(&nanos.to_le_bytes());
            seed
        }
    };
    let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
    let config = Config {
        cases: cases(default_cases),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let harness = Harness::new();
    let result = runner.run(&strategy, |v| check(&harness, v));
    if let Err(e) = result {
        panic!("{name}: {e}\nreplay with STROM_FUZZ_SEED={hex}");
    }
    harness.assert_intact();
}

/// All served (API, version) pairs.
fn served() -> Vec<(ApiKey, i16)> {
    SUPPORTED
        .iter()
        .flat_map(|a| (min_served_version(a.key)..=a.max).map(move |v| (a.key, v)))
        .collect()
}

fn header(key: ApiKey, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(s("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    buf
}

fn encoded<T: Encodable>(key: ApiKey, version: i16, body: &T) -> (Bytes, usize) {
    let mut buf = header(key, version);
    let header_len = buf.len();
    body.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
    (buf.freeze(), header_len)
}

// ---------------------------------------------------------------------------------------
// Valid requests of every served API and version (the mutation bases)
// ---------------------------------------------------------------------------------------

/// A valid frame for `key` at `version` that reaches deep into its handler, and the length
/// of its header (mutations aim at the body).
fn base_request(key: ApiKey, v: i16) -> (Bytes, usize) {
    let topic = tn(FUZZ);
    let by_id = v >= 13;
    match key {
        ApiKey::ApiVersions => encoded(
            key,
            v,
            &if v >= 3 {
                ApiVersionsRequest::default()
                    .with_client_software_name(s("fuzz"))
                    .with_client_software_version(s("1.0"))
            } else {
                ApiVersionsRequest::default()
            },
        ),
        ApiKey::Metadata => encoded(
            key,
            v,
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(v < 4)
                .with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic)),
                    metadata_request::MetadataRequestTopic::default().with_name(Some(tn("other"))),
                ])),
        ),
        ApiKey::Produce => encoded(
            key,
            v,
            &ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![produce_request::TopicProduceData::default()
                    .with_name(topic)
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(1)
                            .with_records(Some(batch(&[b"v1", b"v2"]))),
                        produce_request::PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(&[b"v3"]))),
                    ])]),
        ),
        ApiKey::Fetch => encoded(
            key,
            v,
            &FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(5)
                .with_min_bytes(1)
                .with_max_bytes(65536)
                .with_session_epoch(-1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(if by_id { TopicName::default() } else { topic })
                    .with_partitions(vec![
                        fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_current_leader_epoch(-1)
                            .with_partition_max_bytes(4096),
                        fetch_request::FetchPartition::default()
                            .with_partition(1)
                            .with_fetch_offset(0)
                            .with_current_leader_epoch(-1)
                            .with_partition_max_bytes(4096),
                    ])])
                .with_forgotten_topics_data(vec![]),
        ),
        ApiKey::ListOffsets => encoded(
            key,
            v,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic)
                    .with_partitions(
                        [-1i64, -2, -3, 0]
                            .iter()
                            .enumerate()
                            .map(|(i, ts)| {
                                list_offsets_request::ListOffsetsPartition::default()
                                    .with_partition_index(i as i32 % 2)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(*ts)
                            })
                            .collect(),
                    )]),
        ),
        ApiKey::CreateTopics => encoded(
            key,
            v,
            &CreateTopicsRequest::default()
                .with_validate_only(true)
                .with_timeout_ms(1000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(tn("created"))
                    .with_num_partitions(2)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000"))),
                    ])]),
        ),
        ApiKey::DeleteTopics => encoded(
            key,
            v,
            &if v >= 6 {
                DeleteTopicsRequest::default()
                    .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(tn("missing")))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![tn("missing")])
            },
        ),
        ApiKey::CreatePartitions => encoded(
            key,
            v,
            &CreatePartitionsRequest::default()
                .with_validate_only(true)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic)
                        .with_count(3)
                        .with_assignments(Some(vec![
                            create_partitions_request::CreatePartitionsAssignment::default()
                                .with_broker_ids(vec![BrokerId(1)]),
                        ])),
                ]),
        ),
        ApiKey::DeleteRecords => encoded(
            key,
            v,
            &DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(1)
                            .with_offset(0),
                    ]),
            ]),
        ),
        ApiKey::DescribeConfigs => encoded(
            key,
            v,
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(FUZZ))
                        .with_configuration_keys(Some(vec![s("retention.ms")])),
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("1")),
                ]),
        ),
        ApiKey::AlterConfigs => encoded(
            key,
            v,
            &AlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(FUZZ))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1000")))])]),
        ),
        ApiKey::IncrementalAlterConfigs => encoded(
            key,
            v,
            &IncrementalAlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(FUZZ))
                        .with_configs(vec![
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(s("cleanup.policy"))
                                .with_config_operation(2)
                                .with_value(Some(s("compact"))),
                        ]),
                ]),
        ),
        ApiKey::InitProducerId => encoded(
            key,
            v,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(1000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeCluster => encoded(key, v, &DescribeClusterRequest::default()),
        ApiKey::OffsetForLeaderEpoch => encoded(
            key,
            v,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-2))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(topic)
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(0)
                                .with_leader_epoch(0),
                        ]),
                ]),
        ),
        ApiKey::DescribeLogDirs => encoded(
            key,
            v,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(topic)
                    .with_partitions(vec![0, 1]),
            ])),
        ),
        ApiKey::FindCoordinator => encoded(
            key,
            v,
            &if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
            } else {
                FindCoordinatorRequest::default().with_key(s("g"))
            },
        ),
        ApiKey::JoinGroup => encoded(
            key,
            v,
            &JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(if v >= 1 { 10_000 } else { -1 })
                .with_protocol_type(s("consumer"))
                .with_member_id(s("m"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(&[
                    0, 1, 0, 0, 0, 1, 0, 4, b'f', b'u', b'z', b'z',
                ]))]),
        ),
        ApiKey::SyncGroup => encoded(
            key,
            v,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m"))
                .with_generation_id(1),
        ),
        ApiKey::Heartbeat => encoded(
            key,
            v,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m"))
                .with_generation_id(1),
        ),
        ApiKey::LeaveGroup => encoded(
            key,
            v,
            &if v >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_members(vec![
                        leave_group_request::MemberIdentity::default().with_member_id(s("m"))
                    ])
            } else {
                LeaveGroupRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_member_id(s("m"))
            },
        ),
        ApiKey::OffsetCommit => encoded(
            key,
            v,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => encoded(
            key,
            v,
            &if v >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(s("g")))
                        .with_topics(None),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic)
                            .with_partition_indexes(vec![0, 1]),
                    ]))
            },
        ),
        ApiKey::DescribeGroups => encoded(
            key,
            v,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        ),
        ApiKey::ListGroups => encoded(key, v, &ListGroupsRequest::default()),
        ApiKey::DeleteGroups => encoded(
            key,
            v,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("other-g"))]),
        ),
        ApiKey::OffsetDelete => encoded(
            key,
            v,
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic)
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        ApiKey::AddPartitionsToTxn => encoded(key, v, &txn_requests::add_partitions(v)),
        ApiKey::AddOffsetsToTxn => encoded(key, v, &txn_requests::add_offsets()),
        ApiKey::TxnOffsetCommit => encoded(key, v, &txn_requests::txn_offset_commit()),
        ApiKey::EndTxn => encoded(key, v, &txn_requests::end_txn()),
        ApiKey::DescribeTransactions => encoded(key, v, &txn_requests::describe_transactions()),
        ApiKey::ListTransactions => encoded(key, v, &ListTransactionsRequest::default()),
        ApiKey::ConsumerGroupHeartbeat => encoded(
            key,
            v,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("fuzz-848")))
                .with_member_id(StrBytes::from_static_str("fuzz-member"))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str(
                    "fuzz",
                ))]))
                .with_subscribed_topic_regex((v >= 1).then(|| StrBytes::from_static_str("fu.*")))
                .with_topic_partitions(Some(Vec::new())),
        ),
        ApiKey::ConsumerGroupDescribe => encoded(
            key,
            v,
            &ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(StrBytes::from_static_str("fuzz-848"))]),
        ),
        ApiKey::DescribeProducers => encoded(key, v, &txn_requests::describe_producers()),
        ApiKey::SaslHandshake => encoded(
            key,
            v,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        ApiKey::SaslAuthenticate => encoded(
            key,
            v,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p")),
        ),
        ApiKey::CreateAcls => encoded(
            key,
            v,
            &CreateAclsRequest::default().with_creations(vec![
                create_acls_request::AclCreation::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str(FUZZ))
                    .with_resource_pattern_type(3)
                    .with_principal(StrBytes::from_static_str("User:fuzz"))
                    .with_host(StrBytes::from_static_str("*"))
                    .with_operation(4)
                    .with_permission_type(3),
            ]),
        ),
        ApiKey::DescribeAcls => encoded(
            key,
            v,
            &DescribeAclsRequest::default()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => encoded(
            key,
            v,
            &DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
        ),
        ApiKey::DescribeUserScramCredentials => {
            encoded(key, v, &DescribeUserScramCredentialsRequest::default())
        }
        ApiKey::AlterUserScramCredentials => encoded(
            key,
            v,
            &AlterUserScramCredentialsRequest::default().with_deletions(vec![
                alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                    .with_name(StrBytes::from_static_str("fuzz"))
                    .with_mechanism(1),
            ]),
        ),
        ApiKey::DescribeClientQuotas => encoded(
            key,
            v,
            &DescribeClientQuotasRequest::default().with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(StrBytes::from_static_str("user"))
                    .with_match_type(1),
            ]),
        ),
        ApiKey::AlterClientQuotas => encoded(
            key,
            v,
            &AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(StrBytes::from_static_str("user"))
                        .with_entity_name(Some(StrBytes::from_static_str("fuzz")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(StrBytes::from_static_str("producer_byte_rate"))
                        .with_value(1024.0)]),
            ]),
        ),
        other => panic!("no base request for served API {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------

/// Values that break code which trusts numbers off the wire.
fn extreme_i32() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(i32::MIN),
        Just(i32::MAX),
        Just(-1),
        Just(-2),
        Just(0),
        Just(1),
        Just(0x7fff),
        Just(0xffff),
        Just(1 << 20),
        Just((1 << 30) + 1),
        any::<i32>(),
        -3i32..3,
    ]
}

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-1),
        Just(-2),
        Just(-3),
        Just(-4),
        Just(-5),
        Just(-6),
        Just(0),
        Just(1),
        Just(i32::MAX as i64 + 1),
        any::<i64>(),
        -3i64..5,
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Overwrites four bytes with a big-endian i32 (a length, count or index).
    PutI32(usize, i32),
    /// Overwrites bytes with an unsigned varint (a compact length in flexible versions).
    PutVarint(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        1 => (any::<usize>(), 1usize..16).prop_map(|(p, n)| Mutation::Remove(p, n)),
        3 => (any::<usize>(), extreme_i32()).prop_map(|(p, v)| Mutation::PutI32(p, v)),
        2 => (any::<usize>(), any::<u32>()).prop_map(|(p, v)| Mutation::PutVarint(p, v)),
    ]
}

fn uvarint(mut v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// Applies mutations to the body part (after `header_len`) of `frame`.
fn mutate(frame: &Bytes, header_len: usize, mutations: &[Mutation]) -> Bytes {
    let mut buf = frame.to_vec();
    for m in mutations {
        let body = buf.len().saturating_sub(header_len);
        // Positions inside the body (or at its end for inserts).
        let at = |p: usize, room: usize| header_len + p % (body + room).max(1);
        match m {
            Mutation::FlipBit(p, bit) if body > 0 => buf[at(*p, 0)] ^= 1 << bit,
            Mutation::SetByte(p, b) if body > 0 => buf[at(*p, 0)] = *b,
            Mutation::Truncate(p) => buf.truncate(at(*p, 1).min(buf.len())),
            Mutation::Insert(p, bytes) => {
                let i = at(*p, 1).min(buf.len());
                buf.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove(p, n) if body > 0 => {
                let i = at(*p, 0);
                let end = (i + n).min(buf.len());
                buf.drain(i..end);
            }
            Mutation::PutI32(p, v) if body >= 4 => {
                let i = header_len + p % (body - 3);
                buf[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            Mutation::PutVarint(p, v) => {
                let bytes = uvarint(*v);
                if body >= bytes.len() {
                    let i = header_len + p % (body - bytes.len() + 1);
                    buf[i..i + bytes.len()].copy_from_slice(&bytes);
                }
            }
            _ => {}
        }
    }
    Bytes::from(buf)
}

/// The longest long poll a fuzz case may ask for, so a mutated `max_wait_ms` cannot make
/// the suite sit out the broker's 60-second cap case after case.
const FUZZ_MAX_WAIT_MS: i32 = 20;

/// A mutated Fetch that still decodes gets its wait cut to [`FUZZ_MAX_WAIT_MS`]; everything
/// else (including frames that no longer decode) is passed through unchanged.
fn bound_long_poll(key: ApiKey, version: i16, header_len: usize, frame: Bytes) -> Bytes {
    use kafka_protocol::protocol::Decodable;
    if key != ApiKey::Fetch || frame.len() < header_len {
        return frame;
    }
    let mut body = frame.slice(header_len..);
    match FetchRequest::decode(&mut body, version) {
        Ok(mut req) if req.max_wait_ms > FUZZ_MAX_WAIT_MS => {
            req.max_wait_ms = FUZZ_MAX_WAIT_MS;
            let mut buf = BytesMut::from(&frame[..header_len]);
            match req.encode(&mut buf, version) {
                Ok(()) => buf.freeze(),
                Err(_) => frame,
            }
        }
        _ => frame,
    }
}

// ---------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------

#[test]
fn random_frames_never_panic() {
    run(
        "random frames",
        3000,
        proptest::collection::vec(any::<u8>(), 0..256),
        |h, bytes| h.handle(Bytes::from(bytes)),
    );
}

#[test]
fn valid_headers_with_random_bodies_never_panic() {
    let served = served();
    let n = served.len();
    run(
        "random bodies",
        3000,
        (0..n, proptest::collection::vec(any::<u8>(), 0..192)),
        move |h, (i, body)| {
            let (key, version) = served[i];
            let mut frame = header(key, version);
            frame.extend_from_slice(&body);
            h.handle(frame.freeze())
        },
    );
}

#[test]
fn mutated_requests_of_every_api_and_version_never_panic() {
    let bases: Vec<(ApiKey, i16, Bytes, usize)> = served()
        .into_iter()
        .map(|(k, v)| {
            let (frame, header_len) = base_request(k, v);
            (k, v, frame, header_len)
        })
        .collect();
    // Every base itself is answered (this also checks the bases are valid requests).
    let h = Harness::new();
    for (k, v, frame, _) in &bases {
        let reply = h.rt.block_on(h.broker.handle(frame.clone(), &ctx()));
        assert!(
            !matches!(reply, Reply::Close(_)),
            "{k:?} v{v}: the unmutated base request was refused"
        );
    }
    drop(h);
    let n = bases.len();
    run(
        "mutated requests",
        4000,
        (0..n, proptest::collection::vec(mutation(), 1..5)),
        move |h, (i, mutations)| {
            let (key, version, frame, header_len) = &bases[i];
            let mutated = mutate(frame, *header_len, &mutations);
            h.handle(bound_long_poll(*key, *version, *header_len, mutated))
        },
    );
}

/// Requests built with extreme values in every numeric field the handlers read.
#[derive(Debug, Clone)]
enum Extreme {
    Produce {
        version: i16,
        acks: i16,
        partition: i32,
        records: Option<Vec<u8>>,
        valid_batch: bool,
    },
    Fetch {
        version: i16,
        partition: i32,
        offset: i64,
        partition_max_bytes: i32,
        max_bytes: i32,
        min_bytes: i32,
        max_wait_ms: i32,
        session: (i32, i32),
        isolation: i8,
        leader_epoch: i32,
    },
    ListOffsets {
        version: i16,
        partition: i32,
        timestamp: i64,
        leader_epoch: i32,
    },
    DeleteRecords {
        partition: i32,
        offset: i64,
    },
    CreateTopics {
        partitions: i32,
        replication: i16,
        validate_only: bool,
        config_value: String,
    },
    CreatePartitions {
        count: i32,
        validate_only: bool,
    },
    LeaderEpoch {
        partition: i32,
        current: i32,
        epoch: i32,
    },
    InitProducerId {
        producer_id: i64,
        epoch: i16,
    },
    DescribeConfigs {
        resource_type: i8,
        name: String,
    },
}

fn extreme() -> impl Strategy<Value = Extreme> {
    let partition = prop_oneof![Just(0), Just(1), Just(2), extreme_i32()];
    prop_oneof![
        (
            3i16..=11,
            prop_oneof![Just(-1i16), Just(0), Just(1), any::<i16>()],
            partition.clone(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..120)),
            any::<bool>(),
        )
            .prop_map(|(version, acks, partition, records, valid_batch)| {
                Extreme::Produce {
                    version,
                    acks,
                    partition,
                    records,
                    valid_batch,
                }
            }),
        (
            (4i16..=16, partition.clone(), extreme_i64(), extreme_i32()),
            (
                extreme_i32(),
                extreme_i32(),
                prop_oneof![Just(-1), Just(0), Just(3), Just(i32::MIN), Just(i32::MAX)],
                (extreme_i32(), prop_oneof![Just(-1), Just(0), extreme_i32()]),
                any::<i8>(),
                extreme_i32(),
            ),
        )
            .prop_map(
                |(
                    (version, partition, offset, partition_max_bytes),
                    (max_bytes, min_bytes, max_wait_ms, session, isolation, leader_epoch),
                )| Extreme::Fetch {
                    version,
                    partition,
                    offset,
                    partition_max_bytes,
                    max_bytes,
                    min_bytes,
                    max_wait_ms,
                    session,
                    isolation,
                    leader_epoch,
                }
            ),
        (1i16..=8, partition.clone(), extreme_i64(), extreme_i32()).prop_map(
            |(version, partition, timestamp, leader_epoch)| Extreme::ListOffsets {
                version,
                partition,
                timestamp,
                leader_epoch,
            }
        ),
        (partition.clone(), extreme_i64())
            .prop_map(|(partition, offset)| Extreme::DeleteRecords { partition, offset }),
        (
            extreme_i32(),
            any::<i16>(),
            any::<bool>(),
            prop_oneof![
                Just("-1".to_string()),
                Just("99999999999999999999999".to_string()),
                Just("".to_string()),
                Just("-9223372036854775808".to_string()),
                "[ -~]{0,12}",
            ],
        )
            .prop_map(|(partitions, replication, validate_only, config_value)| {
                Extreme::CreateTopics {
                    // Real creation only with a handful of partitions (files are opened).
                    partitions: if validate_only {
                        partitions
                    } else {
                        partitions.clamp(-3, 3)
                    },
                    replication,
                    validate_only,
                    config_value,
                }
            }),
        (extreme_i32(), any::<bool>()).prop_map(|(count, validate_only)| {
            Extreme::CreatePartitions {
                count: if validate_only {
                    count
                } else {
                    count.clamp(-3, 4)
                },
                validate_only,
            }
        }),
        (partition.clone(), extreme_i32(), extreme_i32()).prop_map(
            |(partition, current, epoch)| Extreme::LeaderEpoch {
                partition,
                current,
                epoch,
            }
        ),
        (extreme_i64(), any::<i16>())
            .prop_map(|(producer_id, epoch)| Extreme::InitProducerId { producer_id, epoch }),
        (
            any::<i8>(),
            prop_oneof![
                Just(FUZZ.to_string()),
                Just("".to_string()),
                Just("1".to_string()),
                "[ -~]{0,8}"
            ]
        )
            .prop_map(|(resource_type, name)| Extreme::DescribeConfigs {
                resource_type,
                name
            }),
    ]
}

/// `fuzz_id` is the fuzz topic's id, so v13+ fetches reach the read path.
fn extreme_frame(e: &Extreme, fuzz_id: uuid::Uuid) -> Bytes {
    let topic = tn(FUZZ);
    match e.clone() {
        Extreme::Produce {
            version,
            acks,
            partition,
            records,
            valid_batch,
        } => {
            let records = if valid_batch {
                Some(batch(&[b"x"]))
            } else {
                records.map(Bytes::from)
            };
            encoded(
                ApiKey::Produce,
                version,
                &produce_request(FUZZ, partition, records, acks),
            )
            .0
        }
        Extreme::Fetch {
            version,
            partition,
            offset,
            partition_max_bytes,
            max_bytes,
            min_bytes,
            max_wait_ms,
            session,
            isolation,
            leader_epoch,
        } => {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(max_wait_ms)
                .with_min_bytes(min_bytes)
                .with_max_bytes(max_bytes)
                .with_isolation_level(isolation)
                .with_session_id(session.0)
                .with_session_epoch(session.1)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(topic)
                    .with_topic_id(fuzz_id)
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(leader_epoch)
                        .with_partition_max_bytes(partition_max_bytes)])]);
            encoded(ApiKey::Fetch, version, &req).0
        }
        Extreme::ListOffsets {
            version,
            partition,
            timestamp,
            leader_epoch,
        } => {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_current_leader_epoch(leader_epoch)
                            .with_timestamp(timestamp),
                    ])]);
            encoded(ApiKey::ListOffsets, version, &req).0
        }
        Extreme::DeleteRecords { partition, offset } => {
            let req = DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(partition)
                            .with_offset(offset),
                    ]),
            ]);
            encoded(ApiKey::DeleteRecords, 2, &req).0
        }
        Extreme::CreateTopics {
            partitions,
            replication,
            validate_only,
            config_value,
        } => {
            let req = CreateTopicsRequest::default()
                .with_validate_only(validate_only)
                .with_timeout_ms(-1)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(tn("made"))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replication)
                    .with_configs(
                        [
                            "retention.ms",
                            "segment.bytes",
                            "max.message.bytes",
                            "cleanup.policy",
                        ]
                        .iter()
                        .map(|n| {
                            create_topics_request::CreatableTopicConfig::default()
                                .with_name(s(n))
                                .with_value(Some(s(&config_value)))
                        })
                        .collect(),
                    )]);
            encoded(ApiKey::CreateTopics, 7, &req).0
        }
        Extreme::CreatePartitions {
            count,
            validate_only,
        } => {
            let req = CreatePartitionsRequest::default()
                .with_validate_only(validate_only)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(tn("made"))
                        .with_count(count)
                        .with_assignments(None),
                ]);
            encoded(ApiKey::CreatePartitions, 3, &req).0
        }
        Extreme::LeaderEpoch {
            partition,
            current,
            epoch,
        } => {
            let req = OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(topic)
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(partition)
                                .with_current_leader_epoch(current)
                                .with_leader_epoch(epoch),
                        ]),
                ]);
            encoded(ApiKey::OffsetForLeaderEpoch, 4, &req).0
        }
        Extreme::InitProducerId { producer_id, epoch } => {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch);
            encoded(ApiKey::InitProducerId, 4, &req).0
        }
        Extreme::DescribeConfigs {
            resource_type,
            name,
        } => {
            let req = DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_include_documentation(true)
                .with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(resource_type)
                        .with_resource_name(s(&name))
                        .with_configuration_keys(None),
                ]);
            encoded(ApiKey::DescribeConfigs, 4, &req).0
        }
    }
}

#[test]
fn extreme_field_values_never_panic() {
    run("extreme values", 2000, extreme(), |h, e| {
        // Long polls with a real wait are bounded by the request; keep the suite quick by
        // only letting short or immediate ones through unchanged.
        let e = match e {
            Extreme::Fetch {
                max_wait_ms,
                min_bytes,
                ..
            } if max_wait_ms > 50 && min_bytes > 0 => match e {
                Extreme::Fetch { .. } => {
                    let Extreme::Fetch {
                        version,
                        partition,
                        offset,
                        partition_max_bytes,
                        max_bytes,
                        session,
                        isolation,
                        leader_epoch,
                        ..
                    } = e
                    else {
                        unreachable!()
                    };
                    Extreme::Fetch {
                        version,
                        partition,
                        offset,
                        partition_max_bytes,
                        max_bytes,
                        min_bytes,
                        max_wait_ms: 3,
                        session,
                        isolation,
                        leader_epoch,
                    }
                }
                other => other,
            },
            other => other,
        };
        let fuzz_id = h
            .broker
            .topics
            .get(FUZZ)
            .map(|t| t.id())
            .unwrap_or_default();
        h.handle(extreme_frame(&e, fuzz_id))
    });
}
