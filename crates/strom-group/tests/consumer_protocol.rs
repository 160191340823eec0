//! The KIP-848 consumer group protocol at the coordinator: epochs, reconciliation without two
//! owners of a partition, leaving, fencing, and Kafka's error codes.

mod common;

use std::collections::BTreeSet;

use common::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    TopicName,
};
use strom_group::codes;

const FENCED_MEMBER_EPOCH: i16 = 110;
const UNRELEASED_INSTANCE_ID: i16 = 111;
const UNSUPPORTED_ASSIGNOR: i16 = 112;
const STALE_MEMBER_EPOCH: i16 = 113;
const INVALID_REGULAR_EXPRESSION: i16 = 128;

fn join(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(REBALANCE_MS)
        .with_subscribed_topic_names(Some(topics.iter().map(|t| TopicName(s(t))).collect()))
        .with_topic_partitions(Some(Vec::new()))
}

/// A heartbeat reporting `owned` partitions of topic "t".
fn beat(group: &str, member: &str, epoch: i32, owned: &[i32]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_topic_partitions(Some(vec![TopicPartitions::default()
            .with_topic_id(topic_id("t"))
            .with_partitions(owned.to_vec())]))
}

fn hb(env: &Env, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    env.coord
        .consumer_group_heartbeat(req, 1, "client", "/127.0.0.1")
}

/// The partitions of "t" in a response's assignment (None: no assignment sent).
fn assigned(r: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<i32>> {
    r.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .filter(|t| t.topic_id == topic_id("t"))
            .flat_map(|t| t.partitions.iter().copied())
            .collect()
    })
}

fn set(ps: &[i32]) -> BTreeSet<i32> {
    ps.iter().copied().collect()
}

#[test]
fn a_first_member_gets_every_partition_at_epoch_one() {
    let env = Env::new(config());
    let r = hb(&env, join("g", "m1", &["t"]));
    assert_eq!(r.error_code, codes::NONE, "{:?}", r.error_message);
    assert_eq!(r.member_id.as_deref(), Some("m1"));
    assert_eq!(r.member_epoch, 1);
    assert_eq!(r.heartbeat_interval_ms, 5000);
    assert_eq!(assigned(&r), Some(set(&[0, 1, 2])));
    // An unchanged heartbeat carries no assignment.
    let r = hb(
        &env,
        beat("g", "m1", 1, &[0, 1, 2]).with_topic_partitions(None),
    );
    assert_eq!((r.error_code, r.member_epoch, assigned(&r)), (0, 1, None));
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
    let env = Env::new(config());
    hb(&env, join("g", "m1", &["t"]));
    let r2 = hb(&env, join("g", "m2", &["t"]));
    // m1 still owns everything: m2 moves to epoch 2 with nothing yet.
    assert_eq!(r2.member_epoch, 2);
    assert_eq!(assigned(&r2), Some(set(&[])));
    // m1 is told to give up one partition and stays at epoch 1 until it does.
    let r1 = hb(&env, beat("g", "m1", 1, &[0, 1, 2]));
    assert_eq!(r1.member_epoch, 1);
    let keep = assigned(&r1).unwrap();
    assert_eq!(keep.len(), 2);
    let r2 = hb(&env, beat("g", "m2", 2, &[]));
    assert_eq!(assigned(&r2), None, "nothing is free yet");
    // m1 reports the revocation: it moves to epoch 2, and m2 gets the freed partition.
    let owned: Vec<i32> = keep.iter().copied().collect();
    let r1 = hb(&env, beat("g", "m1", 1, &owned));
    assert_eq!(r1.member_epoch, 2);
    let r2 = hb(&env, beat("g", "m2", 2, &[]));
    let got = assigned(&r2).unwrap();
    assert_eq!(got.len(), 1);
    assert!(got.is_disjoint(&keep));
}

#[test]
fn leaving_and_session_expiry_hand_partitions_to_the_others() {
    let env = Env::new(config());
    hb(&env, join("g", "m1", &["t"]));
    hb(&env, join("g", "m2", &["t"]));
    let r1 = hb(&env, beat("g", "m1", 1, &[0, 1, 2]));
    let keep: Vec<i32> = assigned(&r1).unwrap().into_iter().collect();
    hb(&env, beat("g", "m1", 1, &keep));
    // m2 leaves: epoch -1 answers -1, and m1 gets everything back at a new epoch.
    let left = hb(&env, beat("g", "m2", 2, &[]).with_member_epoch(-1));
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    let r1 = hb(&env, beat("g", "m1", 2, &keep));
    assert_eq!(r1.member_epoch, 3);
    assert_eq!(assigned(&r1), Some(set(&[0, 1, 2])));
    // A member that stops heartbeating is removed after the session timeout.
    hb(&env, join("g", "m3", &["t"]));
    let session = i64::from(config().consumer_session_timeout_ms);
    env.advance(session - 1000);
    assert_eq!(
        hb(&env, beat("g", "m1", 3, &[0, 1, 2])).error_code,
        codes::NONE
    );
    env.advance(1001);
    let r = hb(&env, beat("g", "m3", 4, &[]));
    assert_eq!(r.error_code, codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn stale_and_future_epochs_are_fenced() {
    let env = Env::new(config());
    hb(&env, join("g", "m1", &["t"]));
    assert_eq!(
        hb(&env, beat("g", "m1", 7, &[])).error_code,
        FENCED_MEMBER_EPOCH
    );
    hb(&env, join("g", "m2", &["t"]));
    // m1 reconciles to epoch 2; epoch 1 with a subset of its partitions is still accepted
    // (the response with the new epoch may have been lost), epoch 0 is not.
    let r1 = hb(&env, beat("g", "m1", 1, &[0, 1, 2]));
    let keep: Vec<i32> = assigned(&r1).unwrap().into_iter().collect();
    assert_eq!(hb(&env, beat("g", "m1", 1, &keep)).member_epoch, 2);
    assert_eq!(hb(&env, beat("g", "m1", 1, &keep)).error_code, codes::NONE);
    let unknown = hb(&env, beat("g", "nobody", 1, &[]));
    assert_eq!(unknown.error_code, codes::UNKNOWN_MEMBER_ID);
}

#[test]
fn bad_heartbeats_get_kafkas_codes() {
    let env = Env::new(config());
    let no_topics = join("g", "m", &[]);
    assert_eq!(hb(&env, no_topics).error_code, codes::INVALID_REQUEST);
    let owned = join("g", "m", &["t"]).with_topic_partitions(None);
    assert_eq!(hb(&env, owned).error_code, codes::INVALID_REQUEST);
    let no_timeout = join("g", "m", &["t"]).with_rebalance_timeout_ms(-1);
    assert_eq!(hb(&env, no_timeout).error_code, codes::INVALID_REQUEST);
    let epoch = join("g", "m", &["t"]).with_member_epoch(-3);
    assert_eq!(hb(&env, epoch).error_code, codes::INVALID_REQUEST);
    let assignor = join("g", "m", &["t"]).with_server_assignor(Some(s("sticky")));
    assert_eq!(hb(&env, assignor).error_code, UNSUPPORTED_ASSIGNOR);
    let regex = join("g", "m", &[])
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("t(")));
    assert_eq!(hb(&env, regex).error_code, INVALID_REGULAR_EXPRESSION);
    // A heartbeat (epoch > 0) for a group this coordinator does not hold: membership is not
    // persisted, so the member is told to rejoin rather than that the group is gone.
    assert_eq!(
        hb(&env, beat("none", "m", 1, &[])).error_code,
        codes::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_regex_subscription_matches_whole_topic_names() {
    let env = Env::new(config());
    let req = join("g", "m", &[])
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("[tu]")));
    let r = hb(&env, req);
    assert_eq!(r.error_code, codes::NONE, "{:?}", r.error_message);
    let topics: BTreeSet<_> = r
        .assignment
        .unwrap()
        .topic_partitions
        .iter()
        .map(|t| t.topic_id)
        .collect();
    assert_eq!(topics, [topic_id("t"), topic_id("u")].into_iter().collect());
    let partial = join("g2", "m", &[])
        .with_subscribed_topic_names(None)
        .with_subscribed_topic_regex(Some(s("t.+")));
    assert_eq!(assigned(&hb(&env, partial)), Some(set(&[])));
}

#[test]
fn a_static_member_keeps_its_partitions_across_a_restart_of_the_client() {
    let env = Env::new(config());
    let r = hb(&env, join("g", "a", &["t"]).with_instance_id(Some(s("i1"))));
    assert_eq!(r.member_epoch, 1);
    let other = hb(&env, join("g", "b", &["t"]).with_instance_id(Some(s("i1"))));
    assert_eq!(other.error_code, UNRELEASED_INSTANCE_ID);
    let gone = hb(
        &env,
        beat("g", "a", 1, &[0, 1, 2])
            .with_member_epoch(-2)
            .with_instance_id(Some(s("i1"))),
    );
    assert_eq!((gone.error_code, gone.member_epoch), (0, -2));
    let back = hb(&env, join("g", "b", &["t"]).with_instance_id(Some(s("i1"))));
    assert_eq!(back.error_code, codes::NONE, "{:?}", back.error_message);
    assert_eq!(assigned(&back), Some(set(&[0, 1, 2])));
}

#[tokio::test]
async fn commits_need_the_members_current_epoch() {
    let env = Env::new(config());
    hb(&env, join("g", "m1", &["t"]));
    let commit = |epoch: i32, member: &'static str| {
        let coord = env.coord.clone();
        async move {
            let committer = strom_group::Committer {
                member_id: member,
                instance_id: None,
                generation_id: epoch,
            };
            let offsets = [strom_group::NewOffset::new("t", 0, 5)];
            coord.commit("g", committer, &offsets, -1).await.remove(0)
        }
    };
    assert!(commit(1, "m1").await.is_ok());
    let stale = commit(0, "m1").await.unwrap_err();
    assert_eq!(stale.kafka_code(), STALE_MEMBER_EPOCH);
    let unknown = commit(1, "m9").await.unwrap_err();
    assert_eq!(unknown.kafka_code(), codes::UNKNOWN_MEMBER_ID);
    // Without a member, only while the group has none.
    assert!(commit(-1, "").await.is_err());
    hb(&env, beat("g", "m1", 1, &[]).with_member_epoch(-1));
    assert!(commit(-1, "").await.is_ok());
}

#[test]
fn describe_shows_epochs_members_and_assignments() {
    let env = Env::new(config());
    hb(&env, join("g", "m1", &["t"]));
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("g"), gid("none")]);
    let d = env.coord.consumer_group_describe(&req);
    let g = &d.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!((g.group_epoch, g.assignment_epoch), (1, 1));
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.members.len(), 1);
    assert_eq!(
        g.members[0].assignment.topic_partitions[0].partitions,
        vec![0, 1, 2]
    );
    assert_eq!(d.groups[1].error_code, codes::GROUP_ID_NOT_FOUND);
}

/// ConsumerProtocolAssignment bytes -> partitions of "t".
fn classic_partitions(bytes: &[u8]) -> BTreeSet<i32> {
    // version i16, topic count i32, name (i16 + bytes), partition count i32, partitions...
    let mut out = BTreeSet::new();
    if bytes.len() < 6 || i32::from_be_bytes(bytes[2..6].try_into().unwrap()) == 0 {
        return out;
    }
    let name_len = i16::from_be_bytes(bytes[6..8].try_into().unwrap()) as usize;
    let mut at = 8 + name_len;
    let n = i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    at += 4;
    for _ in 0..n {
        out.insert(i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()));
        at += 4;
    }
    out
}

/// A live classic group "g": one classic member owning all three partitions of "t" at
/// generation 1. Returns the member id.
async fn live_classic_group(c: &strom_group::GroupCoordinator) -> String {
    let first = c
        .join_group(join_req("g", "", None, &["t"]), 4, "c", "h")
        .await;
    let joined = c
        .join_group(
            join_req("g", first.member_id.as_str(), None, &["t"]),
            4,
            "c",
            "h",
        )
        .await;
    let classic = joined.member_id.to_string();
    assert_eq!((joined.error_code, joined.generation_id), (codes::NONE, 1));
    let mine: Vec<u8> = {
        let mut b = vec![0u8, 0, 0, 0, 0, 1, 0, 1, b't'];
        b.extend_from_slice(&3i32.to_be_bytes());
        for p in [0i32, 1, 2] {
            b.extend_from_slice(&p.to_be_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b
    };
    let synced = c
        .sync_group(sync_req("g", &classic, 1, &[(classic.as_str(), &mine)]), 3)
        .await;
    assert_eq!(synced.error_code, codes::NONE);
    classic
}

#[tokio::test]
async fn a_live_classic_group_upgrades_and_its_classic_members_stay() {
    let env = Env::new(config());
    let c = &env.coord;
    let classic = live_classic_group(c).await;
    // A consumer-protocol member joins the live group: it upgrades, and the new member
    // waits while the classic one still owns everything.
    let r = hb(&env, join("g", "new", &["t"]));
    assert_eq!(r.error_code, codes::NONE, "{:?}", r.error_message);
    assert_eq!(assigned(&r), Some(set(&[])));
    // The classic member is told to rejoin; JoinGroup answers at once, without a leader.
    let beat_code = c
        .heartbeat(
            kafka_protocol::messages::HeartbeatRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(&classic))
                .with_generation_id(1),
            3,
        )
        .await
        .error_code;
    assert_eq!(beat_code, codes::REBALANCE_IN_PROGRESS);
    // An eager client gave everything up before rejoining.
    let rejoined = c
        .join_group(join_req("g", &classic, None, &["t"]), 4, "c", "h")
        .await;
    assert_eq!(rejoined.error_code, codes::NONE);
    assert_eq!(rejoined.leader.as_str(), "");
    let generation = rejoined.generation_id;
    let synced = c
        .sync_group(sync_req("g", &classic, generation, &[]), 3)
        .await;
    assert_eq!(synced.error_code, codes::NONE);
    let kept = classic_partitions(&synced.assignment);
    assert!(!kept.is_empty() && kept.len() < 3, "{kept:?}");
    // The consumer-protocol member now gets the rest.
    let r = hb(&env, beat("g", "new", r.member_epoch, &[]));
    let got = assigned(&r).unwrap();
    assert_eq!(got.len() + kept.len(), 3);
    assert!(got.is_disjoint(&kept));
    // And the group is described as a consumer group with both members.
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("g")]);
    assert_eq!(c.consumer_group_describe(&req).groups[0].members.len(), 2);
}

#[tokio::test]
async fn a_consumer_group_converts_back_to_classic_once_empty() {
    let env = Env::new(config());
    hb(&env, join("new", "m", &["t"]));
    hb(&env, beat("new", "m", 1, &[]).with_member_epoch(-1));
    let classic = env
        .coord
        .join_group(join_req("new", "", None, &["t"]), 4, "c", "h")
        .await;
    assert_eq!(classic.error_code, codes::MEMBER_ID_REQUIRED);
    let joined = env
        .coord
        .join_group(
            join_req("new", classic.member_id.as_str(), None, &["t"]),
            4,
            "c",
            "h",
        )
        .await;
    assert_eq!(joined.error_code, codes::NONE);
    assert_eq!(joined.leader, joined.member_id, "a classic group again");
}

#[test]
fn members_keep_their_epochs_and_partitions_across_a_restart() {
    let mut env = Env::new(config());
    hb(&env, join("g", "m1", &["t"]));
    hb(&env, join("g", "m2", &["t"]));
    let r1 = hb(&env, beat("g", "m1", 1, &[0, 1, 2]));
    let keep: Vec<i32> = assigned(&r1).unwrap().into_iter().collect();
    let r1 = hb(&env, beat("g", "m1", 1, &keep));
    let r2 = hb(&env, beat("g", "m2", 2, &[]));
    let theirs: Vec<i32> = assigned(&r2).unwrap().into_iter().collect();
    assert_eq!(keep.len() + theirs.len(), 3);
    env.reopen();
    // Both carry on at their epochs with what they own: no rejoin, no new assignment.
    let a = hb(&env, beat("g", "m1", r1.member_epoch, &keep));
    assert_eq!(
        (a.error_code, a.member_epoch, assigned(&a)),
        (0, r1.member_epoch, None)
    );
    let b = hb(&env, beat("g", "m2", r2.member_epoch, &theirs));
    assert_eq!(
        (b.error_code, b.member_epoch, assigned(&b)),
        (0, r2.member_epoch, None)
    );
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("g")]);
    assert_eq!(
        env.coord.consumer_group_describe(&req).groups[0]
            .group_state
            .as_str(),
        "Stable"
    );
    // A member that leaves after the restart is gone after the next one too.
    hb(
        &env,
        beat("g", "m2", r2.member_epoch, &theirs).with_member_epoch(-1),
    );
    env.reopen();
    assert_eq!(
        hb(&env, beat("g", "m2", r2.member_epoch, &[])).error_code,
        codes::UNKNOWN_MEMBER_ID
    );
    let back = hb(&env, beat("g", "m1", r1.member_epoch, &keep));
    assert_eq!(assigned(&back), Some(set(&[0, 1, 2])));
}

/// The classic member's heartbeat error code at `generation`.
async fn classic_beat(c: &strom_group::GroupCoordinator, member: &str, generation: i32) -> i16 {
    c.heartbeat(hb_req("g", member, generation), 3)
        .await
        .error_code
}

#[tokio::test]
async fn the_last_consumer_member_leaving_turns_the_group_classic_again() {
    let mut env = Env::new(config());
    let classic = live_classic_group(&env.coord).await;
    let r = hb(&env, join("g", "new", &["t"]));
    assert_eq!(r.error_code, codes::NONE, "{:?}", r.error_message);
    let epoch = r.member_epoch;
    // The consumer-protocol member leaves: the group is classic again at the group epoch,
    // and rebalancing, so its classic member is told to rejoin.
    let left = hb(&env, beat("g", "new", epoch, &[]).with_member_epoch(-1));
    assert_eq!((left.error_code, left.member_epoch), (codes::NONE, -1));
    let describe = |env: &Env| {
        let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("g")]);
        env.coord.consumer_group_describe(&req).groups[0].error_code
    };
    assert_eq!(
        describe(&env),
        codes::GROUP_ID_NOT_FOUND,
        "no longer a consumer group"
    );
    assert_eq!(
        classic_beat(&env.coord, &classic, epoch).await,
        codes::REBALANCE_IN_PROGRESS
    );
    // The classic record was written at once: a restart keeps it a classic group.
    env.reopen();
    assert_eq!(describe(&env), codes::GROUP_ID_NOT_FOUND);
    // The member rejoins the classic way: it leads, and gets a generation past the epoch.
    let rejoined = env
        .coord
        .join_group(join_req("g", &classic, None, &["t"]), 4, "c", "h")
        .await;
    assert_eq!(rejoined.error_code, codes::NONE);
    assert_eq!(
        rejoined.leader, rejoined.member_id,
        "a classic leader again"
    );
    assert!(
        rejoined.generation_id > epoch,
        "{} > {epoch}",
        rejoined.generation_id
    );
    assert_eq!(rejoined.members.len(), 1);
}

#[tokio::test]
async fn without_downgrade_in_the_migration_policy_the_group_stays_a_consumer_group() {
    let mut cfg = config();
    cfg.consumer_migration_policy = strom_group::MigrationPolicy::Upgrade;
    let env = Env::new(cfg);
    let classic = live_classic_group(&env.coord).await;
    let r = hb(&env, join("g", "new", &["t"]));
    hb(
        &env,
        beat("g", "new", r.member_epoch, &[]).with_member_epoch(-1),
    );
    let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![gid("g")]);
    let group = &env.coord.consumer_group_describe(&req).groups[0];
    assert_eq!(group.error_code, codes::NONE);
    assert_eq!(group.members.len(), 1);
    assert_eq!(group.members[0].member_id.as_str(), classic);
}

#[tokio::test]
async fn without_upgrade_in_the_migration_policy_a_live_classic_group_refuses_new_members() {
    let mut cfg = config();
    cfg.consumer_migration_policy = strom_group::MigrationPolicy::Disabled;
    let env = Env::new(cfg);
    live_classic_group(&env.coord).await;
    let r = hb(&env, join("g", "new", &["t"]));
    assert_eq!(r.error_code, codes::GROUP_ID_NOT_FOUND);
}

#[tokio::test]
async fn a_classic_member_that_does_not_rejoin_in_time_is_fenced() {
    let env = Env::new(config());
    let classic = live_classic_group(&env.coord).await;
    let r = hb(&env, join("g", "new", &["t"]));
    // Told to rejoin, the classic member keeps heartbeating but never sends JoinGroup.
    assert_eq!(
        classic_beat(&env.coord, &classic, 1).await,
        codes::REBALANCE_IN_PROGRESS
    );
    let mut epoch = r.member_epoch;
    let mut got = BTreeSet::new();
    for _ in 0..4 {
        env.advance(i64::from(REBALANCE_MS) / 4 + 1);
        // Its session stays alive; only the join timeout can remove it.
        classic_beat(&env.coord, &classic, 1).await;
        let r = hb(&env, beat("g", "new", epoch, &[]));
        epoch = r.member_epoch;
        if let Some(a) = assigned(&r) {
            got = a;
        }
    }
    env.coord.tick();
    let r = hb(
        &env,
        beat("g", "new", epoch, &got.iter().copied().collect::<Vec<_>>()),
    );
    if let Some(a) = assigned(&r) {
        got = a;
    }
    assert_eq!(got, set(&[0, 1, 2]), "the fenced member's partitions moved");
    assert_eq!(
        classic_beat(&env.coord, &classic, 1).await,
        codes::UNKNOWN_MEMBER_ID
    );
}
