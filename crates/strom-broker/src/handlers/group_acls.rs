//! The group APIs behind Kafka's checks: READ on the group to join, sync, heartbeat, leave
//! and commit; DESCRIBE to describe it and fetch its offsets; DELETE to delete it or its
//! offsets; READ (commit, delete offsets) or DESCRIBE (fetch offsets) on each topic. Denied
//! entries get GROUP_AUTHORIZATION_FAILED or TOPIC_AUTHORIZATION_FAILED; the rest go to
//! the group's coordinator (`group_routing`), which may answer NOT_COORDINATOR in cluster
//! mode. With the authorizer off, requests pass untouched.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use strom_protocol::ResponseError as E;

use super::authz::Authz;
use super::group_routing::GroupRouter;
use crate::security::acl::op;

const GROUP_DENIED: i16 = E::GroupAuthorizationFailed.code();
const TOPIC_DENIED: i16 = E::TopicAuthorizationFailed.code();

fn group_denied(authz: &Authz, operation: i8, group: &str) -> bool {
    authz.enforcing() && !authz.group(operation, group)
}

fn topic_denied(authz: &Authz, operation: i8, topic: &str) -> bool {
    authz.enforcing() && !authz.topic(operation, topic)
}

pub async fn join_group(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> JoinGroupResponse {
    if group_denied(authz, op::READ, req.group_id.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(GROUP_DENIED)
            .with_generation_id(-1)
            .with_member_id(req.member_id);
    }
    let groups = match groups.route(req.group_id.as_str()) {
        Ok(g) => g,
        Err(code) => {
            return JoinGroupResponse::default()
                .with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(req.member_id)
        }
    };
    groups
        .join_group(req, version, client_id, client_host)
        .await
}

pub async fn sync_group(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    if group_denied(authz, op::READ, req.group_id.as_str()) {
        return SyncGroupResponse::default().with_error_code(GROUP_DENIED);
    }
    match groups.route(req.group_id.as_str()) {
        Ok(g) => g.sync_group(req, version).await,
        Err(code) => SyncGroupResponse::default().with_error_code(code),
    }
}

pub async fn heartbeat(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: HeartbeatRequest,
    version: i16,
) -> HeartbeatResponse {
    if group_denied(authz, op::READ, req.group_id.as_str()) {
        return HeartbeatResponse::default().with_error_code(GROUP_DENIED);
    }
    match groups.route(req.group_id.as_str()) {
        Ok(g) => g.heartbeat(req, version).await,
        Err(code) => HeartbeatResponse::default().with_error_code(code),
    }
}

pub async fn leave_group(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    if group_denied(authz, op::READ, req.group_id.as_str()) {
        return LeaveGroupResponse::default().with_error_code(GROUP_DENIED);
    }
    match groups.route(req.group_id.as_str()) {
        Ok(g) => g.leave_group(req, version).await,
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
    }
}

pub async fn offset_commit(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    mut req: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let answer = |t: &offset_commit_request::OffsetCommitRequestTopic, code: i16| {
        OffsetCommitResponseTopic::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
    };
    if group_denied(authz, op::READ, req.group_id.as_str()) {
        let topics = req.topics.iter().map(|t| answer(t, GROUP_DENIED)).collect();
        return OffsetCommitResponse::default().with_topics(topics);
    }
    let groups = match groups.route(req.group_id.as_str()) {
        Ok(g) => g,
        Err(code) => {
            let topics = req.topics.iter().map(|t| answer(t, code)).collect();
            return OffsetCommitResponse::default().with_topics(topics);
        }
    };
    if !authz.enforcing() {
        return groups.offset_commit(req, version).await;
    }
    let (denied, allowed): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic_denied(authz, op::READ, t.name.as_str()));
    req.topics = allowed;
    let mut response = groups.offset_commit(req, version).await;
    response
        .topics
        .extend(denied.iter().map(|t| answer(t, TOPIC_DENIED)));
    response
}

pub async fn offset_fetch(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    mut req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if !authz.enforcing() {
        return fetch_routed(groups, req, version).await;
    }
    if version < 8 {
        if group_denied(authz, op::DESCRIBE, req.group_id.as_str()) {
            return OffsetFetchResponse::default().with_error_code(GROUP_DENIED);
        }
        let denied = match req.topics.take() {
            None => Vec::new(),
            Some(topics) => {
                let (denied, allowed): (Vec<_>, Vec<_>) = topics
                    .into_iter()
                    .partition(|t| topic_denied(authz, op::DESCRIBE, t.name.as_str()));
                req.topics = Some(allowed);
                denied
            }
        };
        let mut response = fetch_routed(groups, req, version).await;
        response
            .topics
            .retain(|t| !topic_denied(authz, op::DESCRIBE, t.name.as_str()));
        response.topics.extend(denied.into_iter().map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partition_indexes
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_committed_leader_epoch(-1)
                                .with_error_code(TOPIC_DENIED)
                        })
                        .collect(),
                )
        }));
        return response;
    }
    // v8+: several groups per request, each answered on its own.
    let (denied_groups, allowed_groups): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups)
        .into_iter()
        .partition(|g| group_denied(authz, op::DESCRIBE, g.group_id.as_str()));
    let mut denied_topics = Vec::new();
    req.groups = allowed_groups
        .into_iter()
        .map(|mut g| {
            if let Some(topics) = g.topics.take() {
                let (denied, allowed): (Vec<_>, Vec<_>) = topics
                    .into_iter()
                    .partition(|t| topic_denied(authz, op::DESCRIBE, t.name.as_str()));
                denied_topics.push((g.group_id.clone(), denied));
                g.topics = Some(allowed);
            }
            g
        })
        .collect();
    let mut response = if req.groups.is_empty() {
        OffsetFetchResponse::default()
    } else {
        fetch_routed(groups, req, version).await
    };
    for g in response.groups.iter_mut() {
        g.topics
            .retain(|t| !topic_denied(authz, op::DESCRIBE, t.name.as_str()));
        if let Some((_, denied)) = denied_topics.iter().find(|(id, _)| *id == g.group_id) {
            g.topics.extend(denied.iter().map(|t| {
                OffsetFetchResponseTopics::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(-1)
                                    .with_committed_leader_epoch(-1)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
            }));
        }
    }
    response.groups.extend(denied_groups.into_iter().map(|g| {
        OffsetFetchResponseGroup::default()
            .with_group_id(g.group_id)
            .with_error_code(GROUP_DENIED)
    }));
    response
}

pub async fn describe_groups(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    mut req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    if !authz.enforcing() {
        return describe_routed(groups, req, version).await;
    }
    let (denied, allowed): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups)
        .into_iter()
        .partition(|g| group_denied(authz, op::DESCRIBE, g.as_str()));
    req.groups = allowed;
    let mut response = if req.groups.is_empty() {
        DescribeGroupsResponse::default()
    } else {
        describe_routed(groups, req, version).await
    };
    response.groups.extend(denied.into_iter().map(|g| {
        DescribedGroup::default()
            .with_group_id(g)
            .with_error_code(GROUP_DENIED)
            .with_authorized_operations(i32::MIN)
    }));
    response
}

/// ListGroups: everything with DESCRIBE on the cluster, else the groups the principal may
/// DESCRIBE.
pub async fn list_groups(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    req: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    for coordinator in groups.all() {
        let part = coordinator.list_groups(req.clone(), version).await;
        if response.error_code == 0 {
            response.error_code = part.error_code;
        }
        response.groups.extend(part.groups);
    }
    if authz.enforcing() && !authz.cluster(op::DESCRIBE) {
        response
            .groups
            .retain(|g| authz.group(op::DESCRIBE, g.group_id.as_str()));
    }
    response
}

pub async fn delete_groups(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    mut req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    if !authz.enforcing() {
        return delete_routed(groups, req, version).await;
    }
    let (denied, allowed): (Vec<_>, Vec<_>) = std::mem::take(&mut req.groups_names)
        .into_iter()
        .partition(|g| group_denied(authz, op::DELETE, g.as_str()));
    req.groups_names = allowed;
    let mut response = if req.groups_names.is_empty() {
        DeleteGroupsResponse::default()
    } else {
        delete_routed(groups, req, version).await
    };
    response.results.extend(denied.into_iter().map(|g| {
        DeletableGroupResult::default()
            .with_group_id(g)
            .with_error_code(GROUP_DENIED)
    }));
    response
}

pub async fn offset_delete(
    groups: &GroupRouter<'_>,
    authz: &Authz<'_>,
    mut req: OffsetDeleteRequest,
    version: i16,
) -> OffsetDeleteResponse {
    let groups = match groups.route(req.group_id.as_str()) {
        Ok(g) => g,
        Err(code) => return OffsetDeleteResponse::default().with_error_code(code),
    };
    if !authz.enforcing() {
        return groups.offset_delete(req, version).await;
    }
    if group_denied(authz, op::DELETE, req.group_id.as_str()) {
        return OffsetDeleteResponse::default().with_error_code(GROUP_DENIED);
    }
    let (denied, allowed): (Vec<_>, Vec<_>) = std::mem::take(&mut req.topics)
        .into_iter()
        .partition(|t| topic_denied(authz, op::READ, t.name.as_str()));
    req.topics = allowed;
    let mut response = groups.offset_delete(req, version).await;
    response.topics.extend(denied.into_iter().map(|t| {
        OffsetDeleteResponseTopic::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .into_iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(TOPIC_DENIED)
                    })
                    .collect(),
            )
    }));
    response
}

/// OffsetFetch at the group's coordinator: one group before v8; from v8 each group at its own
/// coordinator, refused ones answered with the routing error.
async fn fetch_routed(
    groups: &GroupRouter<'_>,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let require_stable = req.require_stable;
    // v7 asks for one group at the top level; v8+ name theirs in the response.
    let single_group = req.group_id.to_string();
    let mut response = fetch_each_group(groups, req, version).await;
    if require_stable {
        super::unstable_offsets::mark(groups, &single_group, &mut response);
    }
    response
}

async fn fetch_each_group(
    groups: &GroupRouter<'_>,
    mut req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version < 8 {
        return match groups.route(req.group_id.as_str()) {
            Ok(g) => g.offset_fetch(req, version).await,
            // v0-1 have no top-level error: each asked partition carries it.
            Err(code) if version < 2 => OffsetFetchResponse::default().with_topics(
                req.topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(
                                t.partition_indexes
                                    .into_iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(-1)
                                            .with_committed_leader_epoch(-1)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
            Err(code) => OffsetFetchResponse::default().with_error_code(code),
        };
    }
    let (batches, refused) = groups.split(std::mem::take(&mut req.groups), |g| g.group_id.as_str());
    let mut response = OffsetFetchResponse::default();
    for (coordinator, part) in batches {
        let mut one = req.clone();
        one.groups = part;
        let answer = coordinator.offset_fetch(one, version).await;
        response.throttle_time_ms = response.throttle_time_ms.max(answer.throttle_time_ms);
        response.groups.extend(answer.groups);
    }
    response.groups.extend(refused.into_iter().map(|(g, code)| {
        OffsetFetchResponseGroup::default()
            .with_group_id(g.group_id)
            .with_error_code(code)
    }));
    response
}

/// DescribeGroups, each group at its coordinator.
async fn describe_routed(
    groups: &GroupRouter<'_>,
    mut req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let (batches, refused) = groups.split(std::mem::take(&mut req.groups), |g| g.as_str());
    let mut response = DescribeGroupsResponse::default();
    for (coordinator, part) in batches {
        let mut one = req.clone();
        one.groups = part;
        response
            .groups
            .extend(coordinator.describe_groups(one, version).await.groups);
    }
    response.groups.extend(refused.into_iter().map(|(g, code)| {
        DescribedGroup::default()
            .with_group_id(g)
            .with_error_code(code)
            .with_authorized_operations(i32::MIN)
    }));
    response
}

/// DeleteGroups, each group at its coordinator.
async fn delete_routed(
    groups: &GroupRouter<'_>,
    mut req: DeleteGroupsRequest,
    version: i16,
) -> DeleteGroupsResponse {
    let (batches, refused) = groups.split(std::mem::take(&mut req.groups_names), |g| g.as_str());
    let mut response = DeleteGroupsResponse::default();
    for (coordinator, part) in batches {
        let mut one = req.clone();
        one.groups_names = part;
        response
            .results
            .extend(coordinator.delete_groups(one, version).await.results);
    }
    response
        .results
        .extend(refused.into_iter().map(|(g, code)| {
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code)
        }));
    response
}
