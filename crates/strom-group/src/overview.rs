//! A read-only picture of every group for observers (metrics, the HTTP API and console), in
//! domain types: no Kafka request is built and nothing is scanned but the in-memory state.

use bytes::Bytes;

use crate::group::GroupState;
use crate::GroupCoordinator;

/// One member as an observer sees it. `assignment` is the raw bytes the leader assigned (the
/// consumer protocol's `ConsumerProtocolAssignment` when `protocol_type` is "consumer"; for a
/// KIP-848 group, its current assignment in that same encoding).
#[derive(Debug, Clone)]
pub struct MemberSummary {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Bytes,
}

/// One group: state, generation, members and committed offsets.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable.
    pub state: &'static str,
    /// Each completed rebalance moves it by one, so its growth counts rebalances.
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberSummary>,
    /// (topic, partition, committed offset), sorted.
    pub offsets: Vec<(String, i32, i64)>,
}

impl GroupSummary {
    /// True when the group has no members, so its offsets may be reset.
    pub fn is_empty(&self) -> bool {
        self.state == GroupState::Empty.name() && self.members.is_empty()
    }
}

impl GroupCoordinator {
    /// Every group, sorted by id. Holds the coordinator's lock for the copy only.
    pub fn summaries(&self) -> Vec<GroupSummary> {
        let st = self.state.lock();
        let mut out: Vec<GroupSummary> = st.groups.values().map(summarize).collect();
        drop(st);
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// One group, if it exists.
    pub fn summary(&self, group_id: &str) -> Option<GroupSummary> {
        self.state.lock().groups.get(group_id).map(summarize)
    }

    /// How many groups exist (no copy).
    pub fn group_count(&self) -> usize {
        self.state.lock().groups.len()
    }
}

fn summarize(g: &crate::group::Group) -> GroupSummary {
    if let Some(cg) = &g.consumer {
        return GroupSummary {
            group_id: g.group_id.clone(),
            state: cg.state_name(),
            generation_id: cg.group_epoch,
            protocol_type: "consumer".into(),
            protocol_name: cg.preferred_assignor("uniform").to_string(),
            members: cg
                .members
                .values()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    assignment: cg.encode_assignment(0, &m.assigned),
                })
                .collect(),
            offsets: offsets(g),
        };
    }
    GroupSummary {
        group_id: g.group_id.clone(),
        state: g.state.name(),
        generation_id: g.generation_id,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_name: g.protocol_name.clone().unwrap_or_default(),
        members: g
            .members
            .values()
            .map(|m| MemberSummary {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
        offsets: offsets(g),
    }
}

fn offsets(g: &crate::group::Group) -> Vec<(String, i32, i64)> {
    g.offsets
        .iter()
        .map(|((t, p), v)| (t.clone(), *p, v.offset))
        .collect()
}
