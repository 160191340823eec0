//! InitProducerId for idempotent producers. Transactions are not supported: a transactional
//! id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a non-retriable error, rather than
//! an id the client would then use for transaction APIs we do not serve.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

/// Producer ids of a cluster interleave this many nodes' counters (node ids below it).
pub const CLUSTER_NODE_IDS: i64 = 1024;

pub fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match &req.transactional_id {
        // TransactionCoordinator.handleInitProducerId: an empty transactional id is
        // INVALID_REQUEST, consistent with what the producer client itself allows.
        Some(id) if id.is_empty() => return resp.with_error_code(E::InvalidRequest.code()),
        Some(_) => return resp.with_error_code(E::TransactionalIdAuthorizationFailed.code()),
        None => {}
    }
    // For a null transactional id Kafka "always blindly accepts the request and returns a new
    // producerId" with epoch 0, whatever producer id and epoch the request carries: the KIP-360
    // epoch bump only exists for transactional producers (idempotent clients bump locally).
    // Cluster mode: each node allocates from its own persisted counter, so ids carry the node
    // id in their low bits and never collide across nodes (a producer moves between leaders).
    let id = broker.meta.next_producer_id().map(|id| {
        if broker.cluster.get().is_some() {
            id * CLUSTER_NODE_IDS + i64::from(broker.node_id()).rem_euclid(CLUSTER_NODE_IDS)
        } else {
            id
        }
    });
    match id {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(E::KafkaStorageError.code())
        }
    }
}
