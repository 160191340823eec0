//! The online downgrade of KIP-848 (Kafka's `convertToClassicGroup`): when the last member
//! speaking the consumer protocol leaves or is fenced, and every member left speaks the
//! classic protocol, the group becomes a classic group again at its group epoch, each member
//! holding its target assignment, and a rebalance starts so that the members rejoin through
//! JoinGroup and SyncGroup with a classic leader assigning.

use super::model::ConsumerGroup;
use crate::group::{Group, GroupState, Member};
use crate::rebalance::maybe_prepare_rebalance;
use crate::GroupConfig;

const PROTOCOL_TYPE: &str = "consumer";

/// Kafka's `validateOnlineDowngradeWithFencedMember`: whether removing `leaving` should turn
/// the group classic.
fn downgrade_allowed(config: &GroupConfig, cg: &ConsumerGroup, leaving: &str) -> bool {
    let others_classic = cg
        .members
        .values()
        .filter(|m| m.member_id != leaving)
        .all(|m| m.classic.is_some());
    others_classic
        && cg.members.len() > 1
        && config.consumer_migration_policy.downgrade()
        && cg.members.len() - 1 <= config.max_group_size
}

/// Removes the consumer-protocol member `leaving` by converting the group to a classic group,
/// if the downgrade applies; false (nothing changed) otherwise, and the caller removes the
/// member from the KIP-848 group as usual.
pub(crate) fn leave_by_downgrade(
    config: &GroupConfig,
    g: &mut Group,
    leaving: &str,
    why: &str,
    now_ms: i64,
) -> bool {
    let Some(cg) = g.consumer.as_deref() else {
        return false;
    };
    if !downgrade_allowed(config, cg, leaving) {
        return false;
    }
    let Some(cg) = g.consumer.take() else {
        return false;
    };
    g.members.clear();
    g.static_members.clear();
    g.pending_members.clear();
    g.pending_sync.clear();
    g.leader_id = None;
    g.generation_id = cg.group_epoch;
    for m in cg.members.values().filter(|m| m.member_id != leaving) {
        let Some(classic) = &m.classic else {
            continue;
        };
        let assignment = cg.target.get(&m.member_id).cloned().unwrap_or_default();
        g.add_member(Member {
            member_id: m.member_id.clone(),
            group_instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            rebalance_timeout_ms: m.rebalance_timeout_ms,
            session_timeout_ms: classic.session_timeout_ms,
            protocol_type: PROTOCOL_TYPE.into(),
            protocols: classic.protocols.clone(),
            assignment: cg.encode_assignment(classic.version(), &assignment),
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            session_deadline_ms: now_ms
                .saturating_add(i64::from(classic.session_timeout_ms.max(0))),
        });
    }
    g.protocol_type = Some(PROTOCOL_TYPE.into());
    g.protocol_name = g.select_protocol();
    g.compute_subscribed_topics();
    g.join_phase = None;
    g.sync_deadline_ms = None;
    // Stable at the group epoch, as Kafka's converted group, then straight into a rebalance;
    // the classic record is written at once (`persist_classic_locked` on a change of kind).
    g.state = GroupState::Stable;
    g.state_since_ms = Some(now_ms);
    g.metadata_dirty = true;
    tracing::info!(group = %g.group_id, member = %leaving, generation = g.generation_id,
        members = g.members.len(), "consumer group downgraded to a classic group: its last consumer-protocol member left ({why})");
    maybe_prepare_rebalance(config, g, now_ms);
    true
}
