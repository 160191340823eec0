//! Timestamp lookups for ListOffsets: first offset at or after a timestamp, and the offset of
//! the largest timestamp. These are the only paths that look inside records, and only for one
//! uncompressed batch per call; compressed batches are answered at batch granularity.

use crate::batch::{walk_records, BatchHeader};
use crate::error::LogError;
use crate::log::PartitionLog;
use crate::segment::Segment;

impl PartitionLog {
    /// The first offset (at or above the log start offset) whose timestamp is `>= ts`, with
    /// that timestamp. Uses segment max timestamps and the time index to find the first batch
    /// whose `max_timestamp >= ts`; inside an uncompressed CreateTime batch it walks records to
    /// the exact one. A compressed batch answers with its base offset and `max_timestamp`; a
    /// LogAppendTime batch (every record has `max_timestamp`) with its base offset.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let start = self.log_start_offset;
        for segment in &self.segments {
            if segment.next_offset <= start || segment.max_timestamp < ts {
                continue;
            }
            let from = match segment.index.last_before_timestamp(ts) {
                Some(i) => u64::from(segment.index.offsets()[i].position),
                None => 0,
            };
            let mut answer = None;
            let mut failure = None;
            segment.walk_headers(from, &mut |position, header| {
                if header.max_timestamp < ts || header.last_offset() < start {
                    return Ok(true);
                }
                match first_record_at_or_after(segment, position, header, ts, start) {
                    Ok(Some(found)) => {
                        answer = Some(found);
                        Ok(false)
                    }
                    Ok(None) => Ok(true),
                    Err(e) => {
                        failure = Some(e);
                        Ok(false)
                    }
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if answer.is_some() {
                return Ok(answer);
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the first offset carrying it (for ListOffsets
    /// `MAX_TIMESTAMP`), or `None` when no batch has a timestamp. Batches wholly below the log
    /// start offset do not count. A read error is logged and answered with `None`.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        match self.try_max_timestamp() {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, dir = %self.dir.display(), "max_timestamp lookup failed");
                None
            }
        }
    }

    fn try_max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let start = self.log_start_offset;
        // (max timestamp, segment index, walk start position) of the best segment so far.
        let mut best: Option<(i64, usize, u64)> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            if segment.next_offset <= start || segment.max_timestamp < 0 {
                continue;
            }
            let (max, from) = if segment.base_offset < start {
                // DeleteRecords cut into this segment: its stored maximum may belong to a
                // deleted batch, so recompute it over the live batches (rare, header walk).
                let Some((from, _)) = segment.find_batch(start)? else {
                    continue;
                };
                let mut max = -1;
                segment.walk_headers(from, &mut |_, h| {
                    max = max.max(h.max_timestamp);
                    Ok(true)
                })?;
                (max, from)
            } else {
                let max = segment.max_timestamp;
                // Entries before the first one whose running max reaches `max` are all older.
                let from = match segment.index.last_before_timestamp(max) {
                    Some(e) => u64::from(segment.index.offsets()[e].position),
                    None => 0,
                };
                (max, from)
            };
            if max >= 0 && best.map_or(true, |(b, _, _)| max > b) {
                best = Some((max, i, from));
            }
        }
        let Some((max, i, from)) = best else {
            return Ok(None);
        };
        let segment = &self.segments[i];
        let mut answer = None;
        let mut failure = None;
        segment.walk_headers(from, &mut |position, header| {
            if header.max_timestamp != max || header.last_offset() < start {
                return Ok(true);
            }
            match first_record_at_or_after(segment, position, header, max, start) {
                Ok(found) => answer = found.or(Some((header.base_offset.max(start), max))),
                Err(e) => failure = Some(e),
            }
            Ok(false)
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(answer)
    }
}

/// In the batch at `position` (whose `max_timestamp >= ts`), the first record with timestamp
/// `>= ts` and offset `>= min_offset`.
fn first_record_at_or_after(
    segment: &Segment,
    position: u64,
    header: &BatchHeader,
    ts: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    if header.compression() != 0 || header.timestamp_type_log_append() {
        return Ok(Some((
            header.base_offset.max(min_offset),
            header.max_timestamp,
        )));
    }
    let bytes = segment.read_batch(position, header)?;
    let mut found = None;
    walk_records(&bytes, header, &mut |record| {
        let offset = header.base_offset + i64::from(record.offset_delta);
        let timestamp = header.base_timestamp.saturating_add(record.timestamp_delta);
        if timestamp >= ts && offset >= min_offset {
            found = Some((offset, timestamp));
            return false;
        }
        true
    })
    .map_err(|e| LogError::Corrupt(format!("batch at {}: {e}", header.base_offset)))?;
    Ok(found)
}
