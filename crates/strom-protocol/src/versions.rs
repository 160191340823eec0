//! The API version ranges Strom serves. Each range is the intersection of what the
//! `kafka-protocol` crate can decode and what our handlers implement; it is what ApiVersions
//! advertises and what [`crate::header`] accepts.

use kafka_protocol::messages::ApiKey;

/// One supported API: its key and the inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn r(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Produce v0-2 is advertised although only v3+ (RecordBatch v2) is served: librdkafka decides
/// which message formats and compression codecs a broker supports from the advertised Produce
/// range, and Apache Kafka 4.0 keeps advertising v0 for that reason (KAFKA-18659). A request
/// at v0-2 gets UNSUPPORTED_VERSION.
pub const SUPPORTED: &[ApiRange] = &[
    r(ApiKey::Produce, 0, 11),
    r(ApiKey::Fetch, 4, 16),
    r(ApiKey::ListOffsets, 1, 8),
    r(ApiKey::Metadata, 0, 12),
    r(ApiKey::OffsetCommit, 2, 9),
    r(ApiKey::OffsetFetch, 1, 9),
    r(ApiKey::FindCoordinator, 0, 6),
    r(ApiKey::JoinGroup, 0, 9),
    r(ApiKey::Heartbeat, 0, 4),
    r(ApiKey::LeaveGroup, 0, 5),
    r(ApiKey::SyncGroup, 0, 5),
    r(ApiKey::DescribeGroups, 0, 5),
    r(ApiKey::ListGroups, 0, 5),
    r(ApiKey::ApiVersions, 0, 4),
    r(ApiKey::CreateTopics, 2, 7),
    r(ApiKey::DeleteTopics, 1, 6),
    r(ApiKey::DeleteRecords, 0, 2),
    r(ApiKey::InitProducerId, 0, 5),
    r(ApiKey::DescribeConfigs, 1, 4),
    r(ApiKey::AlterConfigs, 0, 2),
    r(ApiKey::CreatePartitions, 0, 3),
    r(ApiKey::DeleteGroups, 0, 2),
    r(ApiKey::IncrementalAlterConfigs, 0, 1),
    r(ApiKey::OffsetDelete, 0, 0),
    r(ApiKey::DescribeCluster, 0, 1),
    r(ApiKey::OffsetForLeaderEpoch, 2, 4),
    r(ApiKey::DescribeLogDirs, 1, 4),
    r(ApiKey::SaslHandshake, 0, 1),
    r(ApiKey::SaslAuthenticate, 0, 2),
    r(ApiKey::CreateAcls, 1, 3),
    r(ApiKey::DescribeAcls, 1, 3),
    r(ApiKey::DeleteAcls, 1, 3),
    r(ApiKey::DescribeUserScramCredentials, 0, 0),
    r(ApiKey::AlterUserScramCredentials, 0, 0),
    r(ApiKey::DescribeClientQuotas, 0, 1),
    r(ApiKey::AlterClientQuotas, 0, 1),
    r(ApiKey::AddPartitionsToTxn, 0, 5),
    r(ApiKey::AddOffsetsToTxn, 0, 4),
    r(ApiKey::EndTxn, 0, 4),
    r(ApiKey::TxnOffsetCommit, 0, 5),
    r(ApiKey::DescribeProducers, 0, 0),
    r(ApiKey::DescribeTransactions, 0, 0),
    r(ApiKey::ListTransactions, 0, 1),
    r(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    r(ApiKey::ConsumerGroupDescribe, 0, 1),
];

/// The range served for `key`, if any.
pub fn supported_range(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED.iter().copied().find(|a| a.key == key)
}

/// The lowest version we actually decode, which differs from the advertised minimum only for
/// Produce (see [`SUPPORTED`]).
pub fn min_served_version(key: ApiKey) -> i16 {
    match key {
        ApiKey::Produce => 3,
        _ => supported_range(key).map_or(0, |a| a.min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_range_is_decodable_by_the_generated_codecs() {
        for a in SUPPORTED {
            let crate_range = a.key.valid_versions();
            assert!(a.min <= a.max, "{:?}", a.key);
            assert!(
                min_served_version(a.key) >= crate_range.min && a.max <= crate_range.max,
                "{:?}: ours {}..={} crate {:?}",
                a.key,
                a.min,
                a.max,
                crate_range
            );
        }
    }
}
