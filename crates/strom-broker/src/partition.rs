//! One partition: its log and idempotent-producer state behind one lock (never a global one),
//! and a notifier that wakes long-polling fetches when data arrives.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use strom_log::{LogConfig, LogError, PartitionLog};
use tokio::sync::Notify;

use crate::producer_state::ProducerStates;

pub struct PartitionState {
    pub log: PartitionLog,
    pub producers: ProducerStates,
    /// Messages appended since the last fsync, for `log.flush.interval.messages`.
    pub unflushed_messages: i64,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub dir: PathBuf,
    pub state: Mutex<PartitionState>,
    /// Notified after every append; fetches waiting for `min_bytes` listen here.
    pub appended: Notify,
}

impl Partition {
    /// Opens (recovering) the partition's log and rebuilds producer state from the batch
    /// headers of its newest segment.
    pub fn open(
        topic: &str,
        index: i32,
        topic_dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Partition, LogError> {
        let dir = topic_dir.join(format!("partition-{index}"));
        let log = PartitionLog::open(&dir, config, now_ms)?;
        let mut producers = ProducerStates::default();
        let from = log
            .segment_base_offsets()
            .last()
            .copied()
            .unwrap_or(0)
            .max(log.log_start_offset());
        log.scan_headers(from, &mut |h| producers.record(h))?;
        Ok(Partition {
            topic: topic.to_string(),
            index,
            dir,
            state: Mutex::new(PartitionState {
                log,
                producers,
                unflushed_messages: 0,
            }),
            appended: Notify::new(),
        })
    }
}
