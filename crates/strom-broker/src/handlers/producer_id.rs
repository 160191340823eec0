//! InitProducerId: a fresh producer id for an idempotent producer, or the transaction
//! coordinator's id and epoch for a transactional one (`crate::txn`).

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

/// The first version whose clients know PRODUCER_FENCED (KIP-588); older ones get
/// INVALID_PRODUCER_EPOCH, as Kafka's handler translates.
const PRODUCER_FENCED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    match &req.transactional_id {
        // TransactionCoordinator.handleInitProducerId: an empty transactional id is
        // INVALID_REQUEST, consistent with what the producer client itself allows.
        Some(id) if id.is_empty() => return resp.with_error_code(E::InvalidRequest.code()),
        Some(id) => {
            // KIP-360 (v3+): a producer id and epoch of -1 mean "none known".
            let expected =
                (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
            let txn = match broker.txn_for(id) {
                Ok(txn) => txn,
                Err(code) => return resp.with_error_code(code),
            };
            return match txn
                .init_producer(broker, id, req.transaction_timeout_ms, expected)
                .await
            {
                Ok((pid, epoch)) => resp
                    .with_producer_id(ProducerId(pid))
                    .with_producer_epoch(epoch),
                Err(e) => {
                    let mut code = super::txn::txn_error_code(e);
                    if code == E::ProducerFenced.code() && version < PRODUCER_FENCED_VERSION {
                        code = E::InvalidProducerEpoch.code();
                    }
                    resp.with_error_code(code)
                }
            };
        }
        None => {}
    }
    // For a null transactional id Kafka "always blindly accepts the request and returns a new
    // producerId" with epoch 0, whatever producer id and epoch the request carries: the KIP-360
    // epoch bump only exists for transactional producers (idempotent clients bump locally).
    let id = broker.allocate_producer_id();
    match id {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(E::KafkaStorageError.code())
        }
    }
}
