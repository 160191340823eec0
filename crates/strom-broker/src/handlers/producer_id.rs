//! InitProducerId for idempotent producers. Transactions are not supported: a transactional
//! id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a non-retriable error, rather than
//! an id the client would then use for transaction APIs we do not serve.

use std::sync::Arc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    req: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(E::TransactionalIdAuthorizationFailed.code());
    }
    // KIP-360: a producer that already has an id asks for an epoch bump to reset sequences.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 {
        if req.producer_epoch == i16::MAX {
            // Epoch exhausted: a fresh id instead.
        } else {
            return resp
                .with_producer_id(req.producer_id)
                .with_producer_epoch(req.producer_epoch + 1);
        }
    }
    match broker.meta.next_producer_id() {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.with_error_code(E::KafkaStorageError.code())
        }
    }
}
