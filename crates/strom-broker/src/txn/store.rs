//! The transaction coordinator's durable state, the counterpart of Kafka's
//! `__transaction_state`: an append-only file `<data>/__transaction_state/txn.log` of records,
//! each the whole state of one transactional id after a transition. The last record of an id
//! wins; a record with `removed` set forgets the id.
//!
//! ```text
//! record: length u32 | crc32c u32 of body | body (length bytes: JSON of `TxnMeta`)
//! ```
//! All integers are big-endian. Every write is fsynced before the coordinator answers (unless
//! `log.fsync=never`), as Kafka waits for its transaction log to be replicated, but for the
//! Complete states, which recovery rebuilds from the Prepare state before them. At open the file
//! is read up to the first torn or damaged record and truncated there (a crash mid-append); the
//! file is compacted (rewritten atomically with one record per live id) at open and whenever
//! it holds more than [`COMPACT_SLACK_RECORDS`] records beyond twice the live ids, so it stays
//! bounded by the number of transactional ids, not of transactions.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::state::TxnMeta;

pub const TXN_DIR: &str = "__transaction_state";
const FILE_NAME: &str = "txn.log";
/// Largest record accepted when reading (a damaged length must not allocate gigabytes).
const RECORD_MAX_BYTES: usize = 16 << 20;
/// Records tolerated beyond twice the live ids before a compaction.
pub const COMPACT_SLACK_RECORDS: usize = 1000;

/// Whether a log of `records` state records, `live` of them current, is due a compaction (the
/// file's rewrite, or a replicated partition's checkpoint).
pub fn needs_compaction(records: usize, live: usize) -> bool {
    records > 2 * live + COMPACT_SLACK_RECORDS
}

pub struct TxnStore {
    path: PathBuf,
    file: File,
    records: usize,
    fsync: bool,
}

fn frame(meta: &TxnMeta) -> Vec<u8> {
    let body = serde_json::to_vec(meta).expect("transaction state serializes");
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The records of `bytes` up to the first damaged one, and the length of that good prefix.
fn parse(bytes: &[u8]) -> (Vec<TxnMeta>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes(head[0..4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(head[4..8].try_into().expect("4"));
        if len > RECORD_MAX_BYTES {
            break;
        }
        let Some(body) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(meta) = serde_json::from_slice::<TxnMeta>(body) else {
            break;
        };
        out.push(meta);
        at += 8 + len;
    }
    (out, at)
}

impl TxnStore {
    /// Opens (creating) the store under `data_dir` and returns the live state of every id.
    pub fn open(data_dir: &Path, fsync: bool) -> io::Result<(TxnStore, BTreeMap<String, TxnMeta>)> {
        let dir = data_dir.join(TXN_DIR);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A new store: its (empty) file and name made durable before any record.
                strom_log::atomic_file::write_atomically(&path, &[])?;
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let (records, good) = parse(&bytes);
        let torn = good < bytes.len();
        if torn {
            tracing::warn!(path = %path.display(), kept = good, dropped = bytes.len() - good, "dropping a torn tail of the transaction log");
        }
        let in_file = records.len();
        let mut live = BTreeMap::new();
        for meta in records {
            if meta.removed {
                live.remove(&meta.transactional_id);
            } else {
                live.insert(meta.transactional_id.clone(), meta);
            }
        }
        // Start from a compacted file when there is anything to drop. A full disk must not
        // stop the broker from starting: then keep the file as it is, a torn tail cut in
        // place (a truncation needs no free space).
        let mut records = in_file;
        if torn || in_file > live.len() {
            let compacted: Vec<u8> = live.values().flat_map(frame).collect();
            match strom_log::atomic_file::write_atomically(&path, &compacted) {
                Ok(()) => records = live.len(),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "compacting the transaction log at startup failed; continuing with the uncompacted log");
                    if torn {
                        let file = OpenOptions::new().write(true).open(&path)?;
                        file.set_len(good as u64)?;
                        file.sync_all()?;
                    }
                }
            }
        }
        let file = OpenOptions::new().append(true).open(&path)?;
        let store = TxnStore {
            path,
            file,
            records,
            fsync,
        };
        Ok((store, live))
    }

    /// Appends one state record, durably when configured and `sync` (an unsynced record
    /// becomes durable with the next synced one: the file is append-only). `live` is the
    /// number of ids after it, to decide on a compaction (then `all` supplies every live
    /// state).
    pub fn write<'a>(
        &mut self,
        meta: &TxnMeta,
        sync: bool,
        all: impl FnOnce() -> Vec<&'a TxnMeta>,
    ) -> io::Result<()> {
        self.file.write_all(&frame(meta))?;
        if self.fsync && sync {
            self.file.sync_data()?;
        }
        self.records += 1;
        let live = all();
        if needs_compaction(self.records, live.len()) {
            let bytes: Vec<u8> = live.iter().flat_map(|m| frame(m)).collect();
            strom_log::atomic_file::write_atomically(&self.path, &bytes)?;
            self.file = OpenOptions::new().append(true).open(&self.path)?;
            self.records = live.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::state::TxnState;

    fn meta(id: &str, pid: i64, state: TxnState) -> TxnMeta {
        TxnMeta::new(id, pid, 60_000, 0).with_state(state)
    }

    #[test]
    fn the_last_record_wins_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, live) = TxnStore::open(dir.path(), true).unwrap();
            assert!(live.is_empty());
            let a = meta("a", 1, TxnState::Ongoing);
            let b = meta("b", 2, TxnState::Empty);
            let a2 = meta("a", 1, TxnState::PrepareCommit);
            for m in [&a, &b, &a2] {
                store.write(m, true, Vec::new).unwrap();
            }
        }
        let path = dir.path().join(TXN_DIR).join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 9, 1, 2]).unwrap();
        let (_, live) = TxnStore::open(dir.path(), true).unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(live["a"].state, TxnState::PrepareCommit);
        assert_eq!(live["b"].producer_id, 2);
    }

    #[test]
    fn the_file_is_compacted_when_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = TxnStore::open(dir.path(), false).unwrap();
        let a = meta("a", 1, TxnState::Ongoing);
        for _ in 0..(COMPACT_SLACK_RECORDS + 10) {
            store.write(&a, true, || vec![&a]).unwrap();
        }
        assert!(store.records <= COMPACT_SLACK_RECORDS);
        let (_, live) = TxnStore::open(dir.path(), false).unwrap();
        assert_eq!(live.len(), 1);
    }
}
