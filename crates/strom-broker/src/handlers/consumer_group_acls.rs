//! The KIP-848 group APIs behind Kafka's checks: ConsumerGroupHeartbeat needs READ on the
//! group and DESCRIBE on each named topic it subscribes to; ConsumerGroupDescribe needs
//! DESCRIBE on each group. Allowed requests go to the group's coordinator
//! (`group_routing`), which may answer NOT_COORDINATOR in cluster mode.

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::group_routing::GroupRouter;
use crate::security::acl::op;

pub fn heartbeat(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> ConsumerGroupHeartbeatResponse {
    let refuse = |code: i16, message: String| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_member_epoch(-1)
    };
    if authz.enforcing() {
        if !authz.group(op::READ, req.group_id.as_str()) {
            return refuse(
                E::GroupAuthorizationFailed.code(),
                format!("Not authorized to access group {}", req.group_id.as_str()),
            );
        }
        let denied: Vec<String> = req
            .subscribed_topic_names
            .iter()
            .flatten()
            .filter(|t| !authz.topic(op::DESCRIBE, t.as_str()))
            .map(|t| t.to_string())
            .collect();
        if !denied.is_empty() {
            return refuse(
                E::TopicAuthorizationFailed.code(),
                format!("Not authorized to describe topics {}", denied.join(", ")),
            );
        }
    }
    match groups.route(req.group_id.as_str()) {
        Ok(c) => c.consumer_group_heartbeat(req, version, client_id, client_host),
        Err(code) => refuse(
            code,
            format!(
                "this broker is not the coordinator of {}",
                req.group_id.as_str()
            ),
        ),
    }
}

pub fn describe(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut out = ConsumerGroupDescribeResponse::default();
    for id in &req.group_ids {
        let refused = |code: i16| {
            DescribedGroup::default()
                .with_group_id(id.clone())
                .with_error_code(code)
                .with_authorized_operations(i32::MIN)
        };
        if authz.enforcing() && !authz.group(op::DESCRIBE, id.as_str()) {
            out.groups.push(refused(E::GroupAuthorizationFailed.code()));
            continue;
        }
        match groups.route(id.as_str()) {
            Ok(c) => {
                let one = ConsumerGroupDescribeRequest::default().with_group_ids(vec![id.clone()]);
                out.groups.extend(c.consumer_group_describe(&one).groups);
            }
            Err(code) => out.groups.push(refused(code)),
        }
    }
    out
}
