//! DescribeGroups, ListGroups, DeleteGroups.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::codes;
use crate::group::GroupState;
use crate::store::Record;
use crate::GroupCoordinator;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Group types in ListGroups v5.
const GROUP_TYPE_CLASSIC: &str = "classic";
const GROUP_TYPE_CONSUMER: &str = "consumer";

impl GroupCoordinator {
    /// DescribeGroups v0-v6.
    pub async fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let st = self.state.lock();
        let groups = req
            .groups
            .iter()
            .map(|id| {
                let mut d = DescribedGroup::default().with_group_id(id.clone());
                if id.is_empty() {
                    d.error_code = codes::INVALID_GROUP_ID;
                    return d;
                }
                let Some(g) = st.groups.get(id.as_str()) else {
                    // Kafka before v6 answers a missing group as Dead with no error.
                    d.group_state = s(GroupState::Dead.name());
                    if version >= 6 {
                        d.error_code = codes::GROUP_ID_NOT_FOUND;
                        d.error_message = Some(s(&format!("Group {} not found.", id.as_str())));
                    }
                    return d;
                };
                if g.consumer.is_some() {
                    // Kafka's DescribeGroups (v0-v5) shows a KIP-848 group as Dead; clients
                    // describe it with ConsumerGroupDescribe.
                    d.group_state = s(GroupState::Dead.name());
                    return d;
                }
                let stable = g.is(GroupState::Stable);
                let protocol = g.protocol_name.clone().unwrap_or_default();
                d.group_state = s(g.state.name());
                d.protocol_type = s(g.protocol_type.as_deref().unwrap_or(""));
                d.protocol_data = if stable {
                    s(&protocol)
                } else {
                    StrBytes::default()
                };
                d.members = g
                    .members
                    .values()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default()
                            .with_member_id(s(&m.member_id))
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host));
                        if version >= 4 {
                            dm.group_instance_id = m.group_instance_id.as_deref().map(s);
                        }
                        // Like Kafka, metadata and assignment only once the group is Stable.
                        if stable {
                            dm.member_metadata = m.metadata_for(&protocol);
                            dm.member_assignment = m.assignment.clone();
                        }
                        dm
                    })
                    .collect();
                d
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    /// ListGroups v0-v5, with the states filter (v4+) and the types filter (v5).
    pub async fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let states: Vec<String> = if version >= 4 {
            req.states_filter
                .iter()
                .map(|f| f.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let types: Vec<String> = if version >= 5 {
            req.types_filter
                .iter()
                .map(|f| f.to_ascii_lowercase())
                .collect()
        } else {
            Vec::new()
        };
        let st = self.state.lock();
        let mut ids: Vec<&String> = st.groups.keys().collect();
        ids.sort();
        let groups = ids
            .into_iter()
            .filter_map(|id| {
                let g = &st.groups[id];
                let (state, kind, protocol_type) = match &g.consumer {
                    Some(cg) => (cg.state_name(), GROUP_TYPE_CONSUMER, "consumer"),
                    None => (
                        g.state.name(),
                        GROUP_TYPE_CLASSIC,
                        g.protocol_type.as_deref().unwrap_or(""),
                    ),
                };
                if !types.is_empty() && !types.iter().any(|t| t == kind) {
                    return None;
                }
                if !states.is_empty() && !states.iter().any(|f| f == &state.to_ascii_lowercase()) {
                    return None;
                }
                let mut lg = ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(protocol_type));
                if version >= 4 {
                    lg.group_state = s(state);
                }
                if version >= 5 {
                    lg.group_type = s(kind);
                }
                Some(lg)
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    /// DeleteGroups v0-v2: only Empty groups can be deleted; their offsets go with them.
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::new();
        let mut to_delete = Vec::new();
        let mut seq = None;
        {
            let mut st = self.state.lock();
            for id in &req.groups_names {
                let code = if id.is_empty() {
                    codes::INVALID_GROUP_ID
                } else {
                    match st.groups.get(id.as_str()) {
                        None => codes::GROUP_ID_NOT_FOUND,
                        Some(g) if g.is(GroupState::Dead) => codes::GROUP_ID_NOT_FOUND,
                        Some(g) if !g.has_no_members() || !g.members.is_empty() => {
                            codes::NON_EMPTY_GROUP
                        }
                        Some(_) if to_delete.contains(&id.to_string()) => codes::NONE,
                        Some(_) => {
                            to_delete.push(id.to_string());
                            codes::NONE
                        }
                    }
                };
                results.push((id.clone(), code));
            }
            let records: Vec<Record> = to_delete
                .iter()
                .map(|g| Record::GroupTombstone { group: g.clone() })
                .collect();
            match self.append_offsets_locked(&mut st, &records) {
                Ok(s) => {
                    for id in &to_delete {
                        st.groups.remove(id);
                    }
                    seq = Some(s);
                }
                Err(e) => {
                    tracing::error!(error = %e, "appending group tombstones failed");
                    for (id, code) in results.iter_mut() {
                        if to_delete.iter().any(|d| d == id.as_str()) {
                            *code = e.kafka_code();
                        }
                    }
                }
            }
        }
        if let Some(seq) = seq.filter(|_| !to_delete.is_empty()) {
            if let Err(e) = self.wait_durable(seq).await {
                tracing::error!(error = %e, "fsync of group tombstones failed");
            }
        }
        let results = results
            .into_iter()
            .map(|(id, code)| {
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code)
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }
}
