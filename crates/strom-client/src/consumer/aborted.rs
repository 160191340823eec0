//! Which fetched batches belong to aborted transactions (read_committed).
//!
//! A READ_COMMITTED fetch answers, per partition, the aborted transactions that overlap the
//! records it returns: a producer id and the offset of that transaction's first batch. As the
//! Java consumer does (`CompletedFetch`), batches are walked in offset order: an aborted
//! transaction becomes active once a batch reaches its first offset, every transactional batch
//! of an active producer is dropped, and the producer's abort marker ends it.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// The aborted transactions of one partition in one fetch response.
#[derive(Debug, Default)]
pub(crate) struct AbortedTransactions {
    /// (first offset, producer id) not yet reached, smallest first offset on top.
    pending: BinaryHeap<Reverse<(i64, i64)>>,
    /// Producers whose aborted transaction is under way at the current batch.
    active: BTreeSet<i64>,
}

impl AbortedTransactions {
    /// From a fetch response's `aborted_transactions`: (producer id, first offset) pairs.
    pub fn new(list: impl IntoIterator<Item = (i64, i64)>) -> Self {
        AbortedTransactions {
            pending: list
                .into_iter()
                .map(|(producer_id, first_offset)| Reverse((first_offset, producer_id)))
                .collect(),
            active: BTreeSet::new(),
        }
    }

    /// Whether to drop the batch with this producer id, transactional bit, abort-marker flag
    /// and last offset. Abort markers themselves are never data: the caller drops every
    /// control batch anyway.
    pub fn skip(
        &mut self,
        producer_id: i64,
        transactional: bool,
        abort_marker: bool,
        last_offset: i64,
    ) -> bool {
        if producer_id < 0 {
            return false;
        }
        while let Some(Reverse((first_offset, pid))) = self.pending.peek().copied() {
            if first_offset > last_offset {
                break;
            }
            self.pending.pop();
            self.active.insert(pid);
        }
        if abort_marker {
            self.active.remove(&producer_id);
            return false;
        }
        transactional && self.active.contains(&producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aborted_transaction_drops_its_batches_up_to_its_marker_only() {
        // Producer 7 aborts offsets 0..=1 (marker at 2), then commits at 3; producer 8
        // commits at 1 between them.
        let mut a = AbortedTransactions::new([(7, 0)]);
        assert!(a.skip(7, true, false, 0));
        assert!(
            !a.skip(8, true, false, 1),
            "another producer is not aborted"
        );
        assert!(
            !a.skip(7, false, true, 2),
            "the marker ends the aborted transaction"
        );
        assert!(
            !a.skip(7, true, false, 3),
            "the next transaction of 7 is kept"
        );
        assert!(
            !a.skip(-1, false, false, 4),
            "non-idempotent batches are kept"
        );
    }

    #[test]
    fn a_transaction_starts_being_dropped_only_at_its_first_offset() {
        let mut a = AbortedTransactions::new([(7, 5)]);
        assert!(
            !a.skip(7, true, false, 4),
            "an earlier committed batch of 7"
        );
        assert!(a.skip(7, true, false, 6));
        assert!(
            !a.skip(7, false, false, 7),
            "a non-transactional batch is kept"
        );
    }
}
