//! Quotas at the dispatch boundary, as KafkaApis applies them: a produce's bytes are
//! recorded against `producer_byte_rate`; a fetch asks for at most one quota window of bytes
//! and, if its response would break `consumer_byte_rate`, is answered empty (the bytes
//! unrecorded) so the client fetches them again after the throttle; handler time is recorded
//! against `request_percentage`. The throttle goes into the response's `throttle_time_ms` and
//! to the connection, which stops reading for that long (KIP-219).

use std::time::Duration;

use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::protocol::Encodable;

use crate::broker::{Broker, RequestContext};
use crate::metrics::METRICS;
use crate::quota::{quota_user, Kind};

/// Who a request's quotas are looked up for.
pub struct QuotaClient<'a> {
    pub user: &'a str,
    pub client_id: &'a str,
}

impl<'a> QuotaClient<'a> {
    pub fn new(ctx: &'a RequestContext, client_id: &'a str) -> QuotaClient<'a> {
        QuotaClient {
            user: quota_user(&ctx.principal),
            client_id,
        }
    }
}

/// Mutes the connection for `ms` and counts it.
fn apply(ctx: &RequestContext, kind: Kind, ms: u64) {
    if ms > 0 {
        ctx.throttle(ms);
        METRICS.throttled(kind.name(), ms);
    }
}

/// Records a produce request of `bytes`; the throttle time for its response.
pub fn produce(broker: &Broker, ctx: &RequestContext, who: &QuotaClient, bytes: usize) -> i32 {
    if !broker.quotas.active(Kind::Produce) {
        return 0;
    }
    let ms = broker
        .quotas
        .record(Kind::Produce, who.user, who.client_id, bytes as f64);
    apply(ctx, Kind::Produce, ms);
    ms.min(i32::MAX as u64) as i32
}

/// Whether the fetch quota applies: consumers only, followers are exempt.
pub fn fetch_limited(broker: &Broker, req: &FetchRequest) -> bool {
    broker.quotas.active(Kind::Fetch) && req.replica_id.0 < 0 && req.replica_state.replica_id.0 < 0
}

/// Caps the fetch at one quota window of bytes (Kafka's `getMaxValueInQuotaWindow`).
pub fn cap_fetch(broker: &Broker, who: &QuotaClient, req: &mut FetchRequest) {
    if let Some(max) = broker.quotas.max_bytes_in_window(who.user, who.client_id) {
        let max = i32::try_from(max.max(1)).unwrap_or(i32::MAX);
        req.max_bytes = req.max_bytes.min(max);
    }
}

/// Records the response's size; over the quota it becomes an empty response carrying the
/// throttle time, as `KafkaApis.handleFetchRequest` does.
pub fn fetch_response(
    broker: &Broker,
    ctx: &RequestContext,
    who: &QuotaClient,
    response: FetchResponse,
    version: i16,
) -> FetchResponse {
    let bytes = response.compute_size(version).unwrap_or(0) as f64;
    let ms = broker
        .quotas
        .record(Kind::Fetch, who.user, who.client_id, bytes);
    if ms == 0 {
        return response;
    }
    broker
        .quotas
        .unrecord(Kind::Fetch, who.user, who.client_id, bytes);
    apply(ctx, Kind::Fetch, ms);
    FetchResponse::default()
        .with_throttle_time_ms(ms.min(i32::MAX as u64) as i32)
        .with_session_id(response.session_id)
}

/// Records `handled` of handler time against `request_percentage` (a percentage of one
/// second per second); the throttle is at most one window, as `ClientRequestQuotaManager`.
pub fn request_time(broker: &Broker, ctx: &RequestContext, who: &QuotaClient, handled: Duration) {
    let percent = handled.as_secs_f64() * 100.0;
    let ms = broker
        .quotas
        .record(Kind::Request, who.user, who.client_id, percent);
    apply(ctx, Kind::Request, ms.min(broker.quotas.window_ms()));
}
