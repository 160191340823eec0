//! FindCoordinator: a single node coordinates every group and transaction; in cluster mode a
//! group's coordinator is the leader of its `__consumer_offsets` partition (`cluster::groups`)
//! and a transactional id's the leader of its `__transaction_state` partition
//! (`cluster::txns`). The group APIs themselves are
//! served by `strom-group`'s coordinator (see `handlers::dispatch`).
//!
//! Answers follow `KafkaApis.handleFindCoordinatorRequest`: any group id, the empty one
//! included, is answered with this broker; v0-3 carry `Errors.message()` as the error message
//! (the text "NONE" on success), v4+ carry none on a per-key answer.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::sb;
use crate::broker::{Broker, RequestContext};
use crate::security::acl::op;

/// `Errors.GROUP_AUTHORIZATION_FAILED.message()`.
const GROUP_AUTH_FAILED_MESSAGE: &str = "Group authorization failed.";
/// `Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED.message()`.
const TXN_AUTH_FAILED_MESSAGE: &str = "Transactional Id authorization failed.";

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The first version that batches coordinator keys (KIP-699).
const BATCHED_VERSION: i16 = 4;

/// `Errors.COORDINATOR_NOT_AVAILABLE.message()`: the only error `locate` answers with.
const COORDINATOR_NOT_AVAILABLE_MESSAGE: &str = "The coordinator is not available.";

/// `Errors.NONE.message()`: Kafka's success text in v0-3 responses.
const NONE_MESSAGE: &str = "NONE";
/// `Errors.INVALID_REQUEST.message()`.
pub const INVALID_REQUEST_MESSAGE: &str = "This most likely occurs because of a request being malformed by the client library or the message was sent to an incompatible broker. See the broker logs for more details.";

/// Refuses every key of the request with `code`: per key in v4+ (`per_key_message` only
/// there), or in the top-level fields before.
fn refuse_all(
    req: &FindCoordinatorRequest,
    version: i16,
    code: i16,
    message: &str,
    per_key_message: Option<&str>,
) -> FindCoordinatorResponse {
    if version >= BATCHED_VERSION {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k.clone())
                    .with_error_code(code)
                    .with_error_message(per_key_message.map(sb))
                    .with_node_id(BrokerId(-1))
                    .with_host(sb(""))
                    .with_port(-1)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(Some(sb(message)))
        .with_node_id(BrokerId(-1))
        .with_host(sb(""))
        .with_port(-1)
}

pub fn find_coordinator(
    broker: &Arc<Broker>,
    req: FindCoordinatorRequest,
    version: i16,
    ctx: &RequestContext,
) -> FindCoordinatorResponse {
    let (host, port) = super::metadata::advertised(broker, ctx);
    let authz = Authz::new(broker, ctx);
    // KafkaApis.getCoordinator: DESCRIBE on the group, or on the transactional id.
    let denied = |key: &str| match req.key_type {
        _ if !authz.enforcing() => None,
        KEY_TYPE_GROUP if !authz.group(op::DESCRIBE, key) => {
            Some(E::GroupAuthorizationFailed.code())
        }
        KEY_TYPE_TRANSACTION if !authz.transactional_id(op::DESCRIBE, key) => {
            Some(E::TransactionalIdAuthorizationFailed.code())
        }
        _ => None,
    };
    let node = BrokerId(broker.node_id());
    // Where a key's coordinator is: this broker, except in cluster mode, where groups live on
    // the leader of their `__consumer_offsets` partition and transactional ids on the leader
    // of their `__transaction_state` partition.
    let locate = |key: &str| -> Result<(BrokerId, String, i32), E> {
        if broker.cluster.get().is_some() {
            let (id, host, port) = if req.key_type == KEY_TYPE_GROUP {
                crate::cluster::groups::coordinator_node(broker, key)?
            } else {
                crate::cluster::txns::coordinator_node(broker, key)?
            };
            return Ok((BrokerId(id), host, port));
        }
        Ok((node, host.clone(), port))
    };
    match req.key_type {
        KEY_TYPE_GROUP => {}
        // An empty transactional id is
        // INVALID_REQUEST (KafkaApis.getCoordinator), for the whole request before v4.
        KEY_TYPE_TRANSACTION => {
            if version < BATCHED_VERSION && req.key.is_empty() {
                let code = E::InvalidRequest.code();
                return refuse_all(&req, version, code, INVALID_REQUEST_MESSAGE, None);
            }
        }
        // CoordinatorType.forId throws InvalidRequestException out of the handler, so the
        // whole request gets the error response: every key INVALID_REQUEST with its message.
        _ => {
            let code = E::InvalidRequest.code();
            let msg = INVALID_REQUEST_MESSAGE;
            return refuse_all(&req, version, code, msg, Some(msg));
        }
    }
    if version >= BATCHED_VERSION {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                if let Some(code) = denied(k.as_str()) {
                    return Coordinator::default()
                        .with_key(k.clone())
                        .with_error_code(code)
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1);
                }
                if req.key_type == KEY_TYPE_TRANSACTION && k.is_empty() {
                    return Coordinator::default()
                        .with_key(k.clone())
                        .with_error_code(E::InvalidRequest.code())
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1);
                }
                match locate(k.as_str()) {
                    Ok((id, host, port)) => Coordinator::default()
                        .with_key(k.clone())
                        .with_node_id(id)
                        .with_host(sb(host))
                        .with_port(port),
                    Err(e) => Coordinator::default()
                        .with_key(k.clone())
                        .with_error_code(e.code())
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if let Some(code) = denied(req.key.as_str()) {
        let message = if code == E::GroupAuthorizationFailed.code() {
            GROUP_AUTH_FAILED_MESSAGE
        } else {
            TXN_AUTH_FAILED_MESSAGE
        };
        return refuse_all(&req, version, code, message, None);
    }
    match locate(req.key.as_str()) {
        Ok((id, host, port)) => FindCoordinatorResponse::default()
            .with_error_message(Some(sb(NONE_MESSAGE)))
            .with_node_id(id)
            .with_host(sb(host))
            .with_port(port),
        Err(e) => refuse_all(
            &req,
            version,
            e.code(),
            COORDINATOR_NOT_AVAILABLE_MESSAGE,
            None,
        ),
    }
}
