//! The rebalance state machine shared by the request handlers and the timers: starting a
//! rebalance, completing the join phase, removing members, and firing due deadlines. Every
//! function runs under the coordinator's state lock and never awaits.

use bytes::Bytes;

use crate::codes;
use crate::group::{Group, GroupState, JoinPhase, SyncOutcome};
use crate::GroupConfig;

/// Removes a member (answering its parked requests with UNKNOWN_MEMBER_ID) and moves the
/// group on: a running join phase may now be complete; a settled group must rebalance.
pub(crate) fn remove_member_and_update_group(
    config: &GroupConfig,
    g: &mut Group,
    member_id: &str,
    now_ms: i64,
) {
    if g.remove_member(member_id).is_none() {
        return;
    }
    match g.state {
        GroupState::PreparingRebalance => try_complete_join(config, g, now_ms),
        GroupState::Stable | GroupState::CompletingRebalance => {
            maybe_prepare_rebalance(config, g, now_ms);
            try_complete_join(config, g, now_ms);
        }
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Starts a rebalance unless one is running: with the initial delay for an Empty group,
/// otherwise with the group's rebalance timeout as the join deadline.
pub(crate) fn maybe_prepare_rebalance(config: &GroupConfig, g: &mut Group, now_ms: i64) {
    if !matches!(
        g.state,
        GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
    ) {
        return;
    }
    if g.is(GroupState::CompletingRebalance) {
        // Kafka's resetAndPropagateAssignmentError: followers waiting for an assignment that
        // will never come are told to rejoin.
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
            m.complete_sync(SyncOutcome::error(codes::REBALANCE_IN_PROGRESS));
        }
    }
    g.pending_sync.clear();
    g.sync_deadline_ms = None;
    let rebalance_timeout_ms = g.rebalance_timeout_ms();
    let delay_ms = config.initial_rebalance_delay_ms;
    g.join_phase = Some(if g.is(GroupState::Empty) && delay_ms > 0 {
        JoinPhase::InitialDelay {
            deadline_ms: now_ms.saturating_add(delay_ms),
            remaining_ms: rebalance_timeout_ms.saturating_sub(delay_ms).max(0),
        }
    } else {
        JoinPhase::Rebalance {
            deadline_ms: now_ms.saturating_add(rebalance_timeout_ms),
        }
    });
    g.new_member_added = false;
    tracing::info!(
        group = %g.group_id,
        from = g.state.name(),
        generation = g.generation_id,
        members = g.members.len(),
        "preparing to rebalance"
    );
    g.transition(GroupState::PreparingRebalance, now_ms);
}

/// Completes the join phase if it is done: everyone rejoined, or the deadline passed.
pub(crate) fn try_complete_join(config: &GroupConfig, g: &mut Group, now_ms: i64) {
    if !g.is(GroupState::PreparingRebalance) {
        return;
    }
    match g.join_phase {
        Some(JoinPhase::InitialDelay {
            deadline_ms,
            remaining_ms,
        }) => {
            if now_ms < deadline_ms {
                return;
            }
            if g.new_member_added && remaining_ms > 0 {
                let delay_ms = config.initial_rebalance_delay_ms.min(remaining_ms);
                g.new_member_added = false;
                g.join_phase = Some(JoinPhase::InitialDelay {
                    deadline_ms: now_ms.saturating_add(delay_ms),
                    remaining_ms: remaining_ms
                        .saturating_sub(config.initial_rebalance_delay_ms)
                        .max(0),
                });
                return;
            }
        }
        Some(JoinPhase::Rebalance { deadline_ms })
            if now_ms < deadline_ms && !g.has_all_members_joined() =>
        {
            return;
        }
        Some(JoinPhase::Rebalance { .. }) | None => {}
    }
    complete_join(g, now_ms);
}

fn complete_join(g: &mut Group, now_ms: i64) {
    // Dynamic members that did not rejoin in time are gone; static members stay (they may be
    // restarting) and are bounded by their session timeout and the sync deadline.
    let not_rejoined: Vec<String> = g
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
        .map(|m| m.member_id.clone())
        .collect();
    for id in not_rejoined {
        g.remove_member(&id);
    }
    let any_rejoined = g.members.values().any(|m| m.awaiting_join.is_some());
    if !g.members.is_empty() && !any_rejoined {
        // Only static members that did not rejoin are left: wait another rebalance timeout
        // (their sessions expire meanwhile) rather than start a generation nobody joined.
        g.join_phase = Some(JoinPhase::Rebalance {
            deadline_ms: now_ms.saturating_add(g.rebalance_timeout_ms().max(1)),
        });
        return;
    }
    g.join_phase = None;
    g.new_member_added = false;
    g.generation_id = g.generation_id.wrapping_add(1).max(1);
    if g.members.is_empty() {
        g.protocol_name = None;
        g.subscribed_topics = None;
        tracing::info!(group = %g.group_id, generation = g.generation_id, "group is now empty");
        g.transition(GroupState::Empty, now_ms);
        // Kafka stores the empty generation too, so a restart does not bring back members.
        g.metadata_dirty = true;
        return;
    }
    let leader_rejoined = g
        .leader_id
        .as_ref()
        .and_then(|l| g.members.get(l))
        .is_some_and(|m| m.awaiting_join.is_some());
    if !leader_rejoined {
        if let Some(m) = g.members.values().find(|m| m.awaiting_join.is_some()) {
            g.leader_id = Some(m.member_id.clone());
        }
    }
    g.protocol_name = g.select_protocol().or_else(|| {
        g.members
            .values()
            .next()
            .and_then(|m| m.protocols.first())
            .map(|(n, _)| n.clone())
    });
    g.compute_subscribed_topics();
    tracing::info!(
        group = %g.group_id,
        generation = g.generation_id,
        members = g.members.len(),
        leader = g.leader_id.as_deref().unwrap_or(""),
        protocol = g.protocol_name.as_deref().unwrap_or(""),
        "rebalance complete; waiting for the leader's assignment"
    );
    g.transition(GroupState::CompletingRebalance, now_ms);
    g.pending_sync = g.members.keys().cloned().collect();
    g.sync_deadline_ms = Some(now_ms.saturating_add(g.rebalance_timeout_ms()));
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let outcome = g.join_outcome_for(&id);
        if let Some(m) = g.members.get_mut(&id) {
            if m.awaiting_join.is_some() {
                m.is_new = false;
                m.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
                m.complete_join(outcome);
            }
        }
    }
}

/// Fires the group's due timers: pending-member expiry, session expiry, the sync deadline
/// and the join phase deadline.
pub(crate) fn on_timers(config: &GroupConfig, g: &mut Group, now_ms: i64) {
    if g.consumer.is_some() {
        crate::consumer::on_timers(config, g, now_ms);
        return;
    }
    let before = g.pending_members.len();
    g.pending_members.retain(|_, deadline| *deadline > now_ms);
    if g.pending_members.len() != before {
        try_complete_join(config, g, now_ms);
    }

    let mut expired = Vec::new();
    for m in g.members.values_mut() {
        if m.session_deadline_ms > now_ms {
            continue;
        }
        let waiting = m.awaiting_join.as_ref().is_some_and(|tx| !tx.is_closed())
            || m.awaiting_sync.as_ref().is_some_and(|tx| !tx.is_closed());
        if m.is_new || !waiting {
            expired.push(m.member_id.clone());
        } else {
            // A member parked in a rebalance cannot heartbeat; the rebalance deadlines bound it.
            m.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
        }
    }
    for id in expired {
        tracing::info!(group = %g.group_id, member = %id, "member session expired");
        remove_member_and_update_group(config, g, &id, now_ms);
    }

    if let Some(deadline_ms) = g.sync_deadline_ms {
        if now_ms >= deadline_ms {
            g.sync_deadline_ms = None;
            let laggards: Vec<String> = std::mem::take(&mut g.pending_sync).into_iter().collect();
            for id in laggards {
                tracing::info!(group = %g.group_id, member = %id, "member did not send SyncGroup in time");
                remove_member_and_update_group(config, g, &id, now_ms);
            }
        }
    }

    try_complete_join(config, g, now_ms);
}

/// The earliest time a timer of this group is due.
pub(crate) fn next_deadline_ms(g: &Group) -> Option<i64> {
    if let Some(cg) = &g.consumer {
        return cg.next_deadline_ms();
    }
    let phase = g.join_phase.map(|p| match p {
        JoinPhase::InitialDelay { deadline_ms, .. } | JoinPhase::Rebalance { deadline_ms } => {
            deadline_ms
        }
    });
    let members = g.members.values().map(|m| m.session_deadline_ms);
    let pending = g.pending_members.values().copied();
    phase
        .into_iter()
        .chain(g.sync_deadline_ms)
        .chain(members)
        .chain(pending)
        .min()
}
