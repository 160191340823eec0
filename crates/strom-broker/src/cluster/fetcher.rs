//! A follower's loop for one partition and one leader epoch: first truncate to where the
//! leader's log and ours agree (the OffsetForLeaderEpoch step of KIP-101), then fetch from the
//! leader's log end onwards, append the batches exactly as the leader stored them (same
//! offsets, same leader epochs) and record their producers, so that idempotence holds after a
//! failover. It ends as soon as the partition's role or epoch changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strom_cluster::messages::{
    EpochEndRequest, ReplicaError, ReplicaFetchRequest, Request, Response,
};

use super::epochs;
use crate::broker::Broker;
use crate::partition::Partition;
use crate::topics::now_ms;

/// Pause after an error before the next try.
const RETRY_BACKOFF_MS: u64 = 100;

fn following(partition: &Partition, leader: i32, epoch: i32) -> bool {
    partition.lock().is_ok_and(|s| {
        s.replica
            .as_ref()
            .is_some_and(|r| r.leader == leader && r.leader_epoch == epoch && !r.is_leader())
    })
}

pub async fn run(broker: Arc<Broker>, partition: Arc<Partition>, leader: i32, epoch: i32) {
    let Some(cluster) = broker.cluster.get().cloned() else {
        return;
    };
    let backoff = Duration::from_millis(RETRY_BACKOFF_MS);
    loop {
        if !following(&partition, leader, epoch) {
            return;
        }
        match truncate_to_leader(&broker, &partition, leader, epoch).await {
            Ok(()) => break,
            Err(e) => {
                tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "truncation step failed; retrying");
                tokio::time::sleep(backoff).await;
            }
        }
    }
    let config = &broker.config;
    let timeout = Duration::from_millis(
        config.replica_fetch_wait_max_ms + config.controller_quorum_request_timeout_ms,
    );
    loop {
        if !following(&partition, leader, epoch) || broker.cluster.get().is_none() {
            return;
        }
        let Ok(fetch_offset) = partition.lock().map(|s| s.log.log_end_offset()) else {
            tokio::time::sleep(backoff * 5).await;
            continue;
        };
        let request = Request::ReplicaFetch(ReplicaFetchRequest {
            replica_id: broker.node_id(),
            topic: partition.topic.clone(),
            partition: partition.index,
            leader_epoch: epoch,
            fetch_offset,
            max_bytes: config.replica_fetch_max_bytes,
            max_wait_ms: config.replica_fetch_wait_max_ms as u32,
        });
        let answer = tokio::select! {
            a = cluster.node.call(leader, &request, &[], timeout) => a,
            _ = broker.shutting_down() => return,
        };
        let (resp, records) = match answer {
            Ok((Response::ReplicaFetch(resp), records)) => (resp, records),
            Ok((other, _)) => {
                tracing::debug!(?other, "unexpected answer to a replica fetch");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "replica fetch failed");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        match resp.error {
            ReplicaError::None => {
                if !records.is_empty() {
                    if let Err(e) = append(&broker, &partition, epoch, fetch_offset, records) {
                        tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "follower append failed");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
                if let Ok(mut state) = partition.lock() {
                    if let Some(r) = state.replica.as_mut() {
                        r.high_watermark = r.high_watermark.max(resp.high_watermark);
                    }
                    // The leader's log start moved (DeleteRecords, a coordinator checkpoint):
                    // follow it as far as our log goes, as Kafka's follower does.
                    let start = resp.log_start_offset.min(state.log.log_end_offset());
                    if start > state.log.log_start_offset() {
                        if let Err(e) = state.log.delete_records_before(start) {
                            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "cannot move the log start to the leader's");
                        }
                    }
                }
            }
            ReplicaError::OffsetOutOfRange if fetch_offset > resp.log_end_offset => {
                // Our log runs past the leader's (it lost unacknowledged acks=1 data in a
                // crash of the same epoch): cut back to its end.
                if let Err(e) = truncate(&broker, &partition, resp.log_end_offset) {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "truncation failed");
                    tokio::time::sleep(backoff * 10).await;
                }
            }
            ReplicaError::OffsetOutOfRange if fetch_offset < resp.log_start_offset => {
                // The leader's retention removed what we would fetch next (we were away
                // longer than it keeps data): start over, empty, at its log start, as
                // Kafka's follower does (`truncateFullyAndStartAt`).
                if let Err(e) = reset(&broker, &partition, resp.log_start_offset) {
                    tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "reset to the leader's log start failed");
                    tokio::time::sleep(backoff * 10).await;
                }
            }
            other => {
                tracing::debug!(topic = %partition.topic, partition = partition.index, error = ?other, "replica fetch refused");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Asks the leader where our last epoch ends in its log and cuts our log back to there.
async fn truncate_to_leader(
    broker: &Arc<Broker>,
    partition: &Arc<Partition>,
    leader: i32,
    epoch: i32,
) -> Result<(), String> {
    let cluster = broker.cluster.get().ok_or("no cluster")?;
    let (last, log_end) = {
        let state = partition.lock().map_err(|e| e.to_string())?;
        (
            epochs::last_epoch(&state.log).map_err(|e| e.to_string())?,
            state.log.log_end_offset(),
        )
    };
    let Some(last) = last else {
        return Ok(());
    };
    let request = Request::EpochEnd(EpochEndRequest {
        topic: partition.topic.clone(),
        partition: partition.index,
        leader_epoch: epoch,
        epoch: last,
    });
    let (resp, _) = cluster
        .node
        .call(leader, &request, &[], cluster.node.request_timeout())
        .await
        .map_err(|e| e.to_string())?;
    let Response::EpochEnd(resp) = resp else {
        return Err(format!("unexpected answer {resp:?}"));
    };
    if resp.error != ReplicaError::None {
        return Err(format!("leader refused: {:?}", resp.error));
    }
    let ours = {
        let state = partition.lock().map_err(|e| e.to_string())?;
        if resp.epoch < 0 {
            resp.end_offset
        } else {
            epochs::end_of_epoch(&state.log, resp.epoch)
                .map_err(|e| e.to_string())?
                .1
        }
    };
    let target = resp.end_offset.min(ours);
    if target < log_end {
        truncate(broker, partition, target)?;
    }
    Ok(())
}

fn truncate(broker: &Broker, partition: &Partition, offset: i64) -> Result<(), String> {
    rewrite_log(broker, partition, |options| {
        partition.truncate_to(offset, options)
    })
}

fn reset(broker: &Broker, partition: &Partition, offset: i64) -> Result<(), String> {
    rewrite_log(broker, partition, |options| {
        partition.reset_to(offset, options)
    })
}

/// Runs a change of the log's files with the topic's open options, then checkpoints.
fn rewrite_log(
    broker: &Broker,
    partition: &Partition,
    change: impl FnOnce(&crate::partition::OpenOptions) -> Result<(), String>,
) -> Result<(), String> {
    let topic = broker.topics.get(&partition.topic).ok_or("topic is gone")?;
    let options = broker
        .topics
        .open_options(&broker.topics.effective_config(&topic));
    change(&options)?;
    // The recovery-point checkpoint may name an offset past the new end; rewrite it now, or
    // the next start would take the cut as damage.
    broker
        .topics
        .checkpoint_recovery_points()
        .map_err(|e| e.to_string())
}

/// Appends the leader's batches after our log end, as they are: same bytes, same offsets.
fn append(
    broker: &Broker,
    partition: &Arc<Partition>,
    epoch: i32,
    expected_offset: i64,
    records: Bytes,
) -> Result<(), String> {
    let headers = strom_log::validate_stored_batches(&records).map_err(|e| e.to_string())?;
    let Some(first) = headers.first() else {
        return Ok(());
    };
    // A compacted leader may have no batch left at the fetch offset: the next one starts
    // later, and the gap stays a gap here too.
    if first.base_offset < expected_offset {
        return Err(format!(
            "leader sent offset {} for a fetch at {expected_offset}",
            first.base_offset
        ));
    }
    let now = now_ms();
    let mut state = partition.lock().map_err(|e| e.to_string())?;
    if !state
        .replica
        .as_ref()
        .is_some_and(|r| r.leader_epoch == epoch && !r.is_leader())
    {
        return Err("no longer following this epoch".into());
    }
    if state.log.log_end_offset() != expected_offset {
        return Err("log end moved during the fetch".into());
    }
    let before = state.log.active_segment_base();
    state
        .log
        .append_as_follower(&records, &headers, now)
        .map_err(|e| e.to_string())?;
    crate::append::snapshot_if_rolled(&state, before);
    let mut messages = 0i64;
    let mut position = 0usize;
    for h in &headers {
        if h.is_control() {
            // A transaction marker ends the producer's open transaction here as on the
            // leader, so this replica's last stable offset is right when it leads.
            let batch = &records[position..position + h.total_size()];
            if let Some(kind @ (0 | 1)) = strom_protocol::control::control_type(batch) {
                let ended = state.producers.end_txn(
                    h.producer_id,
                    h.producer_epoch,
                    h.base_offset,
                    kind == 1,
                );
                if let Some(aborted) = ended {
                    state
                        .log
                        .append_aborted(aborted)
                        .map_err(|e| e.to_string())?;
                }
            }
        } else {
            state.producers.record(h, now);
        }
        position += h.total_size();
        messages += i64::from(h.records_count.max(0));
    }
    state.unflushed_messages += messages;
    drop(state);
    broker.flusher.mark_dirty(partition);
    Ok(())
}
