//! ApiVersions: the served ranges from `strom_protocol::versions`. A request newer than v4 is
//! answered as Kafka does (KIP-511): UNSUPPORTED_VERSION in the v0 body layout, with our
//! ranges, so the client retries with a version we know.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strom_protocol::versions::SUPPORTED;
use strom_protocol::ResponseError;

use super::ready;
use crate::broker::Reply;

fn ranges() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

pub fn handle(_req: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(ranges())
        .with_finalized_features_epoch(-1)
}

pub fn unsupported_version_reply(correlation_id: i32) -> Reply {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(ranges());
    ready(correlation_id, 0, &body)
}
