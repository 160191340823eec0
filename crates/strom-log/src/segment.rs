//! One segment: a `.log` file of whole record batches plus its in-memory sparse indexes.
//!
//! ```text
//! <base>.log   batch | batch | batch | ...     (RecordBatch v2, exactly as the client sent it,
//!                                              only base_offset and leader epoch patched; no
//!                                              framing of our own)
//! ```
//! `<base>` is the segment's base offset, zero-padded to 20 digits. The segment's offsets are
//! `[base_offset, next_offset)`, without gaps unless the cleaner compacted the segment, and `size` is the number of bytes of whole,
//! validated batches: readers are never given bytes at or past `size`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::batch::{BatchHeader, MIN_BATCH_LENGTH};
use crate::error::LogError;
use crate::index::{IndexEntry, SegmentIndex, TimeEntry};
use crate::io::FileIo;

/// Bytes read per `pread` when walking batch headers. Big enough that a walk between two
/// index entries (4 KiB apart by default) is usually one read.
const HEADER_SCAN_CHUNK_BYTES: usize = 16 * 1024;

/// Kafka's "no timestamp" value; also what a segment without batches reports.
pub(crate) const NO_TIMESTAMP: i64 = -1;

pub(crate) fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

pub(crate) fn log_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(segment_file_name(base_offset, "log"))
}
pub(crate) fn index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(segment_file_name(base_offset, "index"))
}
pub(crate) fn time_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(segment_file_name(base_offset, "timeindex"))
}

/// Remove a segment's files (`.log`, `.index`, `.timeindex`, `.txnindex`). Missing files are fine: a crash may have interrupted an
/// earlier deletion. The `.log` goes first so an interrupted deletion leaves at most orphan
/// index files, which `open` removes.
pub(crate) fn delete_segment_files(dir: &Path, base_offset: i64) -> io::Result<()> {
    for path in [
        log_path(dir, base_offset),
        index_path(dir, base_offset),
        time_index_path(dir, base_offset),
        crate::txn_index::txn_index_path(dir, base_offset),
    ] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A segment's `.log` file, open only while it is used. The active segment's stays open; an
/// old segment's is opened on its first read and closed again by
/// [`crate::PartitionLog::close_cold_segments`] once a whole sweep interval passed without a
/// read (and no reader still holds it), so a broker with many segments needs descriptors only
/// for the ones being read.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    path: PathBuf,
    file: Mutex<Option<Arc<File>>>,
    /// Set by every use, cleared by each sweep: a file unused for one sweep is cold.
    used: AtomicBool,
}

impl SegmentFile {
    fn open_now(path: PathBuf, file: File) -> SegmentFile {
        SegmentFile {
            path,
            file: Mutex::new(Some(Arc::new(file))),
            used: AtomicBool::new(true),
        }
    }

    /// The open file, opened now if it was closed. Shared with readers so they can `pread`
    /// after the partition lock is released.
    pub fn get(&self) -> io::Result<Arc<File>> {
        self.used.store(true, Ordering::Relaxed);
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &*slot {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(OpenOptions::new().read(true).write(true).open(&self.path)?);
        *slot = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Close the file if nothing used it since the last sweep and no reader holds it.
    /// Returns whether it is closed now.
    pub fn close_if_cold(&self) -> bool {
        if self.used.swap(false, Ordering::Relaxed) {
            return false;
        }
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|f| Arc::strong_count(f) > 1) {
            return false;
        }
        *slot = None;
        true
    }

    /// Close the file now (an old segment after recovery: reopened on its first read).
    pub fn close(&self) {
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn is_open(&self) -> bool {
        self.file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The segment's directory moved (`PartitionLog::relocate`).
    pub fn relocate(&mut self, dir: &Path) {
        if let Some(name) = self.path.file_name() {
            self.path = dir.join(name);
        }
    }
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: i64,
    pub log: SegmentFile,
    pub index: SegmentIndex,
    /// Bytes of whole batches in `log`.
    pub size: u64,
    /// Last offset in the segment plus one; `base_offset` when empty.
    pub next_offset: i64,
    /// Largest batch `max_timestamp` in the segment, or `NO_TIMESTAMP`.
    pub max_timestamp: i64,
    /// When the segment's age for `segment_ms` starts counting; `None` while empty.
    pub roll_base_ms: Option<i64>,
    /// Time-retention fallback for segments whose batches carry no timestamps.
    pub last_append_ms: i64,
    /// Bytes appended since the last index entry (drives index density).
    pub bytes_since_index: u64,
    /// False for a segment created by a roll until its directory has been fsynced, so that
    /// its file name (and with it the data) survives a power loss.
    pub name_durable: bool,
}

impl Segment {
    /// Create the three files of a new, empty segment: all of them or none. A `.log` left
    /// behind by a failed index creation (EMFILE, ENOSPC) would make every later attempt to
    /// create this segment fail with "file exists", and the partition could never roll again.
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(log_path(dir, base_offset))?;
        let index = SegmentIndex::create(
            &index_path(dir, base_offset),
            &time_index_path(dir, base_offset),
        );
        match index {
            Ok(index) => Ok(Segment::with_files(
                log_path(dir, base_offset),
                base_offset,
                log,
                index,
                now_ms,
            )),
            Err(error) => {
                // The `.log` is ours (`create_new`), so every file of this base is: remove them,
                // including an index file left by an earlier failed attempt.
                drop(log);
                if let Err(cleanup) = delete_segment_files(dir, base_offset) {
                    tracing::error!(%error, %cleanup, base_offset, "could not remove a half-created segment");
                }
                Err(error)
            }
        }
    }

    /// An empty in-memory segment over already-open files (recovery fills it batch by batch).
    pub fn with_files(
        path: PathBuf,
        base_offset: i64,
        log: File,
        index: SegmentIndex,
        now_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            log: SegmentFile::open_now(path, log),
            index,
            size: 0,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            roll_base_ms: None,
            last_append_ms: now_ms,
            bytes_since_index: 0,
            name_durable: true,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Account for the whole, valid batch at `position` (already on disk): maybe add an index
    /// entry pair, and advance size, next offset and max timestamp. Shared by append and
    /// recovery so both build the same index for the same bytes.
    pub fn track_batch(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u64) {
        debug_assert_eq!(position, self.size, "batches are tracked in file order");
        debug_assert!(
            header.base_offset >= self.next_offset,
            "offsets grow (with gaps only after compaction)"
        );
        let relative_offset = u32::try_from(header.base_offset - self.base_offset)
            .expect("the roll rule keeps relative offsets within u32");
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        let already_indexed = self
            .index
            .offsets()
            .last()
            .is_some_and(|e| e.relative_offset >= relative_offset);
        if position > 0 && self.bytes_since_index >= index_interval_bytes && !already_indexed {
            let position =
                u32::try_from(position).expect("the roll rule keeps positions within u32");
            self.index.push_entry(
                IndexEntry {
                    relative_offset,
                    position,
                },
                TimeEntry {
                    max_timestamp: self.max_timestamp,
                    relative_offset,
                },
            );
            self.bytes_since_index = 0;
        }
        let total = header.total_size() as u64;
        self.bytes_since_index += total;
        self.size = position + total;
        self.next_offset = header.last_offset() + 1;
    }

    /// Write `parts` (concatenated, whole batches whose patched headers are `headers`) at the
    /// end of the segment with one positioned vectored write, then update the in-memory state
    /// and index files.
    pub fn append(
        &mut self,
        io: &dyn FileIo,
        parts: &[&[u8]],
        headers: &[BatchHeader],
        now_ms: i64,
        index_interval_bytes: u64,
    ) -> io::Result<()> {
        let position = self.size;
        let log = self.log.get()?;
        if let Err(error) = io.write_all_vectored_at(&log, parts, position) {
            // A partial write must not resurface as data after a restart: cut it off. If even
            // that fails, recovery still stops at the first torn batch, but a whole batch of a
            // failed append could survive, so say so loudly.
            if let Err(truncate_error) = io.set_len(&log, position) {
                tracing::error!(%error, %truncate_error, "append failed and could not be undone");
            }
            return Err(error);
        }
        let first_new_entry = self.index.len();
        let mut at = position;
        for header in headers {
            self.track_batch(at, header, index_interval_bytes);
            at += header.total_size() as u64;
        }
        debug_assert_eq!(
            at,
            position + parts.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        self.roll_base_ms.get_or_insert(now_ms);
        self.last_append_ms = now_ms;
        self.index.persist_from(io, first_new_entry);
        Ok(())
    }

    /// Position and relative offset to start a walk for `offset` (from the sparse index).
    fn index_start(&self, offset: i64) -> (u64, i64) {
        let relative = u32::try_from((offset - self.base_offset).max(0)).unwrap_or(u32::MAX);
        match self.index.floor_offset(relative) {
            Some(i) => {
                let e = self.index.offsets()[i];
                (
                    u64::from(e.position),
                    self.base_offset + i64::from(e.relative_offset),
                )
            }
            None => (0, self.base_offset),
        }
    }

    /// The batch containing `offset` (the first whose last offset is `>= offset`), or `None`
    /// when `offset` is at or past the segment's end.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let (start, expected_base) = self.index_start(offset);
        let mut found = None;
        let mut first = true;
        self.walk_headers(start, &mut |position, header| {
            // Paired assertion across the disk boundary: the index says which batch starts here.
            // (Without an entry the walk starts at byte 0, where a cleaned segment's first
            // batch may begin after the segment's base offset.)
            let indexed = start > 0;
            if first && (header.base_offset < expected_base || (indexed && header.base_offset != expected_base)) {
                return Err(LogError::Corrupt(format!(
                    "segment {}: index points at offset {expected_base} but batch at {position} has base {}",
                    self.base_offset, header.base_offset
                )));
            }
            first = false;
            if header.last_offset() >= offset {
                found = Some((position, *header));
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(found)
    }

    /// End position of a read that starts at the batch at `start` (of `first_size` bytes):
    /// whole batches up to `max_bytes` in total and not past `size_limit` (a batch boundary
    /// at or below `size`), but always at least the first one.
    pub fn read_end(
        &self,
        start: u64,
        first_size: u64,
        max_bytes: u64,
        size_limit: u64,
    ) -> Result<u64, LogError> {
        debug_assert!(size_limit <= self.size && start + first_size <= size_limit);
        let min_end = start + first_size;
        let target = start.saturating_add(max_bytes);
        if target >= size_limit {
            return Ok(size_limit);
        }
        if target <= min_end {
            return Ok(min_end);
        }
        // Jump with the index to the last known batch boundary before `target`, then walk.
        let from = self
            .index
            .floor_position(target)
            .map(|i| u64::from(self.index.offsets()[i].position))
            .filter(|&p| p >= min_end)
            .unwrap_or(min_end);
        let mut end = from;
        self.walk_headers(from, &mut |position, header| {
            let batch_end = position + header.total_size() as u64;
            if batch_end > target {
                return Ok(false);
            }
            end = batch_end;
            Ok(true)
        })?;
        Ok(end)
    }

    /// Call `f(position, header)` for each batch from `from` (a batch boundary) to the end of
    /// the segment, until `f` returns `Ok(false)`. Reads headers in chunks, never records.
    pub fn walk_headers(
        &self,
        from: u64,
        f: &mut dyn FnMut(u64, &BatchHeader) -> Result<bool, LogError>,
    ) -> Result<(), LogError> {
        let end = self.size;
        if from >= end {
            return Ok(());
        }
        let log = self.log.get()?;
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_start = 0u64;
        let mut position = from;
        // Each step advances by at least one header, so the walk ends within size/61 steps.
        while position < end {
            if end - position < BatchHeader::SIZE as u64 {
                return Err(self.corrupt(position, "header runs past the segment end"));
            }
            let cached = position >= buf_start
                && position + BatchHeader::SIZE as u64 <= buf_start + buf.len() as u64;
            if !cached {
                let n = (end - position).min(HEADER_SCAN_CHUNK_BYTES as u64) as usize;
                buf.resize(n, 0);
                log.read_exact_at(&mut buf, position)?;
                buf_start = position;
            }
            let at = (position - buf_start) as usize;
            let header = BatchHeader::parse(&buf[at..])
                .map_err(|e| self.corrupt(position, &e.to_string()))?;
            if header.magic != 2 || header.batch_length < MIN_BATCH_LENGTH {
                return Err(self.corrupt(position, "bad magic or batch length"));
            }
            let total = header.total_size() as u64;
            if position + total > end {
                return Err(self.corrupt(position, "batch runs past the segment end"));
            }
            if !f(position, &header)? {
                return Ok(());
            }
            position += total;
        }
        Ok(())
    }

    /// Read one whole batch's bytes.
    pub fn read_batch(&self, position: u64, header: &BatchHeader) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; header.total_size()];
        self.log.get()?.read_exact_at(&mut buf, position)?;
        Ok(buf)
    }

    fn corrupt(&self, position: u64, what: &str) -> LogError {
        LogError::Corrupt(format!(
            "segment {} at byte {position}: {what}",
            self.base_offset
        ))
    }
}
