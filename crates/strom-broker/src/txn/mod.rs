//! The transaction coordinator (KIP-98 with the KIP-360 and KIP-447 rules): one state per
//! transactional id, kept durable in the transaction log (`store`), and the domain calls the
//! Kafka handlers (`handlers::txn`) adapt: init a producer, add partitions and groups, stage
//! offsets, end a transaction.
//!
//! Ending a transaction is Kafka's two-phase dance (`end`): the PrepareCommit or PrepareAbort
//! decision is made durable; then a marker (control batch) is written to every partition of
//! the transaction and the state becomes CompleteCommit or CompleteAbort. Requests for the id
//! meanwhile get CONCURRENT_TRANSACTIONS and retry, as with Kafka. A crash between the phases
//! leaves a Prepare state in the log, which the coordinator completes at start (markers
//! written twice are harmless: a second marker ends nothing). An open transaction that outlives `transaction.timeout.ms` is aborted by the
//! background task every `transaction.abort.timed.out.transaction.cleanup.interval.ms`, with a
//! bumped epoch, so the producer that owned it is fenced.
//!
//! In cluster mode there is one coordinator per `__transaction_state` partition this node
//! leads (`crate::cluster::txns`); its states are written to that partition (`journal`), and
//! while a state waits for the partition's ISR its id answers CONCURRENT_TRANSACTIONS (Kafka's
//! pending state); a failed wait puts the previous state back. Markers for partitions led by
//! other nodes, and offsets for groups coordinated elsewhere, go over the inter-node RPC
//! (`crate::cluster::txn_calls`).

mod end;
pub mod journal;
pub mod state;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use journal::TxnJournal;
use parking_lot::Mutex;
use strom_group::{ReplicatedLog, ReplicationWait};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;
use crate::topics::now_ms;
pub use end::{commit_to_group, offsets_by_group};
pub use state::{PendingOffset, TxnError, TxnMeta, TxnState};
use store::TxnStore;

/// Settings of the coordinator (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub cleanup_interval_ms: u64,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`
    pub remove_expired_interval_ms: u64,
    /// `transaction.end.wait.for.markers` (see `end`)
    pub end_waits_for_markers: bool,
}

struct Inner {
    txns: BTreeMap<String, TxnMeta>,
    /// producer id -> transactional id, for the produce path's partition check.
    by_producer: HashMap<i64, String>,
    /// Ids whose markers are being written now: a second completion (the cleanup task racing
    /// an EndTxn) must not write them again.
    completing: HashSet<String>,
    /// Ids whose last state waits for the ISR (cluster mode): other requests for them get
    /// CONCURRENT_TRANSACTIONS meanwhile.
    pending: HashSet<String>,
    journal: TxnJournal,
}

/// A state written to a replicated log and not yet safe there.
struct PendingWrite {
    id: String,
    /// What memory holds for the id after the write (`None`: the id was forgotten).
    written: Option<TxnMeta>,
    previous: Option<TxnMeta>,
    wait: ReplicationWait,
}

impl Inner {
    /// The state of `id`, or `None` when unknown; CONCURRENT_TRANSACTIONS while a write of it
    /// is pending.
    fn get(&self, id: &str) -> Result<Option<&TxnMeta>, TxnError> {
        if self.pending.contains(id) {
            return Err(TxnError::ConcurrentTransactions);
        }
        Ok(self.txns.get(id))
    }

    /// A copy of the state of `id` to transition; an unknown id is INVALID_PRODUCER_ID_MAPPING.
    fn known(&self, id: &str) -> Result<TxnMeta, TxnError> {
        self.get(id)?
            .cloned()
            .ok_or(TxnError::InvalidProducerIdMapping)
    }

    /// Puts `meta` in memory; returns the state it replaced.
    fn install(&mut self, meta: TxnMeta) -> Option<TxnMeta> {
        let id = meta.transactional_id.clone();
        let pid = meta.producer_id;
        let previous = self.txns.insert(id.clone(), meta);
        if let Some(p) = &previous {
            self.by_producer.remove(&p.producer_id);
        }
        self.by_producer.insert(pid, id);
        previous
    }

    /// Undoes an [`Inner::install`].
    fn restore(&mut self, id: &str, previous: Option<TxnMeta>) {
        if let Some(m) = self.txns.remove(id) {
            self.by_producer.remove(&m.producer_id);
        }
        if let Some(p) = previous {
            self.install(p);
        }
    }

    /// Installs and writes a state. A file write is done when this returns; a replicated one
    /// must be settled ([`TxnCoordinator::settle`]) after the lock is released.
    fn put(&mut self, meta: TxnMeta) -> Result<Option<PendingWrite>, TxnError> {
        self.put_synced(meta, true)
    }

    /// [`Inner::put`] without the file's fsync, for a state that recovery can rebuild (a
    /// Complete state: without it the Prepare state before it is completed again).
    fn put_unsynced(&mut self, meta: TxnMeta) -> Result<Option<PendingWrite>, TxnError> {
        self.put_synced(meta, false)
    }

    fn put_synced(&mut self, meta: TxnMeta, sync: bool) -> Result<Option<PendingWrite>, TxnError> {
        let id = meta.transactional_id.clone();
        let written = meta.clone();
        let previous = self.install(meta);
        let txns = &self.txns;
        let result = self
            .journal
            .write(&txns[&id], sync, || txns.values().collect());
        self.after_write(id, Some(written), previous, result)
    }

    /// Forgets `id` (an expired transactional id) with a `removed` record.
    fn forget(&mut self, id: &str) -> Result<Option<PendingWrite>, TxnError> {
        let Some(previous) = self.txns.remove(id) else {
            return Ok(None);
        };
        self.by_producer.remove(&previous.producer_id);
        let mut tombstone = previous.clone();
        tombstone.removed = true;
        let txns = &self.txns;
        let result = self
            .journal
            .write(&tombstone, true, || txns.values().collect());
        self.after_write(id.to_string(), None, Some(previous), result)
    }

    fn after_write(
        &mut self,
        id: String,
        written: Option<TxnMeta>,
        previous: Option<TxnMeta>,
        result: Result<Option<ReplicationWait>, TxnError>,
    ) -> Result<Option<PendingWrite>, TxnError> {
        match result {
            Ok(None) => Ok(None),
            Ok(Some(wait)) => {
                self.pending.insert(id.clone());
                Ok(Some(PendingWrite {
                    id,
                    written,
                    previous,
                    wait,
                }))
            }
            Err(e) => {
                // Memory must not run ahead of the log: put the old state back.
                self.restore(&id, previous);
                Err(e)
            }
        }
    }
}

pub struct TxnCoordinator {
    inner: Mutex<Inner>,
    pub config: TxnConfig,
    /// Set when this node stops leading the coordinator's partition (cluster mode).
    closed: AtomicBool,
}

/// What an AddPartitionsToTxn asks for one partition, and its answer.
pub type PartitionResult = ((String, i32), Result<(), i16>);

impl TxnCoordinator {
    pub fn open(
        data_dir: &std::path::Path,
        fsync: bool,
        config: TxnConfig,
    ) -> std::io::Result<TxnCoordinator> {
        let (store, txns) = TxnStore::open(data_dir, fsync)?;
        Ok(Self::with_journal(TxnJournal::File(store), txns, config))
    }

    /// A coordinator of one `__transaction_state` partition, from the states read back from
    /// it, writing to it through `log`.
    /// `end` is the partition's log end and `records` its record count, as read.
    pub fn open_replicated(
        txns: BTreeMap<String, TxnMeta>,
        log: Arc<dyn ReplicatedLog>,
        (end, records): (u64, u64),
        config: TxnConfig,
    ) -> TxnCoordinator {
        let journal = TxnJournal::Replicated { log, end, records };
        Self::with_journal(journal, txns, config)
    }

    fn with_journal(
        journal: TxnJournal,
        txns: BTreeMap<String, TxnMeta>,
        config: TxnConfig,
    ) -> TxnCoordinator {
        let by_producer = txns
            .values()
            .map(|m| (m.producer_id, m.transactional_id.clone()))
            .collect();
        TxnCoordinator {
            inner: Mutex::new(Inner {
                txns,
                by_producer,
                completing: HashSet::new(),
                pending: HashSet::new(),
                journal,
            }),
            config,
            closed: AtomicBool::new(false),
        }
    }

    /// Stops the cleanup task (this node no longer leads the partition); requests still in
    /// flight fail at their next write.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Waits for a replicated write; on failure puts the previous state back (unless a later
    /// write replaced it) and answers NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE.
    async fn settle(&self, write: Option<PendingWrite>) -> Result<(), TxnError> {
        let Some(w) = write else {
            return Ok(());
        };
        let result = w.wait.await;
        let mut inner = self.inner.lock();
        inner.pending.remove(&w.id);
        if let Err(code) = result {
            if inner.txns.get(&w.id) == w.written.as_ref() {
                inner.restore(&w.id, w.previous);
            }
            return Err(journal::code_error(code));
        }
        Ok(())
    }

    /// A copy of one id's state.
    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.inner.lock().txns.get(id).cloned()
    }

    /// The partitions with offsets of `group` staged by a transaction that has not ended
    /// (Kafka's pending transactional offsets, which make OffsetFetch with `require_stable`
    /// answer UNSTABLE_OFFSET_COMMIT).
    pub fn pending_offsets_of(&self, group: &str) -> Vec<(String, i32)> {
        let inner = self.inner.lock();
        inner
            .txns
            .values()
            .flat_map(|meta| meta.pending_offsets.iter())
            .filter(|o| o.group == group)
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    /// Copies of every state, in id order.
    pub fn list(&self) -> Vec<TxnMeta> {
        self.inner.lock().txns.values().cloned().collect()
    }

    /// The produce path's check (KIP-890 part 1, done in-process): may this producer write
    /// transactional batches to this partition now? `None` when this coordinator does not
    /// know the producer id (cluster mode: another node may coordinate it).
    pub fn partition_in_txn(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        index: i32,
    ) -> Option<bool> {
        let inner = self.inner.lock();
        let meta = inner
            .by_producer
            .get(&producer_id)
            .and_then(|id| inner.txns.get(id))?;
        Some(
            meta.producer_id == producer_id
                && meta.producer_epoch == epoch
                && meta.state == TxnState::Ongoing
                && meta.partitions.contains(&(topic.to_string(), index)),
        )
    }

    /// InitProducerId with a transactional id.
    pub async fn init_producer(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let now = now_ms();
        let known = self.inner.lock().get(id)?.cloned();
        let Some(meta) = known else {
            return self.init_new(broker, id, timeout_ms, now).await;
        };
        let open = {
            if meta.state.is_preparing() {
                return Err(TxnError::ConcurrentTransactions);
            }
            if let Some((pid, epoch)) = expected {
                let current = pid == meta.producer_id && epoch == meta.producer_epoch;
                let retried = pid == meta.last_producer_id && epoch == meta.last_producer_epoch;
                if retried && meta.state != TxnState::Ongoing {
                    // The answer to this bump was lost: give it again.
                    return Ok((meta.producer_id, meta.producer_epoch));
                }
                if !current {
                    return Err(TxnError::ProducerFenced);
                }
            }
            meta.state == TxnState::Ongoing
        };
        if open {
            // A new session of the id fences the old one: abort its transaction at a
            // bumped epoch, so the zombie's late writes and EndTxn are refused.
            self.abort_fenced(broker, id).await?;
        }
        let (answer, write) = {
            let mut inner = self.inner.lock();
            let mut meta = inner.known(id)?;
            if meta.state.is_preparing() || meta.state == TxnState::Ongoing {
                return Err(TxnError::ConcurrentTransactions);
            }
            if meta.bump_epoch().is_none() {
                let pid = crate::blocking::off_worker(|| broker.allocate_producer_id())
                    .map_err(|_| TxnError::Storage)?;
                meta.rotate_producer_id(pid);
            }
            meta.timeout_ms = timeout_ms;
            meta.state = TxnState::Empty;
            meta.update_ms = now;
            let answer = (meta.producer_id, meta.producer_epoch);
            (answer, crate::blocking::off_worker(|| inner.put(meta))?)
        };
        self.settle(write).await?;
        Ok(answer)
    }

    /// InitProducerId for an id seen for the first time: a new producer id at epoch 0.
    async fn init_new(
        &self,
        broker: &Broker,
        id: &str,
        timeout_ms: i32,
        now: i64,
    ) -> Result<(i64, i16), TxnError> {
        let (pid, write) = {
            let mut inner = self.inner.lock();
            if inner.get(id)?.is_some() {
                // Another InitProducerId made it meanwhile.
                return Err(TxnError::ConcurrentTransactions);
            }
            let pid = crate::blocking::off_worker(|| broker.allocate_producer_id())
                .map_err(|_| TxnError::Storage)?;
            let meta = TxnMeta::new(id, pid, timeout_ms, now);
            (pid, crate::blocking::off_worker(|| inner.put(meta))?)
        };
        self.settle(write).await?;
        Ok((pid, 0))
    }

    /// AddPartitionsToTxn for one transaction. `Err` is an error for every partition;
    /// otherwise each partition has its own answer (unknown ones UNKNOWN_TOPIC_OR_PARTITION,
    /// the rest OPERATION_NOT_ATTEMPTED then).
    pub async fn add_partitions(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> Result<Vec<PartitionResult>, TxnError> {
        let write = {
            let mut inner = self.inner.lock();
            let mut meta = inner.known(id)?;
            meta.check_producer(producer_id, epoch)?;
            if verify_only {
                // KIP-890: is each partition part of the open transaction?
                let ongoing = meta.state == TxnState::Ongoing;
                return Ok(partitions
                    .into_iter()
                    .map(|tp| {
                        let ok = ongoing && meta.partitions.contains(&tp);
                        (
                            tp,
                            if ok {
                                Ok(())
                            } else {
                                Err(E::InvalidTxnState.code())
                            },
                        )
                    })
                    .collect());
            }
            let unknown: Vec<bool> = partitions
                .iter()
                .map(|(t, p)| broker.topics.get(t).and_then(|t| t.partition(*p)).is_none())
                .collect();
            if unknown.iter().any(|&u| u) {
                return Ok(partitions
                    .into_iter()
                    .zip(unknown)
                    .map(|(tp, u)| {
                        let code = if u {
                            E::UnknownTopicOrPartition
                        } else {
                            E::OperationNotAttempted
                        };
                        (tp, Err(code.code()))
                    })
                    .collect());
            }
            let already = meta.state == TxnState::Ongoing
                && partitions.iter().all(|tp| meta.partitions.contains(tp));
            if already {
                None
            } else {
                meta.begin(now_ms());
                meta.partitions.extend(partitions.iter().cloned());
                crate::blocking::off_worker(|| inner.put(meta))?
            }
        };
        self.settle(write).await?;
        Ok(partitions.into_iter().map(|tp| (tp, Ok(()))).collect())
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub async fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let write = {
            let mut inner = self.inner.lock();
            let mut meta = inner.known(id)?;
            meta.check_producer(producer_id, epoch)?;
            if meta.state == TxnState::Ongoing && meta.groups.contains(group) {
                return Ok(());
            }
            meta.begin(now_ms());
            meta.groups.insert(group.to_string());
            crate::blocking::off_worker(|| inner.put(meta))?
        };
        self.settle(write).await
    }

    /// Stages a group's offsets in the open transaction (TxnOffsetCommit, after the group
    /// coordinator checked the member). One answer per offset (a Kafka error code on
    /// failure), or one code for all.
    pub async fn stage_offsets(
        &self,
        broker: &Broker,
        id: &str,
        (producer_id, epoch): (i64, i16),
        group: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<Vec<Result<(), i16>>, i16> {
        let (results, write) =
            self.stage_locked(broker, id, (producer_id, epoch), group, offsets)?;
        self.settle(write)
            .await
            .map_err(crate::handlers::txn::txn_error_code)?;
        Ok(results)
    }

    /// [`TxnCoordinator::stage_offsets`] under the lock.
    #[allow(clippy::type_complexity)]
    fn stage_locked(
        &self,
        broker: &Broker,
        id: &str,
        (producer_id, epoch): (i64, i16),
        group: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<(Vec<Result<(), i16>>, Option<PendingWrite>), i16> {
        let mut inner = self.inner.lock();
        let mut meta = inner
            .get(id)
            .map_err(crate::handlers::txn::txn_error_code)?
            .cloned()
            .ok_or(E::InvalidProducerIdMapping.code())?;
        if meta.producer_id != producer_id {
            return Err(E::InvalidProducerIdMapping.code());
        }
        if meta.producer_epoch != epoch {
            // The group coordinator's answer to a stale epoch.
            return Err(E::InvalidProducerEpoch.code());
        }
        if meta.state.is_preparing() {
            return Err(E::ConcurrentTransactions.code());
        }
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            return Err(E::InvalidTxnState.code());
        }
        let mut results = Vec::with_capacity(offsets.len());
        let mut staged = false;
        for o in offsets {
            let known = broker
                .topics
                .get(&o.topic)
                .and_then(|t| t.partition(o.partition))
                .is_some();
            if !known {
                results.push(Err(E::UnknownTopicOrPartition.code()));
                continue;
            }
            meta.pending_offsets.retain(|p| {
                !(p.group == o.group && p.topic == o.topic && p.partition == o.partition)
            });
            meta.pending_offsets.push(o);
            staged = true;
            results.push(Ok(()));
        }
        let mut write = None;
        if staged {
            meta.update_ms = now_ms();
            write = crate::blocking::off_worker(|| inner.put(meta))
                .map_err(|_| E::CoordinatorNotAvailable.code())?;
        }
        Ok((results, write))
    }

    /// Completes transactions left in a Prepare state (a crash, or markers that could not be
    /// written) and aborts the ones past their timeout. Run at start and by the cleanup task.
    pub async fn sweep(self: &Arc<Self>, broker: &Arc<Broker>) {
        let now = now_ms();
        let work: Vec<(String, TxnState, bool)> = self
            .inner
            .lock()
            .txns
            .values()
            .filter(|m| m.state.is_preparing() || m.timed_out(now))
            .map(|m| (m.transactional_id.clone(), m.state, m.timed_out(now)))
            .collect();
        for (id, state, timed_out) in work {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let result = if timed_out {
                tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                self.abort_fenced(broker, &id).await
            } else {
                let commit = state == TxnState::PrepareCommit;
                self.complete(broker, &id, commit, (None, None), end::Markers::Await)
                    .await
            };
            if let Err(e) = result {
                tracing::warn!(transactional_id = %id, error = %e, "completing a transaction failed; retrying later");
            }
        }
    }

    /// Forgets the transactional ids with no transaction open and no change for
    /// `transactional.id.expiration.ms` (Kafka's `removeExpiredTransactionalIds`): their
    /// producers start over with a new producer id at their next InitProducerId.
    pub async fn expire_ids(&self, now: i64) {
        let expiry = self.config.id_expiration_ms;
        let writes: Vec<(String, Result<Option<PendingWrite>, TxnError>)> = {
            let mut inner = self.inner.lock();
            let expired: Vec<String> = inner
                .txns
                .values()
                .filter(|m| {
                    matches!(
                        m.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    ) && now.saturating_sub(m.update_ms) > expiry
                        && !inner.pending.contains(&m.transactional_id)
                        && !inner.completing.contains(&m.transactional_id)
                })
                .map(|m| m.transactional_id.clone())
                .collect();
            expired
                .into_iter()
                .map(|id| {
                    let write = crate::blocking::off_worker(|| inner.forget(&id));
                    (id, write)
                })
                .collect()
        };
        for (id, write) in writes {
            match write {
                Ok(write) => match self.settle(write).await {
                    Ok(()) => {
                        tracing::info!(transactional_id = %id, "expired an idle transactional id")
                    }
                    Err(e) => {
                        tracing::warn!(transactional_id = %id, error = %e, "expiring a transactional id failed; it stays")
                    }
                },
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "expiring a transactional id failed; it stays")
                }
            }
        }
    }

    /// The cleanup task: a sweep at start (recovery, or a new leader's load), then every
    /// cleanup interval, until the broker shuts down or the coordinator is closed; expired
    /// ids are looked for every `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub async fn run_background(
        self: Arc<Self>,
        broker: Arc<Broker>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let interval = Duration::from_millis(self.config.cleanup_interval_ms.max(1));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let expire_every = Duration::from_millis(self.config.remove_expired_interval_ms.max(1));
        let mut last_expiry = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            self.sweep(&broker).await;
            if last_expiry.elapsed() >= expire_every {
                last_expiry = tokio::time::Instant::now();
                self.expire_ids(now_ms()).await;
            }
        }
    }
}
