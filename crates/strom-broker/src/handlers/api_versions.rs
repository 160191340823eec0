//! ApiVersions: the served ranges from `strom_protocol::versions`. A request newer than v4 is
//! answered as Kafka does (KIP-511): UNSUPPORTED_VERSION in the v0 body layout, with our
//! ranges, so the client retries with a version we know.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
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

/// `ApiVersionsRequest.isValid` (KIP-511): from v3 the client software name and version must
/// match `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.';
    match b {
        [] => false,
        [only] => edge(only),
        [first, middle @ .., last] => edge(first) && edge(last) && middle.iter().all(inner),
    }
}

pub fn handle(req: ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    // KafkaApis.handleApiVersionsRequest answers an invalid v3+ request with INVALID_REQUEST
    // and no API ranges.
    if version >= 3
        && !(valid_software_field(&req.client_software_name)
            && valid_software_field(&req.client_software_version))
    {
        return ApiVersionsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    ApiVersionsResponse::default()
        .with_error_code(0)
        .with_api_keys(ranges())
        .with_finalized_features_epoch(-1)
}

pub fn unsupported_version_reply(correlation_id: i32) -> Reply {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(ranges());
    super::error_counts::count(ApiKey::ApiVersions, &body);
    ready(correlation_id, 0, &body)
}

#[cfg(test)]
mod tests {
    use super::valid_software_field as ok;

    #[test]
    fn software_names_follow_kip_511() {
        for good in [
            "a",
            "librdkafka",
            "apache-kafka-java",
            "2.12.1",
            "3.7.0-rdkafka-2.5.0",
        ] {
            assert!(ok(good), "{good}");
        }
        for bad in ["", "-a", "a-", ".", "a b", "a_b", "kafka.", "é"] {
            assert!(!ok(bad), "{bad}");
        }
    }
}
