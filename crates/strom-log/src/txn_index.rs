//! The aborted-transaction index of each segment, Kafka's `.txnindex`: one entry per aborted
//! transaction whose abort marker lies in that segment, so a read_committed fetch can tell the
//! consumer which producer's records to skip without reading any record.
//!
//! ```text
//! <base>.txnindex   entry | entry | ...       (34 bytes each, big-endian, Kafka's layout)
//! entry: version i16 (=0) | producer_id i64 | first_offset i64 | last_offset i64
//!        | last_stable_offset i64
//! ```
//! `first_offset` is the transaction's first record in the partition, `last_offset` its abort
//! marker, `last_stable_offset` the partition's LSO right after the abort completed.
//!
//! The entries are kept in memory too (aborts are rare, and retention drops them with their
//! segment). The file is appended to the page cache and not fsynced: it is a cache of what the
//! log's abort markers say, and the broker rebuilds missing entries from the markers it scans
//! at startup ([`crate::PartitionLog::append_aborted`] ignores an entry already present). At
//! open, a torn tail and entries past the recovered log end are dropped.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::segment::segment_file_name;

pub const ENTRY_BYTES: usize = 34;
const VERSION: i16 = 0;

/// One aborted transaction of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        out[0..2].copy_from_slice(&VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    /// `None` for an entry of an unknown version.
    pub fn decode(b: &[u8; ENTRY_BYTES]) -> Option<AbortedTxn> {
        let i = |r: std::ops::Range<usize>| i64::from_be_bytes(b[r].try_into().expect("8 bytes"));
        (i16::from_be_bytes([b[0], b[1]]) == VERSION).then(|| AbortedTxn {
            producer_id: i(2..10),
            first_offset: i(10..18),
            last_offset: i(18..26),
            last_stable_offset: i(26..34),
        })
    }
}

pub(crate) fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(segment_file_name(base_offset, "txnindex"))
}

/// Every segment's entries, by segment base offset.
#[derive(Debug, Default)]
pub(crate) struct AbortedIndex {
    by_segment: BTreeMap<i64, Vec<AbortedTxn>>,
}

impl AbortedIndex {
    /// Loads the files of `bases`, keeping only entries inside `[base, log_end)`; a file that
    /// lost entries that way (or had a torn tail) is rewritten.
    pub fn load(dir: &Path, bases: &[i64], log_end: i64) -> io::Result<AbortedIndex> {
        let mut by_segment = BTreeMap::new();
        for &base in bases {
            let path = txn_index_path(dir, base);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let entries: Vec<AbortedTxn> = bytes
                .chunks_exact(ENTRY_BYTES)
                .filter_map(|c| AbortedTxn::decode(c.try_into().expect("chunk size")))
                .filter(|t| t.last_offset >= base && t.last_offset < log_end)
                .collect();
            if entries.len() * ENTRY_BYTES != bytes.len() {
                tracing::warn!(dir = %dir.display(), base, "rewriting a transaction index with a torn tail or entries past the log end");
                let body: Vec<u8> = entries.iter().flat_map(|t| t.encode()).collect();
                std::fs::write(&path, body)?;
            }
            if !entries.is_empty() {
                by_segment.insert(base, entries);
            }
        }
        Ok(AbortedIndex { by_segment })
    }

    pub fn contains(&self, segment_base: i64, txn: &AbortedTxn) -> bool {
        self.by_segment
            .get(&segment_base)
            .is_some_and(|v| v.iter().any(|t| t.last_offset == txn.last_offset))
    }

    /// Appends `txn` to the file of the segment based at `segment_base`.
    pub fn append(&mut self, dir: &Path, segment_base: i64, txn: AbortedTxn) -> io::Result<()> {
        let path = txn_index_path(dir, segment_base);
        let created = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.write_all(&txn.encode())?;
        // Durable at once (aborts are rare): a restart rebuilds entries only from the newest
        // producer snapshot on, so an entry lost below it would let read_committed consumers
        // see an aborted transaction after a power loss.
        file.sync_data()?;
        if created {
            crate::atomic_file::sync_dir(dir)?;
        }
        self.by_segment.entry(segment_base).or_default().push(txn);
        Ok(())
    }

    /// Entries of aborted transactions that overlap `[from, upper)`, in marker order. Only
    /// segments from the one holding `from` can hold their markers.
    pub fn overlapping(&self, from_segment_base: i64, from: i64, upper: i64) -> Vec<AbortedTxn> {
        self.by_segment
            .range(from_segment_base..)
            .flat_map(|(_, v)| v.iter())
            .filter(|t| t.last_offset >= from && t.first_offset < upper)
            .copied()
            .collect()
    }

    /// The segments `old_bases` became one segment based at `base` holding `entries` (a
    /// cleaned group; its file was written by the cleaner).
    pub fn merge(&mut self, old_bases: &[i64], base: i64, entries: Vec<AbortedTxn>) {
        for old in old_bases {
            self.by_segment.remove(old);
        }
        if !entries.is_empty() {
            self.by_segment.insert(base, entries);
        }
    }

    /// Forgets the entries of segments below `first_base` (their files are deleted with them).
    pub fn drop_below(&mut self, first_base: i64) {
        self.by_segment = self.by_segment.split_off(&first_base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn entries_roundtrip_in_kafkas_layout() {
        let t = txn(7, 10, 20);
        let b = t.encode();
        assert_eq!(&b[0..2], &[0, 0]);
        assert_eq!(&b[2..10], &7i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&b), Some(t));
    }

    #[test]
    fn files_survive_reload_and_lose_torn_tails_and_entries_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = AbortedIndex::default();
        idx.append(dir.path(), 0, txn(1, 0, 5)).unwrap();
        idx.append(dir.path(), 0, txn(2, 3, 9)).unwrap();
        idx.append(dir.path(), 10, txn(3, 8, 12)).unwrap();
        assert_eq!(idx.overlapping(0, 6, 8), vec![txn(2, 3, 9)]);
        assert_eq!(idx.overlapping(0, 6, 11), vec![txn(2, 3, 9), txn(3, 8, 12)]);
        assert_eq!(idx.overlapping(10, 12, 13), vec![txn(3, 8, 12)]);
        // A torn tail in segment 0, and a log that ends before segment 10's entry.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(txn_index_path(dir.path(), 0))
            .unwrap();
        f.write_all(&[0, 0, 1]).unwrap();
        let idx = AbortedIndex::load(dir.path(), &[0, 10], 12).unwrap();
        assert_eq!(idx.overlapping(0, 0, 100), vec![txn(1, 0, 5), txn(2, 3, 9)]);
        assert_eq!(
            std::fs::metadata(txn_index_path(dir.path(), 0))
                .unwrap()
                .len(),
            2 * ENTRY_BYTES as u64
        );
    }
}
