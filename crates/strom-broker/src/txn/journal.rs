//! Where the transaction coordinator keeps its states: the single node's own file (`store`),
//! or (cluster mode) a partition of the internal topic `__transaction_state` that this node
//! leads, where each state is the value of one record and counts as written once the
//! partition's ISR has it, as Kafka's `TransactionStateManager` waits for its acks=all append.
//! The partition is kept as bounded as the file: when [`needs_compaction`] says so, every
//! live state is appended again as a checkpoint and the records before it are discarded once
//! the ISR has it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use strom_group::{ReplicatedLog, ReplicationWait};

use super::state::{TxnError, TxnMeta};
use super::store::{needs_compaction, TxnStore};

pub enum TxnJournal {
    File(TxnStore),
    Replicated {
        log: Arc<dyn ReplicatedLog>,
        /// The partition's log end after the last append.
        end: u64,
        /// Records in the partition from its log start.
        records: u64,
    },
}

fn encode(meta: &TxnMeta) -> Bytes {
    Bytes::from(serde_json::to_vec(meta).expect("state serializes"))
}

impl TxnJournal {
    /// Writes one state. A file write is durable when this returns (with `sync`); a replicated
    /// one returns the wait for its ISR. `all` gives every live state (the file compacts with
    /// it).
    pub fn write<'a>(
        &mut self,
        meta: &TxnMeta,
        sync: bool,
        all: impl FnOnce() -> Vec<&'a TxnMeta>,
    ) -> Result<Option<ReplicationWait>, TxnError> {
        match self {
            TxnJournal::File(store) => {
                store.write(meta, sync, all).map_err(|e| {
                    tracing::error!(error = %e, transactional_id = %meta.transactional_id, "writing the transaction log failed");
                    TxnError::Storage
                })?;
                Ok(None)
            }
            TxnJournal::Replicated { log, end, records } => {
                *end = log.append(&[encode(meta)]).map_err(code_error)?;
                *records += 1;
                let wait = log.wait_replicated(*end);
                let live = all();
                if needs_compaction(*records as usize, live.len()) {
                    let payloads: Vec<Bytes> = live.iter().map(|m| encode(m)).collect();
                    match strom_group::append_checkpoint(log.as_ref(), &payloads, end) {
                        Ok(()) => *records = live.len() as u64,
                        Err(code) => {
                            tracing::warn!(code, "checkpointing the transaction states failed")
                        }
                    }
                }
                Ok(Some(wait))
            }
        }
    }
}

/// The coordinator error for a Kafka code a replicated append failed with.
pub fn code_error(code: i16) -> TxnError {
    if code == strom_protocol::ResponseError::NotCoordinator.code() {
        TxnError::NotCoordinator
    } else {
        TxnError::Storage
    }
}

/// The live states in a partition's record values, oldest first: the last state of an id wins
/// and a `removed` one forgets it. A value that is not a state is skipped with a log line.
pub fn replay(values: Vec<Bytes>) -> BTreeMap<String, TxnMeta> {
    let mut live = BTreeMap::new();
    for value in values {
        match serde_json::from_slice::<TxnMeta>(&value) {
            Ok(meta) if meta.removed => {
                live.remove(&meta.transactional_id);
            }
            Ok(meta) => {
                live.insert(meta.transactional_id.clone(), meta);
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping a record of __transaction_state that is not a transaction state")
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::state::TxnState;
    use crate::txn::store::COMPACT_SLACK_RECORDS;
    use parking_lot::Mutex;

    /// A partition in memory: its record values from offset 0 and the discards asked for.
    #[derive(Default)]
    struct MemoryPartition {
        values: Mutex<Vec<Bytes>>,
        discards: Mutex<Vec<(u64, u64)>>,
    }

    impl ReplicatedLog for MemoryPartition {
        fn append(&self, payloads: &[Bytes]) -> Result<u64, i16> {
            let mut values = self.values.lock();
            values.extend(payloads.iter().cloned());
            Ok(values.len() as u64)
        }
        fn wait_replicated(&self, _end: u64) -> ReplicationWait {
            Box::pin(async { Ok(()) })
        }
        fn discard_before(&self, start: u64, end: u64) {
            self.discards.lock().push((start, end));
        }
    }

    #[test]
    fn a_partition_of_superseded_states_gets_a_checkpoint_of_the_live_ones() {
        let log = Arc::new(MemoryPartition::default());
        let mut journal = TxnJournal::Replicated {
            log: log.clone(),
            end: 0,
            records: 0,
        };
        let a = TxnMeta::new("a", 1, 1000, 0);
        let mut b = TxnMeta::new("b", 2, 1000, 0);
        journal.write(&a, true, || vec![&a]).unwrap();
        for i in 0..(COMPACT_SLACK_RECORDS + 10) {
            b.update_ms = i as i64;
            let b2 = b.clone();
            journal.write(&b2, true, || vec![&a, &b2]).unwrap();
        }
        let discards = log.discards.lock().clone();
        assert_eq!(discards.len(), 1);
        let (start, end) = discards[0];
        assert_eq!(end - start, 2, "the checkpoint holds the two live ids");
        // Read back from the moved log start, both ids have their latest state.
        let kept = log.values.lock()[start as usize..].to_vec();
        let live = replay(kept);
        assert_eq!(live["a"], a);
        assert_eq!(live["b"].update_ms, (COMPACT_SLACK_RECORDS + 9) as i64);
        let TxnJournal::Replicated { records, .. } = journal else {
            unreachable!()
        };
        assert!(records < 20);
    }

    #[test]
    fn the_last_state_of_an_id_wins_and_a_removal_forgets_it() {
        let value = |m: &TxnMeta| Bytes::from(serde_json::to_vec(m).unwrap());
        let a = TxnMeta::new("a", 1, 1000, 0);
        let a2 = a.clone().with_state(TxnState::PrepareCommit);
        let b = TxnMeta::new("b", 2, 1000, 0);
        let mut gone = b.clone();
        gone.removed = true;
        let live = replay(vec![
            value(&a),
            value(&b),
            Bytes::from_static(b"not json"),
            value(&a2),
            value(&gone),
        ]);
        assert_eq!(live.len(), 1);
        assert_eq!(live["a"].state, TxnState::PrepareCommit);
    }
}
