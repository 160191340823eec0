//! The error codes a response carries, for `strom_request_errors_total` (Kafka's
//! `ErrorsPerSec`). Counted once per response where dispatch builds it: the top-level code
//! and each topic's, partition's, group's or resource's, as Kafka's `AbstractResponse.
//! errorCounts` walks them. That is work per partition or resource of a response, never per
//! message. Produce counts its own (its responses can be deferred past the fsync).

use kafka_protocol::messages::*;

use crate::metrics::METRICS;

/// Calls `f` with every error code in the response (NONE included; the registry skips it).
pub trait ErrorCodes {
    fn error_codes(&self, f: &mut dyn FnMut(i16));
}

/// Counts the response's error codes under `api`.
pub fn count(api: ApiKey, response: &impl ErrorCodes) {
    if METRICS.enabled() {
        response.error_codes(&mut |code| METRICS.error(api as i16, code));
    }
}

/// A response with only a top-level code.
macro_rules! top_level {
    ($($t:ty),* $(,)?) => {$(
        impl ErrorCodes for $t {
            fn error_codes(&self, f: &mut dyn FnMut(i16)) {
                f(self.error_code);
            }
        }
    )*};
}

top_level!(
    ApiVersionsResponse,
    InitProducerIdResponse,
    DescribeClusterResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    ConsumerGroupHeartbeatResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ListTransactionsResponse,
    ListGroupsResponse,
    SaslHandshakeResponse,
    SaslAuthenticateResponse,
    DescribeAclsResponse,
    DescribeClientQuotasResponse,
);

impl ErrorCodes for FetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.responses {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for ListOffsetsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

/// The top-level and topic codes; Kafka leaves partition codes (LEADER_NOT_AVAILABLE while
/// a leader is elected) out of Metadata's counts, and so do we.
impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.topics.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for CreateTopicsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.topics.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DeleteTopicsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for CreatePartitionsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|t| f(t.error_code));
    }
}

impl ErrorCodes for DeleteRecordsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for AlterConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for IncrementalAlterConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.responses.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for OffsetForLeaderEpochResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeLogDirsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

/// v0-v3 carry one coordinator at the top level, v4+ one per key.
impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        if self.coordinators.is_empty() {
            f(self.error_code);
        }
        self.coordinators.iter().for_each(|c| f(c.error_code));
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.members.iter().for_each(|m| f(m.error_code));
    }
}

impl ErrorCodes for OffsetCommitResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

/// v0-v7 answer one group (top-level and partition codes), v8+ one entry per group.
impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        if self.groups.is_empty() {
            f(self.error_code);
            for t in &self.topics {
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        for g in &self.groups {
            f(g.error_code);
            for t in &g.topics {
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
    }
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for ConsumerGroupDescribeResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|g| f(g.error_code));
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for CreateAclsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for DeleteAclsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for r in &self.filter_results {
            f(r.error_code);
            r.matching_acls.iter().for_each(|m| f(m.error_code));
        }
    }
}

impl ErrorCodes for DescribeUserScramCredentialsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for AlterUserScramCredentialsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| f(r.error_code));
    }
}

impl ErrorCodes for AlterClientQuotasResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.entries.iter().for_each(|e| f(e.error_code));
    }
}

/// v0-v3 answer one transaction's partitions, v4+ many transactions and a top-level code.
impl ErrorCodes for AddPartitionsToTxnResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.results_by_topic_v3_and_below {
            t.results_by_partition
                .iter()
                .for_each(|p| f(p.partition_error_code));
        }
        for txn in &self.results_by_transaction {
            for t in &txn.topic_results {
                t.results_by_partition
                    .iter()
                    .for_each(|p| f(p.partition_error_code));
            }
        }
    }
}

impl ErrorCodes for TxnOffsetCommitResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeTransactionsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        self.transaction_states.iter().for_each(|s| f(s.error_code));
    }
}

impl ErrorCodes for DescribeProducersResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            t.partitions.iter().for_each(|p| f(p.error_code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(r: &impl ErrorCodes) -> Vec<i16> {
        let mut out = Vec::new();
        r.error_codes(&mut |c| out.push(c));
        out
    }

    #[test]
    fn nested_codes_are_all_visited() {
        use kafka_protocol::messages::list_offsets_response::*;
        let r =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default().with_error_code(3),
                    ListOffsetsPartitionResponse::default(),
                ])]);
        assert_eq!(codes(&r), vec![3, 0]);
        let v7 = OffsetFetchResponse::default().with_error_code(16);
        assert_eq!(codes(&v7), vec![16]);
    }
}
