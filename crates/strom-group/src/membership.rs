//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup, following Kafka's classic
//! `GroupCoordinator` state machine (transitions shared with the timers are in `rebalance`):
//!
//! ```text
//!  Empty --join--> PreparingRebalance --all rejoined / deadline--> CompletingRebalance
//!    ^                 ^      |                                        |  leader's SyncGroup
//!    |  no members     |      +--(no members left)--> Empty            v
//!    +-----------------+------ member joins/leaves/expires <------- Stable
//! ```
//!
//! Every function here runs under the coordinator's state lock and never awaits; a request
//! that must wait gets a oneshot receiver that a later transition completes.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

use crate::codes;
use crate::group::{
    Group, GroupState, JoinOutcome, Member, SyncOutcome, NEW_MEMBER_JOIN_TIMEOUT_MS,
};
use crate::rebalance::{
    maybe_prepare_rebalance, remove_member_and_update_group, try_complete_join,
};
use crate::{GroupConfig, GroupCoordinator};

/// Slack added to a waiting request's own wall-clock cap, beyond the rebalance timeout that
/// the timers enforce; the cap only matters if the background task is not running.
const WAIT_SLACK_MS: u64 = 5_000;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

enum Start<T> {
    Done(T),
    Wait(oneshot::Receiver<T>, u64),
}

pub(crate) struct JoinArgs<'a> {
    // Fields as in JoinGroup; `require_known_member_id` is KIP-394 (v4+).
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub instance_id: Option<String>,
    pub client_id: &'a str,
    pub client_host: &'a str,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub require_known_member_id: bool,
    pub supports_skip_assignment: bool,
}

/// What SyncGroup carries, apart from its wire form.
pub(crate) struct SyncArgs<'a> {
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation_id: i32,
    pub protocol_type: Option<&'a str>,
    pub protocol_name: Option<&'a str>,
    /// (member id, assignment); only the leader sends any.
    pub assignments: Vec<(&'a str, Bytes)>,
}

impl GroupCoordinator {
    /// The answer of a request that may be parked: at once, or when the rebalance completes
    /// it, bounded by `cap_ms`; `fallback` answers a parked request that was dropped or
    /// outlived its cap.
    async fn answer<T>(&self, start: Start<T>, fallback: impl FnOnce() -> T) -> T {
        match start {
            Start::Done(o) => o,
            Start::Wait(rx, cap_ms) => {
                self.timers_changed.notify_one();
                match tokio::time::timeout(Duration::from_millis(cap_ms), rx).await {
                    Ok(Ok(o)) => o,
                    _ => fallback(),
                }
            }
        }
    }

    /// JoinGroup v0-v9. May wait (bounded by the rebalance timeout) until the rebalance
    /// completes; `client_id`/`client_host` come from the request header and the connection.
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let session_timeout_ms = req.session_timeout_ms;
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance_timeout_ms = if version == 0 || req.rebalance_timeout_ms <= 0 {
            session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        };
        let args = JoinArgs {
            group_id: req.group_id.as_str(),
            member_id: req.member_id.as_str(),
            instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
            client_id,
            client_host,
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        };
        let outcome = self.join_outcome(args).await;
        join_response(outcome, version)
    }

    /// Joins (or rejoins) and waits for the join phase to complete; shared by JoinGroup and
    /// the domain call [`GroupCoordinator::join`].
    pub(crate) async fn join_outcome(&self, args: JoinArgs<'_>) -> JoinOutcome {
        let group_id = args.group_id.to_string();
        let member_id = args.member_id.to_string();
        let start = {
            let now_ms = self.clock.now_ms();
            let mut st = self.state.lock();
            let start = self.join_locked(&mut st.groups, args, now_ms);
            self.persist_locked(&mut st, &group_id);
            st.debug_check(&group_id);
            start
        };
        // Replaced by a newer JoinGroup of the same member, or timed out without the
        // background task: the client retries its join.
        self.answer(start, || {
            JoinOutcome::error(&member_id, codes::REBALANCE_IN_PROGRESS)
        })
        .await
    }

    fn join_locked(
        &self,
        groups: &mut std::collections::HashMap<String, Group>,
        a: JoinArgs<'_>,
        now_ms: i64,
    ) -> Start<JoinOutcome> {
        let fail = |code| Start::Done(JoinOutcome::error(a.member_id, code));
        if a.group_id.is_empty() {
            return fail(codes::INVALID_GROUP_ID);
        }
        if let Some(g) = groups.get_mut(a.group_id) {
            match &g.consumer {
                // A classic member of a live KIP-848 group: the coordinator assigns for it.
                Some(cg) if !cg.members.is_empty() => {
                    return Start::Done(crate::consumer::classic_join(
                        &self.config,
                        self.catalog.as_ref(),
                        g,
                        &a,
                        now_ms,
                    ))
                }
                Some(_) => {
                    tracing::info!(group = %a.group_id, "empty consumer group converted to a classic group");
                    g.consumer = None;
                }
                None => {}
            }
        }
        if a.session_timeout_ms < self.config.min_session_timeout_ms
            || a.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(codes::INVALID_SESSION_TIMEOUT);
        }
        if a.member_id.is_empty() {
            let group = groups
                .entry(a.group_id.to_string())
                .or_insert_with(|| Group::new(a.group_id, Some(now_ms)));
            let start = self.join_unknown_member(group, &a, now_ms);
            if group.is(GroupState::Empty) && group.members.is_empty() && group.offsets.is_empty() {
                // A rejected first join must not leave a phantom group behind.
                if group.pending_members.is_empty() && group.generation_id == 0 {
                    groups.remove(a.group_id);
                }
            }
            start
        } else {
            match groups.get_mut(a.group_id) {
                None => fail(codes::UNKNOWN_MEMBER_ID),
                Some(group) => self.join_known_member(group, &a, now_ms),
            }
        }
    }

    fn join_unknown_member(
        &self,
        g: &mut Group,
        a: &JoinArgs<'_>,
        now_ms: i64,
    ) -> Start<JoinOutcome> {
        if !g.supports_protocols(&a.protocol_type, &a.protocols) {
            return Start::Done(JoinOutcome::error("", codes::INCONSISTENT_GROUP_PROTOCOL));
        }
        let existing_static = a
            .instance_id
            .as_deref()
            .and_then(|i| g.static_member_id(i))
            .map(str::to_string);
        if existing_static.is_none()
            && g.members.len() + g.pending_members.len() >= self.config.max_group_size
        {
            return Start::Done(JoinOutcome::error("", codes::GROUP_MAX_SIZE_REACHED));
        }
        let new_member_id = self.new_member_id(a.client_id);
        if a.instance_id.is_some() {
            match existing_static {
                Some(old) => self.replace_static_member(g, a, &old, &new_member_id, now_ms),
                None => self.add_member_and_rebalance(g, a, &new_member_id, now_ms),
            }
        } else if a.require_known_member_id {
            // KIP-394: hand out the id first so a client that times out cannot leave
            // unnamed members behind.
            let deadline = now_ms.saturating_add(i64::from(a.session_timeout_ms));
            g.pending_members.insert(new_member_id.clone(), deadline);
            Start::Done(JoinOutcome::error(
                &new_member_id,
                codes::MEMBER_ID_REQUIRED,
            ))
        } else {
            self.add_member_and_rebalance(g, a, &new_member_id, now_ms)
        }
    }

    fn join_known_member(
        &self,
        g: &mut Group,
        a: &JoinArgs<'_>,
        now_ms: i64,
    ) -> Start<JoinOutcome> {
        let fail = |code| Start::Done(JoinOutcome::error(a.member_id, code));
        if !g.supports_protocols(&a.protocol_type, &a.protocols) {
            return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
        }
        if g.pending_members.contains_key(a.member_id) {
            if g.members.len() >= self.config.max_group_size {
                g.pending_members.remove(a.member_id);
                return fail(codes::GROUP_MAX_SIZE_REACHED);
            }
            return self.add_member_and_rebalance(g, a, a.member_id, now_ms);
        }
        if let Err(code) = g.validate_member(a.member_id, a.instance_id.as_deref()) {
            return fail(code);
        }
        let Some(member) = g.members.get(a.member_id) else {
            return fail(codes::UNKNOWN_MEMBER_ID);
        };
        let unchanged = member.matches(&a.protocols);
        match g.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(g, a, now_ms),
            GroupState::CompletingRebalance if unchanged => {
                // The member lost our JoinGroup answer; repeat it.
                Start::Done(g.join_outcome_for(a.member_id))
            }
            GroupState::Stable if unchanged && !g.is_leader(a.member_id) => {
                Start::Done(g.join_outcome_for(a.member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(g, a, now_ms)
            }
            GroupState::Empty | GroupState::Dead => fail(codes::UNKNOWN_MEMBER_ID),
        }
    }

    fn add_member_and_rebalance(
        &self,
        g: &mut Group,
        a: &JoinArgs<'_>,
        member_id: &str,
        now_ms: i64,
    ) -> Start<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        let member = Member {
            member_id: member_id.to_string(),
            group_instance_id: a.instance_id.clone(),
            client_id: a.client_id.to_string(),
            client_host: a.client_host.to_string(),
            rebalance_timeout_ms: a.rebalance_timeout_ms,
            session_timeout_ms: a.session_timeout_ms,
            protocol_type: a.protocol_type.clone(),
            protocols: a.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            is_new: true,
            session_deadline_ms: now_ms.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS),
        };
        if g.is(GroupState::PreparingRebalance) && g.generation_id == 0 {
            g.new_member_added = true;
        }
        g.add_member(member);
        maybe_prepare_rebalance(&self.config, g, now_ms);
        try_complete_join(&self.config, g, now_ms);
        Start::Wait(rx, self.join_wait_cap_ms(g))
    }

    fn update_member_and_rebalance(
        &self,
        g: &mut Group,
        a: &JoinArgs<'_>,
        now_ms: i64,
    ) -> Start<JoinOutcome> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = g.members.get_mut(a.member_id) {
            m.protocols = a.protocols.clone();
            m.rebalance_timeout_ms = a.rebalance_timeout_ms;
            m.session_timeout_ms = a.session_timeout_ms;
            m.client_id = a.client_id.to_string();
            m.client_host = a.client_host.to_string();
            // An older JoinGroup of this member still waiting is superseded (its sender drops).
            m.awaiting_join = Some(tx);
        }
        maybe_prepare_rebalance(&self.config, g, now_ms);
        try_complete_join(&self.config, g, now_ms);
        Start::Wait(rx, self.join_wait_cap_ms(g))
    }

    /// A static member rejoined with an empty member id (a restarted process): it takes over
    /// the old member id's place; the old id is fenced.
    fn replace_static_member(
        &self,
        g: &mut Group,
        a: &JoinArgs<'_>,
        old_id: &str,
        new_id: &str,
        now_ms: i64,
    ) -> Start<JoinOutcome> {
        let Some(mut member) = g.members.shift_remove(old_id) else {
            return self.add_member_and_rebalance(g, a, new_id, now_ms);
        };
        member.complete_join(JoinOutcome::error(old_id, codes::FENCED_INSTANCE_ID));
        member.complete_sync(SyncOutcome::error(codes::FENCED_INSTANCE_ID));
        let old_protocols = std::mem::replace(&mut member.protocols, a.protocols.clone());
        member.member_id = new_id.to_string();
        member.client_id = a.client_id.to_string();
        member.client_host = a.client_host.to_string();
        member.rebalance_timeout_ms = a.rebalance_timeout_ms;
        member.session_timeout_ms = a.session_timeout_ms;
        member.session_deadline_ms = now_ms.saturating_add(i64::from(a.session_timeout_ms));
        let (tx, rx) = oneshot::channel();
        member.awaiting_join = Some(tx);
        let was_leader = g.is_leader(old_id);
        if was_leader {
            g.leader_id = Some(new_id.to_string());
        }
        if g.pending_sync.remove(old_id) {
            g.pending_sync.insert(new_id.to_string());
        }
        if let Some(instance) = &a.instance_id {
            g.static_members
                .insert(instance.clone(), new_id.to_string());
        }
        g.members.insert(new_id.to_string(), member);
        let cap = self.join_wait_cap_ms(g);
        match g.state {
            GroupState::Stable => {
                // Kafka rebalances only if the group's protocol would change; we also
                // rebalance when the member's metadata (e.g. its subscription) changed, since
                // nobody else would notice it.
                let same_protocol = g.select_protocol() == g.protocol_name;
                if same_protocol && old_protocols == a.protocols {
                    let mut outcome = g.join_outcome_for(new_id);
                    if was_leader && a.supports_skip_assignment {
                        // v9+: the leader gets the member list but must not reassign.
                        outcome.skip_assignment = true;
                    } else {
                        // Before v9 a leader cannot be told to skip the assignment; like Kafka,
                        // answer with the old leader id so that it acts as a follower and
                        // fetches its unchanged assignment with SyncGroup.
                        outcome.members.clear();
                        if was_leader {
                            outcome.leader = old_id.to_string();
                        }
                    }
                    if let Some(m) = g.members.get_mut(new_id) {
                        m.awaiting_join = None;
                    }
                    // Kafka stores the group here too: the old member id is fenced for good.
                    g.metadata_dirty = true;
                    return Start::Done(outcome);
                }
                maybe_prepare_rebalance(&self.config, g, now_ms);
            }
            GroupState::CompletingRebalance => {
                // The leader may already be assigning to the old member id.
                maybe_prepare_rebalance(&self.config, g, now_ms);
            }
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
        try_complete_join(&self.config, g, now_ms);
        Start::Wait(rx, cap)
    }

    fn join_wait_cap_ms(&self, g: &Group) -> u64 {
        let ms = g
            .rebalance_timeout_ms()
            .max(self.config.initial_rebalance_delay_ms)
            .max(0);
        (ms as u64).saturating_add(WAIT_SLACK_MS)
    }

    /// SyncGroup v0-v5. A follower's call waits for the leader's assignment.
    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let args = SyncArgs {
            group_id: req.group_id.as_str(),
            member_id: req.member_id.as_str(),
            instance_id: req.group_instance_id.as_deref(),
            generation_id: req.generation_id,
            protocol_type: req.protocol_type.as_deref(),
            protocol_name: req.protocol_name.as_deref(),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.as_str(), a.assignment.clone()))
                .collect(),
        };
        let outcome = self.sync_outcome(args).await;
        let mut resp = SyncGroupResponse::default()
            .with_error_code(outcome.error)
            .with_assignment(outcome.assignment);
        if version >= 5 {
            resp.protocol_type = outcome.protocol_type.map(StrBytes::from_string);
            resp.protocol_name = outcome.protocol_name.map(StrBytes::from_string);
        }
        resp
    }

    /// Waits for the leader's assignment if needed; shared by SyncGroup and the domain call
    /// [`GroupCoordinator::sync`].
    pub(crate) async fn sync_outcome(&self, args: SyncArgs<'_>) -> SyncOutcome {
        let start = {
            let now_ms = self.clock.now_ms();
            let mut st = self.state.lock();
            let start = sync_locked(&mut st.groups, &args, now_ms);
            self.persist_locked(&mut st, args.group_id);
            st.debug_check(args.group_id);
            start
        };
        self.answer(start, || SyncOutcome::error(codes::REBALANCE_IN_PROGRESS))
            .await
    }

    /// Heartbeat v0-v4. Never waits.
    pub async fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let code = self.heartbeat_code(
            req.group_id.as_str(),
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            req.generation_id,
        );
        HeartbeatResponse::default().with_error_code(code)
    }

    pub(crate) fn heartbeat_code(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        let now_ms = self.clock.now_ms();
        let mut st = self.state.lock();
        let code = heartbeat_locked(
            &mut st.groups,
            group_id,
            member_id,
            instance_id,
            generation_id,
            now_ms,
        );
        st.debug_check(group_id);
        code
    }

    /// Removes one dynamic member; the domain call [`GroupCoordinator::leave`].
    pub(crate) fn leave_code(&self, group_id: &str, member_id: &str) -> i16 {
        if group_id.is_empty() {
            return codes::INVALID_GROUP_ID;
        }
        let code = {
            let now_ms = self.clock.now_ms();
            let mut st = self.state.lock();
            let code = match st.groups.get_mut(group_id) {
                None => codes::UNKNOWN_MEMBER_ID,
                Some(g) => leave_one(&self.config, g, member_id, None, now_ms),
            };
            self.persist_locked(&mut st, group_id);
            st.debug_check(group_id);
            code
        };
        self.timers_changed.notify_one();
        code
    }

    /// LeaveGroup v0-v5 (v3+ carries a batch of member identities).
    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        if req.group_id.is_empty() {
            return LeaveGroupResponse::default().with_error_code(codes::INVALID_GROUP_ID);
        }
        let identities: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let results: Vec<i16> = {
            let now_ms = self.clock.now_ms();
            let mut st = self.state.lock();
            let results = match st.groups.get_mut(req.group_id.as_str()) {
                None => vec![codes::UNKNOWN_MEMBER_ID; identities.len()],
                Some(g) => identities
                    .iter()
                    .map(|(m, i)| leave_one(&self.config, g, m, i.as_deref(), now_ms))
                    .collect(),
            };
            self.persist_locked(&mut st, req.group_id.as_str());
            st.debug_check(req.group_id.as_str());
            results
        };
        self.timers_changed.notify_one();
        if version >= 3 {
            let members = identities
                .into_iter()
                .zip(results)
                .map(|((m, i), code)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(m))
                        .with_group_instance_id(i.map(StrBytes::from_string))
                        .with_error_code(code)
                })
                .collect();
            LeaveGroupResponse::default().with_members(members)
        } else {
            let code = results
                .into_iter()
                .find(|c| *c != codes::NONE)
                .unwrap_or(codes::NONE);
            LeaveGroupResponse::default().with_error_code(code)
        }
    }
}

fn join_response(o: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default()
        .with_error_code(o.error)
        .with_generation_id(o.generation_id)
        .with_protocol_name(Some(s(o.protocol_name.as_deref().unwrap_or(""))))
        .with_leader(s(&o.leader))
        .with_member_id(s(&o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(instance.map(StrBytes::from_string))
                        .with_metadata(metadata)
                })
                .collect(),
        );
    if version >= 7 {
        resp.protocol_type = o.protocol_type.map(StrBytes::from_string);
        // v7+ makes the protocol name nullable; an error answer carries none.
        if o.protocol_name.is_none() {
            resp.protocol_name = None;
        }
    }
    if version >= 9 {
        resp.skip_assignment = o.skip_assignment;
    }
    resp
}

fn sync_locked(
    groups: &mut std::collections::HashMap<String, Group>,
    req: &SyncArgs<'_>,
    now_ms: i64,
) -> Start<SyncOutcome> {
    let fail = |code| Start::Done(SyncOutcome::error(code));
    if req.group_id.is_empty() {
        return fail(codes::INVALID_GROUP_ID);
    }
    let Some(g) = groups.get_mut(req.group_id) else {
        return fail(codes::UNKNOWN_MEMBER_ID);
    };
    if g.consumer.is_some() {
        return Start::Done(crate::consumer::classic_sync(g, req, now_ms));
    }
    let member_id = req.member_id;
    if let Err(code) = g.validate_member(member_id, req.instance_id) {
        return fail(code);
    }
    if req.generation_id != g.generation_id {
        return fail(codes::ILLEGAL_GENERATION);
    }
    let inconsistent = |asked: &Option<&str>, have: &Option<String>| match asked {
        Some(a) => have.as_deref() != Some(*a),
        None => false,
    };
    if inconsistent(&req.protocol_type, &g.protocol_type)
        || inconsistent(&req.protocol_name, &g.protocol_name)
    {
        return fail(codes::INCONSISTENT_GROUP_PROTOCOL);
    }
    match g.state {
        GroupState::Empty | GroupState::Dead => fail(codes::UNKNOWN_MEMBER_ID),
        GroupState::PreparingRebalance => fail(codes::REBALANCE_IN_PROGRESS),
        GroupState::Stable => {
            g.pending_sync.remove(member_id);
            let assignment = g
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default();
            Start::Done(SyncOutcome {
                error: codes::NONE,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol_name.clone(),
                assignment,
            })
        }
        GroupState::CompletingRebalance => {
            let (tx, rx) = oneshot::channel();
            if let Some(m) = g.members.get_mut(member_id) {
                m.awaiting_sync = Some(tx);
            }
            g.pending_sync.remove(member_id);
            if g.is_leader(member_id) {
                for m in g.members.values_mut() {
                    m.assignment = Bytes::new();
                }
                for (id, assignment) in &req.assignments {
                    if let Some(m) = g.members.get_mut(*id) {
                        m.assignment = assignment.clone();
                    }
                }
                propagate_assignment(g, now_ms);
            }
            let cap = (g.rebalance_timeout_ms().max(0) as u64).saturating_add(WAIT_SLACK_MS);
            Start::Wait(rx, cap)
        }
    }
}

/// Answers every waiting SyncGroup with its assignment and makes the group Stable.
fn propagate_assignment(g: &mut Group, now_ms: i64) {
    debug_assert!(g.is(GroupState::CompletingRebalance));
    let protocol_type = g.protocol_type.clone();
    let protocol_name = g.protocol_name.clone();
    for m in g.members.values_mut() {
        let outcome = SyncOutcome {
            error: codes::NONE,
            protocol_type: protocol_type.clone(),
            protocol_name: protocol_name.clone(),
            assignment: m.assignment.clone(),
        };
        if m.awaiting_sync.is_some() {
            m.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
        }
        m.complete_sync(outcome);
    }
    g.transition(GroupState::Stable, now_ms);
    // The generation is complete: Kafka writes its GroupMetadata record here.
    g.metadata_dirty = true;
}

fn heartbeat_locked(
    groups: &mut std::collections::HashMap<String, Group>,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation_id: i32,
    now_ms: i64,
) -> i16 {
    if group_id.is_empty() {
        return codes::INVALID_GROUP_ID;
    }
    let Some(g) = groups.get_mut(group_id) else {
        return codes::UNKNOWN_MEMBER_ID;
    };
    if g.consumer.is_some() {
        return crate::consumer::classic_heartbeat(
            g,
            member_id,
            instance_id,
            generation_id,
            now_ms,
        );
    }
    if let Err(code) = g.validate_member(member_id, instance_id) {
        return code;
    }
    if generation_id != g.generation_id {
        return codes::ILLEGAL_GENERATION;
    }
    let state = g.state;
    let Some(m) = g.members.get_mut(member_id) else {
        return codes::UNKNOWN_MEMBER_ID;
    };
    match state {
        GroupState::Empty | GroupState::Dead => codes::UNKNOWN_MEMBER_ID,
        GroupState::PreparingRebalance => {
            m.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
            codes::REBALANCE_IN_PROGRESS
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            m.session_deadline_ms = now_ms.saturating_add(i64::from(m.session_timeout_ms));
            codes::NONE
        }
    }
}

fn leave_one(
    config: &GroupConfig,
    g: &mut Group,
    member_id: &str,
    instance_id: Option<&str>,
    now_ms: i64,
) -> i16 {
    if g.consumer.is_some() {
        return crate::consumer::classic_leave(g, member_id, instance_id);
    }
    let target = match instance_id {
        Some(instance) => match g.static_member_id(instance) {
            None => return codes::UNKNOWN_MEMBER_ID,
            Some(existing) if !member_id.is_empty() && existing != member_id => {
                return codes::FENCED_INSTANCE_ID
            }
            Some(existing) => existing.to_string(),
        },
        None => {
            if g.pending_members.remove(member_id).is_some() {
                try_complete_join(config, g, now_ms);
                return codes::NONE;
            }
            if !g.members.contains_key(member_id) {
                return codes::UNKNOWN_MEMBER_ID;
            }
            member_id.to_string()
        }
    };
    remove_member_and_update_group(config, g, &target, now_ms);
    codes::NONE
}
