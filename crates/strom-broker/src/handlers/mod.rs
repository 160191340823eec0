//! Request dispatch: decode the body for the API and version, run its handler, encode the
//! response. One file per API family; every handler takes the decoded request and returns the
//! response struct, so error codes are decided in one place per API.

pub mod acls;
pub mod admin_acls;
pub mod admin_topics;
pub mod api_versions;
pub mod authz;
pub mod client_quotas;
pub mod config_acls;
pub mod configs;
pub mod consumer_group_acls;
pub mod error_counts;
pub mod fetch;
pub mod group_acls;
pub mod group_routing;
pub mod groups;
pub mod leader_epoch;
pub mod list_offsets;
pub mod log_acls;
pub mod log_dirs;
pub mod metadata;
pub mod produce;
pub mod producer_id;
pub mod producers;
pub mod replicated_admin;
pub mod scram_users;
pub mod throttle;
pub mod txn;
pub mod txn_acls;
mod unstable_offsets;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use strom_protocol::header::DecodedHeader;
use strom_protocol::response::encode_response;

use crate::broker::{Broker, Reply, RequestContext};

/// Shorthand for the string type of generated messages.
pub fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(sb(s))
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16, api: ApiKey) -> Result<T, Reply> {
    T::decode(body, version)
        .map_err(|e| Reply::Close(format!("malformed {api:?} v{version} request: {e}")))
}

pub fn ready<R: kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion>(
    correlation_id: i32,
    version: i16,
    body: &R,
) -> Reply {
    match encode_response(correlation_id, version, body) {
        Ok(buf) => Reply::Ready(buf),
        Err(e) => Reply::Close(e.to_string()),
    }
}

/// Handles one request, timing it against `request_percentage` when such a quota is set.
/// A fetch's time is not recorded: most of it is the long-poll wait, which Kafka keeps in
/// purgatory, outside the handler threads whose time the quota shares out.
pub async fn dispatch(broker: &Arc<Broker>, req: DecodedHeader, ctx: &RequestContext) -> Reply {
    let timed = broker.quotas.active(crate::quota::Kind::Request) && req.api_key != ApiKey::Fetch;
    if !timed {
        return dispatch_api(broker, req, ctx).await;
    }
    let client_id = client_id(&req);
    let started = std::time::Instant::now();
    let reply = dispatch_api(broker, req, ctx).await;
    let who = throttle::QuotaClient::new(ctx, &client_id);
    throttle::request_time(broker, ctx, &who, started.elapsed());
    reply
}

fn client_id(req: &DecodedHeader) -> String {
    req.header
        .client_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

async fn dispatch_api(broker: &Arc<Broker>, req: DecodedHeader, ctx: &RequestContext) -> Reply {
    let client_id = client_id(&req);
    let DecodedHeader {
        api_key,
        header,
        mut body,
    } = req;
    let v = header.request_api_version;
    let corr = header.correlation_id;
    let who = throttle::QuotaClient::new(ctx, &client_id);
    macro_rules! handle {
        ($req:ty, |$r:ident| $call:expr) => {{
            let $r: $req = match decode(&mut body, v, api_key) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            let response = $call;
            error_counts::count(api_key, &response);
            match ready(corr, v, &response) {
                Reply::Close(e) => Reply::Close(format!("{api_key:?} v{v}: {e}")),
                other => other,
            }
        }};
    }
    let groups = &group_routing::GroupRouter::new(broker);
    let authz = authz::Authz::new(broker, ctx);
    match api_key {
        ApiKey::ApiVersions => handle!(ApiVersionsRequest, |r| api_versions::handle(r, v)),
        ApiKey::Metadata => handle!(MetadataRequest, |r| metadata::handle(broker, r, v, ctx)
            .await),
        ApiKey::Produce => {
            let bytes = body.len();
            let r: ProduceRequest = match decode(&mut body, v, api_key) {
                Ok(r) => r,
                Err(reply) => return reply,
            };
            let throttle_ms = throttle::produce(broker, ctx, &who, bytes);
            produce::handle(broker, r, v, corr, &authz, throttle_ms).await
        }
        ApiKey::Fetch => handle!(FetchRequest, |r| {
            let mut r = r;
            if throttle::fetch_limited(broker, &r) {
                throttle::cap_fetch(broker, &who, &mut r);
                let response = fetch::handle(broker, r, v, &authz).await;
                throttle::fetch_response(broker, ctx, &who, response, v)
            } else {
                fetch::handle(broker, r, v, &authz).await
            }
        }),
        ApiKey::ListOffsets => handle!(ListOffsetsRequest, |r| list_offsets::handle(
            broker, r, v, &authz
        )),
        ApiKey::CreateTopics => handle!(CreateTopicsRequest, |r| admin_acls::create_topics(
            broker, &authz, r, v
        )
        .await),
        ApiKey::DeleteTopics => handle!(DeleteTopicsRequest, |r| admin_acls::delete_topics(
            broker, &authz, r, v
        )
        .await),
        ApiKey::CreatePartitions => {
            handle!(CreatePartitionsRequest, |r| {
                admin_acls::create_partitions(broker, &authz, r, v).await
            })
        }
        ApiKey::DeleteRecords => handle!(DeleteRecordsRequest, |r| admin_acls::delete_records(
            broker, &authz, r, v
        )),
        ApiKey::DescribeConfigs => {
            handle!(DescribeConfigsRequest, |r| config_acls::describe(
                broker, &authz, r, v
            ))
        }
        ApiKey::AlterConfigs => {
            handle!(AlterConfigsRequest, |r| config_acls::alter(
                broker, &authz, r, v
            )
            .await)
        }
        ApiKey::IncrementalAlterConfigs => {
            handle!(IncrementalAlterConfigsRequest, |r| {
                config_acls::incremental_alter(broker, &authz, r, v).await
            })
        }
        ApiKey::InitProducerId => {
            handle!(InitProducerIdRequest, |r| admin_acls::init_producer_id(
                broker, &authz, r, v
            )
            .await)
        }
        ApiKey::OffsetForLeaderEpoch => {
            handle!(OffsetForLeaderEpochRequest, |r| {
                log_acls::offset_for_leader_epoch(broker, &authz, r, v)
            })
        }
        ApiKey::DescribeLogDirs => {
            handle!(DescribeLogDirsRequest, |r| log_acls::describe_log_dirs(
                broker, &authz, r, v
            ))
        }
        ApiKey::DescribeCluster => handle!(DescribeClusterRequest, |r| metadata::describe_cluster(
            broker, r, v, ctx
        )),
        // SASL requests reach the handlers only where SASL is not running: on a listener
        // without SASL, or after authentication when no re-authentication may begin
        // (`connections.max.reauth.ms` unset, or one began less than a second ago).
        ApiKey::SaslHandshake => {
            handle!(SaslHandshakeRequest, |_r| SaslHandshakeResponse::default()
                .with_error_code(
                    strom_protocol::ResponseError::IllegalSaslState.code()
                ))
        }
        ApiKey::SaslAuthenticate => handle!(SaslAuthenticateRequest, |_r| {
            SaslAuthenticateResponse::default()
                .with_error_code(strom_protocol::ResponseError::IllegalSaslState.code())
                .with_error_message(Some(sb(
                    "SaslAuthenticate is not expected on this connection",
                )))
        }),
        ApiKey::FindCoordinator => handle!(FindCoordinatorRequest, |r| groups::find_coordinator(
            broker, r, v, ctx
        )),
        ApiKey::JoinGroup => {
            handle!(JoinGroupRequest, |r| group_acls::join_group(
                groups,
                &authz,
                r,
                v,
                &client_id,
                &ctx.client_host
            )
            .await)
        }
        ApiKey::SyncGroup => handle!(SyncGroupRequest, |r| group_acls::sync_group(
            groups, &authz, r, v
        )
        .await),
        ApiKey::Heartbeat => handle!(HeartbeatRequest, |r| group_acls::heartbeat(
            groups, &authz, r, v
        )
        .await),
        ApiKey::LeaveGroup => handle!(LeaveGroupRequest, |r| group_acls::leave_group(
            groups, &authz, r, v
        )
        .await),
        ApiKey::OffsetCommit => handle!(OffsetCommitRequest, |r| group_acls::offset_commit(
            groups, &authz, r, v
        )
        .await),
        ApiKey::OffsetFetch => handle!(OffsetFetchRequest, |r| group_acls::offset_fetch(
            groups, &authz, r, v
        )
        .await),
        ApiKey::DescribeGroups => handle!(DescribeGroupsRequest, |r| {
            group_acls::describe_groups(groups, &authz, r, v).await
        }),
        ApiKey::ListGroups => handle!(ListGroupsRequest, |r| group_acls::list_groups(
            groups, &authz, r, v
        )
        .await),
        ApiKey::DeleteGroups => handle!(DeleteGroupsRequest, |r| group_acls::delete_groups(
            groups, &authz, r, v
        )
        .await),
        ApiKey::ConsumerGroupHeartbeat => {
            handle!(ConsumerGroupHeartbeatRequest, |r| {
                consumer_group_acls::heartbeat(groups, &authz, r, v, &client_id, &ctx.client_host)
            })
        }
        ApiKey::ConsumerGroupDescribe => {
            handle!(ConsumerGroupDescribeRequest, |r| {
                consumer_group_acls::describe(groups, &authz, r)
            })
        }
        ApiKey::OffsetDelete => handle!(OffsetDeleteRequest, |r| group_acls::offset_delete(
            groups, &authz, r, v
        )
        .await),
        ApiKey::CreateAcls => handle!(CreateAclsRequest, |r| {
            replicated_admin::create_acls(broker, &authz, r).await
        }),
        ApiKey::DescribeAcls => handle!(DescribeAclsRequest, |r| acls::describe(broker, &authz, r)),
        ApiKey::DeleteAcls => handle!(DeleteAclsRequest, |r| {
            replicated_admin::delete_acls(broker, &authz, r).await
        }),
        ApiKey::DescribeClientQuotas => {
            handle!(DescribeClientQuotasRequest, |r| client_quotas::describe(
                broker, &authz, r
            ))
        }
        ApiKey::AlterClientQuotas => {
            handle!(AlterClientQuotasRequest, |r| {
                replicated_admin::alter_client_quotas(broker, &authz, r).await
            })
        }
        ApiKey::DescribeUserScramCredentials => {
            handle!(DescribeUserScramCredentialsRequest, |r| {
                scram_users::describe(broker, &authz, r)
            })
        }
        ApiKey::AlterUserScramCredentials => {
            handle!(AlterUserScramCredentialsRequest, |r| {
                replicated_admin::alter_user_scram_credentials(broker, &authz, r).await
            })
        }
        ApiKey::AddPartitionsToTxn => {
            handle!(AddPartitionsToTxnRequest, |r| txn_acls::add_partitions(
                broker, &authz, r, v
            )
            .await)
        }
        ApiKey::AddOffsetsToTxn => {
            handle!(AddOffsetsToTxnRequest, |r| txn_acls::add_offsets(
                broker, &authz, r, v
            )
            .await)
        }
        ApiKey::TxnOffsetCommit => {
            handle!(TxnOffsetCommitRequest, |r| txn_acls::txn_offset_commit(
                broker, &authz, r, v
            )
            .await)
        }
        ApiKey::EndTxn => handle!(EndTxnRequest, |r| txn_acls::end_txn(broker, &authz, r, v)
            .await),
        ApiKey::DescribeTransactions => {
            handle!(DescribeTransactionsRequest, |r| txn_acls::describe(
                broker, &authz, r, v
            ))
        }
        ApiKey::ListTransactions => handle!(ListTransactionsRequest, |r| txn_acls::list(
            broker, &authz, r, v
        )),
        ApiKey::DescribeProducers => {
            handle!(DescribeProducersRequest, |r| txn_acls::describe_producers(
                broker, &authz, r, v
            ))
        }
        other => Reply::Close(format!("API {other:?} is not served")),
    }
}
