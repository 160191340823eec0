//! The coordinator's domain calls (what the JSON front end uses, and what the Kafka
//! OffsetCommit handler is an adapter over): a member joins, syncs the leader's assignment,
//! commits with its generation; a second member makes the group rebalance, after which the
//! first member's old generation can no longer commit; domain errors come back as
//! `CoordinatorError`, and their Kafka codes are the adapter's business.

mod common;

use bytes::Bytes;
use common::*;
use strom_group::{codes, Committer, CoordinatorError, JoinParams, NewOffset};

fn params(member_id: &str) -> JoinParams {
    JoinParams {
        group_id: "g".into(),
        member_id: member_id.into(),
        client_id: "strom-json".into(),
        client_host: "127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: SESSION_MS,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), subscription(&["t"]))],
    }
}

#[tokio::test]
async fn join_sync_commit_and_a_rebalance_fences_the_old_generation() {
    let env = Env::new(config());
    let c = &env.coord;
    let joined = c.join(&params("")).await.unwrap();
    assert!(joined.is_leader());
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.members.len(), 1);
    let mine = Bytes::from_static(b"assignment-a");
    let got = c
        .sync(
            "g",
            &joined.member_id,
            1,
            &[(joined.member_id.clone(), mine.clone())],
        )
        .await
        .unwrap();
    assert_eq!(got, mine);

    let me = Committer {
        member_id: &joined.member_id,
        instance_id: None,
        generation_id: 1,
    };
    let results = c
        .commit(
            "g",
            me,
            &[NewOffset::new("t", 0, 5), NewOffset::new("nope", 0, 1)],
            -1,
        )
        .await;
    assert_eq!(
        results,
        vec![Ok(()), Err(CoordinatorError::UnknownTopicOrPartition)]
    );
    assert_eq!(c.committed("g", "t", 0), Some(5));
    assert_eq!(c.committed("g", "t", 1), None);

    // A second member joins: the first learns of the rebalance from its heartbeat.
    let c2 = env.coord.clone();
    let second = tokio::spawn(async move { c2.join(&params("")).await });
    tokio::task::yield_now().await;
    for _ in 0..100 {
        if c.heartbeat_member("g", &joined.member_id, 1)
            == Err(CoordinatorError::RebalanceInProgress)
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        c.heartbeat_member("g", &joined.member_id, 1),
        Err(CoordinatorError::RebalanceInProgress)
    );
    // Kafka lets the old generation commit while the group prepares to rebalance.
    assert_eq!(
        c.commit("g", me, &[NewOffset::new("t", 0, 6)], -1).await,
        vec![Ok(())]
    );
    let rejoined = c.join(&params(&joined.member_id)).await.unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(second.generation_id, 2);
    // Generation 1 is fenced now, and generation 2 waits for the leader's assignment.
    assert_eq!(
        c.commit("g", me, &[NewOffset::new("t", 0, 7)], -1).await,
        vec![Err(CoordinatorError::IllegalGeneration)]
    );
    let me2 = Committer {
        generation_id: 2,
        ..me
    };
    assert_eq!(
        c.commit("g", me2, &[NewOffset::new("t", 0, 7)], -1).await,
        vec![Err(CoordinatorError::RebalanceInProgress)]
    );
    let leader = if rejoined.is_leader() {
        &rejoined
    } else {
        &second
    };
    c.sync("g", &leader.member_id, 2, &[]).await.unwrap();
    assert_eq!(
        c.commit("g", me, &[NewOffset::new("t", 0, 7)], -1).await,
        vec![Err(CoordinatorError::IllegalGeneration)]
    );
    assert_eq!(c.committed("g", "t", 0), Some(6));

    // Leaving, and what a gone member gets.
    c.leave("g", &second.member_id).unwrap();
    assert_eq!(
        c.leave("g", &second.member_id),
        Err(CoordinatorError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat_member("g", &second.member_id, 2),
        Err(CoordinatorError::UnknownMemberId)
    );
}

#[tokio::test]
async fn commits_outside_group_management_and_bad_group_ids() {
    let env = Env::new(config());
    let c = &env.coord;
    assert_eq!(
        c.commit("simple", Committer::NONE, &[NewOffset::new("u", 0, 3)], -1)
            .await,
        vec![Ok(())]
    );
    assert_eq!(c.committed("simple", "u", 0), Some(3));
    assert_eq!(
        c.commit("", Committer::NONE, &[NewOffset::new("u", 0, 3)], -1)
            .await,
        vec![Err(CoordinatorError::InvalidGroupId)]
    );
    let stranger = Committer {
        member_id: "m",
        instance_id: None,
        generation_id: 4,
    };
    assert_eq!(
        c.commit("new-group", stranger, &[NewOffset::new("u", 0, 1)], -1)
            .await,
        vec![Err(CoordinatorError::IllegalGeneration)]
    );
}

#[test]
fn the_kafka_adapter_maps_each_domain_error_to_its_code() {
    for (e, code) in [
        (CoordinatorError::UnknownMemberId, codes::UNKNOWN_MEMBER_ID),
        (
            CoordinatorError::IllegalGeneration,
            codes::ILLEGAL_GENERATION,
        ),
        (
            CoordinatorError::RebalanceInProgress,
            codes::REBALANCE_IN_PROGRESS,
        ),
        (
            CoordinatorError::UnknownTopicOrPartition,
            codes::UNKNOWN_TOPIC_OR_PARTITION,
        ),
        (CoordinatorError::Storage, codes::UNKNOWN_SERVER_ERROR),
    ] {
        assert_eq!(e.kafka_code(), code, "{e}");
    }
}
