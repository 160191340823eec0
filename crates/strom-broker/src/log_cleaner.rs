//! The log cleaner tasks (Kafka's `LogCleaner` threads): compact the partitions of topics
//! whose `cleanup.policy` includes `compact`, one partition at a time per task. There are
//! `log.cleaner.threads` tasks; each owns the partitions whose (topic, index) hash to it, so two
//! tasks never clean the same partition. A task sleeps `log.cleaner.backoff.ms` whenever a
//! round over its partitions found nothing worth cleaning.
//!
//! A round measures every owned partition's dirty ratio first and cleans the dirtiest first
//! (Kafka's `grabFilthiestCompactedLog`), so a partition with the most to win is not kept
//! waiting behind a round-robin order.
//!
//! Each partition's pass takes its lock twice, briefly: to plan (which closed segments, up to
//! the last stable offset, so no open transaction is touched) and to swap the cleaned
//! segments in (renames). Reading and rewriting segments runs on a blocking thread without the
//! lock, so produce and fetch go on meanwhile (see `strom_log::cleaner`). Memory is bounded
//! by `log.cleaner.dedupe.buffer.size` for the key maps (split between the tasks) plus one
//! batch at a time per task.
//!
//! Topic configs are read again every round, so `AlterConfigs` changes to `cleanup.policy`,
//! `min.cleanable.dirty.ratio`, `delete.retention.ms` or the compaction lags apply at the next
//! round.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::broker::Broker;
use crate::metrics::{CleanerMetrics, CLEANER_THREADS_MAX, METRICS};
use crate::partition::Partition;
use crate::topics::now_ms;

/// Starts the cleaner tasks (none when `log.cleaner.enable=false` or `log.cleaner.threads=0`).
pub fn spawn(broker: &Arc<Broker>, shutdown: &watch::Receiver<bool>) {
    if !broker.config.log_cleaner_enable {
        return;
    }
    let threads = broker.config.log_cleaner_threads.min(CLEANER_THREADS_MAX);
    for thread in 0..threads {
        let share = Share { thread, threads };
        tokio::spawn(run(broker.clone(), share, shutdown.clone()));
    }
}

/// Which partitions one cleaner task owns.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    pub thread: usize,
    pub threads: usize,
}

impl Share {
    /// The only task of a broker with one cleaner thread.
    pub const ALL: Share = Share {
        thread: 0,
        threads: 1,
    };

    fn owns(&self, partition: &Partition) -> bool {
        if self.threads <= 1 {
            return true;
        }
        // `DefaultHasher::new` has fixed keys: the same partition always hashes alike.
        let mut h = DefaultHasher::new();
        partition.topic.hash(&mut h);
        partition.index.hash(&mut h);
        (h.finish() % self.threads as u64) as usize == self.thread
    }
}

async fn run(broker: Arc<Broker>, share: Share, mut shutdown: watch::Receiver<bool>) {
    let backoff = Duration::from_millis(broker.config.log_cleaner_backoff_ms);
    loop {
        let b = broker.clone();
        let stop = shutdown.clone();
        let cleaned = tokio::task::spawn_blocking(move || clean_round(&b, share, &stop))
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

/// One round over the compacted partitions `share` owns, dirtiest first; returns how many
/// were cleaned. Stops between partitions once `shutdown` flips.
pub fn clean_round(broker: &Broker, share: Share, shutdown: &watch::Receiver<bool>) -> usize {
    let metrics = &METRICS.cleaner;
    let threads = share.threads.max(1);
    let mut candidates = Vec::new();
    for topic in broker.topics.all() {
        let Some(mut config) = broker
            .topics
            .effective_config(&topic)
            .cleaner_config(&broker.config)
        else {
            continue;
        };
        config.dedupe_buffer_bytes = (config.dedupe_buffer_bytes / threads).max(1);
        let partitions = topic.partitions.read().clone();
        for p in partitions.into_iter().filter(|p| share.owns(p)) {
            let Ok(state) = p.lock() else { continue };
            let ratio = state
                .log
                .dirty_ratio(&config, state.last_stable_offset(), now_ms());
            drop(state);
            candidates.push((ratio, (p, config.clone())));
        }
    }
    let dirty_ratio_max = candidates.iter().map(|c| c.0).fold(0.0f64, f64::max);
    metrics.dirty_ratio_max[share.thread.min(CLEANER_THREADS_MAX - 1)]
        .store(dirty_ratio_max.to_bits(), Relaxed);
    let mut cleaned = 0;
    for (_, (p, config)) in dirtiest_first(candidates) {
        if *shutdown.borrow() {
            break;
        }
        let plan = {
            // Every replica cleans its own log, as Kafka's do: followers keep the leader's
            // offsets (gaps included), so offsets mean the same everywhere.
            let Ok(state) = p.lock() else { continue };
            state
                .log
                .plan_clean(&config, state.last_stable_offset(), now_ms(), false)
        };
        let Some(plan) = plan else { continue };
        if clean_partition(&p, plan, metrics) {
            cleaned += 1;
        }
    }
    cleaned
}

/// `candidates` (each with its dirty ratio) in the order a round cleans them: the highest
/// ratio first; equal ratios keep their order.
fn dirtiest_first<T>(mut candidates: Vec<(f64, T)>) -> Vec<(f64, T)> {
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
    candidates
}

/// Runs `plan` off the lock and swaps its segments in; true when the log was cleaned.
fn clean_partition(p: &Partition, plan: strom_log::CleanPlan, metrics: &CleanerMetrics) -> bool {
    let started = Instant::now();
    let ratio = plan.dirty_ratio;
    let cleaned_segments = match plan.run() {
        Ok(c) => c,
        Err(error) => {
            metrics.failures.fetch_add(1, Relaxed);
            tracing::warn!(topic = %p.topic, partition = p.index, %error, "log cleaning failed");
            return false;
        }
    };
    let Ok(mut state) = p.lock() else {
        cleaned_segments.discard();
        return false;
    };
    match state.log.finish_clean(cleaned_segments) {
        Ok(Some(stats)) => {
            drop(state);
            let elapsed = started.elapsed();
            metrics.runs.fetch_add(1, Relaxed);
            metrics.bytes_read.fetch_add(stats.bytes_read, Relaxed);
            metrics
                .bytes_written
                .fetch_add(stats.bytes_written, Relaxed);
            metrics
                .records_removed
                .fetch_add(stats.records_removed, Relaxed);
            metrics.seconds.observe(elapsed);
            metrics
                .last_run_us
                .store(elapsed.as_micros() as u64, Relaxed);
            tracing::info!(
                topic = %p.topic,
                partition = p.index,
                dirty_ratio = ratio,
                read_bytes = stats.bytes_read,
                written_bytes = stats.bytes_written,
                removed = stats.records_removed,
                segments = stats.segments_after,
                first_dirty_offset = stats.first_dirty_offset,
                elapsed_ms = elapsed.as_millis() as u64,
                "cleaned log"
            );
            true
        }
        Ok(None) => false,
        Err(error) => {
            metrics.failures.fetch_add(1, Relaxed);
            tracing::error!(topic = %p.topic, partition = p.index, %error, "swapping cleaned segments in failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dirtiest_first;

    #[test]
    fn a_round_cleans_the_dirtiest_partition_first() {
        let order = dirtiest_first(vec![
            (0.2, "a"),
            (0.9, "b"),
            (0.0, "c"),
            (0.5, "d"),
            (0.9, "e"),
        ]);
        let names: Vec<&str> = order.into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["b", "e", "d", "a", "c"]);
    }
}
