//! Sparse offset and time indexes of one segment, kept fully in memory (a `Vec` each) and
//! mirrored to two files that are only a cache: recovery checks them and rebuilds them from
//! the `.log` when they are missing or damaged, so they are never fsynced on the append path.
//!
//! ```text
//! <base>.index      entry i at byte 8*i:   relative_offset u32 BE | position u32 BE
//! <base>.timeindex  entry i at byte 12*i:  max_timestamp   i64 BE | relative_offset u32 BE
//! ```
//! `relative_offset` is the batch's base offset minus the segment's base offset; `position`
//! is the batch's byte position in the `.log`. `max_timestamp` is the largest batch
//! `max_timestamp` in the segment up to and including that batch (so it never decreases).
//! Entries are written in pairs: entry i of both files describes the same batch. An entry is
//! added for a batch when at least `index_interval_bytes` were appended since the previous
//! entry; the first batch of a segment needs none (position 0 is implied).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::io::FileIo;

pub(crate) const OFFSET_ENTRY_SIZE: usize = 8;
pub(crate) const TIME_ENTRY_SIZE: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub max_timestamp: i64,
    pub relative_offset: u32,
}

/// Both indexes of one segment. `offsets[i]` and `times[i]` always describe the same batch.
#[derive(Debug)]
pub(crate) struct SegmentIndex {
    offsets: Vec<IndexEntry>,
    times: Vec<TimeEntry>,
    /// The `.index` and `.timeindex` files, open only while entries may still be written: a
    /// segment that is no longer active keeps its entries in memory and its two descriptors
    /// closed, so an old segment costs one open file (its `.log`), not three.
    files: Option<(File, File)>,
}

fn open_rw(path: &Path, create_new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true);
    }
    options.open(path)
}

/// Decode the longest plausible prefix of an offset index: entries must grow strictly in both
/// relative offset and position, and point inside a `.log` of `log_len` bytes.
fn decode_offsets(bytes: &[u8], log_len: u64) -> Vec<IndexEntry> {
    let mut out: Vec<IndexEntry> = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_SIZE);
    for chunk in bytes.chunks_exact(OFFSET_ENTRY_SIZE) {
        let entry = IndexEntry {
            relative_offset: u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes")),
        };
        let grows = out.last().map_or(true, |prev| {
            entry.relative_offset > prev.relative_offset && entry.position > prev.position
        });
        if !grows || u64::from(entry.position) >= log_len {
            break;
        }
        out.push(entry);
    }
    out
}

/// Decode the time index prefix that pairs with `offsets` and never decreases in time.
fn decode_times(bytes: &[u8], offsets: &[IndexEntry]) -> Vec<TimeEntry> {
    let mut out: Vec<TimeEntry> = Vec::with_capacity(offsets.len());
    for (chunk, paired) in bytes.chunks_exact(TIME_ENTRY_SIZE).zip(offsets) {
        let entry = TimeEntry {
            max_timestamp: i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes")),
        };
        let grows = out
            .last()
            .map_or(true, |prev| entry.max_timestamp >= prev.max_timestamp);
        if !grows || entry.relative_offset != paired.relative_offset {
            break;
        }
        out.push(entry);
    }
    out
}

impl SegmentIndex {
    /// Create empty index files for a new segment (failing if they exist).
    pub fn create(offset_path: &Path, time_path: &Path) -> io::Result<SegmentIndex> {
        Ok(SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            files: Some((open_rw(offset_path, true)?, open_rw(time_path, true)?)),
        })
    }

    /// An index with no files yet (a cleaned segment being written; see `write_files`).
    pub fn detached() -> SegmentIndex {
        SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            files: None,
        }
    }

    /// Write both files of the segment based at `base` in `dir` to hold exactly the in-memory
    /// entries, without keeping them open (a cache: not fsynced, recovery checks them).
    pub fn write_files(&self, dir: &Path, base: i64) -> io::Result<()> {
        let offsets: Vec<u8> = self
            .offsets
            .iter()
            .flat_map(|e| [e.relative_offset.to_be_bytes(), e.position.to_be_bytes()].concat())
            .collect();
        let times: Vec<u8> = self
            .times
            .iter()
            .flat_map(|t| {
                [
                    &t.max_timestamp.to_be_bytes()[..],
                    &t.relative_offset.to_be_bytes(),
                ]
                .concat()
            })
            .collect();
        std::fs::write(crate::segment::index_path(dir, base), offsets)?;
        std::fs::write(crate::segment::time_index_path(dir, base), times)
    }

    /// Open (or create) the index files of an existing segment and load the longest prefix of
    /// paired, plausible entries. Returns the index and whether the files held anything beyond
    /// that prefix (damage the caller should rewrite away).
    pub fn load(
        offset_path: &Path,
        time_path: &Path,
        log_len: u64,
    ) -> io::Result<(SegmentIndex, bool)> {
        let offset_file = open_rw(offset_path, false)?;
        let time_file = open_rw(time_path, false)?;
        let offset_bytes = read_all(&offset_file)?;
        let time_bytes = read_all(&time_file)?;
        let mut offsets = decode_offsets(&offset_bytes, log_len);
        let times = decode_times(&time_bytes, &offsets);
        offsets.truncate(times.len());
        let damaged = offset_bytes.len() != offsets.len() * OFFSET_ENTRY_SIZE
            || time_bytes.len() != times.len() * TIME_ENTRY_SIZE;
        Ok((
            SegmentIndex {
                offsets,
                times,
                files: Some((offset_file, time_file)),
            },
            damaged,
        ))
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Close both files; the entries stay in memory (see `files`). Everything was written to
    /// them before (the page cache keeps it; the files are a cache that recovery checks).
    pub fn close_files(&mut self) {
        self.files = None;
    }

    pub fn offsets(&self) -> &[IndexEntry] {
        &self.offsets
    }

    pub fn times(&self) -> &[TimeEntry] {
        &self.times
    }

    /// Drop in-memory entries from `n` on (the files are fixed by [`SegmentIndex::rewrite_files`]).
    pub fn truncate_entries(&mut self, n: usize) {
        self.offsets.truncate(n);
        self.times.truncate(n);
    }

    /// Add an entry pair in memory only.
    pub fn push_entry(&mut self, entry: IndexEntry, time: TimeEntry) {
        debug_assert_eq!(entry.relative_offset, time.relative_offset);
        debug_assert!(self
            .offsets
            .last()
            .map_or(true, |p| p.relative_offset < entry.relative_offset
                && p.position < entry.position));
        debug_assert!(self
            .times
            .last()
            .map_or(true, |p| p.max_timestamp <= time.max_timestamp));
        self.offsets.push(entry);
        self.times.push(time);
    }

    /// Write in-memory entries from `first` on to their slots in both files (one write per
    /// file). Index files are a cache, so a failure is logged and otherwise ignored: recovery
    /// notices the short or torn file and rebuilds it.
    pub fn persist_from(&self, io: &dyn FileIo, first: usize) {
        let Some((offset_file, time_file)) = &self.files else {
            debug_assert!(false, "index entries written to a closed index");
            return;
        };
        if first >= self.offsets.len() {
            return;
        }
        let mut ob = Vec::with_capacity((self.offsets.len() - first) * OFFSET_ENTRY_SIZE);
        let mut tb = Vec::with_capacity((self.times.len() - first) * TIME_ENTRY_SIZE);
        for e in &self.offsets[first..] {
            ob.extend_from_slice(&e.relative_offset.to_be_bytes());
            ob.extend_from_slice(&e.position.to_be_bytes());
        }
        for t in &self.times[first..] {
            tb.extend_from_slice(&t.max_timestamp.to_be_bytes());
            tb.extend_from_slice(&t.relative_offset.to_be_bytes());
        }
        let writes = [
            io.write_all_at(offset_file, &ob, (first * OFFSET_ENTRY_SIZE) as u64),
            io.write_all_at(time_file, &tb, (first * TIME_ENTRY_SIZE) as u64),
        ];
        for result in writes {
            if let Err(error) = result {
                tracing::warn!(%error, "index write failed; the index will be rebuilt on recovery");
            }
        }
    }

    /// Make both files hold exactly the in-memory entries.
    pub fn rewrite_files(&self, io: &dyn FileIo) -> io::Result<()> {
        let Some((offset_file, time_file)) = &self.files else {
            return Err(io::Error::other("rewriting a closed index"));
        };
        offset_file.set_len((self.offsets.len() * OFFSET_ENTRY_SIZE) as u64)?;
        time_file.set_len((self.times.len() * TIME_ENTRY_SIZE) as u64)?;
        self.persist_from(io, 0);
        Ok(())
    }

    /// fsync both files (a no-op once closed: whatever they hold is a cache).
    pub fn sync(&self, io: &dyn FileIo) -> io::Result<()> {
        if let Some((offset_file, time_file)) = &self.files {
            io.sync_data(offset_file)?;
            io.sync_data(time_file)?;
        }
        Ok(())
    }

    /// Index of the last entry whose relative offset is `<= relative_offset`.
    pub fn floor_offset(&self, relative_offset: u32) -> Option<usize> {
        let n = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        n.checked_sub(1)
    }

    /// Index of the last entry whose position is `<= position`.
    pub fn floor_position(&self, position: u64) -> Option<usize> {
        let n = self
            .offsets
            .partition_point(|e| u64::from(e.position) <= position);
        n.checked_sub(1)
    }

    /// Index of the last entry whose running max timestamp is `< timestamp`: every batch up to
    /// and including that entry's batch is older than `timestamp`, so a search can start there.
    pub fn last_before_timestamp(&self, timestamp: i64) -> Option<usize> {
        let n = self.times.partition_point(|t| t.max_timestamp < timestamp);
        n.checked_sub(1)
    }
}

fn read_all(file: &File) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_bytes(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(r, p)| [r.to_be_bytes(), p.to_be_bytes()].concat())
            .collect()
    }

    #[test]
    fn decode_stops_at_first_implausible_entry() {
        let b = offset_bytes(&[(0, 0), (5, 100), (9, 200), (8, 300), (20, 400)]);
        assert_eq!(decode_offsets(&b, 1000).len(), 3);
        // Position past the log's end.
        assert_eq!(decode_offsets(&b, 150).len(), 2);
        // Torn trailing entry.
        assert_eq!(decode_offsets(&b[..b.len() - 3], 1000).len(), 3);
        // A zero-filled tail (a sparse file after a crash) fails the growth check.
        let mut z = offset_bytes(&[(0, 0), (5, 100)]);
        z.extend_from_slice(&[0; 16]);
        assert_eq!(decode_offsets(&z, 1000).len(), 2);
    }

    #[test]
    fn time_entries_must_pair_and_not_decrease() {
        let offsets = decode_offsets(&offset_bytes(&[(0, 0), (5, 100), (9, 200)]), 1000);
        let times: Vec<u8> = [(10i64, 0u32), (20, 5), (15, 9)]
            .iter()
            .flat_map(|(t, r)| [t.to_be_bytes().to_vec(), r.to_be_bytes().to_vec()].concat())
            .collect();
        assert_eq!(decode_times(&times, &offsets).len(), 2);
        let unpaired: Vec<u8> = [(10i64, 0u32), (20, 6)]
            .iter()
            .flat_map(|(t, r)| [t.to_be_bytes().to_vec(), r.to_be_bytes().to_vec()].concat())
            .collect();
        assert_eq!(decode_times(&unpaired, &offsets).len(), 1);
    }

    #[test]
    fn persist_and_load_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let (op, tp) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        let mut idx = SegmentIndex::create(&op, &tp).unwrap();
        idx.push_entry(
            IndexEntry {
                relative_offset: 0,
                position: 0,
            },
            TimeEntry {
                max_timestamp: 5,
                relative_offset: 0,
            },
        );
        idx.persist_from(&crate::io::RealIo, 0);
        idx.push_entry(
            IndexEntry {
                relative_offset: 3,
                position: 70,
            },
            TimeEntry {
                max_timestamp: 9,
                relative_offset: 3,
            },
        );
        idx.push_entry(
            IndexEntry {
                relative_offset: 7,
                position: 150,
            },
            TimeEntry {
                max_timestamp: 9,
                relative_offset: 7,
            },
        );
        idx.persist_from(&crate::io::RealIo, 1);
        let (loaded, damaged) = SegmentIndex::load(&op, &tp, 200).unwrap();
        assert!(!damaged);
        assert_eq!(loaded.offsets(), idx.offsets());
        assert_eq!(loaded.times(), idx.times());
        assert_eq!(loaded.floor_offset(6), Some(1));
        assert_eq!(loaded.floor_position(149), Some(1));
        assert_eq!(loaded.last_before_timestamp(9), Some(0));
        assert_eq!(loaded.last_before_timestamp(5), None);
        let (short, damaged) = SegmentIndex::load(&op, &tp, 100).unwrap();
        assert!(damaged);
        assert_eq!(short.len(), 2);
    }
}
