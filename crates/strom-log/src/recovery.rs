//! Opening a partition directory after a clean shutdown or a crash.
//!
//! What a crash can leave behind, and what recovery does about it:
//! - a torn last batch, a batch whose CRC fails, zeros or garbage after the last whole batch,
//!   or a batch whose base offset breaks the offset sequence: the segment is truncated before
//!   the first such batch, and every later segment is deleted, so the log is always an intact
//!   prefix of what was appended and nothing past the damage is ever served;
//! - missing, short, torn or implausible `.index` / `.timeindex` files: the longest plausible
//!   prefix is kept, its last entry is checked against the batch it names (CRC included), and
//!   the rest is rebuilt from the `.log`;
//! - orphan index files, or `log-start-offset.tmp` from an interrupted deletion or rename:
//!   removed.
//!
//! Every segment is walked with full checks from its last trustworthy index entry to its end;
//! that tail is at most about `index_interval_bytes` plus one batch, so recovery costs one
//! short read per segment unless an index has to be rebuilt.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{check_batch, BatchHeader};
use crate::error::LogError;
use crate::index::SegmentIndex;
use crate::io::RealIo;
use crate::segment::{delete_segment_files, index_path, log_path, time_index_path, Segment};
use crate::start_offset;

/// Bytes read per `pread` while verifying a segment's tail.
const RECOVERY_CHUNK_BYTES: usize = 1024 * 1024;

/// Segment base offsets found in `dir` (from `.log` names), after removing our temp file and
/// index files that have no `.log`. Files of other names (the broker's) are left alone.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut logs = BTreeSet::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == start_offset::TMP_NAME {
            // Left by a crash before the rename: the old file (or none) is still in force.
            std::fs::remove_file(entry.path())?;
            continue;
        }
        let Some((stem, extension)) = name.split_once('.') else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match extension {
            "log" => {
                logs.insert(base);
            }
            "index" | "timeindex" => indexes.push(base),
            _ => {}
        }
    }
    for base in indexes {
        if !logs.contains(&base) {
            tracing::warn!(base, dir = %dir.display(), "removing index files without a segment");
            delete_segment_files(dir, base)?;
        }
    }
    Ok(logs.into_iter().collect())
}

/// Full check of the batch at `position`: header, CRC, and the base offset it must have.
fn batch_is_intact(
    log: &File,
    position: u64,
    expected_base: i64,
    log_len: u64,
) -> io::Result<bool> {
    if log_len.saturating_sub(position) < BatchHeader::SIZE as u64 {
        return Ok(false);
    }
    let mut head = [0u8; BatchHeader::SIZE];
    log.read_exact_at(&mut head, position)?;
    let header = BatchHeader::parse(&head).expect("61 bytes");
    if header.base_offset != expected_base
        || header.check(0, (log_len - position) as usize).is_err()
    {
        return Ok(false);
    }
    let mut batch = vec![0u8; header.total_size()];
    log.read_exact_at(&mut batch, position)?;
    Ok(check_batch(&header, &batch, 0).is_ok())
}

/// A segment loaded from disk, and whether its `.log` had to be truncated.
pub(crate) struct LoadedSegment {
    pub segment: Segment,
    pub truncated: bool,
}

/// Load the segment with base offset `base` from `dir`, verifying its tail and repairing its
/// indexes as described in the module docs.
pub(crate) fn load_segment(
    dir: &Path,
    base: i64,
    index_interval_bytes: u64,
    now_ms: i64,
) -> Result<LoadedSegment, LogError> {
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .open(log_path(dir, base))?;
    let log_len = log.metadata()?.len();
    let (mut index, mut index_dirty) =
        SegmentIndex::load(&index_path(dir, base), &time_index_path(dir, base), log_len)?;

    // Find the last index entry that names an intact batch; damage before it is not looked
    // for (the index was written after the batch, and both are checked on every read).
    let mut kept = index.len();
    let (start, start_max_timestamp) = loop {
        if kept == 0 {
            break (0u64, None);
        }
        let entry = index.offsets()[kept - 1];
        let expected = base + i64::from(entry.relative_offset);
        if batch_is_intact(&log, u64::from(entry.position), expected, log_len)? {
            break (
                u64::from(entry.position),
                Some(index.times()[kept - 1].max_timestamp),
            );
        }
        kept -= 1;
        index_dirty = true;
    };
    index.truncate_entries(kept);
    let entries_before_scan = index.len();

    let mut segment = Segment::with_files(base, log, index, now_ms);
    if let Some(offset_entry) = segment.index.offsets().last().copied() {
        // Resume the in-memory state as of the indexed batch: everything before it is
        // summarized by the entry pair.
        segment.size = start;
        segment.next_offset = base + i64::from(offset_entry.relative_offset);
        segment.max_timestamp = start_max_timestamp.unwrap_or(segment.max_timestamp);
    }

    let valid_end = scan_tail(&mut segment, log_len, index_interval_bytes)?;
    let truncated = valid_end < log_len;
    if truncated {
        tracing::warn!(
            base,
            valid_end,
            log_len,
            dir = %dir.display(),
            "truncating segment at the first torn or invalid batch"
        );
        segment.log.set_len(valid_end)?;
    }
    if index_dirty || segment.index.len() != entries_before_scan {
        segment.index.rewrite_files(&RealIo)?;
    }

    // The age for segment_ms restarts from the first batch's timestamp (capped at now); the
    // retention fallback for timestamp-less segments restarts from now, which keeps data
    // longer rather than shorter.
    if !segment.is_empty() {
        let mut head = [0u8; BatchHeader::SIZE];
        segment.log.read_exact_at(&mut head, 0)?;
        let first = BatchHeader::parse(&head).expect("61 bytes");
        let roll_base = if first.max_timestamp >= 0 {
            first.max_timestamp.min(now_ms)
        } else {
            now_ms
        };
        segment.roll_base_ms = Some(roll_base);
    }
    Ok(LoadedSegment { segment, truncated })
}

/// Walk and fully check batches from `segment.size` to `log_len`, tracking each good one.
/// Returns the end of the last good batch.
fn scan_tail(
    segment: &mut Segment,
    log_len: u64,
    index_interval_bytes: u64,
) -> Result<u64, LogError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = 0u64;
    loop {
        let position = segment.size;
        let left = log_len - position;
        if left < BatchHeader::SIZE as u64 {
            return Ok(position);
        }
        let buffered = |need: u64, buf: &Vec<u8>, buf_start: u64| {
            position >= buf_start && position + need <= buf_start + buf.len() as u64
        };
        if !buffered(BatchHeader::SIZE as u64, &buf, buf_start) {
            let n = left.min(RECOVERY_CHUNK_BYTES as u64) as usize;
            buf.resize(n, 0);
            segment.log.read_exact_at(&mut buf, position)?;
            buf_start = position;
        }
        let at = (position - buf_start) as usize;
        let header = BatchHeader::parse(&buf[at..]).expect("61 bytes buffered");
        if header.check(0, left as usize).is_err() || header.base_offset != segment.next_offset {
            return Ok(position);
        }
        let relative_last = header.last_offset() - segment.base_offset;
        let end = position + header.total_size() as u64;
        if relative_last > i64::from(u32::MAX) || end > u64::from(u32::MAX) {
            return Ok(position);
        }
        if !buffered(header.total_size() as u64, &buf, buf_start) {
            // `check` bounded total_size by what is left in the file, so this is bounded too.
            let n =
                (header.total_size() as u64).max(left.min(RECOVERY_CHUNK_BYTES as u64)) as usize;
            buf.resize(n, 0);
            segment.log.read_exact_at(&mut buf, position)?;
            buf_start = position;
        }
        let at = (position - buf_start) as usize;
        if check_batch(&header, &buf[at..at + header.total_size()], 0).is_err() {
            return Ok(position);
        }
        segment.track_batch(position, &header, index_interval_bytes);
    }
}

/// Delete the files of the segments with these base offsets (recovery found them unusable).
pub(crate) fn discard_segments(dir: &Path, bases: &[i64]) -> io::Result<()> {
    for &base in bases {
        tracing::warn!(base, dir = %dir.display(), "deleting segment after an earlier truncation");
        delete_segment_files(dir, base)?;
    }
    Ok(())
}
