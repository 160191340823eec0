//! Replacing a group of segments by their cleaned copy so that a crash at any point leaves
//! either the old segments or the new one, never a mix and never a loss (Kafka's `.cleaned` /
//! `.swap` scheme).
//!
//! ```text
//! off the lock   B.log.cleaned, B.txnindex.cleaned      written and fsynced
//! commit  1      B.txnindex.cleaned -> B.txnindex.swap
//!         2      B.log.cleaned      -> B.log.swap        then fsync(dir): the commit point
//!         3      delete the old .index/.timeindex of every base in the group, and every
//!                file of the group's other segments (B.log itself is replaced in step 5)
//!         4      B.txnindex.swap    -> B.txnindex
//!         5      B.log.swap         -> B.log              then fsync(dir)
//! ```
//! Recovery at open ([`finish_interrupted`]): every `.cleaned` file is deleted (the old
//! segments are all still there); a `.txnindex.swap` without its `.log.swap` is deleted too
//! (a crash between steps 1 and 2); a `B.log.swap` means the swap committed, so recovery
//! repeats steps 3-5 for the offsets it covers, read from the file itself. The `.index` and
//! `.timeindex` of B are rebuilt from the new `.log` like any missing index.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::{fs, io};

use strom_protocol::record_batch::BatchHeader;

use crate::atomic_file::sync_dir;
use crate::error::LogError;
use crate::segment::{
    delete_segment_files, index_path, log_path, segment_file_name, time_index_path,
};
use crate::txn_index::txn_index_path;

pub(crate) const CLEANED: &str = "cleaned";
pub(crate) const SWAP: &str = "swap";

/// `<base>.<extension>.<suffix>`, e.g. `00000000000000000000.log.cleaned`.
pub(crate) fn temp_path(dir: &Path, base: i64, extension: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{}.{suffix}", segment_file_name(base, extension)))
}

/// Simulated crashes for tests: the commit stops (leaving the files as a crash would) after
/// this many file operations. `None` never stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopAfter(pub Option<usize>);

impl StopAfter {
    /// Whether the next operation may run.
    fn step(&mut self) -> bool {
        match &mut self.0 {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }
}

/// How a commit ended.
#[derive(Debug)]
pub(crate) enum Commit {
    Done,
    /// A test's simulated crash (`StopAfter`).
    Stopped,
    /// Failed before the commit point: the old segments are intact.
    FailedBefore(io::Error),
    /// Failed after it: the disk holds a committed swap that recovery completes.
    FailedAfter(io::Error),
}

/// Steps 1-5 for the cleaned segment based at `base` replacing the segments `old_bases`.
pub(crate) fn commit(dir: &Path, base: i64, old_bases: &[i64], stop: &mut StopAfter) -> Commit {
    macro_rules! op {
        ($result:expr, $fail:ident) => {
            if !stop.step() {
                return Commit::Stopped;
            }
            if let Err(e) = $result {
                return Commit::$fail(e);
            }
        };
    }
    let cleaned_txn = temp_path(dir, base, "txnindex", CLEANED);
    let swap_txn = temp_path(dir, base, "txnindex", SWAP);
    let swap_log = temp_path(dir, base, "log", SWAP);
    op!(fs::rename(&cleaned_txn, &swap_txn), FailedBefore);
    op!(
        fs::rename(temp_path(dir, base, "log", CLEANED), &swap_log),
        FailedBefore
    );
    op!(sync_dir(dir), FailedAfter);
    for &old in old_bases {
        op!(remove_if_present(&index_path(dir, old)), FailedAfter);
        op!(remove_if_present(&time_index_path(dir, old)), FailedAfter);
        if old != base {
            op!(delete_segment_files(dir, old), FailedAfter);
        }
    }
    op!(
        fs::rename(&swap_txn, txn_index_path(dir, base)),
        FailedAfter
    );
    op!(fs::rename(&swap_log, log_path(dir, base)), FailedAfter);
    op!(sync_dir(dir), FailedAfter);
    Commit::Done
}

/// Remove the `.cleaned` files of a cleaning that will not be committed.
pub(crate) fn discard(dir: &Path, base: i64) {
    for extension in ["log", "txnindex"] {
        let _ = remove_if_present(&temp_path(dir, base, extension, CLEANED));
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Roll back or finish a cleaning interrupted by a crash (see the module docs). Runs before
/// the segments are listed.
pub(crate) fn finish_interrupted(dir: &Path) -> Result<(), LogError> {
    let mut swapped_logs = Vec::new();
    let mut swapped_txns = Vec::new();
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let mut parts = name.split('.');
        let (Some(stem), Some(extension), suffix) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match (extension, suffix) {
            (_, Some(CLEANED)) => fs::remove_file(entry.path())?,
            ("log", Some(SWAP)) => swapped_logs.push(base),
            ("txnindex", Some(SWAP)) => swapped_txns.push(base),
            ("log", None) => segments.push(base),
            _ => {}
        }
    }
    for base in swapped_txns {
        if !swapped_logs.contains(&base) {
            fs::remove_file(temp_path(dir, base, "txnindex", SWAP))?;
        }
    }
    for base in swapped_logs {
        let swap_log = temp_path(dir, base, "log", SWAP);
        let end = end_offset(&swap_log)?;
        tracing::warn!(dir = %dir.display(), base, end, "completing a log cleaning interrupted by a crash");
        for &old in segments.iter().filter(|&&s| s > base && s < end) {
            delete_segment_files(dir, old)?;
        }
        remove_if_present(&index_path(dir, base))?;
        remove_if_present(&time_index_path(dir, base))?;
        let swap_txn = temp_path(dir, base, "txnindex", SWAP);
        if swap_txn.exists() {
            fs::rename(&swap_txn, txn_index_path(dir, base))?;
        }
        fs::rename(&swap_log, log_path(dir, base))?;
    }
    sync_dir(dir)?;
    Ok(())
}

/// One past the last offset of the (fsynced, whole) segment file at `path`, from a walk of
/// its batch headers.
fn end_offset(path: &Path) -> Result<i64, LogError> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    let damaged = |why: &str| LogError::Damaged(format!("{}: {why}", path.display()));
    let mut position = 0u64;
    let mut end = None;
    let mut head = [0u8; BatchHeader::SIZE];
    while position < len {
        if len - position < BatchHeader::SIZE as u64 {
            return Err(damaged("a cleaned segment ends in a torn batch header"));
        }
        file.read_exact_at(&mut head, position)?;
        let header = BatchHeader::parse(&head).expect("61 bytes");
        header
            .check_stored(0, (len - position) as usize)
            .map_err(|e| damaged(&e.to_string()))?;
        end = Some(header.last_offset() + 1);
        position += header.total_size() as u64;
    }
    end.ok_or_else(|| damaged("a cleaned segment is empty"))
}
