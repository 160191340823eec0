//! [`GroupCoordinator`]: shared state, opening (replay of offsets and group metadata, which
//! restores groups), timers, flushing, and writing group metadata records.
//!
//! Locking: one `parking_lot::Mutex` over all groups (`state`), held only for in-memory work
//! and the short page-cache append of commit records; the offsets log has its own lock, always
//! taken after `state`. Fsyncs happen with no lock held except `sync_lock`, which makes
//! concurrent commits share one fsync: whoever holds it syncs everything written so far.
//! A std-style (non-async) mutex is right here: no critical section awaits.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::error::GroupError;
use crate::group::{Group, GroupState};
use crate::journal::{Journal, ReplicatedLog};
use crate::store::{CommittedOffset, OffsetLog, Record};
use crate::{Clock, GroupConfig, TopicCatalog};

/// The background loop wakes at least this often, so a clock that jumps (or a deadline
/// added without a notification) is noticed within this bound.
const BACKGROUND_WAKE_MS_MAX: i64 = 1000;
/// Compaction runs once superseded records exceed both the live records and this count.
const COMPACT_SUPERSEDED_RECORDS_MIN: u64 = 10_000;

/// All groups, by id. Groups in the map are never `Dead`: a group that dies is removed.
pub(crate) struct State {
    pub groups: HashMap<String, Group>,
    pub next_retention_check_ms: i64,
    /// With fsync configured: for every offset changed by an append not yet known to be on
    /// disk, the value it replaced, oldest first. A successful fsync forgets the entries it
    /// covers; a failed one puts them back (`rollback_unsynced_locked`), so that memory, and
    /// OffsetFetch, never show what the disk may not have.
    pub undo: Vec<Undo>,
}

/// One offset's value before an append that is not yet durable (`None`: it had none).
pub(crate) struct Undo {
    seq: u64,
    group: String,
    key: (String, i32),
    before: Option<CommittedOffset>,
}

impl State {
    /// Debug builds: assert the invariants of one group after an operation on it.
    pub(crate) fn debug_check(&self, group_id: &str) {
        if let Some(g) = self.groups.get(group_id) {
            g.debug_check_invariants();
        }
    }
}

/// The offsets log plus the bookkeeping that lets concurrent commits share one fsync.
pub(crate) struct LogHandle {
    pub log: Mutex<Journal>,
    sync_lock: Mutex<()>,
    synced_seq: AtomicU64,
    /// Test failpoint: the next fsync in `sync_to` fails.
    #[cfg(test)]
    pub(crate) fail_next_sync: std::sync::atomic::AtomicBool,
}

impl LogHandle {
    /// Blocks until every append up to `seq` is on disk.
    pub(crate) fn sync_to(&self, seq: u64) -> Result<(), GroupError> {
        let _one_syncer = self.sync_lock.lock();
        if self.synced_seq.load(Ordering::Acquire) >= seq {
            return Ok(()); // Someone else's fsync covered us.
        }
        let (target, file) = {
            let log = self.log.lock();
            if log.is_poisoned() {
                // Never fsync again after a failure: it could report success for pages the
                // kernel already dropped and "confirm" a commit that is not on disk.
                return Err(GroupError::Poisoned);
            }
            match log.sync_handle()? {
                Some(file) => (log.written_seq(), file),
                // A replicated journal is waited for in `wait_durable`, never fsynced here.
                None => return Ok(()),
            }
        };
        #[cfg(test)]
        let file_sync = if self.fail_next_sync.swap(false, Ordering::SeqCst) {
            Err(std::io::Error::other("injected fsync failure"))
        } else {
            file.sync_data()
        };
        #[cfg(not(test))]
        let file_sync = file.sync_data();
        if let Err(source) = file_sync {
            // After a failed fsync the kernel may have dropped the dirty pages, so what the
            // file holds is unknown (PostgreSQL's "fsyncgate"). Refuse further writes; a
            // restart replays whatever really is on disk.
            self.log.lock().poison();
            return Err(GroupError::Io {
                path: crate::store::LOG_FILE_NAME.into(),
                source,
            });
        }
        self.synced_seq.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    fn mark_all_synced(&self, seq: u64) {
        self.synced_seq.fetch_max(seq, Ordering::AcqRel);
    }
}

/// The consumer group coordinator. See the crate docs.
pub struct GroupCoordinator {
    pub(crate) config: GroupConfig,
    pub(crate) catalog: Arc<dyn TopicCatalog>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) state: Mutex<State>,
    pub(crate) log: Arc<LogHandle>,
    /// Woken when a handler adds or moves a deadline, so the background loop re-plans.
    pub(crate) timers_changed: Notify,
    member_seq: AtomicU64,
    member_id_hasher: RandomState,
    /// Cluster mode: this node no longer leads the partition; the background loop stops.
    closed: AtomicBool,
}

impl std::fmt::Debug for GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCoordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GroupCoordinator {
    /// `dir` is e.g. `<data-dir>/__consumer_offsets`; committed offsets and groups (their last
    /// completed generation, see `Group::restore`) are replayed from it, a torn tail is
    /// truncated, and superseded records are compacted away.
    pub fn open(
        dir: &Path,
        config: GroupConfig,
        catalog: Arc<dyn TopicCatalog>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, GroupError> {
        let (log, records) = OffsetLog::open(dir)?;
        Ok(Self::from_records(
            Journal::File(log),
            records,
            config,
            catalog,
            clock,
        ))
    }

    /// Cluster mode: a coordinator of the groups of one `__consumer_offsets` partition that
    /// this node now leads, restored from the record values read back from that partition
    /// (oldest first). Its writes go to `log` and wait for the partition's ISR.
    pub fn open_replicated(
        values: impl IntoIterator<Item = Bytes>,
        log: Arc<dyn ReplicatedLog>,
        end: u64,
        mut config: GroupConfig,
        catalog: Arc<dyn TopicCatalog>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let records = crate::journal::decode_values(values);
        // Every commit waits for the ISR before it is answered.
        config.fsync = true;
        Self::from_records(
            Journal::Replicated {
                log,
                end,
                records: records.len() as u64,
            },
            records,
            config,
            catalog,
            clock,
        )
    }

    fn from_records(
        mut log: Journal,
        records: Vec<Record>,
        config: GroupConfig,
        catalog: Arc<dyn TopicCatalog>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let now_ms = clock.now_ms();
        let mut groups: HashMap<String, Group> = HashMap::new();
        for record in records {
            apply_record(&mut groups, record);
        }
        for g in groups.values_mut() {
            if let Some(stored) = g.stored.clone() {
                g.restore(&stored, now_ms);
            }
            if let Some(snapshot) = g.stored_consumer.clone() {
                crate::consumer::restore(g, &snapshot, config.consumer_session_timeout_ms, now_ms);
            }
            g.debug_check_invariants();
        }
        // An Empty group without offsets is gone (as retention would remove it); its stored
        // record is dropped by the compaction below.
        groups.retain(|_, g| !g.offsets.is_empty() || !g.has_no_members());
        let restored = groups.values().filter(|g| !g.members.is_empty()).count();
        if restored > 0 {
            tracing::info!(groups = restored, "restored group memberships from the log");
        }
        let live = live_records(&groups);
        // A file is compacted at every start; a replicated partition (loaded at every
        // leadership change) only when that saves as much as a compaction in service would.
        let superseded = log.records_in_file().saturating_sub(live.len() as u64);
        let worth = match log.replicated() {
            None => superseded > 0,
            Some(_) => worth_compacting(superseded, live.len()),
        };
        if worth {
            // Compaction only saves space: on a full disk the broker must still start and
            // serve (and append to) the file it has.
            if let Err(e) = log.rewrite(&live) {
                tracing::warn!(error = %e, "compacting the offsets log at startup failed; continuing with the uncompacted log");
            }
        }
        let state = State {
            groups,
            next_retention_check_ms: now_ms,
            undo: Vec::new(),
        };
        Arc::new(GroupCoordinator {
            config,
            catalog,
            clock,
            state: Mutex::new(state),
            log: Arc::new(LogHandle {
                log: Mutex::new(log),
                sync_lock: Mutex::new(()),
                synced_seq: AtomicU64::new(0),
                #[cfg(test)]
                fail_next_sync: std::sync::atomic::AtomicBool::new(false),
            }),
            timers_changed: Notify::new(),
            member_seq: AtomicU64::new(0),
            member_id_hasher: RandomState::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Runs the timers (session expiry, rebalance and sync deadlines, offsets retention) until
    /// `shutdown` turns true or its sender is dropped; flushes the offsets log on the way out.
    pub async fn run_background(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() || self.closed.load(Ordering::Acquire) {
                break;
            }
            let next_ms = self.tick();
            let wait_ms = (next_ms - self.clock.now_ms()).clamp(1, BACKGROUND_WAKE_MS_MAX);
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = self.timers_changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            }
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "flushing the offsets log at shutdown failed");
        }
    }

    /// Fires every timer due at `clock.now_ms()` and returns the time of the next deadline.
    /// The background loop calls this; tests call it after moving a `ManualClock`.
    pub fn tick(&self) -> i64 {
        let now_ms = self.clock.now_ms();
        let mut st = self.state.lock();
        for group in st.groups.values_mut() {
            crate::rebalance::on_timers(&self.config, group, now_ms);
            self.persist_group_locked(group);
            group.debug_check_invariants();
        }
        if now_ms >= st.next_retention_check_ms {
            st.next_retention_check_ms =
                now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1));
            self.expire_offsets_locked(&mut st, now_ms);
            self.maybe_compact_locked(&mut st);
        }
        next_deadline_ms(&st, now_ms)
    }

    /// Cluster mode: this node lost the partition these groups live in. Every waiting
    /// JoinGroup and SyncGroup is answered NOT_COORDINATOR now (so clients look the new
    /// coordinator up instead of waiting out a rebalance timeout), and the timers stop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut st = self.state.lock();
        for g in st.groups.values_mut() {
            for m in g.members.values_mut() {
                m.complete_join(crate::group::JoinOutcome::error(
                    &m.member_id.clone(),
                    crate::codes::NOT_COORDINATOR,
                ));
                m.complete_sync(crate::group::SyncOutcome::error(
                    crate::codes::NOT_COORDINATOR,
                ));
            }
        }
        drop(st);
        self.timers_changed.notify_one();
    }

    /// Makes every commit written so far durable.
    pub fn flush(&self) -> Result<(), GroupError> {
        let mut log = self.log.log.lock();
        let result = log.sync();
        let seq = log.written_seq();
        drop(log);
        if result.is_ok() {
            self.log.mark_all_synced(seq);
        }
        self.after_sync(&result);
        result
    }

    /// Fsyncs the log up to append `seq` on this thread (blocking), then settles the undo
    /// entries as `wait_durable` does.
    pub(crate) fn sync_blocking(&self, seq: u64) -> Result<(), GroupError> {
        let result = self.log.sync_to(seq);
        self.after_sync(&result);
        result
    }

    /// After an fsync: forget the undo entries it made durable, or, if it failed, put every
    /// offset changed since the last successful fsync back to its durable value.
    fn after_sync(&self, result: &Result<(), GroupError>) {
        if !self.config.fsync {
            return;
        }
        let synced = self.log.synced_seq.load(Ordering::Acquire);
        let mut st = self.state.lock();
        match result {
            Ok(()) => st.undo.retain(|u| u.seq > synced),
            Err(_) => self.rollback_unsynced_locked(&mut st, synced),
        }
    }

    /// Puts back the value each offset had before every append after `synced_seq`, newest
    /// first, so memory equals what the disk holds for certain. Only called once the log is
    /// poisoned, so no later append can interleave.
    fn rollback_unsynced_locked(&self, st: &mut State, synced_seq: u64) {
        let undo = std::mem::take(&mut st.undo);
        let mut restored = 0usize;
        for u in undo.into_iter().rev().filter(|u| u.seq > synced_seq) {
            restored += 1;
            let g = st
                .groups
                .entry(u.group.clone())
                .or_insert_with(|| Group::new(&u.group, None));
            match u.before {
                Some(v) => {
                    g.offsets.insert(u.key, v);
                }
                None => {
                    g.offsets.remove(&u.key);
                }
            }
        }
        if restored > 0 {
            tracing::error!(
                offsets = restored,
                "offsets log fsync failed: committed offsets changed since the last successful fsync are back to their values on disk"
            );
        }
    }

    /// The committed offsets of `group` as (topic, partition, offset), sorted.
    pub fn committed_offsets(&self, group: &str) -> Vec<(String, i32, i64)> {
        let st = self.state.lock();
        st.groups
            .get(group)
            .map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), v)| (t.clone(), *p, v.offset))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kafka's member id shape: `<client id>-<uuid>`.
    pub(crate) fn new_member_id(&self, client_id: &str) -> String {
        let n = self.member_seq.fetch_add(1, Ordering::Relaxed);
        let a = self.member_id_hasher.hash_one((n, 0u8));
        let b = self.member_id_hasher.hash_one((n, 1u8));
        let x = (u128::from(a) << 64) | u128::from(b);
        let hex = format!("{x:032x}");
        format!(
            "{client_id}-{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// Appends records that change committed offsets (commits and tombstones) and, with fsync
    /// configured, remembers the values they replace until an fsync covers them (see
    /// `State::undo`). Call with the state lock held, before changing memory.
    pub(crate) fn append_offsets_locked(
        &self,
        st: &mut State,
        records: &[Record],
    ) -> Result<u64, GroupError> {
        let seq = self.append_locked(records)?;
        if !self.config.fsync {
            return Ok(seq);
        }
        let before = |st: &State, group: &str, key: &(String, i32)| {
            st.groups
                .get(group)
                .and_then(|g| g.offsets.get(key))
                .cloned()
        };
        let mut undo = Vec::new();
        for r in records {
            match r {
                Record::Commit {
                    group,
                    topic,
                    partition,
                    ..
                }
                | Record::OffsetTombstone {
                    group,
                    topic,
                    partition,
                } => {
                    let key = (topic.clone(), *partition);
                    undo.push(Undo {
                        seq,
                        group: group.clone(),
                        before: before(st, group, &key),
                        key,
                    });
                }
                Record::GroupTombstone { group } => {
                    if let Some(g) = st.groups.get(group) {
                        for (key, v) in &g.offsets {
                            undo.push(Undo {
                                seq,
                                group: group.clone(),
                                key: key.clone(),
                                before: Some(v.clone()),
                            });
                        }
                    }
                }
                Record::GroupMetadata(_) | Record::ConsumerGroup { .. } => {}
            }
        }
        st.undo.extend(undo);
        Ok(seq)
    }

    /// Appends records to the log (page cache only). Call with the state lock held, before
    /// changing memory, so memory is never ahead of the file. Records that change offsets go
    /// through `append_offsets_locked`.
    pub(crate) fn append_locked(&self, records: &[Record]) -> Result<u64, GroupError> {
        if records.is_empty() {
            return Ok(self.log.log.lock().written_seq());
        }
        self.log.log.lock().append(records)
    }

    /// Writes a group metadata record if the group completed a generation (or became Empty)
    /// since its last one. Call with the state lock held, after any operation that can
    /// complete a rebalance.
    ///
    /// The record goes to the page cache only: SyncGroup answers are not held back for an
    /// fsync (the assignment is already sent by then). A later fsynced commit, the shutdown
    /// flush or compaction makes it durable; a crash before that restores the previous
    /// generation, whose members get ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID and rejoin.
    pub(crate) fn persist_group_locked(&self, g: &mut Group) {
        self.persist_classic_locked(g);
        self.persist_consumer_locked(g);
    }

    /// Writes a KIP-848 group's record when what it stores changed (`consumer::persist`).
    /// Not waited for: a member that saw a newer epoch than a restart restores is fenced and
    /// rejoins.
    fn persist_consumer_locked(&self, g: &mut Group) {
        let Some(cg) = &g.consumer else {
            return;
        };
        let snapshot = crate::consumer::snapshot(cg);
        if g.stored_consumer.as_ref() == Some(&snapshot) {
            return;
        }
        let record = Record::ConsumerGroup {
            group: g.group_id.clone(),
            snapshot: snapshot.clone(),
        };
        if !record.encode(&mut Vec::new()) {
            tracing::warn!(group = %g.group_id, "consumer group too large to store; its members will rejoin after a restart");
            return;
        }
        match self.append_locked(std::slice::from_ref(&record)) {
            Ok(_) => g.stored_consumer = Some(snapshot),
            Err(e) => {
                tracing::error!(group = %g.group_id, error = %e, "writing consumer group failed")
            }
        }
    }

    fn persist_classic_locked(&self, g: &mut Group) {
        if !std::mem::take(&mut g.metadata_dirty) {
            return;
        }
        // A KIP-848 group just turned classic (`consumer::downgrade`) is stored at once, even
        // mid-rebalance, so that a restart does not bring the KIP-848 group back.
        let kind_changed = g.consumer.is_none() && g.stored_consumer.is_some();
        if !kind_changed && !matches!(g.state, GroupState::Stable | GroupState::Empty) {
            // A new rebalance began in the same operation: only completed generations are
            // stored, and the next one will be written when it completes.
            return;
        }
        let mut record = Record::GroupMetadata(g.to_stored());
        let mut scratch = Vec::new();
        if !record.encode(&mut scratch) {
            // Too big for one record (1 MiB): store the generation without its members, so
            // that a restart restores it Empty and the members rejoin.
            tracing::warn!(group = %g.group_id, members = g.members.len(), "group metadata too large to store; its members will rejoin after a restart");
            let mut reduced = g.to_stored();
            reduced.members.clear();
            reduced.leader_id = None;
            record = Record::GroupMetadata(reduced);
        }
        match self.append_locked(std::slice::from_ref(&record)) {
            Ok(_) => {
                if let Record::GroupMetadata(stored) = record {
                    g.stored = Some(stored);
                    if g.consumer.is_none() {
                        g.stored_consumer = None;
                    }
                }
            }
            Err(e) => {
                tracing::error!(group = %g.group_id, error = %e, "writing group metadata failed")
            }
        }
    }

    /// Persists the group's metadata if needed (see `persist_group_locked`).
    pub(crate) fn persist_locked(&self, st: &mut State, group_id: &str) {
        if let Some(g) = st.groups.get_mut(group_id) {
            self.persist_group_locked(g);
        }
    }

    /// Waits until append `seq` is durable, if the config asks for fsync.
    pub(crate) async fn wait_durable(&self, seq: u64) -> Result<(), GroupError> {
        if !self.config.fsync {
            return Ok(());
        }
        let replicated = self.log.log.lock().replicated();
        if let Some(log) = replicated {
            let result = log
                .wait_replicated(seq)
                .await
                .map_err(|code| GroupError::Replication { code });
            if result.is_ok() {
                self.log.mark_all_synced(seq);
            }
            self.after_sync(&result);
            return result;
        }
        let handle = Arc::clone(&self.log);
        let result = match tokio::task::spawn_blocking(move || handle.sync_to(seq)).await {
            Ok(r) => r,
            Err(e) => Err(GroupError::Io {
                path: crate::store::LOG_FILE_NAME.into(),
                source: std::io::Error::other(e.to_string()),
            }),
        };
        self.after_sync(&result);
        result
    }

    fn maybe_compact_locked(&self, st: &mut State) {
        let live_count: usize = st
            .groups
            .values()
            .map(|g| {
                g.offsets.len()
                    + usize::from(g.stored.is_some())
                    + usize::from(g.stored_consumer.is_some())
            })
            .sum();
        let mut log = self.log.log.lock();
        let superseded = log.records_in_file().saturating_sub(live_count as u64);
        if !worth_compacting(superseded, live_count) {
            return;
        }
        let live = live_records(&st.groups);
        match log.rewrite(&live) {
            Ok(()) if log.replicated().is_some() => {
                // The checkpoint is not replicated yet: waits go on as they were.
            }
            Ok(()) => {
                let seq = log.written_seq();
                drop(log);
                self.log.mark_all_synced(seq);
                // The rewrite made every offset in memory durable.
                st.undo.clear();
            }
            Err(e) => tracing::error!(error = %e, "compacting the offsets log failed"),
        }
    }
}

/// Whether a compaction pays: many superseded records, more than the live ones.
fn worth_compacting(superseded: u64, live: usize) -> bool {
    superseded > COMPACT_SUPERSEDED_RECORDS_MIN && superseded > live as u64
}

/// Replays one record into the in-memory groups.
fn apply_record(groups: &mut HashMap<String, Group>, record: Record) {
    match record {
        Record::Commit {
            group,
            topic,
            partition,
            value,
        } => {
            groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, None))
                .offsets
                .insert((topic, partition), value);
        }
        Record::OffsetTombstone {
            group,
            topic,
            partition,
        } => {
            if let Some(g) = groups.get_mut(&group) {
                g.offsets.remove(&(topic, partition));
            }
        }
        Record::GroupTombstone { group } => {
            groups.remove(&group);
        }
        Record::GroupMetadata(stored) => {
            let id = stored.group.clone();
            let g = groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(&id, None));
            g.stored = Some(stored);
            g.stored_consumer = None;
        }
        Record::ConsumerGroup { group, snapshot } => {
            groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, None))
                .stored_consumer = Some(snapshot);
        }
    }
}

fn live_records(groups: &HashMap<String, Group>) -> Vec<Record> {
    let mut ids: Vec<&String> = groups.keys().collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        if let Some(stored) = &groups[id].stored {
            out.push(Record::GroupMetadata(stored.clone()));
        }
        // After the classic record: the later of the two says what the group is.
        if let Some(snapshot) = &groups[id].stored_consumer {
            out.push(Record::ConsumerGroup {
                group: id.clone(),
                snapshot: snapshot.clone(),
            });
        }
        for ((topic, partition), value) in &groups[id].offsets {
            out.push(Record::Commit {
                group: id.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: value.clone(),
            });
        }
    }
    out
}

fn next_deadline_ms(st: &State, now_ms: i64) -> i64 {
    let mut next = st.next_retention_check_ms;
    for g in st.groups.values() {
        debug_assert!(!g.is(GroupState::Dead));
        if let Some(d) = crate::rebalance::next_deadline_ms(g) {
            next = next.min(d);
        }
    }
    next.max(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::stored_group;

    /// Compaction keeps the latest group metadata record per group, ahead of its offsets, and
    /// nothing of a group deleted after it.
    #[test]
    fn live_records_keep_the_latest_group_metadata() {
        let mut groups = HashMap::new();
        let mut newer = stored_group("g", 2);
        newer.generation_id = 8;
        let commit = Record::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: crate::store::CommittedOffset {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_ms: 5,
                expire_ms: -1,
            },
        };
        for r in [
            Record::GroupMetadata(stored_group("g", 3)),
            commit.clone(),
            Record::GroupMetadata(newer.clone()),
            Record::GroupMetadata(stored_group("h", 1)),
            Record::GroupTombstone { group: "h".into() },
        ] {
            apply_record(&mut groups, r);
        }
        assert_eq!(
            live_records(&groups),
            vec![Record::GroupMetadata(newer), commit]
        );
    }
}
