//! The states of a transactional producer and the moves between them, as in the Java
//! client's `TransactionManager.State`.
//!
//! ```text
//! Uninitialized --init_transactions--> Ready --begin--> InTransaction
//! InTransaction --commit--> Committing --EndTxn--> Ready
//! InTransaction | AbortableError --abort--> Aborting --EndTxn--> Ready
//! InTransaction | Committing --a failed batch, offsets or partitions--> AbortableError
//! any --fenced, not authorized, invalid state--> FatalError (no way out: drop the producer)
//! ```
//!
//! A call that fails without a verdict (a timeout, a broker out of reach) leaves the state
//! where it was, so calling it again resumes, as the Java client allows.

/// Where a transactional producer stands; see [`crate::Producer::transaction_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// `init_transactions` has not completed yet.
    Uninitialized,
    /// Initialized, no transaction open: `begin_transaction` may follow.
    Ready,
    /// A transaction is open: records and offsets may be sent into it.
    InTransaction,
    /// `commit_transaction` started and has not completed.
    Committing,
    /// `abort_transaction` started and has not completed.
    Aborting,
    /// Something in the transaction failed; only `abort_transaction` is allowed.
    AbortableError,
    /// The producer was fenced or refused for good; every call returns that error.
    FatalError,
}

/// What a transactional call needs the state to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Init,
    Begin,
    Send,
    SendOffsets,
    Commit,
    Abort,
}

impl Call {
    fn describe(self) -> &'static str {
        match self {
            Call::Init => "initialize transactions",
            Call::Begin => "begin a transaction",
            Call::Send => "send a record",
            Call::SendOffsets => "send offsets to a transaction",
            Call::Commit => "commit a transaction",
            Call::Abort => "abort a transaction",
        }
    }

    /// The state the call moves to, or why it cannot be made from `from`. Error states are
    /// handled by the caller before asking.
    pub fn start(self, from: TransactionState) -> Result<TransactionState, String> {
        use TransactionState::*;
        let to = match (self, from) {
            (Call::Init, Uninitialized) => Uninitialized,
            (Call::Begin, Ready) => InTransaction,
            (Call::Send | Call::SendOffsets, InTransaction) => InTransaction,
            // Calling commit or abort again after a timeout resumes it.
            (Call::Commit, InTransaction | Committing) => Committing,
            (Call::Abort, InTransaction | Aborting | AbortableError) => Aborting,
            _ => return Err(self.refusal(from)),
        };
        Ok(to)
    }

    fn refusal(self, from: TransactionState) -> String {
        use TransactionState::*;
        let why = match from {
            Uninitialized => "init_transactions has not completed",
            Ready => "no transaction is open (begin_transaction first)",
            InTransaction => "a transaction is already open",
            Committing => "the transaction is being committed",
            Aborting => "the transaction is being aborted",
            AbortableError | FatalError => "the producer is in an error state",
        };
        let why = if self == Call::Init && from != Uninitialized {
            "transactions are already initialized"
        } else {
            why
        };
        format!("cannot {}: {why}", self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::TransactionState::*;
    use super::*;

    #[test]
    fn calls_follow_the_java_clients_transitions() {
        assert_eq!(Call::Begin.start(Ready), Ok(InTransaction));
        assert_eq!(Call::Commit.start(InTransaction), Ok(Committing));
        assert_eq!(Call::Commit.start(Committing), Ok(Committing));
        assert_eq!(Call::Abort.start(AbortableError), Ok(Aborting));
        assert_eq!(
            Call::Begin.start(InTransaction).unwrap_err(),
            "cannot begin a transaction: a transaction is already open"
        );
        assert_eq!(
            Call::Send.start(Ready).unwrap_err(),
            "cannot send a record: no transaction is open (begin_transaction first)"
        );
        assert_eq!(
            Call::Init.start(Ready).unwrap_err(),
            "cannot initialize transactions: transactions are already initialized"
        );
        assert!(Call::Commit.start(AbortableError).is_err());
        assert!(Call::Abort.start(Ready).is_err());
        assert!(Call::Begin.start(Uninitialized).is_err());
    }
}
