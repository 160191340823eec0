//! FindCoordinator: this broker coordinates every group. The group APIs themselves are
//! served by `strom-group`'s coordinator (see `handlers::dispatch`).

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::ResponseError as E;

use super::sb;
use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = broker.config.advertised();
    let node = BrokerId(broker.node_id());
    let key_error = |key: &str| -> Option<(i16, &'static str)> {
        match req.key_type {
            KEY_TYPE_GROUP if key.is_empty() => {
                Some((E::InvalidRequest.code(), "group id is empty"))
            }
            KEY_TYPE_GROUP => None,
            KEY_TYPE_TRANSACTION => Some((
                E::TransactionalIdAuthorizationFailed.code(),
                "transactions are not supported",
            )),
            _ => Some((E::InvalidRequest.code(), "unknown coordinator key type")),
        }
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(node)
                    .with_host(sb(host.clone()))
                    .with_port(port);
                match key_error(k.as_str()) {
                    None => c,
                    Some((code, msg)) => c
                        .with_error_code(code)
                        .with_error_message(Some(sb(msg)))
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match key_error(req.key.as_str()) {
        None => FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(sb(host))
            .with_port(port),
        Some((code, msg)) => FindCoordinatorResponse::default()
            .with_error_code(code)
            .with_error_message(Some(sb(msg)))
            .with_node_id(BrokerId(-1))
            .with_host(sb(""))
            .with_port(-1),
    }
}
