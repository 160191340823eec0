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
    #[error("the offsets log failed earlier and refuses further writes until restart")]
    Poisoned,
}
