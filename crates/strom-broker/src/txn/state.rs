//! One transactional id's state (Kafka's `TransactionMetadata`) and the checks every
//! transaction request makes against it, with Kafka's error for each (KIP-98, KIP-360, KIP-447).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Kafka's `TransactionState`, named as DescribeTransactions and ListTransactions show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    pub const ALL: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset staged by TxnOffsetCommit, written to its group when the transaction commits
/// (the inter-node message's type, so cluster mode sends it as it is kept).
pub use strom_cluster::messages::TxnOffset as PendingOffset;

/// The coordinator's state of one transactional id; also the record of the transaction log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The id and epoch before the last bump, so a retried InitProducerId (KIP-360) that
    /// carries them is recognised.
    pub last_producer_id: i64,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups added with AddOffsetsToTxn.
    pub groups: BTreeSet<String>,
    pub pending_offsets: Vec<PendingOffset>,
    /// When the open transaction started (its first partition), -1 when none.
    pub start_ms: i64,
    pub update_ms: i64,
    /// A tombstone in the transaction log (not used in memory).
    #[serde(default)]
    pub removed: bool,
}

/// Why a transaction request is refused; each maps to one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    #[error("the transactional id is not known or does not own this producer id")]
    InvalidProducerIdMapping,
    #[error("there is a newer producer with the same transactional id")]
    ProducerFenced,
    #[error("the producer epoch is not the current one")]
    InvalidProducerEpoch,
    #[error("the transaction is being completed; retry")]
    ConcurrentTransactions,
    #[error("the request is not valid in the transaction's state")]
    InvalidTxnState,
    #[error("transaction.timeout.ms is larger than transaction.max.timeout.ms or not positive")]
    InvalidTransactionTimeout,
    #[error("the transactional id is empty")]
    InvalidRequest,
    #[error("the transaction log could not be written")]
    Storage,
    #[error("this node no longer coordinates the transactional id")]
    NotCoordinator,
}

impl TxnMeta {
    pub fn new(id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMeta {
        TxnMeta {
            transactional_id: id.to_string(),
            producer_id,
            producer_epoch: 0,
            last_producer_id: -1,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending_offsets: Vec::new(),
            start_ms: -1,
            update_ms: now_ms,
            removed: false,
        }
    }

    pub fn with_state(mut self, state: TxnState) -> TxnMeta {
        self.state = state;
        self
    }

    /// The checks of AddPartitionsToTxn, AddOffsetsToTxn and EndTxn
    /// (`TransactionCoordinator.handleAddPartitionsToTransaction`): the producer id must be
    /// this id's, the epoch the current one, and no commit or abort may be in progress.
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        if self.state.is_preparing() {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// Opens the transaction if it is not open yet (first partition or group).
    pub fn begin(&mut self, now_ms: i64) {
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.partitions.clear();
            self.groups.clear();
            self.pending_offsets.clear();
            self.start_ms = now_ms;
        }
        self.update_ms = now_ms;
    }

    /// Whether an open transaction has run past its timeout.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.start_ms >= 0
            && now_ms > self.start_ms.saturating_add(i64::from(self.timeout_ms))
    }

    /// Bumps the epoch (a new producer session, a fence, or a timeout), keeping the old pair
    /// for retries. `None` when the epoch is exhausted and a new producer id is needed.
    pub fn bump_epoch(&mut self) -> Option<()> {
        if self.producer_epoch >= i16::MAX - 1 {
            return None;
        }
        self.last_producer_id = self.producer_id;
        self.last_producer_epoch = self.producer_epoch;
        self.producer_epoch += 1;
        Some(())
    }

    /// Moves to a new producer id at epoch 0 (epoch exhaustion, KIP-360).
    pub fn rotate_producer_id(&mut self, new_id: i64) {
        self.last_producer_id = self.producer_id;
        self.last_producer_epoch = self.producer_epoch;
        self.producer_id = new_id;
        self.producer_epoch = 0;
    }

    /// Ends the transaction after its markers are written.
    pub fn complete(&mut self, commit: bool, now_ms: i64) {
        self.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        self.partitions.clear();
        self.groups.clear();
        self.pending_offsets.clear();
        self.start_ms = -1;
        self.update_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_checks_follow_kafkas_order() {
        let mut m = TxnMeta::new("t", 5, 1000, 0);
        assert_eq!(
            m.check_producer(6, 0),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(m.check_producer(5, 1), Err(TxnError::ProducerFenced));
        assert_eq!(m.check_producer(5, 0), Ok(()));
        m.state = TxnState::PrepareCommit;
        assert_eq!(
            m.check_producer(5, 0),
            Err(TxnError::ConcurrentTransactions)
        );
    }

    #[test]
    fn a_transaction_times_out_only_while_open() {
        let mut m = TxnMeta::new("t", 5, 1000, 0);
        assert!(!m.timed_out(5000));
        m.begin(100);
        assert!(!m.timed_out(1100));
        assert!(m.timed_out(1101));
        m.complete(false, 1200);
        assert!(!m.timed_out(9999));
        assert_eq!(m.state, TxnState::CompleteAbort);
    }

    #[test]
    fn epochs_bump_until_exhausted() {
        let mut m = TxnMeta::new("t", 5, 1000, 0);
        m.bump_epoch().unwrap();
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (1, 0));
        m.producer_epoch = i16::MAX - 1;
        assert!(m.bump_epoch().is_none());
        m.rotate_producer_id(9);
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.last_producer_id),
            (9, 0, 5)
        );
    }
}
