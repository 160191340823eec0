//! Group commit. Produce requests that must be durable (acks=all, or every ack under
//! `log.fsync=always`) wait here for an fsync covering their last offset, and appends that
//! nobody waits for mark their partition dirty so that the high watermark, which follows
//! fsync in a durable broker, advances soon. One round fsyncs each dirty partition once for
//! every request that arrived while the previous round ran (and within the optional
//! `log.fsync.group.commit.ms` window), so many requests share one fsync. The fsyncs run on
//! blocking threads, never under a partition lock, and never on the request path: a segment
//! roll leaves its fsyncs to this task too.
//!
//! A failed fsync is never retried (see `strom_log::LogError::Failed`): the log goes offline,
//! every request waiting on it gets an error, and so does every later one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};

use strom_log::SyncError;

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
            tokio::task::spawn_blocking(move || target.sync())
                .await
                .map_err(|e| e.to_string())?
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

async fn run(mut rx: mpsc::Receiver<FlushRequest>, dirty: Arc<Dirty>, window: Duration) {
    loop {
        let mut round = Vec::new();
        tokio::select! {
            first = rx.recv() => match first {
                Some(r) => round.push(r),
                None => return,
            },
            _ = dirty.wake.notified() => {}
        }
        if !window.is_zero() {
            tokio::time::sleep(window).await;
        }
        while round.len() < PENDING_FLUSHES_MAX {
            match rx.try_recv() {
                Ok(r) => round.push(r),
                Err(_) => break,
            }
        }
        // One fsync per distinct partition, all partitions in parallel.
        let mut distinct: HashMap<usize, Arc<Partition>> =
            std::mem::take(&mut *dirty.partitions.lock());
        for r in &round {
            distinct
                .entry(key(&r.partition))
                .or_insert_with(|| r.partition.clone());
        }
        let mut syncs = tokio::task::JoinSet::new();
        for (key, p) in distinct {
            syncs.spawn(async move { (key, sync_partition(&p).await) });
        }
        let mut errors: HashMap<usize, String> = HashMap::new();
        while let Some(res) = syncs.join_next().await {
            if let Ok((key, Err(e))) = res {
                errors.insert(key, e);
            }
        }
        for r in round {
            let result = match errors.get(&key(&r.partition)) {
                Some(e) => Err(e.clone()),
                None => match r.partition.lock() {
                    Ok(state) if state.log.flushed_offset() >= r.end_offset => Ok(()),
                    Ok(_) => Err("fsync did not cover the request".to_string()),
                    Err(offline) => Err(offline.to_string()),
                },
            };
            let _ = r.done.send(result);
        }
    }
}
