//! The transaction coordinator (KIP-98 with the KIP-360 and KIP-447 rules): one state per
//! transactional id, kept durable in the transaction log (`store`), and the domain calls the
//! Kafka handlers (`handlers::txn`) adapt: init a producer, add partitions and groups, stage
//! offsets, end a transaction.
//!
//! Ending a transaction is Kafka's two-phase dance, done locally: the state moves to
//! PrepareCommit or PrepareAbort and is made durable; a marker (control batch) is written to
//! every partition of the transaction and made durable; for a commit the staged offsets are
//! written to their groups; then the state becomes CompleteCommit or CompleteAbort. A crash
//! between the steps leaves a Prepare state in the log, which the coordinator completes at
//! start (markers written twice are harmless: a second marker ends nothing). An open
//! transaction that outlives `transaction.timeout.ms` is aborted by the background task every
//! `transaction.abort.timed.out.transaction.cleanup.interval.ms`, with a bumped epoch, so the
//! producer that owned it is fenced.
//!
//! Requests for one id that arrive while its markers are being written get
//! CONCURRENT_TRANSACTIONS and retry, as with Kafka.

pub mod state;
pub mod store;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strom_group::{Committer, CoordinatorError, NewOffset};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;
use crate::topics::now_ms;
pub use state::{PendingOffset, TxnError, TxnMeta, TxnState};
use store::TxnStore;

/// Settings of the coordinator (Kafka's names).
#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub cleanup_interval_ms: u64,
}

struct Inner {
    txns: BTreeMap<String, TxnMeta>,
    /// producer id -> transactional id, for the produce path's partition check.
    by_producer: HashMap<i64, String>,
    /// Ids whose markers are being written now: a second completion (the cleanup task racing
    /// an EndTxn) must not write them again.
    completing: HashSet<String>,
    store: TxnStore,
}

impl Inner {
    /// A copy of the state of `id` to transition; an unknown id is INVALID_PRODUCER_ID_MAPPING.
    fn known(&self, id: &str) -> Result<TxnMeta, TxnError> {
        self.txns
            .get(id)
            .cloned()
            .ok_or(TxnError::InvalidProducerIdMapping)
    }

    fn put(&mut self, meta: TxnMeta) -> Result<(), TxnError> {
        let id = meta.transactional_id.clone();
        let previous = self.txns.insert(id.clone(), meta);
        if let Some(p) = &previous {
            self.by_producer.remove(&p.producer_id);
        }
        let meta = &self.txns[&id];
        self.by_producer.insert(meta.producer_id, id.clone());
        let txns = &self.txns;
        if let Err(e) = self.store.write(meta, || txns.values().collect()) {
            tracing::error!(error = %e, transactional_id = %id, "writing the transaction log failed");
            // Memory must not run ahead of the log: put the old state back.
            match previous {
                Some(p) => {
                    self.by_producer.insert(p.producer_id, id.clone());
                    self.txns.insert(id, p);
                }
                None => {
                    self.txns.remove(&id);
                }
            }
            return Err(TxnError::Storage);
        }
        Ok(())
    }
}

pub struct TxnCoordinator {
    inner: Mutex<Inner>,
    pub config: TxnConfig,
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
        let by_producer = txns
            .values()
            .map(|m| (m.producer_id, m.transactional_id.clone()))
            .collect();
        Ok(TxnCoordinator {
            inner: Mutex::new(Inner {
                txns,
                by_producer,
                completing: HashSet::new(),
                store,
            }),
            config,
        })
    }

    /// A copy of one id's state.
    pub fn describe(&self, id: &str) -> Option<TxnMeta> {
        self.inner.lock().txns.get(id).cloned()
    }

    /// Copies of every state, in id order.
    pub fn list(&self) -> Vec<TxnMeta> {
        self.inner.lock().txns.values().cloned().collect()
    }

    /// The produce path's check (KIP-890 part 1, done in-process): may this producer write
    /// transactional batches to this partition now?
    pub fn partition_in_txn(&self, producer_id: i64, epoch: i16, topic: &str, index: i32) -> bool {
        let inner = self.inner.lock();
        let Some(meta) = inner
            .by_producer
            .get(&producer_id)
            .and_then(|id| inner.txns.get(id))
        else {
            return false;
        };
        meta.producer_id == producer_id
            && meta.producer_epoch == epoch
            && meta.state == TxnState::Ongoing
            && meta.partitions.contains(&(topic.to_string(), index))
    }

    /// InitProducerId with a transactional id.
    pub async fn init_producer(
        &self,
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
        let open = {
            let mut inner = self.inner.lock();
            let Some(meta) = inner.txns.get(id).cloned() else {
                let pid = crate::blocking::off_worker(|| broker.allocate_producer_id())
                    .map_err(|_| TxnError::Storage)?;
                let meta = TxnMeta::new(id, pid, timeout_ms, now);
                crate::blocking::off_worker(|| inner.put(meta))?;
                return Ok((pid, 0));
            };
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
        crate::blocking::off_worker(|| inner.put(meta))?;
        Ok(answer)
    }

    /// AddPartitionsToTxn for one transaction. `Err` is an error for every partition;
    /// otherwise each partition has its own answer (unknown ones UNKNOWN_TOPIC_OR_PARTITION,
    /// the rest OPERATION_NOT_ATTEMPTED then).
    pub fn add_partitions(
        &self,
        broker: &Broker,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
        verify_only: bool,
    ) -> Result<Vec<PartitionResult>, TxnError> {
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
        if !already {
            meta.begin(now_ms());
            meta.partitions.extend(partitions.iter().cloned());
            crate::blocking::off_worker(|| inner.put(meta))?;
        }
        Ok(partitions.into_iter().map(|tp| (tp, Ok(()))).collect())
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let mut inner = self.inner.lock();
        let mut meta = inner.known(id)?;
        meta.check_producer(producer_id, epoch)?;
        if meta.state == TxnState::Ongoing && meta.groups.contains(group) {
            return Ok(());
        }
        meta.begin(now_ms());
        meta.groups.insert(group.to_string());
        crate::blocking::off_worker(|| inner.put(meta))
    }

    /// TxnOffsetCommit: checks the group member (KIP-447) and stages the offsets. The result
    /// is one answer per offset (a Kafka error code on failure).
    pub fn stage_offsets(
        &self,
        broker: &Broker,
        id: &str,
        (producer_id, epoch): (i64, i16),
        group: &str,
        committer: Committer<'_>,
        offsets: Vec<PendingOffset>,
    ) -> Result<Vec<Result<(), i16>>, i16> {
        broker
            .coordinator_for(group)?
            .validate_transactional_commit(group, committer)
            .map_err(|e| e.kafka_code())?;
        let mut inner = self.inner.lock();
        let mut meta = inner
            .txns
            .get(id)
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
        if staged {
            meta.update_ms = now_ms();
            crate::blocking::off_worker(|| inner.put(meta))
                .map_err(|_| E::CoordinatorNotAvailable.code())?;
        }
        Ok(results)
    }

    /// EndTxn: commit or abort the open transaction.
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let now = now_ms();
        let timed_out = {
            let inner = self.inner.lock();
            let meta = inner
                .txns
                .get(id)
                .ok_or(TxnError::InvalidProducerIdMapping)?;
            if meta.producer_id != producer_id {
                return Err(TxnError::InvalidProducerIdMapping);
            }
            if meta.producer_epoch != epoch {
                return Err(TxnError::ProducerFenced);
            }
            match (meta.state, commit) {
                (TxnState::Ongoing, _) => {}
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    return Ok(())
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                    return Err(TxnError::ConcurrentTransactions)
                }
                _ => return Err(TxnError::InvalidTxnState),
            }
            meta.timed_out(now)
        };
        if timed_out {
            // Past its timeout the transaction belongs to the coordinator, which aborts it
            // (the cleanup task may simply not have run yet): the producer is fenced.
            self.abort_fenced(broker, id).await?;
            return Err(TxnError::ProducerFenced);
        }
        self.complete(broker, id, commit, None, Some((producer_id, epoch)))
            .await
    }

    /// Aborts an open transaction at a bumped epoch (fencing its producer).
    async fn abort_fenced(&self, broker: &Arc<Broker>, id: &str) -> Result<(), TxnError> {
        let bumped = {
            let inner = self.inner.lock();
            let Some(mut meta) = inner.txns.get(id).cloned() else {
                return Ok(());
            };
            if meta.state != TxnState::Ongoing {
                return Ok(());
            }
            if meta.bump_epoch().is_none() {
                // Kafka aborts at the same epoch when it cannot bump; the next InitProducerId
                // moves to a new producer id.
                tracing::warn!(transactional_id = id, "producer epoch exhausted at abort");
            }
            meta.producer_epoch
        };
        self.complete(broker, id, false, Some(bumped), None).await
    }

    /// The two phases of an end (see the module docs), from an Ongoing or Prepare state.
    /// `epoch` overrides the marker epoch (a fence).
    async fn complete(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        mut commit: bool,
        epoch: Option<i16>,
        owner: Option<(i64, i16)>,
    ) -> Result<(), TxnError> {
        let meta = {
            let mut inner = self.inner.lock();
            let mut meta = inner.known(id)?;
            // EndTxn's producer must still own the open transaction now, under the lock (the
            // cleanup task may have aborted it since EndTxn's first check).
            if let Some((pid, e)) = owner {
                if meta.producer_id != pid {
                    return Err(TxnError::InvalidProducerIdMapping);
                }
                if meta.producer_epoch != e {
                    return Err(TxnError::ProducerFenced);
                }
                if meta.state != TxnState::Ongoing {
                    return Err(TxnError::ConcurrentTransactions);
                }
            }
            match meta.state {
                TxnState::Ongoing => {}
                // A Prepare state finishes the way it was decided, whoever asks.
                TxnState::PrepareCommit => commit = true,
                TxnState::PrepareAbort => commit = false,
                // Completed meanwhile (a racing EndTxn or cleanup): nothing left to do.
                _ => return Ok(()),
            }
            if !inner.completing.insert(id.to_string()) {
                return Err(TxnError::ConcurrentTransactions);
            }
            if meta.state == TxnState::Ongoing {
                if let Some(epoch) = epoch {
                    if epoch != meta.producer_epoch {
                        meta.last_producer_id = meta.producer_id;
                        meta.last_producer_epoch = meta.producer_epoch;
                        meta.producer_epoch = epoch;
                    }
                }
                meta.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                meta.update_ms = now_ms();
                let prepared = meta.clone();
                if let Err(e) = crate::blocking::off_worker(|| inner.put(prepared)) {
                    inner.completing.remove(id);
                    return Err(e);
                }
            }
            meta
        };
        let result = self.finish(broker, id, &meta, commit).await;
        self.inner.lock().completing.remove(id);
        result
    }

    /// Phase two of [`TxnCoordinator::complete`]: markers, offsets, the Complete state.
    async fn finish(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        meta: &TxnMeta,
        commit: bool,
    ) -> Result<(), TxnError> {
        write_markers(broker, meta, commit).await?;
        if commit {
            commit_offsets(broker, meta).await?;
        }
        let mut inner = self.inner.lock();
        let Some(mut done) = inner.txns.get(id).cloned() else {
            return Ok(());
        };
        if done.producer_id != meta.producer_id || !done.state.is_preparing() {
            return Ok(());
        }
        done.complete(commit, now_ms());
        crate::blocking::off_worker(|| inner.put(done))
    }

    /// Completes transactions left in a Prepare state (a crash, or markers that could not be
    /// written) and aborts the ones past their timeout. Run at start and by the cleanup task.
    pub async fn sweep(&self, broker: &Arc<Broker>) {
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
            let result = if timed_out {
                tracing::info!(transactional_id = %id, "aborting a transaction past its timeout");
                self.abort_fenced(broker, &id).await
            } else {
                self.complete(broker, &id, state == TxnState::PrepareCommit, None, None)
                    .await
            };
            if let Err(e) = result {
                tracing::warn!(transactional_id = %id, error = %e, "completing a transaction failed; retrying later");
            }
        }
    }

    /// The cleanup task: a sweep at start (recovery), then every cleanup interval.
    pub async fn run_background(
        broker: Arc<Broker>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let interval = Duration::from_millis(broker.txn.config.cleanup_interval_ms.max(1));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            broker.txn.sweep(&broker).await;
        }
    }
}

/// Writes the marker to every partition of the transaction and waits until all are durable.
/// A partition of a deleted topic is skipped.
async fn write_markers(broker: &Arc<Broker>, meta: &TxnMeta, commit: bool) -> Result<(), TxnError> {
    let mut waits = Vec::with_capacity(meta.partitions.len());
    for (topic, index) in &meta.partitions {
        let Some(p) = broker.topics.get(topic).and_then(|t| t.partition(*index)) else {
            continue;
        };
        let end = crate::append::append_marker(
            broker,
            &p,
            meta.producer_id,
            meta.producer_epoch,
            commit,
        )
        .map_err(|e| {
            tracing::warn!(topic, partition = index, error = %e, "writing a transaction marker failed");
            TxnError::Storage
        })?;
        waits.push((p, end));
    }
    for (p, end) in waits {
        broker
            .flusher
            .wait_durable(p, end)
            .await
            .map_err(|_| TxnError::Storage)?;
    }
    Ok(())
}

/// Writes a committed transaction's staged offsets to their groups.
async fn commit_offsets(broker: &Arc<Broker>, meta: &TxnMeta) -> Result<(), TxnError> {
    let mut by_group: BTreeMap<&str, Vec<NewOffset>> = BTreeMap::new();
    for o in &meta.pending_offsets {
        by_group.entry(&o.group).or_default().push(NewOffset {
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
        });
    }
    for (group, offsets) in by_group {
        // A group whose coordinator moved (cluster mode) cannot take the offsets here.
        let coordinator = broker
            .coordinator_for(group)
            .map_err(|_| TxnError::Storage)?;
        let results = coordinator.commit_transactional(group, &offsets).await;
        if results
            .iter()
            .any(|r| matches!(r, Err(CoordinatorError::Storage)))
        {
            return Err(TxnError::Storage);
        }
    }
    Ok(())
}
