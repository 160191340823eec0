//! Committed offsets: commit/fetch, durability across reopen, torn tails, retention, deletes.

mod common;

use std::io::Write;

use common::*;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetFetchRequest, TopicName,
};
use strom_group::codes;
use strom_group::GroupConfig;

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    parts: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in parts {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(*o)
            .with_committed_leader_epoch(4)
            .with_committed_metadata(Some(s("meta")));
        match topics.iter_mut().find(|x| x.name.as_str() == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partitions(vec![part]),
            ),
        }
    }
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics)
}

fn codes_of(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

async fn commit_simple(env: &Env, group: &str, parts: &[(&str, i32, i64)]) -> Vec<i16> {
    codes_of(
        &env.coord
            .offset_commit(commit_req(group, "", -1, parts), 8)
            .await,
    )
}

fn fetch_v7(group: &str, topics: Option<&[(&str, &[i32])]>) -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }))
}

#[tokio::test]
async fn commit_fetch_round_trip() {
    let env = Env::new(config());
    let c = commit_simple(
        &env,
        "g",
        &[
            ("t", 0, 10),
            ("t", 2, 30),
            ("u", 0, 5),
            ("nope", 0, 1),
            ("t", 3, 1),
        ],
    )
    .await;
    assert_eq!(
        c,
        vec![
            codes::NONE,                       // t-0
            codes::NONE,                       // t-2
            codes::UNKNOWN_TOPIC_OR_PARTITION, // t-3: "t" has 3 partitions
            codes::NONE,                       // u-0
            codes::UNKNOWN_TOPIC_OR_PARTITION, // nope-0
        ]
    );
    assert_eq!(
        env.coord.committed_offsets("g"),
        vec![("t".into(), 0, 10), ("t".into(), 2, 30), ("u".into(), 0, 5)]
    );

    // Single-group form (v1-v7).
    let f = env
        .coord
        .offset_fetch(fetch_v7("g", Some(&[("t", &[0, 1])])), 7)
        .await;
    assert_eq!(f.error_code, codes::NONE);
    let p = &f.topics[0].partitions;
    assert_eq!((p[0].partition_index, p[0].committed_offset), (0, 10));
    assert_eq!(p[0].committed_leader_epoch, 4);
    assert_eq!(p[0].metadata.as_deref(), Some("meta"));
    assert_eq!((p[1].partition_index, p[1].committed_offset), (1, -1));

    // All topics (null topic list).
    let all = env.coord.offset_fetch(fetch_v7("g", None), 7).await;
    let names: Vec<_> = all.topics.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, vec!["t", "u"]);

    // Multi-group form (v8+), including a group that does not exist.
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("g"))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(TopicName(s("u")))
                .with_partition_indexes(vec![0])])),
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("other"))
            .with_topics(None),
    ]);
    let f = env.coord.offset_fetch(req, 8).await;
    assert_eq!(f.groups.len(), 2);
    assert_eq!(f.groups[0].topics[0].partitions[0].committed_offset, 5);
    assert_eq!(f.groups[1].error_code, codes::NONE);
    assert!(f.groups[1].topics.is_empty());

    // Empty group id.
    let bad = env
        .coord
        .offset_commit(commit_req("", "", -1, &[("t", 0, 1)]), 8)
        .await;
    assert_eq!(codes_of(&bad), vec![codes::INVALID_GROUP_ID]);
    let bad = env
        .coord
        .offset_fetch(fetch_v7("", Some(&[("t", &[0])])), 7)
        .await;
    assert_eq!(bad.error_code, codes::INVALID_GROUP_ID);
}

#[tokio::test]
async fn commits_from_group_members_are_checked() {
    let env = Env::new(config());
    let j = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "c", "/h")
        .await;
    let m = j.member_id.to_string();
    // CompletingRebalance: the member must sync first.
    let r = env
        .coord
        .offset_commit(commit_req("g", &m, 1, &[("t", 0, 1)]), 8)
        .await;
    assert_eq!(codes_of(&r), vec![codes::REBALANCE_IN_PROGRESS]);
    env.coord
        .sync_group(sync_req("g", &m, 1, &[(&m, b"a")]), 3)
        .await;
    let r = env
        .coord
        .offset_commit(commit_req("g", &m, 1, &[("t", 0, 1)]), 8)
        .await;
    assert_eq!(codes_of(&r), vec![codes::NONE]);
    let r = env
        .coord
        .offset_commit(commit_req("g", &m, 0, &[("t", 0, 2)]), 8)
        .await;
    assert_eq!(codes_of(&r), vec![codes::ILLEGAL_GENERATION]);
    let r = env
        .coord
        .offset_commit(commit_req("g", "who", 1, &[("t", 0, 2)]), 8)
        .await;
    assert_eq!(codes_of(&r), vec![codes::UNKNOWN_MEMBER_ID]);
    // A simple consumer may not commit into a group with live members.
    let r = env
        .coord
        .offset_commit(commit_req("g", "", -1, &[("t", 0, 2)]), 8)
        .await;
    assert_eq!(codes_of(&r), vec![codes::UNKNOWN_MEMBER_ID]);
    // A generation for a group that does not exist.
    let r = env
        .coord
        .offset_commit(commit_req("gone", "m", 3, &[("t", 0, 2)]), 8)
        .await;
    assert_eq!(codes_of(&r), vec![codes::ILLEGAL_GENERATION]);
    assert_eq!(env.coord.committed_offsets("g"), vec![("t".into(), 0, 1)]);
}

#[tokio::test]
async fn commit_survives_reopen() {
    let mut env = Env::new(GroupConfig {
        fsync: true,
        ..config()
    });
    commit_simple(&env, "g", &[("t", 0, 10), ("t", 1, 11)]).await;
    commit_simple(&env, "g", &[("t", 0, 12)]).await;
    commit_simple(&env, "h", &[("u", 0, 7)]).await;
    env.reopen();
    assert_eq!(
        env.coord.committed_offsets("g"),
        vec![("t".into(), 0, 12), ("t".into(), 1, 11)]
    );
    assert_eq!(env.coord.committed_offsets("h"), vec![("u".into(), 0, 7)]);
    let f = env
        .coord
        .offset_fetch(fetch_v7("g", Some(&[("t", &[0])])), 6)
        .await;
    assert_eq!(f.topics[0].partitions[0].committed_leader_epoch, 4);
    assert_eq!(f.topics[0].partitions[0].metadata.as_deref(), Some("meta"));
    // Reopened twice (the first reopen compacted the file) and still the same.
    env.reopen();
    assert_eq!(env.coord.committed_offsets("g").len(), 2);
}

/// A crash in the middle of an append leaves a partial record at the end of the file. The
/// next open must keep everything before it, drop it, and let later appends be read back
/// (a torn record left in place would hide every record written after it).
#[tokio::test]
async fn torn_tail_is_truncated_on_reopen() {
    let mut env = Env::new(config());
    commit_simple(&env, "g", &[("t", 0, 1)]).await;
    commit_simple(&env, "g", &[("t", 1, 2)]).await;
    env.coord.flush().unwrap();
    let log = env.dir.path().join("offsets.log");
    let good_len = std::fs::metadata(&log).unwrap().len();
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        // A record header promising 40 bytes, then only 5 of them.
        f.write_all(&40u32.to_be_bytes()).unwrap();
        f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 0, 1, b'g', 0])
            .unwrap();
    }
    env.reopen();
    assert_eq!(std::fs::metadata(&log).unwrap().len(), good_len);
    assert_eq!(
        env.coord.committed_offsets("g"),
        vec![("t".into(), 0, 1), ("t".into(), 1, 2)]
    );
    commit_simple(&env, "g", &[("t", 2, 3)]).await;
    env.reopen();
    assert_eq!(env.coord.committed_offsets("g").len(), 3);

    // Garbage (a bad CRC) at the tail is dropped the same way.
    {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&[0, 0, 0, 3, 1, 2, 3, 4, 9, 9, 9]).unwrap();
    }
    env.reopen();
    assert_eq!(env.coord.committed_offsets("g").len(), 3);
}

#[tokio::test]
async fn foreign_file_is_refused() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("offsets.log"), b"definitely not ours").unwrap();
    let clock = std::sync::Arc::new(strom_group::ManualClock::new(T0_MS));
    let r = strom_group::GroupCoordinator::open(
        dir.path(),
        config(),
        std::sync::Arc::new(Catalog),
        clock,
    );
    assert!(r.is_err());
}

#[tokio::test]
async fn retention_expires_offsets_of_empty_groups() {
    let retention_ms = 60_000;
    let mut env = Env::new(GroupConfig {
        offsets_retention_ms: retention_ms,
        offsets_retention_check_interval_ms: 1000,
        ..config()
    });
    commit_simple(&env, "simple", &[("t", 0, 1)]).await;
    env.advance(retention_ms - 1000);
    assert_eq!(env.coord.committed_offsets("simple").len(), 1);

    // A group with a live member keeps its offsets however old.
    let j = env
        .coord
        .join_group(join_req("live", "", None, &["t"]), 3, "c", "/h")
        .await;
    let m = j.member_id.to_string();
    env.coord
        .sync_group(sync_req("live", &m, 1, &[(&m, b"a")]), 3)
        .await;
    env.coord
        .offset_commit(commit_req("live", &m, 1, &[("t", 0, 5)]), 8)
        .await;

    env.advance(1000);
    assert!(env.coord.committed_offsets("simple").is_empty());
    let listed = env.coord.list_groups(ListGroupsRequest::default(), 4).await;
    let names: Vec<_> = listed
        .groups
        .iter()
        .map(|g| g.group_id.to_string())
        .collect();
    assert_eq!(
        names,
        vec!["live"],
        "an Empty group without offsets is removed"
    );

    for _ in 0..(2 * retention_ms / 5000) {
        env.advance(5000);
        env.coord.heartbeat(hb_req("live", &m, 1), 3).await;
    }
    assert_eq!(env.coord.committed_offsets("live").len(), 1);

    // Once the member leaves, the clock starts from the moment the group became Empty.
    let leave = kafka_protocol::messages::LeaveGroupRequest::default()
        .with_group_id(gid("live"))
        .with_member_id(s(&m));
    env.coord.leave_group(leave, 1).await;
    env.advance(retention_ms - 1000);
    assert_eq!(env.coord.committed_offsets("live").len(), 1);
    env.advance(1000);
    assert!(env.coord.committed_offsets("live").is_empty());

    // The expiry is durable.
    env.reopen();
    assert!(env.coord.committed_offsets("simple").is_empty());
    assert!(env.coord.committed_offsets("live").is_empty());
}

#[tokio::test]
async fn delete_groups() {
    let mut env = Env::new(config());
    commit_simple(&env, "empty", &[("t", 0, 1)]).await;
    let j = env
        .coord
        .join_group(join_req("busy", "", None, &["t"]), 3, "c", "/h")
        .await;
    assert_eq!(j.error_code, codes::NONE);
    let r = env
        .coord
        .delete_groups(
            DeleteGroupsRequest::default().with_groups_names(vec![
                gid("empty"),
                gid("busy"),
                gid("nope"),
                gid(""),
            ]),
            2,
        )
        .await;
    let got: Vec<_> = r
        .results
        .iter()
        .map(|x| (x.group_id.to_string(), x.error_code))
        .collect();
    assert_eq!(
        got,
        vec![
            ("empty".to_string(), codes::NONE),
            ("busy".to_string(), codes::NON_EMPTY_GROUP),
            ("nope".to_string(), codes::GROUP_ID_NOT_FOUND),
            (String::new(), codes::INVALID_GROUP_ID),
        ]
    );
    assert!(env.coord.committed_offsets("empty").is_empty());
    env.reopen();
    assert!(env.coord.committed_offsets("empty").is_empty());
    // A deleted group can be used again.
    commit_simple(&env, "empty", &[("t", 0, 9)]).await;
    assert_eq!(
        env.coord.committed_offsets("empty"),
        vec![("t".into(), 0, 9)]
    );
}

#[tokio::test]
async fn list_groups_with_filters() {
    let env = Env::new(config());
    commit_simple(&env, "a-simple", &[("t", 0, 1)]).await;
    let j = env
        .coord
        .join_group(join_req("b-stable", "", None, &["t"]), 3, "c", "/h")
        .await;
    let m = j.member_id.to_string();
    env.coord
        .sync_group(sync_req("b-stable", &m, 1, &[(&m, b"a")]), 3)
        .await;

    let all = env.coord.list_groups(ListGroupsRequest::default(), 5).await;
    let got: Vec<_> = all
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a-simple".into(), "".into(), "Empty".into()),
            ("b-stable".into(), "consumer".into(), "Stable".into())
        ]
    );
    assert!(all
        .groups
        .iter()
        .all(|g| g.group_type.as_str() == "classic"));

    let stable = env
        .coord
        .list_groups(
            ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
            4,
        )
        .await;
    assert_eq!(stable.groups.len(), 1);
    assert_eq!(stable.groups[0].group_id.as_str(), "b-stable");

    let consumer_type = env
        .coord
        .list_groups(
            ListGroupsRequest::default().with_types_filter(vec![s("consumer")]),
            5,
        )
        .await;
    assert!(consumer_type.groups.is_empty());
    let classic = env
        .coord
        .list_groups(
            ListGroupsRequest::default().with_types_filter(vec![s("Classic")]),
            5,
        )
        .await;
    assert_eq!(classic.groups.len(), 2);
    // Before v4 there is no state in the answer.
    let v3 = env.coord.list_groups(ListGroupsRequest::default(), 3).await;
    assert!(v3.groups.iter().all(|g| g.group_state.is_empty()));
}

fn delete_req(group: &str, parts: &[(&str, i32)]) -> OffsetDeleteRequest {
    OffsetDeleteRequest::default()
        .with_group_id(gid(group))
        .with_topics(
            parts
                .iter()
                .map(|(t, p)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(*p)
                        ])
                })
                .collect(),
        )
}

#[tokio::test]
async fn offset_delete_respects_subscriptions() {
    let env = Env::new(config());
    let j = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "c", "/h")
        .await;
    let m = j.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &m, 1, &[(&m, b"a")]), 3)
        .await;
    env.coord
        .offset_commit(commit_req("g", &m, 1, &[("t", 0, 1), ("u", 0, 2)]), 8)
        .await;
    let r = env
        .coord
        .offset_delete(delete_req("g", &[("t", 0), ("u", 0), ("x", 0)]), 0)
        .await;
    assert_eq!(r.error_code, codes::NONE);
    let got: Vec<_> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(
        got,
        vec![
            codes::GROUP_SUBSCRIBED_TO_TOPIC,
            codes::NONE,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    assert_eq!(env.coord.committed_offsets("g"), vec![("t".into(), 0, 1)]);
    assert_eq!(
        env.coord
            .offset_delete(delete_req("nope", &[("t", 0)]), 0)
            .await
            .error_code,
        codes::GROUP_ID_NOT_FOUND
    );
    assert_eq!(
        env.coord
            .offset_delete(delete_req("", &[("t", 0)]), 0)
            .await
            .error_code,
        codes::INVALID_GROUP_ID
    );
}

/// Regression: retention first aged every offset of a simple consumer's group from the
/// moment the group was created, so a consumer committing every minute still lost all its
/// offsets a week after its first commit. Kafka ages such offsets from their own commit.
#[tokio::test]
async fn simple_consumer_offsets_age_from_their_own_commit() {
    let retention_ms = 60_000;
    let env = Env::new(GroupConfig {
        offsets_retention_ms: retention_ms,
        offsets_retention_check_interval_ms: 1000,
        ..config()
    });
    commit_simple(&env, "s", &[("t", 0, 1), ("t", 1, 1)]).await;
    for i in 0..6 {
        env.advance(retention_ms / 2);
        commit_simple(&env, "s", &[("t", 0, 2 + i)]).await;
    }
    // t-0 is committed every half retention period and stays; t-1 was committed once.
    assert_eq!(env.coord.committed_offsets("s"), vec![("t".into(), 0, 7)]);
}

#[tokio::test]
async fn deleting_a_topic_drops_its_offsets_in_every_group() {
    let mut env = Env::new(config());
    commit_simple(&env, "a", &[("t", 0, 1), ("u", 0, 2)]).await;
    commit_simple(&env, "b", &[("t", 1, 3)]).await;
    assert_eq!(env.coord.on_topic_deleted("t").unwrap(), 2);
    assert_eq!(env.coord.on_topic_deleted("t").unwrap(), 0);
    assert_eq!(env.coord.committed_offsets("a"), vec![("u".into(), 0, 2)]);
    assert!(env.coord.committed_offsets("b").is_empty());
    env.reopen();
    assert_eq!(env.coord.committed_offsets("a"), vec![("u".into(), 0, 2)]);
    assert!(env.coord.committed_offsets("b").is_empty());
}
