//! Opening a partition directory after a clean shutdown or a crash.
//!
//! What a crash can leave behind, and what recovery does about it:
//! - a torn last batch, a batch whose CRC fails, zeros or garbage after the last whole batch,
//!   or a batch whose base offset breaks the offset sequence: the segment is truncated before
//!   the first such batch, so the log is always an intact prefix of what was appended and
//!   nothing past the damage is ever served;
//! - missing, short, torn or implausible `.index` / `.timeindex` files: the longest plausible
//!   prefix is kept, its last entry is checked against the batch it names (CRC included), and
//!   the rest is rebuilt from the `.log`;
//! - orphan index files, or `log-start-offset.tmp` from an interrupted deletion or rename:
//!   removed.
//!
//! What a crash cannot leave behind, and what recovery therefore calls *damage* (the disk or
//! somebody else changed acknowledged bytes): the partition refuses to open with
//! [`LogError::Damaged`], and nothing is deleted or truncated, so an operator can look at it.
//! - a bad batch followed by a whole, CRC-valid batch that continues the offsets (a torn write
//!   never has good data after it: a failed append is cut off at once);
//! - a short or bad segment that must be intact: one wholly below the recovery point, or, in
//!   a durable log (`flush_on_roll`), any segment but the newest (nothing after a rolled
//!   segment counts as flushed before the rolled segment itself was fsynced);
//! - a truncation point below the recovery point, or a recovery point past the log's end.
//!
//! A segment wholly below the recovery point is walked with full checks only from its last
//! trustworthy index entry to its end (at most about `index_interval_bytes` plus one batch):
//! its bytes were durable and checked before. Every other segment is checked batch by batch
//! from the recovery point (or its start) to its end, as Kafka rescans what lies above its
//! recovery point. After a clean shutdown the recovery point is the log end, so a normal
//! start reads one short tail per segment.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{check_stored_batch, BatchHeader};
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
            "index" | "timeindex" | "txnindex" => indexes.push(base),
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
    let Some(header) = read_header(log, position, log_len)? else {
        return Ok(false);
    };
    if header.base_offset != expected_base
        || header
            .check_stored(0, (log_len - position) as usize)
            .is_err()
    {
        return Ok(false);
    }
    let mut batch = vec![0u8; header.total_size()];
    log.read_exact_at(&mut batch, position)?;
    Ok(check_stored_batch(&header, &batch, 0).is_ok())
}

/// A segment loaded from disk, and whether its `.log` had to be truncated.
pub(crate) struct LoadedSegment {
    pub segment: Segment,
    pub truncated: bool,
}

/// How much of a segment recovery may cut off as a torn tail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TailPolicy {
    /// The segment must be intact: any truncation is damage.
    pub must_be_intact: bool,
    /// Offsets below this were durable before the crash: a truncation below it is damage.
    pub recovery_point: Option<i64>,
    /// Check every batch from this offset on (Kafka rescans what lies above the recovery
    /// point); `None` checks only the tail after the last index entry (a segment wholly below
    /// the recovery point, whose bytes were durable and checked before).
    pub scan_from: Option<i64>,
}

/// Load the segment with base offset `base` from `dir`, verifying its tail and repairing its
/// indexes as described in the module docs. Damage (see the module docs) is refused with
/// [`LogError::Damaged`] before anything is changed on disk.
pub(crate) fn load_segment(
    dir: &Path,
    base: i64,
    index_interval_bytes: u64,
    now_ms: i64,
    policy: TailPolicy,
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
    let mut kept = match policy.scan_from {
        Some(from) => index
            .offsets()
            .partition_point(|e| base + i64::from(e.relative_offset) <= from),
        None => index.len(),
    };
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
    // Entries past the scan start are rebuilt by the scan.
    index_dirty |= kept < index.len();
    index.truncate_entries(kept);
    let entries_before_scan = index.len();

    let mut segment = Segment::with_files(log_path(dir, base), base, log, index, now_ms);
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
        let damaged = |why: String| {
            LogError::Damaged(format!(
                "{}: segment {base} is bad at byte {valid_end} of {log_len} (offset {}): {why}",
                dir.display(),
                segment.next_offset
            ))
        };
        if good_batch_follows(
            &*segment.log.get()?,
            valid_end,
            segment.next_offset,
            log_len,
        )? {
            return Err(damaged(
                "a whole, valid batch follows the bad one, so this is not a torn write".into(),
            ));
        }
        if policy.must_be_intact {
            return Err(damaged(
                "the segment was durable (below the recovery point, or rolled in a durable log)"
                    .into(),
            ));
        }
        if let Some(point) = policy.recovery_point.filter(|&p| segment.next_offset < p) {
            return Err(damaged(format!(
                "truncating here would drop offsets below the recovery point {point}"
            )));
        }
        tracing::warn!(
            base,
            valid_end,
            log_len,
            dir = %dir.display(),
            "truncating segment at the first torn or invalid batch"
        );
        segment.log.get()?.set_len(valid_end)?;
    }
    if index_dirty || segment.index.len() != entries_before_scan {
        segment.index.rewrite_files(&RealIo)?;
    }

    // The age for segment_ms restarts from the first batch's timestamp (capped at now); the
    // retention fallback for timestamp-less segments restarts from now, which keeps data
    // longer rather than shorter.
    if !segment.is_empty() {
        let mut head = [0u8; BatchHeader::SIZE];
        segment.log.get()?.read_exact_at(&mut head, 0)?;
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

/// After the first bad batch at `position`: does a whole, CRC-valid batch that moves the
/// offsets forward start right after it? Only the bad batch's length field is trusted, and
/// only if it stays inside the file. A torn write leaves nothing valid after the tear (a
/// failed append is cut off at once), so a yes means damage, not a crash.
fn good_batch_follows(
    log: &File,
    position: u64,
    expected_base: i64,
    log_len: u64,
) -> io::Result<bool> {
    let Some(bad) = read_header(log, position, log_len)? else {
        return Ok(false);
    };
    if bad.batch_length < crate::batch::MIN_BATCH_LENGTH {
        return Ok(false);
    }
    let next = position + bad.total_size() as u64;
    let Some(follower) = read_header(log, next, log_len)? else {
        return Ok(false);
    };
    let moves_forward = follower.base_offset > expected_base
        && follower.base_offset - expected_base <= i64::from(i32::MAX);
    Ok(moves_forward && batch_is_intact(log, next, follower.base_offset, log_len)?)
}

/// The header of the batch at `position`, if 61 bytes are there.
fn read_header(log: &File, position: u64, log_len: u64) -> io::Result<Option<BatchHeader>> {
    if log_len.saturating_sub(position) < BatchHeader::SIZE as u64 {
        return Ok(None);
    }
    let mut head = [0u8; BatchHeader::SIZE];
    log.read_exact_at(&mut head, position)?;
    Ok(BatchHeader::parse(&head).ok())
}

/// Walk and fully check batches from `segment.size` to `log_len`, tracking each good one.
/// Returns the end of the last good batch.
fn scan_tail(
    segment: &mut Segment,
    log_len: u64,
    index_interval_bytes: u64,
) -> Result<u64, LogError> {
    let log = segment.log.get()?;
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
            log.read_exact_at(&mut buf, position)?;
            buf_start = position;
        }
        let at = (position - buf_start) as usize;
        let header = BatchHeader::parse(&buf[at..]).expect("61 bytes buffered");
        // A compacted segment has gaps between batches (offsets only grow); an offset going
        // back is not ours.
        if header.check_stored(0, left as usize).is_err()
            || header.base_offset < segment.next_offset
        {
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
            log.read_exact_at(&mut buf, position)?;
            buf_start = position;
        }
        let at = (position - buf_start) as usize;
        if check_stored_batch(&header, &buf[at..at + header.total_size()], 0).is_err() {
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
