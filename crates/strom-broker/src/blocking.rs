//! Slow disk work (fsyncs, renames, creating thousands of files) that an async handler must
//! do before it can answer. [`off_worker`] runs it with `tokio::task::block_in_place`, which
//! hands this worker thread's other tasks (other connections, other partitions) to another
//! thread for the duration, so one slow disk operation never stalls them. On a
//! current-thread runtime (unit tests), where that is impossible, it just runs the closure.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, a blocking disk operation, without stalling the tasks that share this thread.
pub fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}
