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
}
