//! Group commit. Produce requests that must be durable (acks=all, or every ack under
//! `log.fsync=always`) wait here for an fsync covering their last offset, and appends that
//! nobody waits for mark their partition dirty so that the high watermark, which follows
//! fsync in a durable broker, advances soon. Each partition has at most one sync running;
//! every request that arrives meanwhile (within the optional `log.fsync.group.commit.ms`
//! window) is covered by its next one, so many requests share one fsync, and a partition's
//! requests are answered as soon as its own sync is done, whatever other partitions' disks
//! are doing. The fsyncs run on blocking threads, never under a partition lock, and never on
//! the request path: a segment roll leaves its fsyncs to this task too.
//!
//! A failed fsync is never retried (see `strom_log::LogError::Failed`): the log goes offline,
//! every request waiting on it gets an error, and so does every later one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};

use strom_log::SyncError;

use crate::metrics::METRICS;
use crate::partition::Partition;

/// Requests waiting for the flusher; producers beyond this wait to enqueue (backpressure).
pub const PENDING_FLUSHES_MAX: usize = 65_536;

struct FlushRequest {
    partition: Arc<Partition>,
    /// The request is durable once the partition's flushed offset reaches this.
    end_offset: i64,
    done: oneshot::Sender<Result<(), String>>,
}

/// Partitions with appended data that nobody waits for, keyed by address (one entry each).
#[derive(Default)]
struct Dirty {
    partitions: Mutex<HashMap<usize, Arc<Partition>>>,
    wake: Notify,
}

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<FlushRequest>,
    dirty: Arc<Dirty>,
}

fn key(partition: &Arc<Partition>) -> usize {
    Arc::as_ptr(partition) as usize
}

impl Flusher {
    pub fn start(window: Duration) -> Flusher {
        let (tx, rx) = mpsc::channel(PENDING_FLUSHES_MAX);
        let dirty = Arc::new(Dirty::default());
        tokio::spawn(run(rx, dirty.clone(), window));
        Flusher { tx, dirty }
    }

    /// Waits until everything below `end_offset` in `partition` is on stable storage.
    pub async fn wait_durable(
        &self,
        partition: Arc<Partition>,
        end_offset: i64,
    ) -> Result<(), String> {
        let flushed = partition
            .lock()
            .map_err(|e| e.to_string())?
            .log
            .flushed_offset();
        if flushed >= end_offset {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(FlushRequest {
                partition,
                end_offset,
                done,
            })
            .await
            .map_err(|_| "broker is shutting down".to_string())?;
        rx.await
            .unwrap_or_else(|_| Err("broker is shutting down".into()))
    }

    /// Has the partition fsynced in the next round, without waiting for it.
    pub fn mark_dirty(&self, partition: &Arc<Partition>) {
        self.dirty
            .partitions
            .lock()
            .entry(key(partition))
            .or_insert_with(|| partition.clone());
        // A stored permit wakes the next wait if the flusher is busy now.
        self.dirty.wake.notify_one();
    }
}

/// fsyncs whatever is unflushed in one partition, off the lock. Usually that is the active
/// segment alone; after a roll the older segment comes first, one per `flush_target` call.
/// Every step that moves the high watermark wakes the partition's waiting fetches.
pub async fn sync_partition(partition: &Arc<Partition>) -> Result<(), String> {
    let segments = partition
        .with_log(|log| log.segment_count())
        .unwrap_or_default();
    for _ in 0..=segments {
        let target = partition
            .lock()
            .map_err(|e| e.to_string())?
            .log
            .flush_target();
        let Some(target) = target else {
            return Ok(());
        };
        let synced = {
            let target = target.clone();
            let started = std::time::Instant::now();
            let synced = tokio::task::spawn_blocking(move || target.sync())
                .await
                .map_err(|e| e.to_string())?;
            METRICS.fsync_seconds.observe(started.elapsed());
            if synced.is_err() {
                METRICS
                    .fsync_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            synced
        };
        let result = partition.with_log(|log| match synced {
            Ok(()) => {
                log.mark_flushed(&target);
                Ok(())
            }
            Err(SyncError::Fsync(e)) => Err(log.mark_sync_failed(e).to_string()),
            // Nothing was lost: the requests waiting now fail, the next round tries again.
            Err(e @ SyncError::Open(_)) => Err(e.to_string()),
        });
        match result {
            Some(Ok(())) => {
                if let Ok(mut state) = partition.lock() {
                    if state.log.flush_target().is_none() {
                        state.unflushed_messages = 0;
                    }
                }
                partition.appended.notify_waiters();
            }
            Some(Err(e)) => {
                tracing::error!(
                    topic = %partition.topic,
                    partition = partition.index,
                    error = %e,
                    offline = partition.lock().is_err(),
                    "flush failed"
                );
                // Fetches parked on an offline partition must hear now.
                partition.appended.notify_waiters();
                return Err(e);
            }
            None => return Err("partition is offline".into()),
        }
    }
    Ok(())
}

/// One partition's flush state in the flusher: the requests waiting on it, and whether a sync
/// of it is running or owed.
struct Slot {
    partition: Arc<Partition>,
    waiters: Vec<FlushRequest>,
    running: bool,
    /// Data arrived (or a request waits) that the running sync may not cover.
    owed: bool,
}

/// The flusher's loop. Each partition is synced by its own task, at most one at a time, and
/// its waiting requests are answered as soon as *its* sync is done: a partition that rolls
/// segments all the time (many files to fsync) never holds back another partition's
/// acknowledgements. Requests that arrive while a partition's sync runs wait for its next one,
/// which covers all of them (group commit).
async fn run(mut rx: mpsc::Receiver<FlushRequest>, dirty: Arc<Dirty>, window: Duration) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(usize, Result<(), String>)>();
    let mut slots: HashMap<usize, Slot> = HashMap::new();
    let slot_of = |slots: &mut HashMap<usize, Slot>, partition: &Arc<Partition>| -> usize {
        let k = key(partition);
        slots.entry(k).or_insert_with(|| Slot {
            partition: partition.clone(),
            waiters: Vec::new(),
            running: false,
            owed: false,
        });
        k
    };
    loop {
        tokio::select! {
            request = rx.recv() => {
                let Some(request) = request else { return };
                let k = slot_of(&mut slots, &request.partition);
                let slot = slots.get_mut(&k).expect("just inserted");
                slot.waiters.push(request);
                slot.owed = true;
            }
            _ = dirty.wake.notified() => {
                let marked = std::mem::take(&mut *dirty.partitions.lock());
                for partition in marked.into_values() {
                    let k = slot_of(&mut slots, &partition);
                    slots.get_mut(&k).expect("just inserted").owed = true;
                }
            }
            Some((k, result)) = done_rx.recv() => {
                if let Some(slot) = slots.get_mut(&k) {
                    slot.running = false;
                    answer(slot, &result);
                }
            }
        }
        for (&k, slot) in slots.iter_mut() {
            if slot.owed && !slot.running {
                slot.owed = false;
                slot.running = true;
                let partition = slot.partition.clone();
                let done_tx = done_tx.clone();
                tokio::spawn(async move {
                    if !window.is_zero() {
                        tokio::time::sleep(window).await;
                    }
                    let _ = done_tx.send((k, sync_partition(&partition).await));
                });
            }
        }
        slots.retain(|_, s| s.running || s.owed || !s.waiters.is_empty());
    }
}

/// Answers the requests a finished sync covers; the rest wait for the next one.
fn answer(slot: &mut Slot, result: &Result<(), String>) {
    let flushed = match result {
        Err(e) => Err(e.clone()),
        Ok(()) => slot
            .partition
            .lock()
            .map(|state| state.log.flushed_offset())
            .map_err(|offline| offline.to_string()),
    };
    let waiters = std::mem::take(&mut slot.waiters);
    for r in waiters {
        match &flushed {
            Err(e) => {
                let _ = r.done.send(Err(e.clone()));
            }
            Ok(flushed) if *flushed >= r.end_offset => {
                let _ = r.done.send(Ok(()));
            }
            Ok(_) => slot.waiters.push(r),
        }
    }
    if !slot.waiters.is_empty() {
        slot.owed = true;
    }
}
