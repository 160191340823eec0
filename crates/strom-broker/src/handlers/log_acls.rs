//! Kafka's checks in front of OffsetForLeaderEpoch (DESCRIBE on each topic, CLUSTER_ACTION
//! for a follower's request) and DescribeLogDirs (DESCRIBE on the cluster; refused, the
//! answer is empty with CLUSTER_AUTHORIZATION_FAILED from v3 on). Both only read, so the
//! answer is computed and then cut down.

use std::sync::Arc;

use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::{leader_epoch, log_dirs};
use crate::broker::Broker;
use crate::security::acl::op;

pub fn offset_for_leader_epoch(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: OffsetForLeaderEpochRequest,
    version: i16,
) -> OffsetForLeaderEpochResponse {
    let follower = req.replica_id.0 >= 0;
    let mut response = leader_epoch::handle(broker, req, version);
    if !authz.enforcing() {
        return response;
    }
    let cluster_ok = !follower || authz.cluster(op::CLUSTER_ACTION);
    for t in &mut response.topics {
        let code = if !cluster_ok {
            E::ClusterAuthorizationFailed.code()
        } else if !authz.topic(op::DESCRIBE, t.topic.0.as_str()) {
            E::TopicAuthorizationFailed.code()
        } else {
            continue;
        };
        for p in &mut t.partitions {
            p.error_code = code;
            p.leader_epoch = -1;
            p.end_offset = -1;
        }
    }
    response
}

pub fn describe_log_dirs(
    broker: &Arc<Broker>,
    authz: &Authz<'_>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    if authz.enforcing() && !authz.cluster(op::DESCRIBE) {
        return DescribeLogDirsResponse::default()
            .with_error_code(E::ClusterAuthorizationFailed.code());
    }
    log_dirs::handle(broker, req, version)
}
