//! Group membership survives a restart (Kafka's GroupMetadata records): the last completed
//! generation comes back Stable with its members, leader, protocol and assignments; members
//! that keep heartbeating continue without a rebalance, the others expire by session timeout.
//!
//! The story: before this, only committed offsets were persisted, so after every broker
//! restart each consumer's next heartbeat got UNKNOWN_MEMBER_ID and the whole group
//! rebalanced.

mod common;

use std::io::Write;

use common::*;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, DescribeGroupsResponse, LeaveGroupRequest,
    OffsetCommitRequest, TopicName,
};
use strom_group::codes;
use strom_group::GroupConfig;

async fn describe(env: &Env, group: &str) -> DescribeGroupsResponse {
    env.coord
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
            5,
        )
        .await
}

async fn state_of(env: &Env, group: &str) -> String {
    describe(env, group).await.groups[0].group_state.to_string()
}

async fn heartbeat(env: &Env, member: &str, generation: i32) -> i16 {
    env.coord
        .heartbeat(hb_req("g", member, generation), 3)
        .await
        .error_code
}

async fn commit(env: &Env, member: &str, generation: i32, offset: i64) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let r = env.coord.offset_commit(req, 8).await;
    r.topics[0].partitions[0].error_code
}

/// Three members join together (one rebalance, generation 1) and the leader assigns.
/// Returns (leader, members in join order).
async fn stable_three(env: &Env) -> (String, Vec<String>) {
    let handles: Vec<_> = (0..3)
        .map(|_| spawn_join(&env.coord, join_req("g", "", None, &["t"]), 3))
        .collect();
    settle().await;
    env.advance(3000);
    settle().await;
    env.advance(3000);
    settle().await;
    let mut ids = Vec::new();
    let mut leader = String::new();
    for h in handles {
        let r = h.await.unwrap();
        assert_eq!(r.error_code, codes::NONE);
        assert_eq!(r.generation_id, 1);
        leader = r.leader.to_string();
        ids.push(r.member_id.to_string());
    }
    let followers: Vec<&String> = ids.iter().filter(|m| **m != leader).collect();
    let waits: Vec<_> = followers
        .iter()
        .map(|f| spawn_sync(&env.coord, sync_req("g", f, 1, &[]), 3))
        .collect();
    settle().await;
    let assignments: Vec<(&str, &[u8])> = ids.iter().map(|m| (m.as_str(), m.as_bytes())).collect();
    let ls = env
        .coord
        .sync_group(sync_req("g", &leader, 1, &assignments), 3)
        .await;
    assert_eq!(ls.error_code, codes::NONE);
    for w in waits {
        assert_eq!(w.await.unwrap().error_code, codes::NONE);
    }
    assert_eq!(state_of(env, "g").await, "Stable");
    (leader, ids)
}

fn delayed_config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: 3000,
        ..config()
    }
}

#[tokio::test]
async fn stable_group_of_three_survives_reopen() {
    let mut env = Env::new(delayed_config());
    let (leader, ids) = stable_three(&env).await;
    let before = describe(&env, "g").await;
    env.reopen();
    env.coord.tick();

    let after = describe(&env, "g").await;
    let g = &after.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 3);
    // Members, their metadata and assignments are exactly what they were.
    assert_eq!(g.members, before.groups[0].members);
    for m in &g.members {
        assert_eq!(&m.member_assignment[..], m.member_id.as_bytes());
    }

    // Heartbeats with the old ids and generation go on, through several session timeouts.
    for _ in 0..4 {
        env.advance(i64::from(SESSION_MS) / 2);
        for id in &ids {
            assert_eq!(heartbeat(&env, id, 1).await, codes::NONE);
        }
    }
    assert_eq!(state_of(&env, "g").await, "Stable");
    // Commits with the generation are accepted; a follower's SyncGroup returns its
    // assignment; the leader is still the leader.
    assert_eq!(commit(&env, &ids[0], 1, 42).await, codes::NONE);
    let follower = ids.iter().find(|m| **m != leader).unwrap();
    let r = env
        .coord
        .sync_group(sync_req("g", follower, 1, &[]), 3)
        .await;
    assert_eq!(r.error_code, codes::NONE);
    assert_eq!(&r.assignment[..], follower.as_bytes());
    // A follower rejoining with unchanged metadata gets the current generation, no rebalance.
    let j = env
        .coord
        .join_group(join_req("g", follower, None, &["t"]), 3, "c", "/h")
        .await;
    assert_eq!(j.error_code, codes::NONE);
    assert_eq!(j.generation_id, 1);
    assert_eq!(j.leader.as_str(), leader);
    assert_eq!(state_of(&env, "g").await, "Stable");
    // Unknown ids and wrong generations are still refused.
    assert_eq!(heartbeat(&env, "nobody", 1).await, codes::UNKNOWN_MEMBER_ID);
    assert_eq!(heartbeat(&env, &ids[0], 2).await, codes::ILLEGAL_GENERATION);
}

#[tokio::test]
async fn member_that_does_not_come_back_expires_after_reopen() {
    let mut env = Env::new(delayed_config());
    let (leader, ids) = stable_three(&env).await;
    // A long outage: the sessions of before the restart would all have run out by now.
    env.clock.advance_ms(i64::from(SESSION_MS) * 10);
    env.reopen();
    env.coord.tick();
    assert_eq!(state_of(&env, "g").await, "Stable");

    let gone = ids.iter().find(|m| **m != leader).unwrap().clone();
    let alive: Vec<String> = ids.iter().filter(|m| **m != gone).cloned().collect();
    env.advance(i64::from(SESSION_MS) / 2);
    for id in &alive {
        assert_eq!(heartbeat(&env, id, 1).await, codes::NONE);
    }
    assert_eq!(state_of(&env, "g").await, "Stable");
    // The session re-armed at load runs out for the member that never heartbeated.
    env.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(state_of(&env, "g").await, "PreparingRebalance");
    assert_eq!(heartbeat(&env, &gone, 1).await, codes::UNKNOWN_MEMBER_ID);
    for id in &alive {
        assert_eq!(heartbeat(&env, id, 1).await, codes::REBALANCE_IN_PROGRESS);
    }
    let joins: Vec<_> = alive
        .iter()
        .map(|id| spawn_join(&env.coord, join_req("g", id, None, &["t"]), 3))
        .collect();
    settle().await;
    for j in joins {
        let r = j.await.unwrap();
        assert_eq!(r.error_code, codes::NONE);
        assert_eq!(r.generation_id, 2);
        assert_eq!(
            r.leader.as_str(),
            leader,
            "the restored leader stays leader"
        );
    }
}

#[tokio::test]
async fn new_generation_after_reopen_is_stored_too() {
    let mut env = Env::new(delayed_config());
    let (leader, ids) = stable_three(&env).await;
    env.reopen();
    // One member leaves; the other two form generation 2.
    let leaving = ids.iter().find(|m| **m != leader).unwrap().clone();
    let r = env
        .coord
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(&leaving)),
            1,
        )
        .await;
    assert_eq!(r.error_code, codes::NONE);
    let rest: Vec<String> = ids.iter().filter(|m| **m != leaving).cloned().collect();
    let joins: Vec<_> = rest
        .iter()
        .map(|id| spawn_join(&env.coord, join_req("g", id, None, &["t"]), 3))
        .collect();
    settle().await;
    for j in joins {
        assert_eq!(j.await.unwrap().generation_id, 2);
    }
    let follower = rest.iter().find(|m| **m != leader).unwrap();
    let w = spawn_sync(&env.coord, sync_req("g", follower, 2, &[]), 3);
    settle().await;
    env.coord
        .sync_group(
            sync_req("g", &leader, 2, &[(&leader, b"L2"), (follower, b"F2")]),
            3,
        )
        .await;
    assert_eq!(&w.await.unwrap().assignment[..], b"F2");

    env.reopen();
    let g = &describe(&env, "g").await.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.members.len(), 2);
    assert_eq!(heartbeat(&env, &leader, 2).await, codes::NONE);
    assert_eq!(heartbeat(&env, follower, 2).await, codes::NONE);
    assert_eq!(heartbeat(&env, &leaving, 2).await, codes::UNKNOWN_MEMBER_ID);
}

#[tokio::test]
async fn empty_group_keeps_its_generation_and_deleted_group_stays_deleted() {
    let mut env = Env::new(delayed_config());
    let (_, ids) = stable_three(&env).await;
    assert_eq!(commit(&env, &ids[0], 1, 7).await, codes::NONE);
    for id in &ids {
        let r = env
            .coord
            .leave_group(
                LeaveGroupRequest::default()
                    .with_group_id(gid("g"))
                    .with_member_id(s(id)),
                1,
            )
            .await;
        assert_eq!(r.error_code, codes::NONE);
    }
    assert_eq!(state_of(&env, "g").await, "Empty");
    env.reopen();
    // Empty, not Stable with the members of generation 1: the empty generation was stored.
    assert_eq!(state_of(&env, "g").await, "Empty");
    assert_eq!(heartbeat(&env, &ids[0], 1).await, codes::UNKNOWN_MEMBER_ID);
    assert_eq!(env.coord.committed_offsets("g"), vec![("t".into(), 0, 7)]);

    let mut env = Env::new(delayed_config());
    let (_, ids) = stable_three(&env).await;
    for id in &ids {
        env.coord
            .leave_group(
                LeaveGroupRequest::default()
                    .with_group_id(gid("g"))
                    .with_member_id(s(id)),
                1,
            )
            .await;
    }
    let r = env
        .coord
        .delete_groups(
            DeleteGroupsRequest::default().with_groups_names(vec![gid("g")]),
            2,
        )
        .await;
    assert_eq!(r.results[0].error_code, codes::NONE);
    // Twice: the first reopen compacts the file.
    for _ in 0..2 {
        env.reopen();
        assert_eq!(state_of(&env, "g").await, "Dead");
        assert_eq!(heartbeat(&env, &ids[0], 1).await, codes::UNKNOWN_MEMBER_ID);
    }
}

#[tokio::test]
async fn empty_group_generation_continues_after_reopen() {
    let mut env = Env::new(config());
    let a = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "a", "/h")
        .await;
    let a_id = a.member_id.to_string();
    assert_eq!(a.generation_id, 1);
    env.coord
        .sync_group(sync_req("g", &a_id, 1, &[(&a_id, b"x")]), 3)
        .await;
    assert_eq!(commit(&env, &a_id, 1, 3).await, codes::NONE);
    env.coord
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(&a_id)),
            1,
        )
        .await;
    // Leaving made generation 2, empty.
    env.reopen();
    let b = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "b", "/h")
        .await;
    assert_eq!(b.error_code, codes::NONE);
    assert_eq!(b.generation_id, 3);
}

/// A torn record after a stored generation is truncated; the generation before it is kept.
#[tokio::test]
async fn torn_tail_after_group_metadata_is_truncated() {
    let mut env = Env::new(delayed_config());
    let (_, ids) = stable_three(&env).await;
    env.coord.flush().unwrap();
    let log = env.dir.path().join("offsets.log");
    let good_len = std::fs::metadata(&log).unwrap().len();
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        // A record header promising 400 bytes, then a few of a group metadata record.
        f.write_all(&400u32.to_be_bytes()).unwrap();
        f.write_all(&[0xde, 0xad, 0xbe, 0xef, 4, 0, 1, b'g', 1])
            .unwrap();
    }
    env.reopen();
    assert_eq!(std::fs::metadata(&log).unwrap().len(), good_len);
    assert_eq!(state_of(&env, "g").await, "Stable");
    for id in &ids {
        assert_eq!(heartbeat(&env, id, 1).await, codes::NONE);
    }
    // Later appends are read back after the truncation.
    assert_eq!(commit(&env, &ids[0], 1, 9).await, codes::NONE);
    env.reopen();
    assert_eq!(env.coord.committed_offsets("g"), vec![("t".into(), 0, 9)]);
    assert_eq!(state_of(&env, "g").await, "Stable");

    // A commit record cut short: the offset is gone, the group is still restored.
    let len = std::fs::metadata(&log).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    env.reopen();
    assert!(env.coord.committed_offsets("g").is_empty());
    assert_eq!(state_of(&env, "g").await, "Stable");
}

/// `fixtures/offsets-v1-before-group-metadata.log` was written by the code before group
/// metadata records existed (commits, a superseded commit, an offset tombstone, a deleted
/// group). It must still open: kind 4 was added without a format version change.
#[tokio::test]
async fn log_written_before_group_metadata_still_opens() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/offsets-v1-before-group-metadata.log"
    );
    let mut env = Env::new(delayed_config());
    std::fs::copy(fixture, env.dir.path().join("offsets.log")).unwrap();
    env.reopen();
    let expected: Vec<(String, i32, i64)> = vec![("t".into(), 0, 5), ("t".into(), 1, 7)];
    assert_eq!(env.coord.committed_offsets("legacy"), expected);
    assert!(env.coord.committed_offsets("gone").is_empty());
    assert_eq!(state_of(&env, "legacy").await, "Empty");
    assert_eq!(state_of(&env, "gone").await, "Dead");
    // The same file then takes group metadata records and reads them back.
    let (_, ids) = stable_three(&env).await;
    env.reopen();
    assert_eq!(env.coord.committed_offsets("legacy"), expected);
    assert_eq!(state_of(&env, "g").await, "Stable");
    assert_eq!(heartbeat(&env, &ids[0], 1).await, codes::NONE);
}

/// A group removed by offsets retention leaves a tombstone: a simple consumer that later
/// commits under the same id must not inherit the old group's protocol and Empty-since time
/// after a restart (its offsets would then expire at once).
#[tokio::test]
async fn group_removed_by_retention_does_not_come_back() {
    let mut env = Env::new(GroupConfig {
        offsets_retention_ms: 60_000,
        offsets_retention_check_interval_ms: 1000,
        ..config()
    });
    let a = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "a", "/h")
        .await;
    let a_id = a.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &a_id, 1, &[(&a_id, b"x")]), 3)
        .await;
    assert_eq!(commit(&env, &a_id, 1, 3).await, codes::NONE);
    env.coord
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(&a_id)),
            1,
        )
        .await;
    env.advance(61_000);
    env.advance(1_000);
    assert_eq!(state_of(&env, "g").await, "Dead");
    // A simple consumer (generation -1) reuses the id.
    assert_eq!(commit(&env, "", -1, 8).await, codes::NONE);
    env.reopen();
    assert_eq!(
        describe(&env, "g").await.groups[0].protocol_type.as_str(),
        ""
    );
    env.advance(30_000);
    assert_eq!(env.coord.committed_offsets("g"), vec![("t".into(), 0, 8)]);
}
