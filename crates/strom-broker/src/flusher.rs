//! Group commit: produce requests that must be durable (acks=all, or every ack under
//! `log.fsync=always`) wait here for an fsync covering their last offset. One round fsyncs each
//! dirty partition once for every request that arrived while the previous round ran (and
//! within the optional `log.fsync.group.commit.ms` window), so many requests share one fsync.
//! The fsyncs themselves run on blocking threads, never under a partition lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::partition::Partition;

/// Requests waiting for the flusher; producers beyond this wait to enqueue (backpressure).
pub const PENDING_FLUSHES_MAX: usize = 65_536;

struct FlushRequest {
    partition: Arc<Partition>,
    /// The request is durable once the partition's flushed offset reaches this.
    end_offset: i64,
    done: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::Sender<FlushRequest>,
}

impl Flusher {
    pub fn start(window: Duration) -> Flusher {
        let (tx, rx) = mpsc::channel(PENDING_FLUSHES_MAX);
        tokio::spawn(run(rx, window));
        Flusher { tx }
    }

    /// Waits until everything below `end_offset` in `partition` is on stable storage.
    pub async fn wait_durable(
        &self,
        partition: Arc<Partition>,
        end_offset: i64,
    ) -> Result<(), String> {
        if partition.state.lock().log.flushed_offset() >= end_offset {
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
}

/// fsyncs whatever is unflushed in one partition, off the lock. Usually that is the active
/// segment alone; when segments rolled without being synced (`log.fsync=never` with a flush
/// interval) the older ones come first, one per `flush_target` call.
pub async fn sync_partition(partition: &Arc<Partition>) -> Result<(), String> {
    let segments = partition.state.lock().log.segment_count();
    for _ in 0..=segments {
        let target = partition.state.lock().log.flush_target();
        let Some((file, offset)) = target else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut state = partition.state.lock();
        state.log.mark_flushed(offset);
        if state.log.flush_target().is_none() {
            state.unflushed_messages = 0;
        }
    }
    Ok(())
}

async fn run(mut rx: mpsc::Receiver<FlushRequest>, window: Duration) {
    while let Some(first) = rx.recv().await {
        if !window.is_zero() {
            tokio::time::sleep(window).await;
        }
        let mut round = vec![first];
        while round.len() < PENDING_FLUSHES_MAX {
            match rx.try_recv() {
                Ok(r) => round.push(r),
                Err(_) => break,
            }
        }
        // One fsync per distinct partition (keyed by address), all partitions in parallel.
        let mut distinct: HashMap<usize, Arc<Partition>> = HashMap::new();
        for r in &round {
            distinct
                .entry(Arc::as_ptr(&r.partition) as usize)
                .or_insert_with(|| r.partition.clone());
        }
        let mut syncs = tokio::task::JoinSet::new();
        for (key, p) in distinct {
            syncs.spawn(async move { (key, sync_partition(&p).await) });
        }
        let mut errors: HashMap<usize, String> = HashMap::new();
        while let Some(res) = syncs.join_next().await {
            if let Ok((key, Err(e))) = res {
                tracing::error!(error = %e, "fsync failed");
                errors.insert(key, e);
            }
        }
        for r in round {
            let key = Arc::as_ptr(&r.partition) as usize;
            let result = match errors.get(&key) {
                Some(e) => Err(e.clone()),
                None if r.partition.state.lock().log.flushed_offset() >= r.end_offset => Ok(()),
                // A roll between append and fsync synced the old segment itself (flush_on_roll),
                // so only the active segment's offsets can be behind; ask again next round.
                None => Err("fsync did not cover the request".to_string()),
            };
            let _ = r.done.send(result);
        }
    }
}
