//! The log cleaner task (Kafka's `LogCleaner` thread): compacts the partitions of topics whose
//! `cleanup.policy` includes `compact`, one partition at a time, and sleeps
//! `log.cleaner.backoff.ms` whenever a round found nothing worth cleaning.
//!
//! Each partition's pass takes its lock twice, briefly: to plan (which closed segments, up to
//! the last stable offset, so no open transaction is touched) and to swap the cleaned
//! segments in (renames). Reading and rewriting segments runs on a blocking thread without the
//! lock, so produce and fetch go on meanwhile (see `strom_log::cleaner`). Memory is bounded
//! by `log.cleaner.dedupe.buffer.size` for the key map plus one batch at a time.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::broker::Broker;
use crate::metrics::METRICS;
use crate::topics::now_ms;

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let backoff = Duration::from_millis(broker.config.log_cleaner_backoff_ms);
    loop {
        let b = broker.clone();
        let cleaned = tokio::task::spawn_blocking(move || clean_round(&b))
            .await
            .unwrap_or(0);
        if *shutdown.borrow() {
            return;
        }
        if cleaned == 0 {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One round over every compacted partition; returns how many were cleaned.
pub fn clean_round(broker: &Broker) -> usize {
    let mut cleaned = 0;
    for topic in broker.topics.all() {
        let Some(config) = broker
            .topics
            .effective_config(&topic)
            .cleaner_config(&broker.config)
        else {
            continue;
        };
        let partitions = topic.partitions.read().clone();
        for p in partitions {
            let plan = {
                let Ok(state) = p.lock() else { continue };
                // Replicas fetch batches and append them at their own log end, so a leader's
                // offset gaps would shift a follower's offsets: cluster mode does not compact.
                if state.replica.is_some() {
                    continue;
                }
                state
                    .log
                    .plan_clean(&config, state.last_stable_offset(), now_ms(), false)
            };
            let Some(plan) = plan else { continue };
            let started = Instant::now();
            let ratio = plan.dirty_ratio;
            let cleaned_segments = match plan.run() {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, %error, "log cleaning failed");
                    continue;
                }
            };
            let Ok(mut state) = p.lock() else {
                cleaned_segments.discard();
                continue;
            };
            match state.log.finish_clean(cleaned_segments) {
                Ok(Some(stats)) => {
                    cleaned += 1;
                    METRICS.cleaner_passes.fetch_add(1, Relaxed);
                    METRICS
                        .cleaner_bytes_read
                        .fetch_add(stats.bytes_read, Relaxed);
                    METRICS
                        .cleaner_bytes_written
                        .fetch_add(stats.bytes_written, Relaxed);
                    METRICS
                        .cleaner_records_removed
                        .fetch_add(stats.records_removed, Relaxed);
                    METRICS.cleaner_seconds.observe(started.elapsed());
                    tracing::info!(
                        topic = %p.topic,
                        partition = p.index,
                        dirty_ratio = ratio,
                        read_bytes = stats.bytes_read,
                        written_bytes = stats.bytes_written,
                        removed = stats.records_removed,
                        segments = stats.segments_after,
                        first_dirty_offset = stats.first_dirty_offset,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "cleaned log"
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(topic = %p.topic, partition = p.index, %error, "swapping cleaned segments in failed")
                }
            }
        }
    }
    cleaned
}
