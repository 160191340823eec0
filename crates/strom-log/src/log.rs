//! `PartitionLog`: the segmented log of one partition. Owns the segments (ordered by base
//! offset, contiguous, never empty; the last one is active), the log start offset, and the
//! flushed offset. The caller (the broker) serializes access with one lock per partition;
//! `read` and `flush_target` hand out `Arc<File>`s so the slow part (pread, fsync) can run
//! after that lock is released.
//!
//! Directory layout (see `docs/log-format.md`):
//! ```text
//! <partition dir>/
//!   00000000000000000000.log        whole RecordBatch v2 batches, base offsets and epochs patched
//!   00000000000000000000.index      sparse: relative offset u32 BE | position u32 BE
//!   00000000000000000000.timeindex  sparse: max timestamp i64 BE | relative offset u32 BE
//!   00000000000000012345.log ...    next segment, named by its base offset
//!   log-start-offset                only after DeleteRecords moved it past a segment base
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{stamped_prefix, BatchHeader, UNCHECKED_PREFIX_BYTES};
use crate::config::LogConfig;
use crate::error::LogError;
use crate::io::{FileIo, RealIo};
use crate::recovery::{self, TailPolicy};
use crate::segment::{delete_segment_files, Segment};
use crate::start_offset;
use crate::txn_index::{AbortedIndex, AbortedTxn};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// What an append writes into the batches' unchecked prefixes.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// A leader's append: offsets from the log end, and the leader epoch when given.
    Offsets { leader_epoch: Option<i32> },
    /// A replica's append: the batches keep the leader's offsets and epoch.
    AsIs,
}

/// A byte range of whole batches in one segment file, to be read outside the partition lock.
/// The range only ever covers bytes that were completely written before the slice was made,
/// and a deleted segment's file stays readable while a slice holds it.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// `None` for an empty slice.
    pub file: Option<Arc<File>>,
    pub position: u64,
    pub len: usize,
}

impl ReadSlice {
    pub fn empty() -> ReadSlice {
        ReadSlice {
            file: None,
            position: 0,
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Read the range with one `pread` into a fresh buffer.
    pub fn read_bytes(&self) -> io::Result<Bytes> {
        match &self.file {
            Some(file) if self.len > 0 => {
                let mut buf = vec![0u8; self.len];
                file.read_exact_at(&mut buf, self.position)?;
                Ok(Bytes::from(buf))
            }
            _ => Ok(Bytes::new()),
        }
    }
}

/// One fsync the flusher owes a log: the file of the oldest segment with unflushed data, and
/// the directory too when that segment's file name is not yet durable. Made under the
/// partition lock by [`PartitionLog::flush_target`], synced outside it with
/// [`FlushTarget::sync`], then reported back with [`PartitionLog::mark_flushed`].
#[derive(Debug, Clone)]
pub struct FlushTarget {
    file: Arc<File>,
    io: Arc<dyn FileIo>,
    /// The directory to fsync after the file (a segment created by a roll).
    dir: Option<PathBuf>,
    segment_base: i64,
    /// Every offset below this is durable after the sync.
    offset: i64,
    /// The segment's size in bytes when the target was made (where `offset` starts).
    position: u64,
}

impl FlushTarget {
    /// The offset below which everything is durable once [`FlushTarget::sync`] succeeded.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// fsync the segment file (and its directory when needed). Slow: call it off the lock.
    pub fn sync(&self) -> Result<(), SyncError> {
        self.io.sync_data(&self.file).map_err(SyncError::Fsync)?;
        if let Some(dir) = &self.dir {
            let dir = File::open(dir).map_err(SyncError::Open)?;
            dir.sync_all().map_err(SyncError::Fsync)?;
        }
        Ok(())
    }
}

/// Why a [`FlushTarget::sync`] failed, which decides whether it may be tried again.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// An fsync failed: dirty pages may be lost, and a second fsync could succeed without
    /// them. Never retried: report it with [`PartitionLog::mark_sync_failed`].
    #[error("fsync failed: {0}")]
    Fsync(io::Error),
    /// The directory could not even be opened to fsync it (out of file descriptors): nothing
    /// was written or lost, so the next flush round simply tries again.
    #[error("cannot open the partition directory to fsync it: {0}")]
    Open(io::Error),
}

/// The segmented on-disk log of one partition. See the module docs.
#[derive(Debug)]
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Ordered by base offset; `segments[i + 1].base_offset == segments[i].next_offset`;
    /// never empty; the last one is the active segment.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: i64,
    /// Every offset below this is known to be on stable storage.
    pub(crate) flushed_offset: i64,
    /// Where `flushed_offset` starts inside the segment of base `flushed_segment_base`, when
    /// it falls inside that segment (reads limited to the flushed offset stop there).
    pub(crate) flushed_segment_base: i64,
    pub(crate) flushed_position: u64,
    /// Sum of `segments[..].size`.
    pub(crate) size_bytes: u64,
    /// Write-path file operations (real, or fault-injecting in tests).
    pub(crate) io: Arc<dyn FileIo>,
    /// Set by the first failed write or fsync; see [`LogError::Failed`].
    pub(crate) failure: Option<String>,
    /// The `.txnindex` entries of every segment.
    pub(crate) aborted: AbortedIndex,
    /// Where the cleaner's dirty section starts (see `cleaner`); 0 for a log never cleaned.
    pub(crate) first_dirty_offset: i64,
}

impl PartitionLog {
    /// Open or create the partition directory `dir` and recover it (see `recovery.rs`):
    /// truncate a torn tail, rebuild damaged indexes, restore the log start and end offsets.
    /// Everything recovered is fsynced before this returns, so `flushed_offset() ==
    /// log_end_offset()` afterwards. Damage that a crash cannot explain is refused with
    /// [`LogError::Damaged`] and nothing is changed.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog, LogError> {
        PartitionLog::open_with_io(dir, config, now_ms, None, Arc::new(RealIo))
    }

    /// [`PartitionLog::open`] knowing the recovery point: every offset below it was durable
    /// before the last stop, so damage below it is refused rather than truncated, and the
    /// segments wholly below it are not fsynced again.
    pub fn open_at_recovery_point(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        recovery_point: Option<i64>,
    ) -> Result<PartitionLog, LogError> {
        PartitionLog::open_with_io(dir, config, now_ms, recovery_point, Arc::new(RealIo))
    }

    /// [`PartitionLog::open`] with the write path going through `io` (fault injection).
    pub(crate) fn open_with_io(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        recovery_point: Option<i64>,
        io: Arc<dyn FileIo>,
    ) -> Result<PartitionLog, LogError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            // Make the new partition directory's own name durable, not only its contents.
            if let Some(parent) = dir.parent() {
                start_offset::sync_dir(parent)?;
            }
        }
        let interval = u64::from(config.index_interval_bytes);
        // A cleaning interrupted by a crash is rolled back or finished first.
        crate::cleaner::swap::finish_interrupted(dir)?;
        let bases = recovery::list_segments(dir)?;
        let stored_start = start_offset::read(dir)?;
        let damaged = |what: String| LogError::Damaged(format!("{}: {what}", dir.display()));
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            // In a durable log a rolled segment was fsynced before anything after it counted
            // as flushed, so only the newest segment can have a torn tail.
            let below_point = matches!((next_base, recovery_point), (Some(n), Some(rp)) if n <= rp);
            let must_be_intact = (config.flush_on_roll && next_base.is_some()) || below_point;
            if let Some(prev) = segments.last() {
                if base != prev.next_offset {
                    if config.flush_on_roll || recovery_point.is_some_and(|rp| base <= rp) {
                        return Err(damaged(format!(
                            "segment {base} does not continue the log (expected {})",
                            prev.next_offset
                        )));
                    }
                    tracing::warn!(
                        base,
                        expected = prev.next_offset,
                        "segment does not continue the log"
                    );
                    recovery::discard_segments(dir, &bases[i..])?;
                    break;
                }
            }
            let policy = TailPolicy {
                must_be_intact,
                recovery_point,
                scan_from: (!below_point).then(|| recovery_point.unwrap_or(base)),
            };
            let loaded = recovery::load_segment(dir, base, interval, now_ms, policy)?;
            segments.push(loaded.segment);
            if loaded.truncated {
                recovery::discard_segments(dir, &bases[i + 1..])?;
                break;
            }
        }
        if segments.is_empty() {
            segments.push(Segment::create(
                dir,
                stored_start.unwrap_or(0).max(0),
                now_ms,
            )?);
        }
        let last = segments.len().saturating_sub(1);
        for segment in &mut segments[..last] {
            segment.index.close_files();
        }
        let recovered_end = segments.last().map_or(0, |s| s.next_offset);
        if let Some(rp) = recovery_point.filter(|&rp| rp > recovered_end) {
            return Err(damaged(format!(
                "the recovery point {rp} is past the end of the log on disk ({recovered_end}): acknowledged data is missing"
            )));
        }
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            size_bytes: segments.iter().map(|s| s.size).sum(),
            log_start_offset: segments[0].base_offset,
            flushed_offset: 0,
            flushed_segment_base: 0,
            flushed_position: 0,
            segments,
            io,
            failure: None,
            aborted: AbortedIndex::default(),
            first_dirty_offset: crate::cleaner::read_checkpoint(dir),
        };
        if let Some(stored) = stored_start {
            log.log_start_offset = log.log_start_offset.max(stored);
        }
        if log.log_start_offset > log.log_end_offset() {
            // DeleteRecords reached offsets whose data did not survive the crash. Never hand
            // out those offsets again: restart the log, empty, at the log start offset.
            tracing::warn!(
                log_start_offset = log.log_start_offset,
                log_end_offset = log.log_end_offset(),
                "log start offset is past the recovered end; starting an empty segment there"
            );
            let start = log.log_start_offset;
            for segment in log.segments.drain(..) {
                delete_segment_files(dir, segment.base_offset)?;
            }
            log.segments.push(Segment::create(dir, start, now_ms)?);
            log.size_bytes = 0;
        }
        let bases: Vec<i64> = log.segments.iter().map(|s| s.base_offset).collect();
        log.aborted = AbortedIndex::load(dir, &bases, log.log_end_offset())?;
        // Whatever survived may still sit only in the page cache (a process crash keeps it
        // there); make it durable once so the flushed offset can start at the end. Segments
        // wholly below the recovery point were durable already. Index files are a cache and
        // need no sync.
        let trusted_below = recovery_point.unwrap_or(0);
        for segment in log
            .segments
            .iter()
            .filter(|s| s.next_offset > trusted_below)
        {
            log.io.sync_data(&*segment.log.get()?)?;
        }
        start_offset::sync_dir(dir)?;
        // Old segments are reopened on their first read: a start opens one file per
        // partition, not one per segment.
        let last = log.segments.len() - 1;
        for segment in &log.segments[..last] {
            segment.log.close();
        }
        log.flushed_offset = log.log_end_offset();
        log.flushed_segment_base = log.active().base_offset;
        log.flushed_position = log.active().size;
        log.check_invariants();
        Ok(log)
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Follows the partition directory to `dir` after the broker moved it (a deleted topic's
    /// directory goes to the trash). Every later file operation of this log (a roll, a
    /// retention pass, DeleteRecords, a flush) then happens there, so a stale handle can never
    /// touch the path, which a topic re-created under the same name may own by then. Call
    /// after the move and before anything can be created at the old path (the broker holds
    /// its topic admin lock across both).
    pub fn relocate(&mut self, dir: PathBuf) {
        for segment in &mut self.segments {
            segment.log.relocate(&dir);
        }
        self.dir = dir;
    }

    /// Close the `.log` files of old, fully flushed segments that nobody read since the last
    /// call (see `SegmentFile`); they are reopened on their next read. Call it periodically
    /// (the broker's retention pass does). Returns how many were closed now.
    pub fn close_cold_segments(&mut self) -> usize {
        let last = self.segments.len() - 1;
        let flushed = self.flushed_offset;
        self.segments[..last]
            .iter()
            .filter(|s| s.next_offset <= flushed && s.log.is_open())
            .filter(|s| s.log.close_if_cold())
            .count()
    }

    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Kafka's `truncateFullyAndStartAt`, on a closed log's directory: the log becomes empty
    /// and starts at `offset` (a follower that fell below its leader's log start). The new
    /// start is made durable before any segment goes, so a crash in between leaves segments
    /// below a start offset past their end, which [`PartitionLog::open`] already turns into
    /// an empty log at that offset.
    pub fn wipe_and_start_at(dir: &Path, offset: i64) -> Result<(), LogError> {
        start_offset::write(dir, offset)?;
        for base in recovery::list_segments(dir)? {
            delete_segment_files(dir, base)?;
        }
        start_offset::sync_dir(dir)?;
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The next offset to be assigned (the high watermark on a single broker).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Total bytes of all segment `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offset of the active (newest) segment.
    pub fn active_segment_base(&self) -> i64 {
        self.active().base_offset
    }

    /// Base offset of the segment `n` places before the active one (0: the active one).
    pub fn segment_base_before_active(&self, n: usize) -> Option<i64> {
        let last = self.segments.len() - 1;
        last.checked_sub(n).map(|i| self.segments[i].base_offset)
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }

    /// Append one already-validated payload of `headers.len()` concatenated batches (from
    /// [`crate::validate_batches`]; the bytes may have been patched since, e.g. by
    /// [`crate::set_log_append_time`]: the stored header fields win). Assigns offsets from the
    /// log end offset, rolls first if the active segment is full or old, and writes all bytes
    /// with one vectored write: each batch's base offset is written from a patched copy of its
    /// first bytes, never into `batches` (see [`crate::batch::stamped_prefix`]), and the
    /// partition leader epoch stays as the batch has it. The bytes are in the page cache on
    /// return; see [`PartitionLog::flush_target`] for durability.
    pub fn append(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.append_batches(
            batches,
            headers,
            now_ms,
            Stamp::Offsets { leader_epoch: None },
        )
    }

    /// [`Self::append`] that also stamps every batch with the leader's epoch (Kafka's
    /// `appendAsLeader`), outside the CRC like the base offset: still no copy of the batches.
    pub fn append_as_leader(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let stamp = Stamp::Offsets {
            leader_epoch: Some(leader_epoch),
        };
        self.append_batches(batches, headers, now_ms, stamp)
    }

    /// A replica's append (Kafka's `appendAsFollower`): the batches keep the offsets the
    /// leader gave them, gaps included (a compacted leader's log has them), so each must start
    /// at or after the log end and after the one before it. Written as they are, with one
    /// write. Otherwise as [`Self::append`].
    pub fn append_as_follower(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.append_batches(batches, headers, now_ms, Stamp::AsIs)
    }

    fn append_batches(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        now_ms: i64,
        stamp: Stamp,
    ) -> Result<AppendInfo, LogError> {
        self.check_not_failed()?;
        let base_offset = self.log_end_offset();
        if headers.is_empty() {
            if !batches.is_empty() {
                return Err(LogError::InvalidAppend("bytes without headers".into()));
            }
            return Ok(AppendInfo {
                base_offset,
                last_offset: base_offset - 1,
                log_start_offset: self.log_start_offset,
            });
        }
        let assign_offsets = matches!(stamp, Stamp::Offsets { .. });
        // A replica's batches may be compacted ones (fewer records than offsets).
        let stored = check_pairing(batches, headers, !assign_offsets)?;
        let records: i64 = if assign_offsets {
            stored
                .iter()
                .map(|h| i64::from(h.last_offset_delta) + 1)
                .sum()
        } else {
            let mut next = base_offset;
            for h in &stored {
                if h.base_offset < next {
                    return Err(LogError::InvalidAppend(format!(
                        "a replicated batch at offset {} is below the log end {next}",
                        h.base_offset
                    )));
                }
                next = h.last_offset() + 1;
            }
            next - base_offset
        };
        let total_bytes = batches.len() as u64;
        if total_bytes > u64::from(u32::MAX) / 2 {
            return Err(LogError::InvalidAppend(format!(
                "append of {total_bytes} bytes is too large"
            )));
        }
        let last_offset = base_offset + records - 1;
        if self.should_roll(total_bytes, last_offset, now_ms) {
            // A failed roll changed nothing (segment creation is all-or-nothing): the append
            // fails, and the next one tries again. Only failed writes and fsyncs poison.
            self.roll(now_ms)?;
        }

        let mut patched = Vec::with_capacity(stored.len());
        let mut prefixes = Vec::with_capacity(if assign_offsets { stored.len() } else { 0 });
        let mut next = base_offset;
        let mut position = 0usize;
        for mut h in stored {
            if let Stamp::Offsets { leader_epoch } = stamp {
                prefixes.push(stamped_prefix(&batches[position..], next, leader_epoch));
                h.base_offset = next;
                h.partition_leader_epoch = leader_epoch.unwrap_or(h.partition_leader_epoch);
            }
            next = h.last_offset() + 1;
            position += h.total_size();
            patched.push(h);
        }
        debug_assert_eq!(next, last_offset + 1);
        // What goes to the file: each batch as its stamped prefix, then the caller's bytes
        // from there on (CRC-covered bytes are never rewritten here); a replica's batches as
        // they came.
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * prefixes.len() + 1);
        if assign_offsets {
            let mut position = 0usize;
            for (h, prefix) in patched.iter().zip(&prefixes) {
                parts.push(prefix);
                parts.push(&batches[position + UNCHECKED_PREFIX_BYTES..position + h.total_size()]);
                position += h.total_size();
            }
        } else {
            parts.push(batches);
        }
        let interval = u64::from(self.config.index_interval_bytes);
        let io = Arc::clone(&self.io);
        if let Err(e) = self
            .active_mut()
            .append(io.as_ref(), &parts, &patched, now_ms, interval)
        {
            return Err(self.fail(e.into()));
        }
        self.size_bytes += total_bytes;
        debug_assert_eq!(self.log_end_offset(), last_offset + 1);
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_start_offset: self.log_start_offset,
        })
    }

    /// Whether an append of `append_bytes` holding `records` offsets at `now_ms` rolls the
    /// segment first (creating files: slow when the filesystem journal is busy).
    pub fn roll_due(&self, append_bytes: u64, records: i64, now_ms: i64) -> bool {
        self.should_roll(append_bytes, self.log_end_offset() + records - 1, now_ms)
    }

    fn should_roll(&self, append_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let max_bytes = self.config.segment_bytes.min(u64::from(u32::MAX));
        let full = active.size + append_bytes > max_bytes;
        let old = match (self.config.segment_ms, active.roll_base_ms) {
            (Some(segment_ms), Some(since)) => now_ms.saturating_sub(since) >= segment_ms,
            _ => false,
        };
        // Relative offsets in the index are u32.
        let offsets_exhausted = last_offset - active.base_offset > i64::from(u32::MAX);
        full || old || offsets_exhausted
    }

    /// Take the log offline after a failed write or fsync (see [`LogError::Failed`]) and
    /// return the error to report.
    pub(crate) fn fail(&mut self, error: LogError) -> LogError {
        if self.failure.is_none() {
            tracing::error!(dir = %self.dir.display(), %error, "log I/O failed: the log refuses writes until it is reopened");
            self.failure = Some(error.to_string());
        }
        error
    }

    pub(crate) fn check_not_failed(&self) -> Result<(), LogError> {
        match &self.failure {
            Some(why) => Err(LogError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Why the log is offline, if an earlier write or fsync failed.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }

    /// Report that `target.sync()` failed: the log goes offline (never retry an fsync).
    pub fn mark_sync_failed(&mut self, error: io::Error) -> LogError {
        self.fail(LogError::Io(error))
    }

    /// Start a new, empty active segment at the log end offset. Nothing is fsynced here (a
    /// roll happens on the append path): the old segment and the new file's name become
    /// durable through the flusher (`flush_target` hands out the oldest unflushed segment
    /// first, and the directory with the first target in a new segment).
    pub(crate) fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        let base = self.log_end_offset();
        let mut segment = Segment::create(&self.dir, base, now_ms)?;
        segment.name_durable = false;
        // The old segment takes no more index entries: two descriptors fewer.
        self.active_mut().index.close_files();
        self.segments.push(segment);
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        Ok(())
    }

    /// Locate whole batches from the batch containing `offset` onwards, up to `max_bytes`,
    /// but at least one whole batch if any exists at or after `offset` (KIP-74). The slice
    /// never spans two segments. `offset == log_end_offset` gives an empty slice.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, LogError> {
        self.read_below(offset, max_bytes, self.log_end_offset())
    }

    /// [`PartitionLog::read`] of flushed data only: an offset at or past the flushed offset
    /// (but within the log) gives an empty slice, and a slice never reaches past it. A high
    /// watermark that advances with fsync serves this, so no consumer sees data that a power
    /// loss could take back.
    pub fn read_flushed(&self, offset: i64, max_bytes: usize) -> Result<ReadSlice, LogError> {
        self.read_below(offset, max_bytes, self.flushed_offset)
    }

    fn read_below(&self, offset: i64, max_bytes: usize, limit: i64) -> Result<ReadSlice, LogError> {
        self.read_below_in(offset, max_bytes, limit)
            .map(|(slice, _)| slice)
    }

    /// Where the batch holding `offset` starts: (base offset of its segment, byte position),
    /// even if it is empty (a read would step over it). `None` past the last batch.
    pub fn locate(&self, offset: i64) -> Result<Option<(i64, u64)>, LogError> {
        self.check_range(offset)?;
        let segment = &self.segments[self.segment_index_for(offset)];
        Ok(segment
            .find_batch(offset)?
            .map(|(position, _)| (segment.base_offset, position)))
    }

    /// [`PartitionLog::read_below`], also giving the index of the segment the slice is in.
    fn read_below_in(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: i64,
    ) -> Result<(ReadSlice, usize), LogError> {
        self.check_range(offset)?;
        if offset >= limit {
            return Ok((ReadSlice::empty(), self.segment_index_for(offset)));
        }
        let mut at = self.segment_index_for(offset);
        let segment = &self.segments[at];
        let Some((mut position, mut header)) = segment.find_batch(offset)? else {
            return Err(LogError::Corrupt(format!(
                "offset {offset} is below the log end but not in segment {}",
                segment.base_offset
            )));
        };
        if header.records_count == 0 && !header.is_control() {
            if let Some(next) = self.next_batch_with_records(at, position, limit)? {
                (at, position, header) = next;
            }
        }
        let segment = &self.segments[at];
        // The limit is a batch boundary: the end of a segment, or a flushed offset inside one,
        // whose byte position the flusher recorded.
        let size_limit = if limit < segment.next_offset {
            debug_assert_eq!(segment.base_offset, self.flushed_segment_base);
            self.flushed_position
        } else {
            segment.size
        };
        let end = segment.read_end(
            position,
            header.total_size() as u64,
            max_bytes as u64,
            size_limit,
        )?;
        let slice = ReadSlice {
            file: Some(segment.log.get()?),
            position,
            len: usize::try_from(end - position).expect("segments are below 4 GiB"),
        };
        Ok((slice, at))
    }

    /// The first batch with records (or a control batch) after the empty batch at `position`
    /// of segment `at`, starting below `limit`, possibly in a later segment: (segment index,
    /// position, header). `None` when only empty batches lie before `limit`.
    ///
    /// Only a cleaned log holds empty batches (a cleaned group keeps its last batch, emptied,
    /// so that its offset range stays whole), and after cleaning whole segments may hold
    /// nothing else. Kafka's read moves on to the next segment when one has nothing at or after
    /// the fetch offset; serving the next batch with records does the same here. Answering with
    /// the empty batch instead would cost a consumer one round trip per empty segment, and
    /// librdkafka doubles its fetch size on each answer without a message until it gives up
    /// with MSG_SIZE_TOO_LARGE. The walk reads headers only, at most one per batch up to the
    /// first with records.
    fn next_batch_with_records(
        &self,
        at: usize,
        position: u64,
        limit: i64,
    ) -> Result<Option<(usize, u64, BatchHeader)>, LogError> {
        let mut from = position;
        for (i, segment) in self.segments.iter().enumerate().skip(at) {
            if segment.base_offset >= limit {
                break;
            }
            let mut found = None;
            let mut past_limit = false;
            segment.walk_headers(from, &mut |pos, header| {
                if header.base_offset >= limit {
                    past_limit = true;
                    return Ok(false);
                }
                if header.records_count > 0 || header.is_control() {
                    found = Some((i, pos, *header));
                    return Ok(false);
                }
                Ok(true)
            })?;
            if found.is_some() || past_limit {
                return Ok(found);
            }
            from = 0;
        }
        Ok(None)
    }

    pub(crate) fn check_range(&self, offset: i64) -> Result<(), LogError> {
        let (start, end) = (self.log_start_offset, self.log_end_offset());
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange { offset, start, end });
        }
        Ok(())
    }

    /// Index of the segment whose offset range holds `offset` (the last one with a base at or
    /// below it; the active segment for `offset >= log_end_offset`).
    pub(crate) fn segment_index_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Records an aborted transaction in the `.txnindex` of the segment holding its abort
    /// marker (`txn.last_offset`). An entry already there (rebuilt from the log at startup) is
    /// not written twice.
    pub fn append_aborted(&mut self, txn: AbortedTxn) -> Result<(), LogError> {
        let base = self.segments[self.segment_index_for(txn.last_offset)].base_offset;
        if self.aborted.contains(base, &txn) {
            return Ok(());
        }
        let dir = self.dir.clone();
        self.aborted.append(&dir, base, txn).map_err(LogError::Io)
    }

    /// The aborted transactions that overlap `[from, upper)` (Kafka's
    /// `collectAbortedTransactions`), for a read_committed fetch.
    pub fn aborted_between(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let first = self.segments[self.segment_index_for(from)].base_offset;
        self.aborted.overlapping(first, from, upper)
    }

    /// [`PartitionLog::read`] that stops before `limit` (a batch boundary at or below the
    /// flushed offset when `flushed_only`): the last stable offset of a read_committed fetch.
    pub fn read_until(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: i64,
        flushed_only: bool,
    ) -> Result<ReadSlice, LogError> {
        let ceiling = if flushed_only {
            self.flushed_offset
        } else {
            self.log_end_offset()
        };
        if limit >= ceiling {
            return self.read_below(offset, max_bytes, ceiling);
        }
        self.check_range(offset)?;
        if offset >= limit {
            return Ok(ReadSlice::empty());
        }
        let (mut slice, at) = self.read_below_in(offset, max_bytes, ceiling)?;
        // Cut the slice at the batch that starts at `limit`, if it lies inside it.
        let segment = &self.segments[at];
        if limit < segment.next_offset {
            if let Some((position, _)) = segment.find_batch(limit)? {
                let end = position.max(slice.position);
                slice.len = slice.len.min((end - slice.position) as usize);
            }
        }
        Ok(slice)
    }

    /// The control type of the control batch `header` (read back from its segment): 0 for an
    /// abort marker, 1 for a commit; `None` if it cannot be read as one.
    pub fn control_type(&self, header: &BatchHeader) -> Result<Option<i16>, LogError> {
        let segment = &self.segments[self.segment_index_for(header.base_offset)];
        let Some((position, found)) = segment.find_batch(header.base_offset)? else {
            return Ok(None);
        };
        let bytes = segment.read_batch(position, &found)?;
        Ok(strom_protocol::control::control_type(&bytes))
    }

    /// Walk batch headers from the batch containing `from_offset` (clamped to the log start
    /// offset) to the end of the log.
    pub fn scan_headers(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let from = from_offset.max(self.log_start_offset);
        if from >= self.log_end_offset() {
            return Ok(());
        }
        let first = self.segment_index_for(from);
        for (i, segment) in self.segments.iter().enumerate().skip(first) {
            let start = if i == first {
                match segment.find_batch(from)? {
                    Some((position, _)) => position,
                    None => continue,
                }
            } else {
                0
            };
            segment.walk_headers(start, &mut |_, header| {
                f(header);
                Ok(true)
            })?;
        }
        Ok(())
    }

    /// Group commit support: the next fsync owed (see [`FlushTarget`]), or `None` when
    /// everything is flushed. After `target.sync()` (done off the lock) call
    /// [`PartitionLog::mark_flushed`]. When segments rolled since the last flush, the first
    /// target is an older segment; call again until `None` to cover the whole log.
    pub fn flush_target(&self) -> Option<FlushTarget> {
        if self.flushed_offset >= self.log_end_offset() || self.failure.is_some() {
            return None;
        }
        let segment = self
            .segments
            .iter()
            .find(|s| s.next_offset > self.flushed_offset)
            .expect("the active segment ends at the log end offset");
        // A segment with unflushed data is never swept closed, so this only fails if the
        // file was closed and cannot be reopened (out of descriptors): a later round retries.
        let file = match segment.log.get() {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot open a segment to fsync it");
                return None;
            }
        };
        Some(FlushTarget {
            file,
            io: Arc::clone(&self.io),
            dir: (!segment.name_durable).then(|| self.dir.clone()),
            segment_base: segment.base_offset,
            offset: segment.next_offset,
            position: segment.size,
        })
    }

    /// Record that `target` was synced: every offset below `target.offset()` is durable.
    pub fn mark_flushed(&mut self, target: &FlushTarget) {
        let offset = target.offset.min(self.log_end_offset());
        if let Some(segment) = self
            .segments
            .iter_mut()
            .find(|s| s.base_offset == target.segment_base)
        {
            if target.dir.is_some() {
                segment.name_durable = true;
            }
        }
        if offset > self.flushed_offset {
            self.flushed_offset = offset;
            self.flushed_segment_base = target.segment_base;
            self.flushed_position = target.position;
        }
    }

    /// Every offset below this is on stable storage. Equal to `log_end_offset()` when nothing
    /// is waiting for a flush.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    /// fsync every unflushed segment, the indexes and the directory now (for shutdown).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.check_not_failed()?;
        self.flush_all().map_err(|e| self.fail(e))
    }

    fn flush_all(&mut self) -> Result<(), LogError> {
        for segment in self
            .segments
            .iter()
            .filter(|s| s.next_offset > self.flushed_offset || s.is_empty())
        {
            self.io.sync_data(&*segment.log.get()?)?;
            segment.index.sync(self.io.as_ref())?;
        }
        start_offset::sync_dir(&self.dir)?;
        for segment in &mut self.segments {
            segment.name_durable = true;
        }
        self.flushed_offset = self.log_end_offset();
        self.flushed_segment_base = self.active().base_offset;
        self.flushed_position = self.active().size;
        Ok(())
    }

    /// Assert the structural invariants (debug builds and tests).
    pub(crate) fn check_invariants(&self) {
        debug_assert!(!self.segments.is_empty());
        for pair in self.segments.windows(2) {
            debug_assert_eq!(
                pair[1].base_offset, pair[0].next_offset,
                "segments are contiguous"
            );
        }
        debug_assert_eq!(
            self.size_bytes,
            self.segments.iter().map(|s| s.size).sum::<u64>()
        );
        debug_assert!(self.log_start_offset >= self.segments[0].base_offset);
        debug_assert!(self.log_start_offset <= self.log_end_offset());
    }
}

/// Check that `headers` describe the layout of `batches` (one header per batch; same length,
/// offset delta, record count) and return the headers as they are in the bytes now. This is
/// cheap (61 bytes per batch) and catches a broker passing the wrong buffer before it reaches
/// the disk. Fields the broker may legitimately patch after validation (LogAppendTime sets
/// `max_timestamp`, the attributes bit and the CRC) are taken from the bytes, so the indexes
/// see what is stored.
fn check_pairing(
    batches: &[u8],
    headers: &[BatchHeader],
    compacted_ok: bool,
) -> Result<Vec<BatchHeader>, LogError> {
    let mut position = 0usize;
    let mut stored = Vec::with_capacity(headers.len());
    for (i, header) in headers.iter().enumerate() {
        let on_disk = BatchHeader::parse(batches.get(position..).unwrap_or(&[]))
            .map_err(|e| LogError::InvalidAppend(format!("batch {i}: {e}")))?;
        let same_layout = on_disk.batch_length == header.batch_length
            && on_disk.last_offset_delta == header.last_offset_delta
            && on_disk.records_count == header.records_count
            && on_disk.magic == header.magic;
        if !same_layout {
            return Err(LogError::InvalidAppend(format!(
                "header {i} does not match the batch at byte {position}"
            )));
        }
        let checked = if compacted_ok {
            on_disk.check_stored(position, batches.len() - position)
        } else {
            on_disk.check(position, batches.len() - position)
        };
        checked.map_err(|e| LogError::InvalidAppend(format!("batch {i}: {e}")))?;
        // Recovery drops a batch whose CRC fails, and everything after it; a caller that
        // skipped validation or patched bytes without fixing the CRC must hear about it in
        // tests rather than lose data at the next restart. (Release builds trust the caller:
        // no per-byte work on the append path.)
        debug_assert!(
            crate::batch::check_stored_batch(
                &on_disk,
                &batches[position..position + on_disk.total_size()],
                position
            )
            .is_ok(),
            "append of batch {i} with a bad CRC: validate_batches first"
        );
        position += on_disk.total_size();
        stored.push(on_disk);
    }
    if position != batches.len() {
        return Err(LogError::InvalidAppend(format!(
            "headers cover {position} bytes of {}",
            batches.len()
        )));
    }
    Ok(stored)
}
