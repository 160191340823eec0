//! The JSON API the console uses, also meant for curl (documented in `docs/http-api.md`).
//! Every handler does bounded work: pages and scans have named limits, bodies are capped by
//! axum's default (2 MB), and bad input gets a 4xx with `{"error": ...}`.
//!
//! Every handler checks the ACLs the Kafka request it stands for checks, before it looks at
//! the resource ([`Caller`]); lists leave out what the caller may not DESCRIBE, as Metadata
//! and ListGroups do.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use strom_broker::local::{Local, NewRecord};
use strom_broker::local_admin::{GroupDetails, ResetTo};
use strom_broker::metrics::METRICS;
use strom_broker::security::acl::op;

use super::access::Caller;
use super::api_error::{ApiError, ApiResult};
use super::messages::{browse, BrowseQuery};
use super::HttpState;

/// Longest key, value or header value the test-message form accepts.
pub const PRODUCE_FIELD_BYTES_MAX: usize = 1024 * 1024;
/// Most headers on one test message.
pub const PRODUCE_HEADERS_MAX: usize = 100;

pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/cluster", get(cluster))
        .route("/brokers", get(brokers))
        .route("/topics", get(list_topics).post(create_topic))
        .route("/topics/{topic}", get(topic).delete(delete_topic))
        .route(
            "/topics/{topic}/configs",
            get(topic_configs).put(alter_configs),
        )
        .route("/topics/{topic}/messages", get(messages).post(produce))
        .route("/groups", get(list_groups))
        .route("/groups/{group}", get(group))
        .route("/groups/{group}/reset-offsets", post(reset_offsets))
        .fallback(|| async { ApiError::not_found("no such API endpoint (see docs/http-api.md)") })
}

fn local(state: &HttpState) -> ApiResult<Arc<Local>> {
    state
        .local()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("the broker is still starting (recovering its data)"))
}

async fn cluster(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    let broker = local.broker().clone();
    let visible = local.clone();
    // Totals across the partitions of the topics the caller may describe: a short lock per
    // partition, off the async worker.
    let totals = tokio::task::spawn_blocking(move || {
        let mut t = [0u64; 6];
        let mut partitions = 0usize;
        let mut offline = 0usize;
        let authz = caller.authz(&visible);
        let mut topics = broker.topics.all();
        topics.retain(|t| authz.topic(op::DESCRIBE, &t.name()));
        for topic in &topics {
            for p in topic.partitions.read().iter() {
                partitions += 1;
                use std::sync::atomic::Ordering::Relaxed;
                t[0] += p.stats.bytes_in.load(Relaxed);
                t[1] += p.stats.bytes_out.load(Relaxed);
                t[2] += p.stats.records_in.load(Relaxed);
                t[3] += p.stats.records_out.load(Relaxed);
                match p.lock() {
                    Ok(st) => t[4] += st.log.size_bytes(),
                    Err(_) => offline += 1,
                }
            }
        }
        t[5] = topics.len() as u64;
        let groups = visible_groups(&visible, &caller).len();
        (t, partitions, offline, groups)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    let (t, partitions, offline, groups) = totals;
    let broker = local.broker();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": broker.node_id(),
        "cluster_id": broker.meta.cluster_id.clone(),
        "uptime_seconds": METRICS.uptime_seconds(),
        "topics": t[5],
        "partitions": partitions,
        "offline_partitions": offline,
        "groups": groups,
        "disk_bytes": t[4],
        "bytes_in_total": t[0],
        "bytes_out_total": t[1],
        "records_in_total": t[2],
        "records_out_total": t[3],
        "metrics_enabled": METRICS.enabled(),
    })))
}

async fn brokers(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    let config = &local.broker().config;
    let (host, port) = config.advertised();
    // Metadata tells anyone the brokers; where they keep their data is DescribeLogDirs',
    // which takes DESCRIBE on the cluster.
    let data_dir = caller
        .authz(&local)
        .cluster(op::DESCRIBE)
        .then(|| config.data_dir.display().to_string());
    Ok(Json(json!([{
        "node_id": config.node_id,
        "host": host,
        "port": port,
        "listen": config.listen.to_string(),
        "data_dir": data_dir,
        "fsync": format!("{:?}", config.fsync),
        "controller": true,
    }])))
}

async fn list_topics(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    let authz = caller.authz(&local);
    let names: Vec<String> = local
        .list_topics()
        .into_iter()
        .map(|t| t.name)
        .filter(|n| authz.topic(op::DESCRIBE, n))
        .collect();
    // Configs are DescribeConfigs': null for a topic without DESCRIBE_CONFIGS.
    let with_configs: Vec<bool> = names
        .iter()
        .map(|n| authz.topic(op::DESCRIBE_CONFIGS, n))
        .collect();
    let topics = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .zip(with_configs)
            .filter_map(|(n, c)| Some((local.topic_details(n).ok()?, c)))
            .map(|(d, with_configs)| {
                let size: u64 = d.partitions.iter().map(|p| p.size_bytes).sum();
                let messages: i64 = d
                    .partitions
                    .iter()
                    .map(|p| (p.high_watermark - p.start_offset).max(0))
                    .sum();
                let config = |name: &str| {
                    d.configs
                        .iter()
                        .find(|(n, _, _)| with_configs && n == name)
                        .map(|(_, v, _)| v.clone())
                };
                json!({
                    "name": d.name,
                    "partitions": d.partitions.len(),
                    "size_bytes": size,
                    "messages": messages,
                    "offline_partitions": d.partitions.iter().filter(|p| p.offline.is_some()).count(),
                    "retention_ms": config("retention.ms"),
                    "retention_bytes": config("retention.bytes"),
                    "cleanup_policy": config("cleanup.policy"),
                    "overrides": with_configs.then_some(&d.overrides),
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!(topics)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    #[serde(default = "default_partitions")]
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    -1
}

async fn create_topic(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<CreateTopic>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let local = local(&state)?;
    let Json(req) = body?;
    // CreateTopics: CREATE on the cluster or on the topic.
    let authz = caller.authz(&local);
    let ok = authz.cluster(op::CREATE) || authz.topic(op::CREATE, &req.name);
    caller.require(ok, op::CREATE, &format!("topic {}", req.name))?;
    let created = local
        .create_topic(&req.name, req.partitions, req.configs)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": created.name, "partitions": created.partitions})),
    ))
}

async fn topic(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    caller.require_topic(&local, op::DESCRIBE, &topic)?;
    let d = local.topic_details(&topic)?;
    // The configs are DescribeConfigs': left out without DESCRIBE_CONFIGS.
    let configs = caller
        .authz(&local)
        .topic(op::DESCRIBE_CONFIGS, &topic)
        .then(|| configs_json(&d.configs));
    Ok(Json(json!({
        "name": d.name,
        "topic_id": d.topic_id,
        "partitions": d.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "offline": p.offline,
            "start_offset": p.start_offset,
            "end_offset": p.end_offset,
            "high_watermark": p.high_watermark,
            "flushed_offset": p.flushed_offset,
            "size_bytes": p.size_bytes,
            "segments": p.segments,
        })).collect::<Vec<_>>(),
        "overrides": configs.as_ref().map(|_| &d.overrides),
        "configs": configs,
    })))
}

fn configs_json(configs: &[(String, String, bool)]) -> Value {
    json!(configs
        .iter()
        .map(|(n, v, d)| json!({"name": n, "value": v, "default": d}))
        .collect::<Vec<_>>())
}

async fn delete_topic(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    caller.require_topic(&local, op::DELETE, &topic)?;
    local.delete_topic(&topic).await?;
    Ok(Json(json!({"deleted": topic})))
}

async fn topic_configs(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    caller.require_topic(&local, op::DESCRIBE_CONFIGS, &topic)?;
    let d = local.topic_details(&topic)?;
    Ok(Json(configs_json(&d.configs)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlterConfigs {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    delete: Vec<String>,
}

async fn alter_configs(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    body: Result<Json<AlterConfigs>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    caller.require_topic(&local, op::ALTER_CONFIGS, &topic)?;
    let Json(req) = body?;
    let overrides = local
        .alter_topic_configs(&topic, &req.set, &req.delete)
        .await?;
    Ok(Json(json!({"name": topic, "overrides": overrides})))
}

async fn messages(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    query: Result<Query<BrowseQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    caller.require_topic(&local, op::READ, &topic)?;
    let Query(q) = query?;
    Ok(Json(browse(&local, &topic, q).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Produce {
    partition: Option<i32>,
    key: Option<String>,
    value: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

async fn produce(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(topic): Path<String>,
    body: Result<Json<Produce>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let local = local(&state)?;
    caller.require_topic(&local, op::WRITE, &topic)?;
    let Json(req) = body?;
    let too_long = |s: &Option<String>| {
        s.as_ref()
            .is_some_and(|s| s.len() > PRODUCE_FIELD_BYTES_MAX)
    };
    if too_long(&req.key) || too_long(&req.value) {
        return Err(ApiError::bad_request(format!(
            "key and value may be at most {PRODUCE_FIELD_BYTES_MAX} bytes"
        )));
    }
    if req.headers.len() > PRODUCE_HEADERS_MAX {
        return Err(ApiError::bad_request(format!(
            "at most {PRODUCE_HEADERS_MAX} headers"
        )));
    }
    let record = NewRecord {
        partition: req.partition,
        key: req.key.map(Bytes::from),
        value: req.value.map(Bytes::from),
        headers: req
            .headers
            .into_iter()
            .map(|(k, v)| (k, Some(Bytes::from(v))))
            .collect(),
        timestamp_ms: None,
    };
    let appended = local.produce(&topic, record).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "topic": topic,
            "partition": appended.partition,
            "offset": appended.offset,
            "timestamp_ms": appended.timestamp_ms,
        })),
    ))
}

fn group_json(g: &GroupDetails) -> Value {
    json!({
        "group_id": g.group_id,
        "state": g.state,
        "generation_id": g.generation_id,
        "protocol_type": g.protocol_type,
        "protocol": g.protocol_name,
        "members": g.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "client_id": m.client_id,
            "client_host": m.client_host,
            "assignment": m.assignment.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "offsets": g.offsets.iter().map(|o| json!({
            "topic": o.topic,
            "partition": o.partition,
            "committed_offset": o.committed,
            "high_watermark": o.high_watermark,
            "lag": o.lag,
        })).collect::<Vec<_>>(),
        "total_lag": g.total_lag(),
    })
}

/// The groups the caller may see, as ListGroups answers: all with DESCRIBE on the cluster,
/// else those with DESCRIBE on the group; and of each, the offsets of topics it may
/// DESCRIBE, as OffsetFetch answers.
fn visible_groups(local: &Local, caller: &Caller) -> Vec<GroupDetails> {
    let authz = caller.authz(local);
    let all = authz.cluster(op::DESCRIBE);
    let mut groups = local.groups();
    groups.retain(|g| all || authz.group(op::DESCRIBE, &g.group_id));
    for g in &mut groups {
        visible_offsets(local, caller, g);
    }
    groups
}

fn visible_offsets(local: &Local, caller: &Caller, g: &mut GroupDetails) {
    let authz = caller.authz(local);
    if authz.enforcing() {
        g.offsets.retain(|o| authz.topic(op::DESCRIBE, &o.topic));
    }
}

async fn list_groups(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    let groups = tokio::task::spawn_blocking(move || visible_groups(&local, &caller))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!(groups
        .iter()
        .map(group_json)
        .collect::<Vec<_>>())))
}

async fn group(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(group): Path<String>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    caller.require_group(&local, op::DESCRIBE, &group)?;
    let mut g = local
        .group(&group)
        .ok_or_else(|| ApiError::not_found(format!("unknown group: {group}")))?;
    visible_offsets(&local, &caller, &mut g);
    Ok(Json(group_json(&g)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reset {
    topic: String,
    /// earliest, latest, offset or timestamp.
    to: String,
    offset: Option<i64>,
    timestamp_ms: Option<i64>,
    partitions: Option<Vec<i32>>,
}

async fn reset_offsets(
    State(state): State<Arc<HttpState>>,
    Extension(caller): Extension<Caller>,
    Path(group): Path<String>,
    body: Result<Json<Reset>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let local = local(&state)?;
    let Json(req) = body?;
    // OffsetCommit: READ on the group, then READ on each topic committed to.
    caller.require_group(&local, op::READ, &group)?;
    caller.require_topic(&local, op::READ, &req.topic)?;
    let to = match (req.to.as_str(), req.offset, req.timestamp_ms) {
        ("earliest", None, None) => ResetTo::Earliest,
        ("latest", None, None) => ResetTo::Latest,
        ("offset", Some(o), None) if o >= 0 => ResetTo::Offset(o),
        ("timestamp", None, Some(ts)) => ResetTo::Timestamp(ts),
        _ => {
            return Err(ApiError::bad_request(
                "to must be earliest, latest, offset (with a non-negative \"offset\") or timestamp (with \"timestamp_ms\")",
            ))
        }
    };
    if let Some(g) = local.group(&group) {
        if !g.members.is_empty() || g.state != "Empty" {
            return Err(ApiError::conflict(format!(
                "group {group} is {} with {} member(s); offsets can only be reset when it is empty (stop its consumers first)",
                g.state,
                g.members.len()
            )));
        }
    }
    let offsets = local
        .reset_group_offsets(&group, &req.topic, req.partitions.as_deref(), to)
        .await?;
    Ok(Json(json!({
        "group_id": group,
        "topic": req.topic,
        "offsets": offsets.iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>(),
    })))
}
