//! One partition: its log and idempotent-producer state behind one lock (never a global one),
//! and a notifier that wakes long-polling fetches when data becomes visible.
//!
//! A partition is *offline* when its log could not be opened (damage recovery refused to
//! repair, an I/O error) or when a write or fsync on it failed: from then on every produce
//! and fetch gets KAFKA_STORAGE_ERROR, as Kafka answers for a failed log dir, until the
//! broker restarts and recovery opens it again. [`Partition::lock`] is the only way in, so no
//! caller can forget the check.
//!
//! The high watermark (what fetches and ListOffsets serve) is the flushed offset in a durable
//! broker (`log.fsync` other than `never`), so no consumer reads, and commits past, data that
//! a power loss could take back; with `log.fsync=never` it is the log end, as in Kafka.

use std::path::{Path, PathBuf};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use strom_log::{LogConfig, LogError, PartitionLog, ReadSlice};
use tokio::sync::Notify;

use crate::producer_snapshot;

/// How to open a partition.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub log: LogConfig,
    /// See the module docs.
    pub durable_high_watermark: bool,
    /// `producer.state.max.producers.per.partition`.
    pub max_producers: usize,
}

pub struct PartitionState {
    pub log: PartitionLog,
    pub producers: crate::producer_state::ProducerStates,
    /// Messages appended since the last fsync, for `log.flush.interval.messages`.
    pub unflushed_messages: i64,
    /// The high watermark advances only with fsync (see the module docs).
    durable_high_watermark: bool,
    /// Cluster mode only: this node's role for the partition and what it knows of the other
    /// replicas. `None` on a single node, whose high watermark is its own.
    pub replica: Option<Box<crate::cluster::state::ReplicaState>>,
}

impl PartitionState {
    /// The offset up to which consumers may read (exclusive).
    pub fn high_watermark(&self) -> i64 {
        let local = self.local_end();
        match &self.replica {
            None => local,
            Some(r) => r.high_watermark(local),
        }
    }

    /// What this node alone can vouch for: the flushed offset in a durable broker, else the
    /// log end.
    pub fn local_end(&self) -> i64 {
        if self.durable_high_watermark {
            self.log.flushed_offset()
        } else {
            self.log.log_end_offset()
        }
    }

    /// The last stable offset (KIP-98): the high watermark, or the first offset of the oldest
    /// open transaction if that is lower. read_committed consumers read up to here.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.producers
            .first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
    }

    /// Whole batches from `offset`, never past the last stable offset (read_committed).
    pub fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, LogError> {
        match self.producers.first_unstable_offset() {
            None => self.read_visible(offset, max_bytes),
            Some(first) => {
                self.log
                    .read_until(offset, max_bytes, first, self.durable_high_watermark)
            }
        }
    }

    /// The partition's leader epoch: 0 on a single node.
    pub fn leader_epoch(&self) -> i32 {
        self.replica.as_ref().map_or(0, |r| r.leader_epoch)
    }

    /// Whole batches from `offset`, never past the high watermark (see `PartitionLog::read`).
    pub fn read_visible(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, LogError> {
        if self.durable_high_watermark {
            self.log.read_flushed(offset, max_bytes)
        } else {
            self.log.read(offset, max_bytes)
        }
    }
}

/// Why a partition refuses reads and writes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("partition {topic}-{index} is offline: {reason}")]
pub struct Offline {
    pub topic: String,
    pub index: i32,
    pub reason: String,
}

enum Slot {
    /// Boxed: the state is large and an unopened partition needs none of it.
    Online(Box<PartitionState>),
    /// The log could not be opened at startup: why, and the recovery point it had (kept in
    /// the checkpoint, so the next start is as strict about it).
    Unopened(String, Option<i64>),
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// Where the partition was opened. Files are written through `PartitionLog::dir()`, which
    /// follows the directory when a deleted topic moves to the trash; this path may belong to a
    /// re-created topic by then.
    pub dir: PathBuf,
    state: Mutex<Slot>,
    /// Notified after every append and every fsync that moved the high watermark; fetches
    /// waiting for `min_bytes` listen here.
    pub appended: Notify,
    /// Bytes and records in and out, for `/metrics` (atomics; see `crate::metrics`).
    pub stats: crate::metrics::PartitionStats,
}

/// `<topic dir>/partition-<index>`.
pub fn partition_dir(topic_dir: &Path, index: i32) -> PathBuf {
    topic_dir.join(format!("partition-{index}"))
}

impl Partition {
    /// Opens (recovering) the partition's log and restores the idempotent-producer state from
    /// its newest snapshot plus the batch headers written after it (`producer_snapshot`).
    pub fn open(
        topic: &str,
        index: i32,
        topic_dir: &Path,
        options: &OpenOptions,
        now_ms: i64,
        recovery_point: Option<i64>,
    ) -> Result<Partition, LogError> {
        let dir = partition_dir(topic_dir, index);
        let log = PartitionLog::open_at_recovery_point(
            &dir,
            options.log.clone(),
            now_ms,
            recovery_point,
        )?;
        let (mut producers, from) = producer_snapshot::load(
            &dir,
            log.log_start_offset(),
            log.log_end_offset(),
            options.max_producers,
        )?;
        // Kafka rebuilds a producer's last-write time from its batches' timestamps. Markers
        // end transactions; an abort's `.txnindex` entry is written again if a crash lost it.
        let mut markers = Vec::new();
        log.scan_headers(from, &mut |h| {
            if h.is_control() {
                markers.push(*h);
            } else {
                producers.record(h, h.max_timestamp)
            }
        })?;
        let mut log = log;
        if !markers.is_empty() {
            // Replay in order: batches and markers interleave, so rebuild again with both.
            let (fresh, from) = producer_snapshot::load(
                &dir,
                log.log_start_offset(),
                log.log_end_offset(),
                options.max_producers,
            )?;
            producers = fresh;
            let mut kinds = std::collections::HashMap::new();
            for m in &markers {
                kinds.insert(m.base_offset, log.control_type(m)?);
            }
            let mut aborted = Vec::new();
            log.scan_headers(from, &mut |h| {
                if !h.is_control() {
                    producers.record(h, h.max_timestamp);
                    return;
                }
                if let Some(kind @ (0 | 1)) = kinds.get(&h.base_offset).copied().flatten() {
                    aborted.extend(producers.end_txn(
                        h.producer_id,
                        h.producer_epoch,
                        h.base_offset,
                        kind == 1,
                    ));
                }
            })?;
            for a in aborted {
                log.append_aborted(a)?;
            }
        }
        let durable_high_watermark = options.durable_high_watermark;
        Ok(Partition::with_state(
            topic,
            index,
            dir,
            Slot::Online(Box::new(PartitionState {
                log,
                producers,
                unflushed_messages: 0,
                durable_high_watermark,
                replica: None,
            })),
        ))
    }

    /// A partition whose log could not be opened: it exists (Metadata lists it, its files are
    /// left as they are for an operator) but refuses every read and write.
    pub fn unopened(
        topic: &str,
        index: i32,
        topic_dir: &Path,
        reason: String,
        recovery_point: Option<i64>,
    ) -> Partition {
        let dir = partition_dir(topic_dir, index);
        Partition::with_state(topic, index, dir, Slot::Unopened(reason, recovery_point))
    }

    fn with_state(topic: &str, index: i32, dir: PathBuf, slot: Slot) -> Partition {
        Partition {
            topic: topic.to_string(),
            index,
            dir,
            state: Mutex::new(slot),
            appended: Notify::new(),
            stats: Default::default(),
        }
    }

    /// The partition's state, unless it is offline.
    pub fn lock(&self) -> Result<MappedMutexGuard<'_, PartitionState>, Offline> {
        let guard = self.state.lock();
        let reason = match &*guard {
            Slot::Online(state) => match state.log.failure() {
                None => {
                    return Ok(MutexGuard::map(guard, |slot| match slot {
                        Slot::Online(state) => &mut **state,
                        Slot::Unopened(..) => unreachable!("checked above"),
                    }))
                }
                Some(failure) => failure.to_string(),
            },
            Slot::Unopened(reason, _) => reason.clone(),
        };
        Err(Offline {
            topic: self.topic.clone(),
            index: self.index,
            reason,
        })
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        self.lock().err().map(|e| e.reason)
    }

    /// The log, even when it failed (to fsync what can still be fsynced at shutdown, or to
    /// report sizes). `None` when it was never opened.
    pub fn with_log<T>(&self, f: impl FnOnce(&mut PartitionLog) -> T) -> Option<T> {
        match &mut *self.state.lock() {
            Slot::Online(state) => Some(f(&mut state.log)),
            Slot::Unopened(..) => None,
        }
    }

    /// Writes the producer state as of the log end (at a clean shutdown).
    pub fn snapshot_producers(&self) -> std::io::Result<()> {
        match self.lock() {
            Ok(state) => producer_snapshot::write(
                state.log.dir(),
                state.log.log_end_offset(),
                &state.producers,
            ),
            Err(_) => Ok(()),
        }
    }

    /// Cuts the log back to `offset` (a batch boundary; a follower's divergent tail after a
    /// leader change) and reopens it, which rebuilds the indexes and the idempotent-producer
    /// state of what is left. The replication state is kept. Slow: files are cut and
    /// recovered under the partition's lock (cluster mode only, and only at a leader change).
    pub fn truncate_to(&self, offset: i64, options: &OpenOptions) -> Result<(), String> {
        let mut slot = self.state.lock();
        let Slot::Online(state) = &mut *slot else {
            return Err("partition is offline".into());
        };
        let end = state.log.log_end_offset();
        if offset >= end {
            return Ok(());
        }
        let start = state.log.log_start_offset();
        if offset < start {
            return Err(format!(
                "cannot truncate to {offset}, below the log start {start}"
            ));
        }
        state.log.flush().map_err(|e| e.to_string())?;
        // Where the batch at `offset` starts, in which segment (a read would step over an
        // empty batch left by cleaning; the cut must not).
        let (containing, cut_position) = state
            .log
            .locate(offset)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no batch holds offset {offset}"))?;
        let bases = state.log.segment_base_offsets();
        let dir = state.log.dir().to_path_buf();
        let containing_log = dir.join(format!("{containing:020}.log"));
        let later: Vec<i64> = bases.iter().copied().filter(|b| *b > containing).collect();
        self.reopen_after(
            slot,
            options,
            "truncated a divergent log tail",
            end,
            offset,
            |dir| {
                for base in &later {
                    for ext in ["log", "index", "timeindex", "txnindex"] {
                        let _ = std::fs::remove_file(dir.join(format!("{base:020}.{ext}")));
                    }
                }
                let log = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&containing_log)?;
                log.set_len(cut_position)?;
                log.sync_all()?;
                for ext in ["index", "timeindex"] {
                    let _ = std::fs::remove_file(dir.join(format!("{containing:020}.{ext}")));
                }
                strom_log::atomic_file::sync_dir(dir)
            },
        )
    }

    /// Kafka's `truncateFullyAndStartAt`: the log becomes empty and starts at `offset`, for a
    /// follower whose log ends below its leader's log start (retention on the leader removed
    /// what it would fetch next). Its producer snapshots go too: they describe data it no
    /// longer has. The replication state is kept.
    pub fn reset_to(&self, offset: i64, options: &OpenOptions) -> Result<(), String> {
        let slot = self.state.lock();
        let Slot::Online(state) = &*slot else {
            return Err("partition is offline".into());
        };
        let end = state.log.log_end_offset();
        self.reopen_after(
            slot,
            options,
            "reset an empty log to the leader's log start",
            end,
            offset,
            |dir| {
                strom_log::PartitionLog::wipe_and_start_at(dir, offset)
                    .map_err(std::io::Error::other)?;
                for snapshot in producer_snapshot::list(dir)? {
                    std::fs::remove_file(producer_snapshot::snapshot_path(dir, snapshot))?;
                }
                strom_log::atomic_file::sync_dir(dir)
            },
        )
    }

    /// Closes the log, lets `change` rewrite its files, and opens it again (recovery rebuilds
    /// indexes and producer state), keeping the replication state. A failure leaves the
    /// partition offline.
    fn reopen_after(
        &self,
        mut slot: parking_lot::MutexGuard<'_, Slot>,
        options: &OpenOptions,
        what: &str,
        from: i64,
        to: i64,
        change: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<(), String> {
        let Slot::Online(state) = &mut *slot else {
            return Err("partition is offline".into());
        };
        let dir = state.log.dir().to_path_buf();
        let replica = state.replica.take();
        // Close every file before changing them.
        *slot = Slot::Unopened(what.into(), None);
        let result = change(&dir);
        let topic_dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        let reopened = result.map_err(|e| e.to_string()).and_then(|()| {
            Partition::open(
                &self.topic,
                self.index,
                &topic_dir,
                options,
                crate::topics::now_ms(),
                None,
            )
            .map_err(|e| e.to_string())
        });
        match reopened {
            Ok(p) => {
                let Slot::Online(mut fresh) = p.state.into_inner() else {
                    unreachable!("open gives an online partition");
                };
                fresh.replica = replica;
                tracing::warn!(topic = %self.topic, partition = self.index, from, to, "{what}");
                *slot = Slot::Online(fresh);
                Ok(())
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "PARTITION OFFLINE: {what} failed");
                *slot = Slot::Unopened(e.clone(), None);
                Err(e)
            }
        }
    }

    /// The offset below which this partition is known durable, for the checkpoint.
    pub fn recovery_point(&self) -> Option<i64> {
        match &*self.state.lock() {
            Slot::Online(state) => Some(state.log.flushed_offset()),
            Slot::Unopened(_, point) => *point,
        }
    }
}
