//! Producer-state snapshot files, as Kafka keeps them: `<partition dir>/<offset>.snapshot`
//! (the offset zero-padded to 20 digits, like segment names) holds the idempotent-producer
//! state as of that offset, in `ProducerStates::encode`'s layout. One is written when a
//! segment rolls (at the new segment's base offset) and one at a clean shutdown (at the log
//! end). At startup the state is loaded from the newest readable snapshot at or below the log
//! end and rebuilt forward from the batch headers after it, so idempotence survives rolls and
//! restarts without reading more than the data written since the last snapshot.
//!
//! A snapshot is a cache of what the log already says: it is written through a temp file and
//! a rename but never fsynced, and one that is torn or damaged fails its CRC and is skipped
//! (an older one, or the whole log, is used instead). Snapshots past the log end (the log was
//! truncated) are deleted; only the newest [`SNAPSHOTS_KEPT`] are kept. A roll's snapshot is
//! written on a blocking thread, never on the produce path ([`RollSnapshot`]), and removes its
//! predecessor by name; a shutdown's lists the directory and keeps the newest.

use std::io;
use std::path::{Path, PathBuf};

use crate::producer_state::ProducerStates;

const EXTENSION: &str = "snapshot";
const TMP_EXTENSION: &str = "snapshot.tmp";
/// Snapshots kept per partition: the newest, and one before it in case the newest is torn.
pub const SNAPSHOTS_KEPT: usize = 2;

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{EXTENSION}"))
}

/// Offsets of the snapshot files in `dir`, ascending. Leftover temp files are removed.
pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut offsets = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, extension)) = name.split_once('.') else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match extension {
            EXTENSION => offsets.extend(stem.parse::<i64>().ok()),
            TMP_EXTENSION => std::fs::remove_file(entry.path())?,
            _ => {}
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn remove(dir: &Path, offset: i64) -> io::Result<()> {
    match std::fs::remove_file(snapshot_path(dir, offset)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes the state as of `offset` and drops all but the newest [`SNAPSHOTS_KEPT`].
pub fn write(dir: &Path, offset: i64, states: &ProducerStates) -> io::Result<()> {
    write_file(dir, offset, &states.encode())?;
    let offsets = list(dir)?;
    for &old in offsets.iter().rev().skip(SNAPSHOTS_KEPT) {
        remove(dir, old)?;
    }
    Ok(())
}

/// The snapshot a segment roll owes: written off the request path (see [`RollSnapshot::spawn`]).
pub struct RollSnapshot {
    dir: PathBuf,
    offset: i64,
    bytes: Vec<u8>,
    /// The snapshot this one makes surplus (at the base of the segment [`SNAPSHOTS_KEPT`]
    /// rolls back), removed without listing the directory, which holds thousands of files.
    obsolete: Option<i64>,
}

impl RollSnapshot {
    /// Encodes the state now (under the partition lock; memory only).
    pub fn new(dir: &Path, offset: i64, states: &ProducerStates, obsolete: Option<i64>) -> Self {
        RollSnapshot {
            dir: dir.to_path_buf(),
            offset,
            bytes: states.encode(),
            obsolete,
        }
    }

    /// Writes the file on a blocking thread: file creation, rename and unlink are metadata
    /// operations that can wait on the filesystem journal, and the request path (a tokio
    /// worker, holding the partition lock) must not. Inline when there is no runtime.
    pub fn spawn(self) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || self.write());
            }
            Err(_) => self.write(),
        }
    }

    fn write(self) {
        let result =
            write_file(&self.dir, self.offset, &self.bytes).and_then(|()| match self.obsolete {
                Some(old) => remove(&self.dir, old),
                None => Ok(()),
            });
        if let Err(error) = result {
            // A snapshot is a cache; the next roll or shutdown writes another.
            tracing::warn!(dir = %self.dir.display(), offset = self.offset, %error, "writing a producer snapshot failed");
        }
    }
}

fn write_file(dir: &Path, offset: i64, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{offset:020}.{TMP_EXTENSION}"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, snapshot_path(dir, offset))
}

/// The newest readable state at or below `log_end`, and the offset to rebuild forward from.
/// Without one the state starts empty at `log_start`.
pub fn load(
    dir: &Path,
    log_start: i64,
    log_end: i64,
    max_producers: usize,
) -> io::Result<(ProducerStates, i64)> {
    let offsets = list(dir)?;
    for &offset in offsets.iter().filter(|&&o| o > log_end) {
        tracing::info!(dir = %dir.display(), offset, "removing a producer snapshot past the log end");
        remove(dir, offset)?;
    }
    for &offset in offsets.iter().rev().filter(|&&o| o <= log_end) {
        let bytes = std::fs::read(snapshot_path(dir, offset))?;
        match ProducerStates::decode(&bytes, max_producers) {
            Some(states) => return Ok((states, offset.max(log_start))),
            None => {
                tracing::warn!(dir = %dir.display(), offset, "skipping a damaged producer snapshot")
            }
        }
    }
    Ok((ProducerStates::new(max_producers), log_start))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_log::BatchHeader;

    fn states(producers: i64) -> ProducerStates {
        let mut s = ProducerStates::new(100);
        for pid in 0..producers {
            s.record(
                &BatchHeader {
                    base_offset: pid,
                    batch_length: 100,
                    partition_leader_epoch: 0,
                    magic: 2,
                    crc: 0,
                    attributes: 0,
                    last_offset_delta: 0,
                    base_timestamp: 0,
                    max_timestamp: 0,
                    producer_id: pid,
                    producer_epoch: 0,
                    base_sequence: 0,
                    records_count: 1,
                },
                0,
            );
        }
        s
    }

    #[test]
    fn the_newest_readable_snapshot_wins_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        for (offset, producers) in [(10, 1), (20, 2), (30, 3)] {
            write(dir.path(), offset, &states(producers)).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap(), vec![20, 30]);
        let (s, from) = load(dir.path(), 0, 40, 100).unwrap();
        assert_eq!((s.len(), from), (3, 30));
        // A damaged newest snapshot falls back to the one before it.
        std::fs::write(snapshot_path(dir.path(), 30), b"torn").unwrap();
        let (s, from) = load(dir.path(), 0, 40, 100).unwrap();
        assert_eq!((s.len(), from), (2, 20));
        // Snapshots past a truncated log end are deleted.
        let (s, from) = load(dir.path(), 0, 25, 100).unwrap();
        assert_eq!((s.len(), from), (2, 20));
        assert_eq!(list(dir.path()).unwrap(), vec![20]);
        let (s, from) = load(dir.path(), 5, 15, 100).unwrap();
        assert_eq!((s.len(), from), (0, 5));
    }
}
