//! Kafka's checks in front of DescribeConfigs, AlterConfigs and IncrementalAlterConfigs
//! (KafkaApis / AuthHelper): DESCRIBE_CONFIGS or ALTER_CONFIGS on the topic
//! (TOPIC_AUTHORIZATION_FAILED) or, for broker and broker-logger resources, on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED). Refused alterations never reach `configs`.

use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::{configs, sb};
use crate::broker::Broker;
use crate::security::acl::op;

/// `ConfigResource.Type` TOPIC.
const TOPIC: i8 = 2;

/// The error for a resource the principal may not do `operation` on, if any.
fn refusal(authz: &Authz, operation: i8, resource_type: i8, name: &str) -> Option<E> {
    if !authz.enforcing() {
        return None;
    }
    match resource_type {
        TOPIC => (!authz.topic(operation, name)).then_some(E::TopicAuthorizationFailed),
        _ => (!authz.cluster(operation)).then_some(E::ClusterAuthorizationFailed),
    }
}

fn message(e: E) -> Option<StrBytes> {
    Some(sb(match e {
        E::TopicAuthorizationFailed => "Topic authorization failed.",
        _ => "Cluster authorization failed.",
    }))
}

pub fn describe(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut response = configs::describe(broker, req, version);
    for r in &mut response.results {
        if let Some(e) = refusal(
            authz,
            op::DESCRIBE_CONFIGS,
            r.resource_type,
            &r.resource_name,
        ) {
            r.error_code = e.code();
            r.error_message = message(e);
            r.configs.clear();
        }
    }
    response
}

fn refused_response(
    resource_type: i8,
    resource_name: StrBytes,
    e: E,
) -> alter_configs_response::AlterConfigsResourceResponse {
    alter_configs_response::AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(resource_name)
        .with_error_code(e.code())
        .with_error_message(message(e))
}

pub async fn alter(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: AlterConfigsRequest,
    version: i16,
) -> AlterConfigsResponse {
    let mut refused = Vec::new();
    req.resources.retain(|r| {
        match refusal(authz, op::ALTER_CONFIGS, r.resource_type, &r.resource_name) {
            Some(e) => {
                refused.push(refused_response(
                    r.resource_type,
                    r.resource_name.clone(),
                    e,
                ));
                false
            }
            None => true,
        }
    });
    let mut response = configs::alter(broker, req, version).await;
    response.responses.extend(refused);
    response
}

pub async fn incremental_alter(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    mut req: IncrementalAlterConfigsRequest,
    version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut refused = Vec::new();
    req.resources.retain(|r| {
        match refusal(authz, op::ALTER_CONFIGS, r.resource_type, &r.resource_name) {
            Some(e) => {
                refused.push(
                    incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(e.code())
                        .with_error_message(message(e)),
                );
                false
            }
            None => true,
        }
    });
    let mut response = configs::incremental_alter(broker, req, version).await;
    response.responses.extend(refused);
    response
}
