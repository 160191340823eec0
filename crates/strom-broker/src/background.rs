//! Background work: retention every `log.retention.check.interval.ms`, the recovery-point
//! checkpoint every `log.flush.offset.checkpoint.interval.ms`, the log cleaner
//! (`log_cleaner`), and periodic flushing for
//! `log.flush.interval.ms`. All stop when the shutdown signal flips.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::broker::Broker;
use crate::topics::now_ms;

pub fn spawn(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    tokio::spawn(retention_loop(broker.clone(), shutdown.clone()));
    tokio::spawn(checkpoint_loop(broker.clone(), shutdown.clone()));
    crate::log_cleaner::spawn(&broker, &shutdown);
    if broker.config.log_flush_interval_ms > 0 {
        tokio::spawn(flush_loop(broker, shutdown));
    }
}

async fn retention_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(broker.config.retention_check_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let b = broker.clone();
        // Segment deletion touches the filesystem: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || apply_retention(&b)).await;
    }
}

/// One retention pass over every partition; returns the number of segments deleted.
///
/// A partition taken here may be deleted (and its topic re-created) before its turn comes.
/// That is safe because the log finds its files through the partition object: a delete points
/// it at its moved directory under its lock (`PartitionLog::relocate`), so a stale pass works
/// in the trash and never on the new topic's files.
pub fn apply_retention(broker: &Broker) -> usize {
    let now = now_ms();
    let mut deleted = 0;
    for topic in broker.topics.all() {
        let partitions = topic.partitions.read().clone();
        for p in partitions {
            let Ok(mut state) = p.lock() else { continue };
            state
                .producers
                .expire(now, broker.config.producer_id_expiration_ms);
            state.log.close_cold_segments();
            match state.log.apply_retention(now) {
                Ok(n) => deleted += n,
                Err(e) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }
    if deleted > 0 {
        tracing::info!(segments = deleted, "retention deleted old segments");
    }
    deleted
}

/// Writes the recovery-point checkpoint every `log.flush.offset.checkpoint.interval.ms`.
async fn checkpoint_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config.recovery_point_checkpoint_interval_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let topics = broker.topics.clone();
        match tokio::task::spawn_blocking(move || topics.checkpoint_recovery_points()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "writing the recovery-point checkpoint failed")
            }
            Err(e) => tracing::error!(error = %e, "recovery-point checkpoint task failed"),
        }
    }
}

async fn flush_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config.log_flush_interval_ms as u64);
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for topic in broker.topics.all() {
            let partitions = topic.partitions.read().clone();
            for p in partitions {
                if let Err(e) = crate::flusher::sync_partition(&p).await {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "periodic flush failed");
                }
            }
        }
    }
}
