//! CreateAcls, DescribeAcls and DeleteAcls, as Kafka's controller answers them: ALTER on
//! the cluster to change ACLs, DESCRIBE to list them (CLUSTER_AUTHORIZATION_FAILED
//! otherwise), SECURITY_DISABLED without an authorizer, INVALID_REQUEST for a binding or
//! filter Kafka would refuse.

use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::sb;
use crate::broker::Broker;
use crate::security::acl::{op, AclBinding, AclFilter};

const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

pub fn create(broker: &Arc<Broker>, authz: &Authz, req: CreateAclsRequest) -> CreateAclsResponse {
    let refuse_all = |code: E, message: &str| {
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code.code())
                    .with_error_message(Some(sb(message)))
            })
            .collect();
        CreateAclsResponse::default().with_results(results)
    };
    if !broker.authorizer.enabled() {
        return refuse_all(E::SecurityDisabled, NO_AUTHORIZER);
    }
    if !authz.cluster(op::ALTER) {
        return refuse_all(
            E::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
    }
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission_type: c.permission_type,
        })
        .collect();
    let valid: Vec<AclBinding> = bindings
        .iter()
        .filter(|b| b.invalid_reason().is_none())
        .cloned()
        .collect();
    let stored = broker.authorizer.create(&valid);
    let results = bindings
        .iter()
        .map(|b| match (b.invalid_reason(), &stored) {
            (Some(reason), _) => AclCreationResult::default()
                .with_error_code(E::InvalidRequest.code())
                .with_error_message(Some(sb(reason))),
            (None, Err(e)) => AclCreationResult::default()
                .with_error_code(E::UnknownServerError.code())
                .with_error_message(Some(sb(e.to_string()))),
            (None, Ok(())) => AclCreationResult::default(),
        })
        .collect();
    if let Err(e) = &stored {
        tracing::error!(error = %e, "storing ACLs failed");
    }
    CreateAclsResponse::default().with_results(results)
}

fn filter(
    resource_type: i8,
    name: Option<&kafka_protocol::protocol::StrBytes>,
    pattern_type: i8,
    principal: Option<&kafka_protocol::protocol::StrBytes>,
    host: Option<&kafka_protocol::protocol::StrBytes>,
    operation: i8,
    permission_type: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: name.map(|s| s.to_string()),
        pattern_type,
        principal: principal.map(|s| s.to_string()),
        host: host.map(|s| s.to_string()),
        operation,
        permission_type,
    }
}

pub fn describe(
    broker: &Arc<Broker>,
    authz: &Authz,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let error = |code: E, message: &str| {
        DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(sb(message)))
    };
    if !broker.authorizer.enabled() {
        return error(E::SecurityDisabled, NO_AUTHORIZER);
    }
    if !authz.cluster(op::DESCRIBE) {
        return error(
            E::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
    }
    let f = filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    );
    if let Some(reason) = f.invalid_reason() {
        return error(E::InvalidRequest, reason);
    }
    // One resource entry per (type, name, pattern), its ACLs in storage order.
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    for b in broker.authorizer.describe(&f) {
        let acl = AclDescription::default()
            .with_principal(sb(b.principal.clone()))
            .with_host(sb(b.host.clone()))
            .with_operation(b.operation)
            .with_permission_type(b.permission_type);
        match resources.iter_mut().find(|r| {
            r.resource_type == b.resource_type
                && r.pattern_type == b.pattern_type
                && r.resource_name.as_str() == b.resource_name
        }) {
            Some(r) => r.acls.push(acl),
            None => resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(b.resource_type)
                    .with_resource_name(sb(b.resource_name.clone()))
                    .with_pattern_type(b.pattern_type)
                    .with_acls(vec![acl]),
            ),
        }
    }
    DescribeAclsResponse::default().with_resources(resources)
}

pub fn delete(broker: &Arc<Broker>, authz: &Authz, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let refuse_all = |code: E, message: &str| {
        let results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code.code())
                    .with_error_message(Some(sb(message)))
            })
            .collect();
        DeleteAclsResponse::default().with_filter_results(results)
    };
    if !broker.authorizer.enabled() {
        return refuse_all(E::SecurityDisabled, NO_AUTHORIZER);
    }
    if !authz.cluster(op::ALTER) {
        return refuse_all(
            E::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        );
    }
    let filters: Vec<AclFilter> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_ref(),
                f.pattern_type_filter,
                f.principal_filter.as_ref(),
                f.host_filter.as_ref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let usable: Vec<AclFilter> = filters
        .iter()
        .filter(|f| f.invalid_reason().is_none())
        .cloned()
        .collect();
    let mut removed = match broker.authorizer.delete(&usable) {
        Ok(r) => r.into_iter(),
        Err(e) => {
            tracing::error!(error = %e, "storing ACLs failed");
            return refuse_all(E::UnknownServerError, &e.to_string());
        }
    };
    let results = filters
        .iter()
        .map(|f| match f.invalid_reason() {
            Some(reason) => DeleteAclsFilterResult::default()
                .with_error_code(E::InvalidRequest.code())
                .with_error_message(Some(sb(reason))),
            None => {
                let matching = removed
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type)
                            .with_resource_name(sb(b.resource_name))
                            .with_pattern_type(b.pattern_type)
                            .with_principal(sb(b.principal))
                            .with_host(sb(b.host))
                            .with_operation(b.operation)
                            .with_permission_type(b.permission_type)
                    })
                    .collect();
                DeleteAclsFilterResult::default().with_matching_acls(matching)
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
