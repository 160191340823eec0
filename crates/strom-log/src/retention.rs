//! Deleting data: time and size retention (whole segments) and DeleteRecords (log start
//! offset). Time is passed in (`now_ms`) so tests control it.
//!
//! Order of effects, chosen so a crash at any point leaves a consistent log: the new log
//! start offset is made durable first (DeleteRecords), then segments are dropped from memory,
//! then their files are deleted `.log` first. A crash mid-way leaves whole segments that the
//! next pass deletes again, or orphan index files that `open` removes.

use crate::error::LogError;
use crate::log::PartitionLog;
use crate::segment::{delete_segment_files, Segment};
use crate::start_offset;

impl PartitionLog {
    /// Delete whole segments past retention: by time (a segment expires when its newest
    /// timestamp is more than `retention_ms` old; segments without timestamps use their last
    /// append time) and by size (oldest first while the partition stays above
    /// `retention_bytes`), plus segments wholly below the log start offset. As in Kafka, if
    /// the active segment itself must go and is non-empty, a new empty segment is rolled
    /// first. Returns the number of segments deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let deletable = self.deletable_prefix(now_ms);
        if deletable == 0 {
            return Ok(0);
        }
        if deletable == self.segments.len() {
            // Only reached when the active segment is non-empty (see deletable_prefix).
            self.roll(now_ms)?;
        }
        self.delete_oldest(deletable)?;
        Ok(deletable)
    }

    /// How many of the oldest segments retention would delete now.
    fn deletable_prefix(&self, now_ms: i64) -> usize {
        let count = self.segments.len();
        // The newest segment may only go when it has data (then a fresh one replaces it).
        let candidates = if self.active().is_empty() {
            count - 1
        } else {
            count
        };
        let segments = &self.segments[..candidates];

        let by_size = match self.config.retention_bytes {
            Some(limit) if self.size_bytes > limit => {
                let mut excess = self.size_bytes - limit;
                segments
                    .iter()
                    .take_while(|s| {
                        let fits = s.size <= excess;
                        if fits {
                            excess -= s.size;
                        }
                        fits
                    })
                    .count()
            }
            _ => 0,
        };
        // Segments whose every offset is below the log start offset.
        let by_start = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset <= self.log_start_offset)
            .count();
        // Time retention deletes a prefix of expired segments; segments that size or the
        // start offset delete anyway do not interrupt that prefix (one pass reaches the same
        // state as repeated passes).
        let forced = by_size.max(by_start).min(candidates);
        let expired = |s: &Segment| match self.config.retention_ms {
            Some(retention_ms) => now_ms.saturating_sub(newest_time_ms(s)) > retention_ms,
            None => false,
        };
        forced + segments[forced..].iter().take_while(|s| expired(s)).count()
    }

    /// DeleteRecords: make `offset` the new log start offset (durably) and delete segments
    /// wholly below it. `offset` may be at most the log end offset; an offset at or below the
    /// current start changes nothing. Returns the log start offset afterwards.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        let end = self.log_end_offset();
        if offset < 0 || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start_offset,
                end,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        start_offset::write(&self.dir, offset)?;
        self.log_start_offset = offset;
        let below = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset <= offset)
            .count();
        self.delete_oldest(below)?;
        Ok(self.log_start_offset)
    }

    /// Drop the `n` oldest segments (never the active one) and delete their files.
    fn delete_oldest(&mut self, n: usize) -> Result<(), LogError> {
        assert!(
            n < self.segments.len(),
            "the active segment is never deleted"
        );
        let removed: Vec<Segment> = self.segments.drain(..n).collect();
        for segment in &removed {
            self.size_bytes -= segment.size;
        }
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        self.aborted.drop_below(self.segments[0].base_offset);
        self.check_invariants();
        for segment in removed {
            tracing::debug!(dir = %self.dir.display(), base = segment.base_offset, "deleting segment");
            // Readers holding the Arc<File> keep reading the unlinked file safely.
            delete_segment_files(&self.dir, segment.base_offset)?;
        }
        Ok(())
    }
}

/// The time a segment's retention counts from.
fn newest_time_ms(segment: &Segment) -> i64 {
    if segment.max_timestamp >= 0 {
        segment.max_timestamp
    } else {
        segment.last_append_ms
    }
}
