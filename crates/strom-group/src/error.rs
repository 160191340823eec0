use std::path::PathBuf;

/// Errors of the coordinator's own operations (opening, flushing the offsets log). Request
/// handlers never return this: they map failures to Kafka error codes in the response.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a Strom offsets log (bad magic or unsupported format version {version})"
    )]
    BadFormat { path: PathBuf, version: u16 },
    /// A whole, CRC-valid record that this build cannot read: written by a newer Strom (a
    /// downgrade). Never truncated as if torn; the operator must decide.
    #[error("{path}: record of unknown kind {kind} at byte {position}, written by a newer Strom version? Refusing to start rather than drop it and every commit after it; run the newer version (downgrading the offsets log is not supported)")]
    UnknownRecord {
        path: PathBuf,
        kind: u8,
        position: u64,
    },
    #[error("the offsets log failed earlier and refuses further writes until restart")]
    Poisoned,
    /// Cluster mode: the replicated append failed; `code` is what the request is answered
    /// with (NOT_COORDINATOR when this node lost the partition, COORDINATOR_NOT_AVAILABLE
    /// when the ISR is too small or the wait timed out, as Kafka maps them).
    #[error("replicating to the offsets partition failed with Kafka error {code}")]
    Replication { code: i16 },
}

impl GroupError {
    /// The Kafka error code a request whose write failed with this error is answered with.
    pub fn kafka_code(&self) -> i16 {
        match self {
            GroupError::Replication { code } => *code,
            _ => crate::codes::UNKNOWN_SERVER_ERROR,
        }
    }
}
