//! Where the transaction coordinator keeps its states: the single node's own file (`store`),
//! or (cluster mode) a partition of the internal topic `__transaction_state` that this node
//! leads, where each state is the value of one record and counts as written once the
//! partition's ISR has it, as Kafka's `TransactionStateManager` waits for its acks=all append.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use strom_group::{ReplicatedLog, ReplicationWait};

use super::state::{TxnError, TxnMeta};
use super::store::TxnStore;

pub enum TxnJournal {
    File(TxnStore),
    Replicated(Arc<dyn ReplicatedLog>),
}

impl TxnJournal {
    /// Writes one state. A file write is durable when this returns; a replicated one returns
    /// the wait for its ISR. `all` gives every live state (the file compacts with it).
    pub fn write<'a>(
        &mut self,
        meta: &TxnMeta,
        all: impl FnOnce() -> Vec<&'a TxnMeta>,
    ) -> Result<Option<ReplicationWait>, TxnError> {
        match self {
            TxnJournal::File(store) => {
                store.write(meta, all).map_err(|e| {
                    tracing::error!(error = %e, transactional_id = %meta.transactional_id, "writing the transaction log failed");
                    TxnError::Storage
                })?;
                Ok(None)
            }
            TxnJournal::Replicated(log) => {
                let value = Bytes::from(serde_json::to_vec(meta).expect("state serializes"));
                let end = log.append(&[value]).map_err(code_error)?;
                Ok(Some(log.wait_replicated(end)))
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
