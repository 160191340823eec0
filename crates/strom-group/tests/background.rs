//! The background loop and concurrent, fsynced commits.

mod common;

use std::sync::Arc;

use common::*;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{DescribeGroupsRequest, OffsetCommitRequest, TopicName};
use strom_group::{codes, GroupConfig};

/// With tokio's clock paused, the loop's sleeps complete as soon as every task is idle, so
/// this test runs instantly while exercising the real wake-up path.
#[tokio::test(start_paused = true)]
async fn background_loop_expires_sessions_and_stops_on_shutdown() {
    let env = Env::new(config());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let bg = tokio::spawn(Arc::clone(&env.coord).run_background(rx));

    let j = env
        .coord
        .join_group(join_req("g", "", None, &["t"]), 3, "c", "/h")
        .await;
    let m = j.member_id.to_string();
    env.coord
        .sync_group(sync_req("g", &m, 1, &[(&m, b"a")]), 3)
        .await;
    // An offset keeps the group listed once it is Empty.
    let commit = OffsetCommitRequest::default()
        .with_group_id(gid("g"))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(s(&m))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(5)
            ])]);
    let r = env.coord.offset_commit(commit, 8).await;
    assert_eq!(r.topics[0].partitions[0].error_code, codes::NONE);

    // Nobody heartbeats; once the (manual) clock passes the session timeout the loop, on its
    // next wake-up, removes the member and the group empties.
    env.clock.advance_ms(i64::from(SESSION_MS) + 1);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let d = env
        .coord
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid("g")]),
            5,
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert!(d.groups[0].members.is_empty());

    tx.send(true).unwrap();
    bg.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fsynced_commits_are_all_durable() {
    let mut env = Env::new(GroupConfig {
        fsync: true,
        ..config()
    });
    const COMMITTERS: i64 = 16;
    const ROUNDS: i64 = 20;
    let mut handles = Vec::new();
    for c in 0..COMMITTERS {
        let coord = Arc::clone(&env.coord);
        handles.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let req = OffsetCommitRequest::default()
                    .with_group_id(gid(&format!("g{c}")))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index((r % 3) as i32)
                            .with_committed_offset(c * 1000 + r)])]);
                let resp = coord.offset_commit(req, 8).await;
                assert_eq!(resp.topics[0].partitions[0].error_code, codes::NONE);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    env.reopen();
    for c in 0..COMMITTERS {
        let got = env.coord.committed_offsets(&format!("g{c}"));
        let want: Vec<(String, i32, i64)> = (0..3)
            .map(|p| {
                let last = (0..ROUNDS).filter(|r| r % 3 == p).max().unwrap();
                ("t".to_string(), p as i32, c * 1000 + last)
            })
            .collect();
        assert_eq!(got, want, "group g{c}");
    }
}
