//! The classic rebalance protocol, driven with a manual clock.

mod common;

use common::*;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{DescribeGroupsRequest, LeaveGroupRequest};
use strom_group::codes;
use strom_group::GroupConfig;

async fn state_of(env: &Env, group: &str) -> String {
    let d = env
        .coord
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
            5,
        )
        .await;
    d.groups[0].group_state.to_string()
}

/// One member, JoinGroup v3 (no MEMBER_ID_REQUIRED), no initial delay: join completes at once.
#[tokio::test]
async fn single_member_join_sync_heartbeat() {
    let env = Env::new(config());
    let j = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "c1", "/h")
        .await;
    assert_eq!(j.error_code, codes::NONE);
    assert_eq!(j.generation_id, 1);
    assert!(j.member_id.starts_with("c1-"));
    assert_eq!(j.leader, j.member_id);
    assert_eq!(j.members.len(), 1);
    assert_eq!(j.protocol_name.as_deref(), Some("range"));
    assert_eq!(state_of(&env, "g").await, "CompletingRebalance");

    let m = j.member_id.to_string();
    let sy = env
        .coord
        .sync_group(sync_req("g", &m, 1, &[(&m, b"A")]), 3)
        .await;
    assert_eq!(sy.error_code, codes::NONE);
    assert_eq!(&sy.assignment[..], b"A");
    assert_eq!(state_of(&env, "g").await, "Stable");

    let hb = env.coord.heartbeat(hb_req("g", &m, 1), 3).await;
    assert_eq!(hb.error_code, codes::NONE);

    // Heartbeats keep the member alive past its session timeout.
    for _ in 0..5 {
        env.advance(i64::from(SESSION_MS) - 1);
        assert_eq!(
            env.coord.heartbeat(hb_req("g", &m, 1), 3).await.error_code,
            codes::NONE
        );
    }
    assert_eq!(state_of(&env, "g").await, "Stable");

    // A later SyncGroup in Stable returns the current assignment.
    let again = env.coord.sync_group(sync_req("g", &m, 1, &[]), 3).await;
    assert_eq!(&again.assignment[..], b"A");
}

#[tokio::test]
async fn member_id_required_flow() {
    let env = Env::new(config());
    let first = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 4, "c1", "/h")
        .await;
    assert_eq!(first.error_code, codes::MEMBER_ID_REQUIRED);
    assert_eq!(first.generation_id, -1);
    let id = first.member_id.to_string();
    assert!(id.starts_with("c1-"));

    let second = env
        .coord
        .join_group(join_req("g", &id, None, &["t"]), 4, "c1", "/h")
        .await;
    assert_eq!(second.error_code, codes::NONE);
    assert_eq!(second.member_id.as_str(), id);
    assert_eq!(second.generation_id, 1);
    assert_eq!(second.leader.as_str(), id);

    // An id that was never handed out is unknown.
    let bogus = env
        .coord
        .join_group(join_req("g", "nope", None, &["t"]), 4, "c1", "/h")
        .await;
    assert_eq!(bogus.error_code, codes::UNKNOWN_MEMBER_ID);
}

#[tokio::test]
async fn pending_member_id_expires_after_session_timeout() {
    let env = Env::new(config());
    let first = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 4, "c1", "/h")
        .await;
    let id = first.member_id.to_string();
    env.advance(i64::from(SESSION_MS));
    let late = env
        .coord
        .join_group(join_req("g", &id, None, &["t"]), 4, "c1", "/h")
        .await;
    assert_eq!(late.error_code, codes::UNKNOWN_MEMBER_ID);
}

/// Three consumers start together; the initial delay gathers them into one generation.
#[tokio::test]
async fn three_members_converge_to_one_generation() {
    let env = Env::new(GroupConfig {
        initial_rebalance_delay_ms: 3000,
        ..config()
    });
    let handles: Vec<_> = (0..3)
        .map(|_| spawn_join(&env.coord, join_req("g", "", None, &["t"]), 3))
        .collect();
    settle().await;
    assert_eq!(state_of(&env, "g").await, "PreparingRebalance");

    // New members arrived during the first delay: it is extended once more.
    env.advance(3000);
    settle().await;
    assert!(handles.iter().all(|h| !h.is_finished()));
    env.advance(3000);
    settle().await;

    let mut resps = Vec::new();
    for h in handles {
        resps.push(h.await.unwrap());
    }
    let leader = resps[0].leader.to_string();
    for r in &resps {
        assert_eq!(r.error_code, codes::NONE);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.leader.as_str(), leader);
    }
    let leaders: Vec<_> = resps
        .iter()
        .filter(|r| r.member_id.as_str() == leader)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert_eq!(leaders[0].members.len(), 3);
    assert!(resps
        .iter()
        .filter(|r| r.member_id.as_str() != leader)
        .all(|r| r.members.is_empty()));

    // Followers sync first and wait; the leader's assignment releases everyone.
    let followers: Vec<String> = resps
        .iter()
        .map(|r| r.member_id.to_string())
        .filter(|m| *m != leader)
        .collect();
    let waits: Vec<_> = followers
        .iter()
        .map(|f| spawn_sync(&env.coord, sync_req("g", f, 1, &[]), 3))
        .collect();
    settle().await;
    assert!(waits.iter().all(|w| !w.is_finished()));
    let assignments: Vec<(&str, &[u8])> = vec![
        (leader.as_str(), b"L"),
        (followers[0].as_str(), b"F0"),
        (followers[1].as_str(), b"F1"),
    ];
    let ls = env
        .coord
        .sync_group(sync_req("g", &leader, 1, &assignments), 3)
        .await;
    assert_eq!(&ls.assignment[..], b"L");
    for (w, expect) in waits.into_iter().zip([&b"F0"[..], &b"F1"[..]]) {
        let r = w.await.unwrap();
        assert_eq!(r.error_code, codes::NONE);
        assert_eq!(&r.assignment[..], expect);
    }
    assert_eq!(state_of(&env, "g").await, "Stable");
}

/// Builds a Stable group of two members (JoinGroup v3); returns (leader, follower).
async fn stable_pair(env: &Env) -> (String, String) {
    let a = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "a", "/h")
        .await;
    let a_id = a.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &a_id, 1, &[(&a_id, b"x")]), 3)
        .await;
    // B's join starts a rebalance; A must rejoin to complete it.
    let b = spawn_join(&env.coord, join_req("g", "", None, &["t"]), 3);
    settle().await;
    assert_eq!(
        env.coord
            .heartbeat(hb_req("g", &a_id, 1), 3)
            .await
            .error_code,
        codes::REBALANCE_IN_PROGRESS
    );
    let a2 = env
        .coord
        .join_group(join_req("g", &a_id, None, &["t"]), 3, "a", "/h")
        .await;
    let b = b.await.unwrap();
    assert_eq!(a2.generation_id, 2);
    assert_eq!(b.generation_id, 2);
    assert_eq!(a2.leader.as_str(), a_id, "the leader is kept while present");
    let b_id = b.member_id.to_string();
    let bw = spawn_sync(&env.coord, sync_req("g", &b_id, 2, &[]), 3);
    settle().await;
    env.coord
        .sync_group(sync_req("g", &a_id, 2, &[(&a_id, b"a"), (&b_id, b"b")]), 3)
        .await;
    assert_eq!(&bw.await.unwrap().assignment[..], b"b");
    (a_id, b_id)
}

#[tokio::test]
async fn session_timeout_triggers_rebalance() {
    let env = Env::new(config());
    let (a, b) = stable_pair(&env).await;
    env.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(
        env.coord.heartbeat(hb_req("g", &a, 2), 3).await.error_code,
        codes::NONE
    );
    // B never heartbeats: it expires; A is still within its session.
    env.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(state_of(&env, "g").await, "PreparingRebalance");
    assert_eq!(
        env.coord.heartbeat(hb_req("g", &b, 2), 3).await.error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        env.coord.heartbeat(hb_req("g", &a, 2), 3).await.error_code,
        codes::REBALANCE_IN_PROGRESS
    );
    let j = env
        .coord
        .join_group(join_req("g", &a, None, &["t"]), 3, "a", "/h")
        .await;
    assert_eq!(j.generation_id, 3);
    assert_eq!(j.members.len(), 1);
}

#[tokio::test]
async fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let env = Env::new(config());
    let (a, b) = stable_pair(&env).await;
    // A rejoins with new metadata (a new subscription): a rebalance starts; B stays silent
    // but keeps heartbeating, which is not a rejoin.
    let ja = spawn_join(&env.coord, join_req("g", &a, None, &["t", "u"]), 3);
    settle().await;
    for _ in 0..3 {
        env.advance(i64::from(SESSION_MS) - 1);
        env.coord.heartbeat(hb_req("g", &b, 2), 3).await;
    }
    settle().await;
    assert!(!ja.is_finished());
    env.advance(i64::from(REBALANCE_MS));
    settle().await;
    let j = ja.await.unwrap();
    assert_eq!(j.error_code, codes::NONE);
    assert_eq!(j.generation_id, 3);
    assert_eq!(
        j.members.len(),
        1,
        "B was dropped at the rebalance deadline"
    );
    assert_eq!(
        env.coord.heartbeat(hb_req("g", &b, 2), 3).await.error_code,
        codes::UNKNOWN_MEMBER_ID
    );
}

#[tokio::test]
async fn leave_triggers_rebalance() {
    let env = Env::new(config());
    let (a, b) = stable_pair(&env).await;
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&b)),
            MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let r = env.coord.leave_group(leave, 3).await;
    assert_eq!(r.error_code, codes::NONE);
    assert_eq!(r.members[0].error_code, codes::NONE);
    assert_eq!(r.members[1].error_code, codes::UNKNOWN_MEMBER_ID);
    assert_eq!(state_of(&env, "g").await, "PreparingRebalance");
    let j = env
        .coord
        .join_group(join_req("g", &a, None, &["t"]), 3, "a", "/h")
        .await;
    assert_eq!(j.generation_id, 3);
    assert_eq!(j.members.len(), 1);

    // v0-2: a single member id and a top-level error.
    let old = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_member_id(s("ghost"));
    assert_eq!(
        env.coord.leave_group(old, 1).await.error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    let old = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_member_id(s(&a));
    assert_eq!(env.coord.leave_group(old, 1).await.error_code, codes::NONE);
    // The last member left: the rebalance completes with nobody and the group is Empty.
    assert_eq!(state_of(&env, "g").await, "Empty");
}

#[tokio::test]
async fn illegal_generation_and_unknown_member() {
    let env = Env::new(config());
    let (a, _b) = stable_pair(&env).await;
    assert_eq!(
        env.coord.heartbeat(hb_req("g", &a, 1), 3).await.error_code,
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(
        env.coord
            .heartbeat(hb_req("g", "who", 2), 3)
            .await
            .error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        env.coord
            .heartbeat(hb_req("nogroup", &a, 2), 3)
            .await
            .error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        env.coord
            .sync_group(sync_req("g", &a, 7, &[]), 3)
            .await
            .error_code,
        codes::ILLEGAL_GENERATION
    );
    assert_eq!(
        env.coord
            .sync_group(sync_req("g", "who", 2, &[]), 3)
            .await
            .error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        env.coord.heartbeat(hb_req("", &a, 2), 3).await.error_code,
        codes::INVALID_GROUP_ID
    );
    let j = env
        .coord
        .join_group(join_req("", "", None, &["t"]), 5, "c", "/h")
        .await;
    assert_eq!(j.error_code, codes::INVALID_GROUP_ID);
    let j = env
        .coord
        .join_group(
            join_req("g2", "", None, &["t"]).with_session_timeout_ms(10),
            5,
            "c",
            "/h",
        )
        .await;
    assert_eq!(j.error_code, codes::INVALID_SESSION_TIMEOUT);
    // Another protocol type cannot join a running group.
    let j = env
        .coord
        .join_group(
            join_req("g", "", None, &["t"]).with_protocol_type(s("connect")),
            3,
            "c",
            "/h",
        )
        .await;
    assert_eq!(j.error_code, codes::INCONSISTENT_GROUP_PROTOCOL);
}

#[tokio::test]
async fn static_member_rejoin_keeps_generation_and_fences_old_id() {
    let env = Env::new(config());
    // Two static members, JoinGroup v5 (static members skip MEMBER_ID_REQUIRED).
    let a = env
        .coord
        .join_group(join_req("g", "", Some("ia"), &["t"]), 5, "a", "/h")
        .await;
    assert_eq!(a.error_code, codes::NONE);
    let a_id = a.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &a_id, 1, &[(&a_id, b"x")]), 5)
        .await;
    let b = spawn_join(&env.coord, join_req("g", "", Some("ib"), &["t"]), 5);
    settle().await;
    env.coord
        .join_group(join_req("g", &a_id, Some("ia"), &["t"]), 5, "a", "/h")
        .await;
    let b = b.await.unwrap();
    let b_id = b.member_id.to_string();
    assert_eq!(b.generation_id, 2);
    let bw = spawn_sync(
        &env.coord,
        sync_req("g", &b_id, 2, &[]).with_group_instance_id(Some(s("ib"))),
        5,
    );
    settle().await;
    env.coord
        .sync_group(sync_req("g", &a_id, 2, &[(&a_id, b"a"), (&b_id, b"b")]), 5)
        .await;
    assert_eq!(&bw.await.unwrap().assignment[..], b"b");

    // B restarts: same instance id, empty member id, same subscription. No rebalance.
    let b2 = env
        .coord
        .join_group(join_req("g", "", Some("ib"), &["t"]), 5, "b", "/h")
        .await;
    assert_eq!(b2.error_code, codes::NONE);
    assert_eq!(b2.generation_id, 2);
    assert_ne!(b2.member_id.as_str(), b_id);
    assert_eq!(b2.leader.as_str(), a_id);
    assert_eq!(state_of(&env, "g").await, "Stable");
    let b2_id = b2.member_id.to_string();
    let sy = env
        .coord
        .sync_group(
            sync_req("g", &b2_id, 2, &[]).with_group_instance_id(Some(s("ib"))),
            5,
        )
        .await;
    assert_eq!(
        &sy.assignment[..],
        b"b",
        "the new id inherits the assignment"
    );

    // The old member id is fenced.
    let old = hb_req("g", &b_id, 2).with_group_instance_id(Some(s("ib")));
    assert_eq!(
        env.coord.heartbeat(old, 5).await.error_code,
        codes::FENCED_INSTANCE_ID
    );
    let new = hb_req("g", &b2_id, 2).with_group_instance_id(Some(s("ib")));
    assert_eq!(env.coord.heartbeat(new, 5).await.error_code, codes::NONE);

    // The static leader restarting before v9: no rebalance, and it is answered with the old
    // leader id so that it behaves as a follower and just fetches its assignment.
    let a1 = env
        .coord
        .join_group(join_req("g", "", Some("ia"), &["t"]), 5, "a", "/h")
        .await;
    assert_eq!(a1.error_code, codes::NONE);
    assert_eq!(a1.generation_id, 2);
    assert_eq!(a1.leader.as_str(), a_id);
    assert_ne!(a1.member_id.as_str(), a_id);
    assert!(a1.members.is_empty());
    assert_eq!(state_of(&env, "g").await, "Stable");
    let a1_id = a1.member_id.to_string();
    let sy = env
        .coord
        .sync_group(
            sync_req("g", &a1_id, 2, &[]).with_group_instance_id(Some(s("ia"))),
            5,
        )
        .await;
    assert_eq!(&sy.assignment[..], b"a");

    // The static leader restarting on v9 is told to skip the assignment.
    let a2 = env
        .coord
        .join_group(join_req("g", "", Some("ia"), &["t"]), 9, "a", "/h")
        .await;
    assert_eq!(a2.error_code, codes::NONE);
    assert_eq!(a2.generation_id, 2);
    assert!(a2.skip_assignment);
    assert_eq!(a2.leader, a2.member_id);
    assert_eq!(a2.members.len(), 2);
    assert_eq!(state_of(&env, "g").await, "Stable");

    // Leaving by instance id (admin removeMembersFromConsumerGroup) removes the member.
    let leave = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_members(vec![
            MemberIdentity::default().with_group_instance_id(Some(s("ib")))
        ]);
    let r = env.coord.leave_group(leave, 4).await;
    assert_eq!(r.members[0].error_code, codes::NONE);
    assert_eq!(state_of(&env, "g").await, "PreparingRebalance");
}

#[tokio::test]
async fn follower_that_never_syncs_is_removed() {
    let env = Env::new(config());
    let a = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "a", "/h")
        .await;
    let a_id = a.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &a_id, 1, &[(&a_id, b"x")]), 3)
        .await;
    let b = spawn_join(&env.coord, join_req("g", "", None, &["t"]), 3);
    settle().await;
    env.coord
        .join_group(join_req("g", &a_id, None, &["t"]), 3, "a", "/h")
        .await;
    let b_id = b.await.unwrap().member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &a_id, 2, &[(&a_id, b"a")]), 3)
        .await;
    // B heartbeats but never sends SyncGroup; at the rebalance timeout it is removed.
    for _ in 0..4 {
        env.advance(i64::from(SESSION_MS) - 1);
        env.coord.heartbeat(hb_req("g", &a_id, 2), 3).await;
        env.coord.heartbeat(hb_req("g", &b_id, 2), 3).await;
    }
    assert_eq!(state_of(&env, "g").await, "PreparingRebalance");
    assert_eq!(
        env.coord
            .heartbeat(hb_req("g", &b_id, 2), 3)
            .await
            .error_code,
        codes::UNKNOWN_MEMBER_ID
    );
}

#[tokio::test]
async fn rebalance_while_follower_waits_for_sync_answers_rebalance_in_progress() {
    let env = Env::new(config());
    let a = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "a", "/h")
        .await;
    let a_id = a.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &a_id, 1, &[(&a_id, b"x")]), 3)
        .await;
    let b = spawn_join(&env.coord, join_req("g", "", None, &["t"]), 3);
    settle().await;
    env.coord
        .join_group(join_req("g", &a_id, None, &["t"]), 3, "a", "/h")
        .await;
    let b_id = b.await.unwrap().member_id.to_string();
    let bw = spawn_sync(&env.coord, sync_req("g", &b_id, 2, &[]), 3);
    settle().await;
    // A third member joins before the leader syncs.
    let _c = spawn_join(&env.coord, join_req("g", "", None, &["t"]), 3);
    settle().await;
    assert_eq!(bw.await.unwrap().error_code, codes::REBALANCE_IN_PROGRESS);
}

/// The initial delay is extended while members keep arriving, but never beyond the
/// rebalance timeout (Kafka's InitialDelayedJoin).
#[tokio::test]
async fn initial_delay_extends_but_is_bounded_by_the_rebalance_timeout() {
    let env = Env::new(GroupConfig {
        initial_rebalance_delay_ms: 3000,
        ..config()
    });
    let req = || join_req("g", "", None, &["t"]).with_rebalance_timeout_ms(7000);
    let mut handles = vec![spawn_join(&env.coord, req(), 3)];
    settle().await;
    for (at_ms, joiner) in [
        (1000, true),
        (3000, false),
        (5000, true),
        (6000, false),
        (6500, true),
    ] {
        env.clock.set_ms(T0_MS + at_ms);
        if joiner {
            handles.push(spawn_join(&env.coord, req(), 3));
        }
        settle().await;
        env.coord.tick();
        settle().await;
        assert!(
            handles.iter().all(|h| !h.is_finished()),
            "completed early at +{at_ms} ms"
        );
    }
    env.clock.set_ms(T0_MS + 7000);
    env.coord.tick();
    settle().await;
    for h in handles {
        let r = h.await.unwrap();
        assert_eq!(r.error_code, codes::NONE);
        assert_eq!(r.generation_id, 1);
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED holds the rebalance until that member
/// joins with it, or until it expires after the session timeout.
#[tokio::test]
async fn pending_member_holds_the_rebalance_until_it_joins_or_expires() {
    let env = Env::new(config());
    for (group, pending_joins) in [("g1", true), ("g2", false)] {
        let a = env
            .coord
            .join_group(join_req(group, "", None, &["t"]), 3, "a", "/h")
            .await;
        let a_id = a.member_id.to_string();
        env.coord
            .sync_group(sync_req(group, &a_id, 1, &[(&a_id, b"x")]), 3)
            .await;

        let b = env
            .coord
            .join_group(join_req(group, "", None, &["t"]), 4, "b", "/h")
            .await;
        assert_eq!(b.error_code, codes::MEMBER_ID_REQUIRED);
        let b_id = b.member_id.to_string();
        // The leader rejoins, which starts a rebalance; B's id is still pending.
        let ja = spawn_join(&env.coord, join_req(group, &a_id, None, &["t"]), 3);
        settle().await;
        assert!(!ja.is_finished());
        if pending_joins {
            let jb = env
                .coord
                .join_group(join_req(group, &b_id, None, &["t"]), 4, "b", "/h")
                .await;
            assert_eq!(jb.generation_id, 2);
            let ja = ja.await.unwrap();
            assert_eq!(ja.generation_id, 2);
            assert_eq!(ja.members.len(), 2);
        } else {
            env.advance(i64::from(SESSION_MS));
            settle().await;
            let ja = ja.await.unwrap();
            assert_eq!(ja.generation_id, 2);
            assert_eq!(ja.members.len(), 1);
            let late = env
                .coord
                .join_group(join_req(group, &b_id, None, &["t"]), 4, "b", "/h")
                .await;
            assert_eq!(late.error_code, codes::UNKNOWN_MEMBER_ID);
        }
    }
}

fn join_with_protocols(
    group: &str,
    protocols: &[&str],
) -> kafka_protocol::messages::JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    join_req(group, "", None, &["t"]).with_protocols(
        protocols
            .iter()
            .map(|p| {
                JoinGroupRequestProtocol::default()
                    .with_name(s(p))
                    .with_metadata(subscription(&["t"]))
            })
            .collect(),
    )
}

#[tokio::test]
async fn protocol_is_chosen_by_votes_among_common_protocols() {
    let env = Env::new(GroupConfig {
        initial_rebalance_delay_ms: 1000,
        ..config()
    });
    let handles = vec![
        spawn_join(
            &env.coord,
            join_with_protocols("g", &["roundrobin", "range"]),
            3,
        ),
        spawn_join(
            &env.coord,
            join_with_protocols("g", &["range", "roundrobin", "sticky"]),
            3,
        ),
        spawn_join(
            &env.coord,
            join_with_protocols("g", &["roundrobin", "range"]),
            3,
        ),
    ];
    settle().await;
    // A member sharing no protocol with the group is refused.
    let odd = env
        .coord
        .join_group(join_with_protocols("g", &["sticky"]), 3, "c", "/h")
        .await;
    assert_eq!(odd.error_code, codes::INCONSISTENT_GROUP_PROTOCOL);
    // Two members arrived during the first delay, so it runs once more.
    env.advance(1000);
    env.advance(1000);
    settle().await;
    for h in handles {
        let r = h.await.unwrap();
        assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    }
}

#[tokio::test]
async fn group_max_size_is_enforced() {
    let env = Env::new(GroupConfig {
        max_group_size: 1,
        ..config()
    });
    let a = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "a", "/h")
        .await;
    assert_eq!(a.error_code, codes::NONE);
    let b = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "b", "/h")
        .await;
    assert_eq!(b.error_code, codes::GROUP_MAX_SIZE_REACHED);
}

#[tokio::test]
async fn describe_shows_members_metadata_and_assignment_when_stable() {
    let env = Env::new(config());
    let j = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "cid", "/10.0.0.1")
        .await;
    let m = j.member_id.to_string();
    let describe = || DescribeGroupsRequest::default().with_groups(vec![gid("g")]);
    let d = env.coord.describe_groups(describe(), 5).await;
    let g = &d.groups[0];
    assert_eq!(g.group_state.as_str(), "CompletingRebalance");
    assert!(g.protocol_data.is_empty());
    assert!(g.members[0].member_assignment.is_empty());

    env.coord
        .sync_group(sync_req("g", &m, 1, &[(&m, b"assigned")]), 3)
        .await;
    let d = env.coord.describe_groups(describe(), 5).await;
    let g = &d.groups[0];
    assert_eq!(g.error_code, codes::NONE);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    let member = &g.members[0];
    assert_eq!(member.member_id.as_str(), m);
    assert_eq!(member.client_id.as_str(), "cid");
    assert_eq!(member.client_host.as_str(), "/10.0.0.1");
    assert_eq!(member.member_metadata, subscription(&["t"]));
    assert_eq!(&member.member_assignment[..], b"assigned");
}
