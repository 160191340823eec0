//! DescribeClientQuotas and AlterClientQuotas (KIP-546) over the quota table, with Kafka's
//! checks and codes: DESCRIBE_CONFIGS / ALTER_CONFIGS on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED), INVALID_REQUEST for bad entities, keys and values
//! (`ClientQuotaControlManager`), UNSUPPORTED_VERSION for entity types Kafka does not know,
//! and `validate_only` honoured.

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlterEntity, EntryData as AlterEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribeEntity, EntryData as DescribeEntry, ValueData,
};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::sb;
use crate::broker::Broker;
use crate::quota::entity::{Entity, Invalid, CLIENT_ID, IP, USER};
use crate::quota::{describe as select, Change, Filter, Match};
use crate::security::acl::op;

/// Describe's match types (`DescribeClientQuotasRequest.MATCH_TYPE_*`).
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn invalid_code(kind: Invalid) -> i16 {
    match kind {
        Invalid::Request => E::InvalidRequest.code(),
        Invalid::Unsupported => E::UnsupportedVersion.code(),
    }
}

/// The filter a request asks for, with `ClientQuotaCache.describeClientQuotas`'s checks.
fn filter(req: &DescribeClientQuotasRequest) -> Result<Filter, (i16, String)> {
    let bad = |m: String| (E::InvalidRequest.code(), m);
    let mut components = Vec::with_capacity(req.components.len());
    for c in &req.components {
        let kind = c.entity_type.as_str();
        match kind {
            USER | CLIENT_ID | IP => {}
            "" => return Err(bad("Unexpected empty filter component entity type".into())),
            other => {
                return Err((
                    E::UnsupportedVersion.code(),
                    format!("Custom entity type {other} not supported"),
                ))
            }
        }
        if components.iter().any(|(k, _)| k == kind) {
            return Err(bad(format!(
                "Duplicate {kind} filter component entity type"
            )));
        }
        let m = match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(name)) => Match::Exact(name.to_string()),
            (MATCH_DEFAULT, None) => Match::Default,
            (MATCH_ANY, None) => Match::Any,
            (t, m) => return Err(bad(format!("Unexpected match type {t} with match {m:?}"))),
        };
        components.push((kind.to_string(), m));
    }
    let has = |k: &str| components.iter().any(|(kind, _)| kind == k);
    if has(IP) && (has(USER) || has(CLIENT_ID)) {
        return Err(bad("Invalid entity filter component combination, IP filter component should not be used with user or clientId filter component.".into()));
    }
    Ok(Filter {
        components,
        strict: req.strict,
    })
}

pub fn describe(
    broker: &Broker,
    authz: &Authz,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let error = |code: i16, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code)
            .with_error_message(Some(sb(message)))
            .with_entries(None)
    };
    if !authz.cluster(op::DESCRIBE_CONFIGS) {
        return error(
            E::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.".into(),
        );
    }
    let filter = match filter(&req) {
        Ok(f) => f,
        Err((code, message)) => return error(code, message),
    };
    let entries = select(&broker.quotas.table(), &filter)
        .into_iter()
        .map(|(entity, values)| {
            DescribeEntry::default()
                .with_entity(
                    entity
                        .parts()
                        .into_iter()
                        .map(|(kind, name)| {
                            DescribeEntity::default()
                                .with_entity_type(sb(kind))
                                .with_entity_name(name.map(sb))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(key, value)| {
                            ValueData::default().with_key(sb(key)).with_value(value)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// One entry of the request checked: the change to make, or its error.
fn check_entry(entry: &alter_client_quotas_request::EntryData) -> Result<Change, (i16, String)> {
    let parts: Vec<(String, Option<String>)> = entry
        .entity
        .iter()
        .map(|e| {
            (
                e.entity_type.to_string(),
                e.entity_name.as_ref().map(|n| n.to_string()),
            )
        })
        .collect();
    let entity = Entity::from_parts(&parts).map_err(|(kind, m)| (invalid_code(kind), m))?;
    let mut ops = Vec::with_capacity(entry.ops.len());
    for o in &entry.ops {
        let key = o.key.to_string();
        if o.remove {
            ops.push((key, None));
        } else {
            entity
                .check_value(&key, o.value)
                .map_err(|m| (E::InvalidRequest.code(), m))?;
            ops.push((key, Some(o.value)));
        }
    }
    Ok((entity, ops))
}

pub fn alter(
    broker: &Broker,
    authz: &Authz,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let allowed = authz.cluster(op::ALTER_CONFIGS);
    let mut results: Vec<(i16, Option<String>)> = Vec::with_capacity(req.entries.len());
    let mut changes = Vec::new();
    let mut applied = Vec::new();
    for entry in &req.entries {
        if !allowed {
            results.push((E::ClusterAuthorizationFailed.code(), None));
            continue;
        }
        match check_entry(entry) {
            Ok(change) => {
                applied.push(results.len());
                results.push((0, None));
                changes.push(change);
            }
            Err((code, message)) => results.push((code, Some(message))),
        }
    }
    if !req.validate_only && !changes.is_empty() {
        if let Err(e) = broker.quotas.alter(changes) {
            tracing::error!(error = %e, "could not store client quotas");
            for i in applied {
                results[i] = (E::UnknownServerError.code(), Some(e.to_string()));
            }
        }
    }
    let entries = req
        .entries
        .iter()
        .zip(results)
        .map(|(entry, (code, message))| {
            AlterEntry::default()
                .with_error_code(code)
                .with_error_message(message.map(sb))
                .with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|e| {
                            AlterEntity::default()
                                .with_entity_type(e.entity_type.clone())
                                .with_entity_name(e.entity_name.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterClientQuotasResponse::default().with_entries(entries)
}
