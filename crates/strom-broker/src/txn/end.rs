//! Ending a transaction (EndTxn, a fence, a timeout, or recovery of a Prepare state), in
//! Kafka's two phases.
//!
//! Phase one moves the state to PrepareCommit or PrepareAbort and makes it durable (in
//! cluster mode: on the ISR of its `__transaction_state` partition). Phase two writes a marker
//! to every partition of the transaction and then the Complete state. A crash in between
//! leaves the Prepare state, which the sweep completes at start.
//!
//! With `transaction.end.wait.for.markers=false`, EndTxn answers after phase one, as Kafka's
//! `TransactionCoordinator` does, and phase two runs in the background; until it is done the
//! id's requests get CONCURRENT_TRANSACTIONS (its state is still Prepare) and read_committed
//! consumers stop at the transaction (the LSO moves with the markers). That is not the default
//! because clients that start their next transaction at once (librdkafka, the Java client)
//! then wait out a 20 ms retry backoff on AddPartitionsToTxn, longer than phase two takes:
//! `scripts/txn-bench` ran transactions of 100 records at less than half the rate
//! (docs/transactions.md).
//! By default EndTxn answers after phase two.
//!
//! A committed transaction's staged offsets go to their groups between the phases, before
//! EndTxn answers: Strom keeps them in the coordinator, so a group has no pending offsets to
//! answer UNSTABLE_OFFSET_COMMIT with (KIP-447), and a consumer taking the group over right
//! after the commit must already find them.

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_group::{CoordinatorError, NewOffset};

use super::{PendingOffset, TxnCoordinator, TxnError, TxnMeta, TxnState};
use crate::broker::Broker;
use crate::topics::now_ms;

/// Whether [`TxnCoordinator::complete`] waits for phase two.
pub(super) enum Markers {
    /// The caller carries on only with the transaction ended (a fence, a sweep, EndTxn by
    /// default).
    Await,
    /// EndTxn as Kafka's: answer once the decision is durable.
    Background,
}

/// An id in `completing`, removed when dropped: when phase two ends, and also when a request is
/// dropped half-way, so the id is never left refusing everything.
struct Completing {
    coordinator: Arc<TxnCoordinator>,
    id: String,
}

impl Drop for Completing {
    fn drop(&mut self) {
        self.coordinator.inner.lock().completing.remove(&self.id);
    }
}

impl TxnCoordinator {
    /// EndTxn: commit or abort the open transaction.
    pub async fn end_txn(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let now = now_ms();
        let timed_out = {
            let inner = self.inner.lock();
            let meta = inner.get(id)?.ok_or(TxnError::InvalidProducerIdMapping)?;
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
        let owner = Some((producer_id, epoch));
        let markers = if self.config.end_waits_for_markers {
            Markers::Await
        } else {
            Markers::Background
        };
        self.complete(broker, id, commit, (None, owner), markers)
            .await
    }

    /// Aborts an open transaction at a bumped epoch (fencing its producer), markers included:
    /// the InitProducerId or EndTxn that asked carries on with the transaction ended.
    pub(super) async fn abort_fenced(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        id: &str,
    ) -> Result<(), TxnError> {
        let bumped = {
            let inner = self.inner.lock();
            let Some(mut meta) = inner.get(id)?.cloned() else {
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
        self.complete(broker, id, false, (Some(bumped), None), Markers::Await)
            .await
    }

    /// The two phases of an end (see the module docs), from an Ongoing or Prepare state.
    /// `epoch` overrides the marker epoch (a fence).
    pub(super) async fn complete(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        id: &str,
        mut commit: bool,
        (epoch, owner): (Option<i16>, Option<(i64, i16)>),
        markers: Markers,
    ) -> Result<(), TxnError> {
        let (meta, write) = {
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
            let mut write = None;
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
                match crate::blocking::off_worker(|| inner.put(prepared)) {
                    Ok(w) => write = w,
                    Err(e) => {
                        inner.completing.remove(id);
                        return Err(e);
                    }
                }
            }
            (meta, write)
        };
        let guard = Completing {
            coordinator: self.clone(),
            id: id.to_string(),
        };
        // Phase one: the decision must be safe before any marker is written.
        self.settle(write).await?;
        if commit {
            // Before the answer (see the module docs).
            if broker.cluster.get().is_some() {
                crate::cluster::txn_calls::commit_offsets(broker, &meta).await?;
            } else {
                commit_offsets(broker, &meta).await?;
            }
        }
        match markers {
            Markers::Await => self.finish(broker, id, &meta, commit).await,
            Markers::Background => {
                let (this, broker, id) = (self.clone(), broker.clone(), id.to_string());
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = this.finish(&broker, &id, &meta, commit).await {
                        tracing::warn!(transactional_id = %id, error = %e, "completing a transaction failed; the cleanup task retries");
                    }
                });
                Ok(())
            }
        }
    }

    /// Phase two of [`TxnCoordinator::complete`]: the markers, then the Complete state.
    async fn finish(
        &self,
        broker: &Arc<Broker>,
        id: &str,
        meta: &TxnMeta,
        commit: bool,
    ) -> Result<(), TxnError> {
        if broker.cluster.get().is_some() {
            crate::cluster::txn_calls::write_markers(broker, meta, commit).await?;
        } else {
            write_markers(broker, meta, commit).await?;
        }
        let write = {
            let mut inner = self.inner.lock();
            let Some(mut done) = inner.txns.get(id).cloned() else {
                return Ok(());
            };
            if done.producer_id != meta.producer_id || !done.state.is_preparing() {
                return Ok(());
            }
            done.complete(commit, now_ms());
            // Not fsynced: lost in a crash, it leaves the Prepare state, which recovery
            // completes again; the next durable write of the file makes it durable too.
            crate::blocking::off_worker(|| inner.put_unsynced(done))?
        };
        self.settle(write).await
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

/// A committed transaction's staged offsets, by group.
pub fn offsets_by_group(meta: &TxnMeta) -> BTreeMap<&str, Vec<PendingOffset>> {
    let mut by_group: BTreeMap<&str, Vec<PendingOffset>> = BTreeMap::new();
    for o in &meta.pending_offsets {
        by_group.entry(&o.group).or_default().push(o.clone());
    }
    by_group
}

/// Writes staged offsets to a group coordinator of this node; one answer per offset.
pub async fn commit_to_group(
    coordinator: &strom_group::GroupCoordinator,
    group: &str,
    offsets: &[PendingOffset],
) -> Vec<Result<(), CoordinatorError>> {
    let offsets: Vec<NewOffset> = offsets
        .iter()
        .map(|o| NewOffset {
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
        })
        .collect();
    coordinator.commit_transactional(group, &offsets).await
}

/// Writes a committed transaction's staged offsets to their groups (a single node).
async fn commit_offsets(broker: &Arc<Broker>, meta: &TxnMeta) -> Result<(), TxnError> {
    for (group, offsets) in offsets_by_group(meta) {
        let coordinator = broker
            .coordinator_for(group)
            .map_err(|_| TxnError::Storage)?;
        let results = commit_to_group(&coordinator, group, &offsets).await;
        if results
            .iter()
            .any(|r| matches!(r, Err(CoordinatorError::Storage)))
        {
            return Err(TxnError::Storage);
        }
    }
    Ok(())
}
