//! OffsetFetch with `require_stable` (KIP-447): a partition whose offset a transaction has
//! staged but not yet committed or aborted is answered UNSTABLE_OFFSET_COMMIT with no offset,
//! as Kafka's `OffsetMetadataManager.fetchOffsets`, so that a read_committed consumer retries
//! rather than start from an offset the transaction is about to replace.

use std::collections::BTreeSet;

use kafka_protocol::messages::OffsetFetchResponse;

use super::group_routing::GroupRouter;

const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// v7 and v8+ carry the same partition fields in two generated types.
macro_rules! mark_topics {
    ($topics:expr, $pending:expr) => {
        for t in $topics.iter_mut() {
            for p in t.partitions.iter_mut() {
                if $pending.contains(&(t.name.to_string(), p.partition_index)) {
                    p.error_code = UNSTABLE_OFFSET_COMMIT;
                    p.committed_offset = -1;
                    p.committed_leader_epoch = -1;
                    p.metadata = Some(Default::default());
                }
            }
        }
    };
}

/// Marks the pending partitions of every group of the response: `single_group`'s for v7,
/// which answers one group at the top level, and each listed group's for v8+.
pub(super) fn mark(
    groups: &GroupRouter<'_>,
    single_group: &str,
    response: &mut OffsetFetchResponse,
) {
    if response.error_code == 0 && !response.topics.is_empty() {
        let pending: BTreeSet<(String, i32)> = groups.pending_txn_offsets(single_group);
        mark_topics!(response.topics, pending);
    }
    for g in response.groups.iter_mut().filter(|g| g.error_code == 0) {
        let pending: BTreeSet<(String, i32)> = groups.pending_txn_offsets(g.group_id.as_str());
        mark_topics!(g.topics, pending);
    }
}
