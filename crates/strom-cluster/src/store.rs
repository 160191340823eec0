//! Durable raft storage for openraft: the log and the vote, fsynced before openraft is told
//! they are written, and the state machine, which applies entries to the [`MetadataImage`].
//!
//! ```text
//! <data-dir>/__strom_meta/raft/
//!   vote       JSON of the granted vote; replaced atomically (temp, fsync, rename, fsync dir)
//!   log        entry | entry | ...   each: len u32 BE | crc32c(json) u32 BE | json(Entry)
//!   purged     JSON of the last purged log id (entries at or below it are gone from `log`)
//!   snapshot   JSON of the image with the log id and membership it covers
//! ```
//! Appends are written and `fdatasync`ed before `log_io_completed` is called, so a vote or an
//! acknowledged append survives a crash. Truncating or purging rewrites `log` whole through a
//! temp file (the metadata log is small: it holds only admin changes and failovers, never
//! heartbeats). At open, a torn or CRC-failing tail of `log` (a crash mid-append of entries
//! that were never acknowledged) is cut off.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::image::{CommandResult, MetadataImage};
use crate::{NodeId, TypeConfig};

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn write_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(e.to_string())).into()
}

/// Encodes one log entry as it is stored.
fn encode_entry(entry: &Entry<TypeConfig>, out: &mut Vec<u8>) -> Result<(), String> {
    let json = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(())
}

/// Decodes every whole, CRC-valid entry; returns them and the byte length they cover.
fn decode_entries(bytes: &[u8]) -> (Vec<Entry<TypeConfig>>, usize) {
    let mut entries = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4"));
        let Some(json) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32c::crc32c(json) != crc {
            break;
        }
        match serde_json::from_slice(json) {
            Ok(e) => entries.push(e),
            Err(_) => break,
        }
        pos += 8 + len;
    }
    (entries, pos)
}

/// The raft log and vote on disk (see the module docs).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<tokio::sync::Mutex<LogInner>>,
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

impl LogStore {
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let vote = match std::fs::read(dir.join("vote")) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let last_purged: Option<LogId<NodeId>> = match std::fs::read(dir.join("purged")) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(std::io::Error::other)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let path = dir.join("log");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (decoded, valid) = decode_entries(&bytes);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = valid,
                dropped = bytes.len() - valid,
                "cutting a torn tail off the metadata log"
            );
            file.set_len(valid as u64)?;
            file.sync_data()?;
        }
        let entries = decoded
            .into_iter()
            .filter(|e| Some(e.log_id.index) > last_purged.map(|p| p.index))
            .map(|e| (e.log_id.index, e))
            .collect();
        strom_log::atomic_file::sync_dir(dir)?;
        Ok(LogStore {
            inner: Arc::new(tokio::sync::Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote,
            })),
        })
    }
}

impl LogInner {
    /// Replaces `log` with the entries held now.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for e in self.entries.values() {
            encode_entry(e, &mut bytes).map_err(std::io::Error::other)?;
        }
        let path = self.dir.join("log");
        strom_log::atomic_file::write_atomically(&path, &bytes)?;
        self.file = OpenOptions::new().append(true).read(true).open(&path)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let inner = self.inner.lock().await;
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock().await;
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock().await;
        let json = serde_json::to_vec(vote).map_err(write_err)?;
        strom_log::atomic_file::write_atomically(&inner.dir.join("vote"), &json).map_err(|e| {
            StorageError::from(StorageIOError::write_vote(AnyError::error(e.to_string())))
        })?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(self.inner.lock().await.vote)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut bytes = Vec::new();
        let mut added = Vec::new();
        for e in entries {
            encode_entry(&e, &mut bytes).map_err(write_err)?;
            added.push(e);
        }
        let written = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.sync_data());
        match written {
            Ok(()) => {
                for e in added {
                    inner.entries.insert(e.log_id.index, e);
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.log_io_completed(Err(e));
                Err(write_err(msg))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock().await;
        inner.entries.retain(|i, _| *i < log_id.index);
        inner.rewrite().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let mut inner = self.inner.lock().await;
        let json = serde_json::to_vec(&log_id).map_err(write_err)?;
        strom_log::atomic_file::write_atomically(&inner.dir.join("purged"), &json)
            .map_err(write_err)?;
        inner.last_purged = Some(log_id);
        inner.entries.retain(|i, _| *i > log_id.index);
        inner.rewrite().map_err(write_err)
    }
}

/// What a snapshot holds (and the `snapshot` file).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateData {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    image: MetadataImage,
}

/// The current snapshot: its meta and its serialized [`StateData`].
type StoredSnapshot = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

/// Applies committed entries to the image and publishes every new image on a watch channel.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<SmInner>,
}

struct SmInner {
    dir: PathBuf,
    state: tokio::sync::Mutex<StateData>,
    image: watch::Sender<Arc<MetadataImage>>,
    snapshot: parking_lot::Mutex<Option<StoredSnapshot>>,
}

impl StateMachine {
    /// Starts from the last snapshot, if any; openraft re-applies the log after it.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        let (state, snapshot) = match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let (meta, data): (SnapshotMeta<NodeId, BasicNode>, StateData) =
                    serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
                let raw = serde_json::to_vec(&data).map_err(std::io::Error::other)?;
                (data, Some((meta, raw)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (StateData::default(), None),
            Err(e) => return Err(e),
        };
        let (image, _) = watch::channel(Arc::new(state.image.clone()));
        Ok(StateMachine {
            inner: Arc::new(SmInner {
                dir: dir.to_path_buf(),
                state: tokio::sync::Mutex::new(state),
                image,
                snapshot: parking_lot::Mutex::new(snapshot),
            }),
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.image.subscribe()
    }

    fn save_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: &StateData,
    ) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&(meta, data)).map_err(std::io::Error::other)?;
        strom_log::atomic_file::write_atomically(&self.inner.dir.join("snapshot"), &bytes)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let state = self.inner.state.lock().await.clone();
        let raw = serde_json::to_vec(&state).map_err(read_err)?;
        let snapshot_id = match state.last_applied {
            Some(l) => format!("{}-{}", l.leader_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        self.save_snapshot(&meta, &state).map_err(write_err)?;
        *self.inner.snapshot.lock() = Some((meta.clone(), raw.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(raw)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let state = self.inner.state.lock().await;
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.inner.state.lock().await;
        let mut results = Vec::new();
        let mut changed = false;
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(command) => {
                    changed = true;
                    let r = state.image.apply(&command);
                    if let CommandResult::Refused(why) = &r {
                        tracing::debug!(?command, why, "metadata command refused");
                    }
                    r
                }
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::Done
                }
            };
            results.push(result);
        }
        if changed {
            self.inner.image.send_replace(Arc::new(state.image.clone()));
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let raw = snapshot.into_inner();
        let data: StateData = serde_json::from_slice(&raw).map_err(read_err)?;
        self.save_snapshot(meta, &data).map_err(write_err)?;
        let mut state = self.inner.state.lock().await;
        *state = StateData {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            image: data.image,
        };
        self.inner.image.send_replace(Arc::new(state.image.clone()));
        *self.inner.snapshot.lock() = Some((meta.clone(), raw));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        Ok(self
            .inner
            .snapshot
            .lock()
            .clone()
            .map(|(meta, raw)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(raw)),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_whole_entries_survive() {
        let mut bytes = Vec::new();
        for i in 1..=3 {
            encode_entry(&entry(i), &mut bytes).unwrap();
        }
        let whole = bytes.len();
        encode_entry(&entry(4), &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 3);
        let (entries, valid) = decode_entries(&bytes);
        assert_eq!(entries.len(), 3);
        assert_eq!(valid, whole);
        // A flipped byte inside an entry stops the decode there.
        let mut bad = bytes[..whole].to_vec();
        bad[whole - 2] ^= 0xff;
        assert_eq!(decode_entries(&bad).0.len(), 2);
    }
}
