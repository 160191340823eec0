//! The JSON protocol's consumer positions in cluster mode. A JSON consumer id's positions are
//! the committed offsets of the group `json:<id>`, so, like any group's, they live with the
//! group's coordinator (the leader of its `__consumer_offsets` partition) and survive the
//! loss of a node. A JSON consume is served by the partition's leader, which reads and
//! commits the position here if it coordinates the group and through the coordinator
//! otherwise.

use std::sync::Arc;

use strom_cluster::messages::{Request, Response, TxnOffset, TxnOffsetsRequest};
use strom_protocol::ResponseError as E;

use super::coordinator_log::REPLICATION_TIMEOUT_MS;
use super::groups::OFFSETS_TOPIC;
use super::txn_calls::call_until_answered;
use crate::broker::Broker;

/// Starts making `__consumer_offsets` if no Kafka client has yet (its first FindCoordinator
/// would); the calls below retry until its coordinators are up.
fn ensure_offsets_topic(broker: &Arc<Broker>, group: &str) {
    let _ = super::groups::coordinator_node(broker, group);
}

/// `group`'s committed offsets in `topic` as (partition, offset), from this node's
/// coordinator of the group (NOT_COORDINATOR if it has none).
pub fn committed_here(broker: &Broker, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, i16> {
    let coordinator = broker.coordinator_for(group)?;
    Ok(coordinator
        .committed_offsets(group)
        .into_iter()
        .filter(|(t, _, _)| t == topic)
        .map(|(_, p, o)| (p, o))
        .collect())
}

/// `group`'s committed offsets in `topic`, wherever its coordinator is.
pub async fn committed(
    broker: &Arc<Broker>,
    group: &str,
    topic: &str,
) -> Result<Vec<(i32, i64)>, i16> {
    ensure_offsets_topic(broker, group);
    let request = Request::CommittedOffsets {
        group: group.to_string(),
        topic: topic.to_string(),
    };
    let answer = |r| match r {
        Response::CommittedOffsets(r) => r,
        _ => Err(E::CoordinatorNotAvailable.code()),
    };
    let key = (OFFSETS_TOPIC, group);
    call_until_answered(broker, key, request, REPLICATION_TIMEOUT_MS, answer, |_| {
        false
    })
    .await
}

/// Commits offsets of a member-less group (no generation check) at its coordinator.
pub async fn commit(broker: &Arc<Broker>, group: &str, offsets: Vec<TxnOffset>) -> Result<(), i16> {
    ensure_offsets_topic(broker, group);
    let request = Request::TxnOffsets(TxnOffsetsRequest::Commit {
        group: group.to_string(),
        offsets,
    });
    let answer = |r| match r {
        Response::TxnOffsets(r) => r,
        _ => Err(E::CoordinatorNotAvailable.code()),
    };
    let again = |codes: &Vec<i16>| codes.iter().any(|&c| super::txn_calls::retriable(c));
    let key = (OFFSETS_TOPIC, group);
    let codes =
        call_until_answered(broker, key, request, REPLICATION_TIMEOUT_MS, answer, again).await?;
    match codes.into_iter().find(|&c| c != 0) {
        Some(code) => Err(code),
        None => Ok(()),
    }
}
