//! Log compaction: Kafka's log cleaner for one partition (`cleanup.policy=compact`).
//!
//! The log is split at the *first dirty offset* (persisted in `cleaner-offset-checkpoint`):
//! below it every key has only its newest record (the clean section), above it up to the
//! *first uncleanable offset* new records arrived (the dirty section). Only closed segments
//! are ever cleaned: those below the active segment, below the flushed offset, below the
//! caller's bound (the last stable offset, so no open transaction is touched) and older than
//! `min_compaction_lag_ms`.
//!
//! A pass, in three phases so that produce and fetch are never blocked by it:
//! 1. [`PartitionLog::plan_clean`] (under the partition lock, no I/O): which segments, the
//!    dirty ratio, the aborted transactions; `None` when the log is not worth cleaning yet.
//! 2. [`CleanPlan::run`] (no lock; reads closed segments, which never change, through their
//!    open files): builds the key map over the dirty section (bounded: when full, the pass
//!    stops at a batch boundary), then rewrites the segments below the map's end in groups of
//!    at most `segment_bytes`, each into a `.cleaned` file, fsynced.
//! 3. [`PartitionLog::finish_clean`] (under the lock, renames only): checks that the segments
//!    are still the ones planned (retention, DeleteRecords or a truncation may have changed
//!    them meanwhile; then the work is dropped) and swaps each group in (`swap`).
//!
//! What a rewrite keeps, as Kafka's `Cleaner.cleanSegments` / `MemoryRecords.filterTo`:
//! - a record whose key has no newer record in the map (keyless records are dropped, as Kafka
//!   drops them from compacted topics);
//! - a tombstone (null value) until its batch's delete horizon has passed;
//! - no record of an aborted transaction (from the `.txnindex`), and a transaction marker only
//!   while data of its transaction remains before it or its delete horizon has not passed;
//! - every batch's base offset, offset range and producer fields; a batch is rewritten only
//!   when it loses records or gets its delete horizon. The last batch of each group stays,
//!   empty if need be, so the cleaned segment ends at the same offset and segments stay
//!   contiguous.
//!
//! The delete horizon (KIP-534, as Kafka's `LogCleaner` and `MemoryRecords.filterTo`): the
//! first pass that keeps a tombstone, or a marker with no data of its transaction left, writes
//! its batch again with `now + delete_retention_ms` as the base timestamp and the
//! delete-horizon attribute bit; a later pass at or past that time removes it. The clock starts
//! at that first pass, not at the record's own timestamp, which the producer chose and may be
//! old: a consumer that reads the log from the start within `delete_retention_ms` of the
//! cleaning still sees the delete.
//!
//! Offsets inside a cleaned segment have gaps; reads serve the next batch after a gap.
//!
//! Known limits: one pass cleans one partition at a time (the broker runs one cleaner
//! thread); a passed delete horizon removes nothing until dirty data makes the next pass (as
//! with Kafka); the last batch of each idempotent producer is not specially kept (producer
//! state is restored from snapshots).

mod filter;
mod offset_map;
mod run;
pub(crate) mod swap;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::LogError;
use crate::log::PartitionLog;
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;

pub use offset_map::ENTRY_BYTES as OFFSET_MAP_ENTRY_BYTES;
pub(crate) use swap::StopAfter;

/// The file holding the first dirty offset, as decimal text.
pub(crate) const CHECKPOINT_NAME: &str = "cleaner-offset-checkpoint";

/// Kafka's `log.cleaner.dedupe.buffer.size` default: 128 MiB.
pub const DEFAULT_DEDUPE_BUFFER_BYTES: usize = 128 * 1024 * 1024;
/// Kafka's `min.cleanable.dirty.ratio` default.
pub const DEFAULT_MIN_CLEANABLE_DIRTY_RATIO: f64 = 0.5;
/// Kafka's `delete.retention.ms` default: one day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// What governs cleaning of one partition (topic configs plus the broker's memory bound).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// Most memory the key map of one pass may take (`log.cleaner.dedupe.buffer.size`).
    pub dedupe_buffer_bytes: usize,
    /// Clean only when dirty bytes are at least this share of the cleanable bytes.
    pub min_cleanable_dirty_ratio: f64,
    /// A record stays uncompacted at least this long (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// A dirty record older than this forces a pass whatever the ratio
    /// (`max.compaction.lag.ms`; `None`: never).
    pub max_compaction_lag_ms: Option<i64>,
    /// Tombstones and transaction markers are kept this long after the pass that first kept
    /// them (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Most bytes one compressed batch may decompress to (`decompressed.batch.max.bytes`).
    pub max_decompressed_batch_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: DEFAULT_DEDUPE_BUFFER_BYTES,
            min_cleanable_dirty_ratio: DEFAULT_MIN_CLEANABLE_DIRTY_RATIO,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            max_decompressed_batch_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub batches_rewritten: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    /// The first dirty offset after the pass.
    pub first_dirty_offset: i64,
}

/// A closed segment as planned: its identity (to check at swap time) and its open file.
#[derive(Debug)]
struct Planned {
    base: i64,
    next_offset: i64,
    size: u64,
    file: Arc<File>,
    last_append_ms: i64,
}

/// The closed segments a pass may read: from the log's first up to `end`, the first
/// uncleanable offset.
struct Section<'a> {
    cleanable: Vec<&'a Segment>,
    end: i64,
    /// Dirty bytes over cleanable bytes.
    dirty_ratio: f64,
    /// A dirty record is older than `max_compaction_lag_ms`.
    overdue: bool,
}

/// The work of one pass, made under the lock and run off it ([`CleanPlan::run`]).
#[derive(Debug)]
pub struct CleanPlan {
    dir: PathBuf,
    /// Every closed segment from the log's first up to the first uncleanable offset.
    segments: Vec<Planned>,
    first_dirty: i64,
    /// Aborted transactions overlapping the planned segments.
    aborted: Vec<AbortedTxn>,
    /// `.txnindex` entries by segment base (a group's entries move to its cleaned segment).
    txn_entries: BTreeMap<i64, Vec<AbortedTxn>>,
    group_bytes_max: u64,
    index_interval_bytes: u64,
    config: CleanerConfig,
    now_ms: i64,
    /// Dirty bytes over cleanable bytes when planned.
    pub dirty_ratio: f64,
}

/// Cleaned segments written to `.cleaned` files, waiting for [`PartitionLog::finish_clean`].
#[derive(Debug)]
pub struct Cleaned {
    dir: PathBuf,
    groups: Vec<CleanedGroup>,
    first_dirty_after: i64,
    stats: CleanStats,
}

#[derive(Debug)]
struct CleanedGroup {
    /// (base, next offset, size) of each replaced segment.
    old: Vec<(i64, i64, u64)>,
    segment: Segment,
    aborted: Vec<AbortedTxn>,
}

impl Cleaned {
    /// Delete the `.cleaned` files (the pass will not be committed).
    pub fn discard(self) {
        for group in &self.groups {
            swap::discard(&self.dir, group.segment.base_offset);
        }
    }
}

impl PartitionLog {
    /// Below this offset every key has only its newest record (see the module docs).
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty_offset.max(self.log_start_offset)
    }

    /// Phase 1 (see the module docs): `upper_bound` is the first offset the cleaner must not
    /// touch besides the active segment and unflushed data (the last stable offset). With
    /// `force`, the dirty ratio and lags are not asked.
    pub fn plan_clean(
        &self,
        config: &CleanerConfig,
        upper_bound: i64,
        now_ms: i64,
        force: bool,
    ) -> Option<CleanPlan> {
        let Section {
            cleanable,
            end,
            dirty_ratio,
            overdue,
        } = self.cleanable_section(config, upper_bound, now_ms, force)?;
        if !force && dirty_ratio < config.min_cleanable_dirty_ratio && !overdue {
            return None;
        }
        let first_dirty = self.first_dirty_offset();
        let mut segments = Vec::with_capacity(cleanable.len());
        for s in &cleanable {
            let file = s.log.get().ok()?;
            segments.push(Planned {
                base: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                file,
                last_append_ms: s.last_append_ms,
            });
        }
        let first_base = cleanable[0].base_offset;
        let txn_entries = cleanable
            .iter()
            .map(|s| {
                let entries = self
                    .aborted
                    .overlapping(s.base_offset, s.base_offset, s.next_offset);
                (
                    s.base_offset,
                    entries
                        .into_iter()
                        .filter(|t| t.last_offset < s.next_offset)
                        .collect(),
                )
            })
            .collect();
        Some(CleanPlan {
            dir: self.dir.clone(),
            aborted: self.aborted.overlapping(first_base, first_base, end),
            txn_entries,
            segments,
            first_dirty,
            group_bytes_max: self.config.segment_bytes.min(u64::from(u32::MAX)),
            index_interval_bytes: u64::from(self.config.index_interval_bytes),
            config: config.clone(),
            now_ms,
            dirty_ratio,
        })
    }

    /// Dirty bytes over cleanable bytes now (Kafka's `cleanableRatio`; 0 when no closed,
    /// flushed, old enough segment holds dirty records). Cheap: no I/O.
    pub fn dirty_ratio(&self, config: &CleanerConfig, upper_bound: i64, now_ms: i64) -> f64 {
        self.cleanable_section(config, upper_bound, now_ms, false)
            .map_or(0.0, |section| section.dirty_ratio)
    }

    /// What a pass may read; `None` when none of it is dirty.
    fn cleanable_section(
        &self,
        config: &CleanerConfig,
        upper_bound: i64,
        now_ms: i64,
        force: bool,
    ) -> Option<Section<'_>> {
        if self.failure.is_some() {
            return None;
        }
        let first_dirty = self.first_dirty_offset();
        let mut end = upper_bound
            .min(self.flushed_offset)
            .min(self.active().base_offset);
        if config.min_compaction_lag_ms > 0 && !force {
            let young_since = now_ms.saturating_sub(config.min_compaction_lag_ms);
            if let Some(young) = self
                .segments
                .iter()
                .find(|s| s.next_offset > first_dirty && s.max_timestamp > young_since)
            {
                end = end.min(young.base_offset);
            }
        }
        let cleanable: Vec<&Segment> = self
            .segments
            .iter()
            .take_while(|s| s.next_offset <= end)
            .collect();
        if cleanable
            .last()
            .map_or(true, |s| s.next_offset <= first_dirty)
        {
            return None;
        }
        let (clean, dirty): (Vec<&&Segment>, Vec<&&Segment>) =
            cleanable.iter().partition(|s| s.next_offset <= first_dirty);
        let clean_bytes: u64 = clean.iter().map(|s| s.size).sum();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
        let dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
        let overdue = config.max_compaction_lag_ms.is_some_and(|lag| {
            dirty[0]
                .roll_base_ms
                .is_some_and(|first| first <= now_ms.saturating_sub(lag))
        });
        Some(Section {
            cleanable,
            end,
            dirty_ratio,
            overdue,
        })
    }

    /// Phase 3: swap the cleaned groups in. Returns `None` when the log changed since the plan
    /// (the work is discarded). An I/O error after a swap's commit point takes the log offline
    /// until it is reopened, which completes the swap.
    pub fn finish_clean(&mut self, cleaned: Cleaned) -> Result<Option<CleanStats>, LogError> {
        self.finish_clean_stopping(cleaned, StopAfter(None))
    }

    pub(crate) fn finish_clean_stopping(
        &mut self,
        mut cleaned: Cleaned,
        mut stop: StopAfter,
    ) -> Result<Option<CleanStats>, LogError> {
        self.check_not_failed()?;
        if cleaned.dir != self.dir || !cleaned.groups.iter().all(|g| self.still_there(&g.old)) {
            tracing::info!(dir = %self.dir.display(), "the log changed while it was cleaned; discarding the pass");
            cleaned.discard();
            return Ok(None);
        }
        let dir = self.dir.clone();
        let groups = std::mem::take(&mut cleaned.groups);
        let mut pending = groups.into_iter();
        while let Some(group) = pending.next() {
            let base = group.segment.base_offset;
            let old_bases: Vec<i64> = group.old.iter().map(|o| o.0).collect();
            match swap::commit(&dir, base, &old_bases, &mut stop) {
                swap::Commit::Done => {}
                swap::Commit::Stopped => return Ok(None),
                swap::Commit::FailedBefore(e) => {
                    swap::discard(&dir, base);
                    pending.for_each(|g| swap::discard(&dir, g.segment.base_offset));
                    return Err(e.into());
                }
                swap::Commit::FailedAfter(e) => return Err(self.fail(e.into())),
            }
            let first = self.segment_index_for(base);
            let replaced = first..first + group.old.len();
            let old_size: u64 = self.segments[replaced.clone()].iter().map(|s| s.size).sum();
            self.size_bytes = self.size_bytes - old_size + group.segment.size;
            if let Err(error) = group.segment.index.write_files(&dir, base) {
                tracing::warn!(%error, base, "could not write a cleaned segment's index; it is rebuilt at the next start");
            }
            self.aborted.merge(&old_bases, base, group.aborted);
            self.segments.splice(replaced, [group.segment]);
        }
        self.first_dirty_offset = cleaned.first_dirty_after;
        let checkpoint = dir.join(CHECKPOINT_NAME);
        let text = cleaned.first_dirty_after.to_string();
        if let Err(error) = crate::atomic_file::write_atomically(&checkpoint, text.as_bytes()) {
            tracing::warn!(%error, "could not write the cleaner checkpoint; the next pass starts lower");
        }
        self.check_invariants();
        let mut stats = cleaned.stats;
        stats.segments_after = self.segments.len();
        stats.first_dirty_offset = cleaned.first_dirty_after;
        Ok(Some(stats))
    }

    /// Whether the segments `old` (base, next offset, size) are still in the log, closed and
    /// consecutive.
    fn still_there(&self, old: &[(i64, i64, u64)]) -> bool {
        let Some(&(first, _, _)) = old.first() else {
            return false;
        };
        let at = self.segment_index_for(first);
        let last = self.segments.len() - 1;
        at + old.len() <= last
            && old
                .iter()
                .zip(&self.segments[at..])
                .all(|(&(base, next, size), s)| {
                    s.base_offset == base && s.next_offset == next && s.size == size
                })
    }

    /// Plan, run and finish one pass in place (tests and logs that own their lock).
    pub fn clean_now(
        &mut self,
        config: &CleanerConfig,
        upper_bound: i64,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<CleanStats>, LogError> {
        match self.plan_clean(config, upper_bound, now_ms, force) {
            None => Ok(None),
            Some(plan) => {
                let cleaned = plan.run()?;
                self.finish_clean(cleaned)
            }
        }
    }
}

/// The first dirty offset stored in `dir`, if any (garbage reads as none: cleaning from the
/// start again is only slower).
pub(crate) fn read_checkpoint(dir: &std::path::Path) -> i64 {
    std::fs::read_to_string(dir.join(CHECKPOINT_NAME))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
