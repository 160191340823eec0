//! Every response the coordinator builds must encode at the version it was asked for:
//! `kafka-protocol` refuses to encode a field the version does not have (e.g.
//! `skip_assignment` before JoinGroup v9), and the broker would have nothing to send.

mod common;

use bytes::BytesMut;
use common::*;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, LeaveGroupRequest, ListGroupsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::Encodable;
use strom_group::codes;

fn encodes<T: Encodable>(resp: &T, version: i16) {
    let mut buf = BytesMut::new();
    if let Err(e) = resp.encode(&mut buf, version) {
        panic!(
            "{} v{version} does not encode: {e}",
            std::any::type_name::<T>()
        );
    }
}

#[tokio::test]
async fn group_membership_responses_encode_at_every_version() {
    let env = Env::new(config());
    for v in 0..=9i16 {
        let group = format!("g{v}");
        let mut j = env
            .coord
            .join_group(join_req(&group, "", None, &["t"]), v, "c", "/h")
            .await;
        encodes(&j, v);
        if v >= 4 {
            assert_eq!(j.error_code, codes::MEMBER_ID_REQUIRED);
            let id = j.member_id.to_string();
            j = env
                .coord
                .join_group(join_req(&group, &id, None, &["t"]), v, "c", "/h")
                .await;
            encodes(&j, v);
        }
        assert_eq!(j.error_code, codes::NONE, "v{v}");
        let m = j.member_id.to_string();
        let sv = v.min(5);
        let sy = env
            .coord
            .sync_group(sync_req(&group, &m, 1, &[(&m, b"a")]), sv)
            .await;
        assert_eq!(sy.error_code, codes::NONE);
        encodes(&sy, sv);
        let hv = v.min(4);
        let hb = env.coord.heartbeat(hb_req(&group, &m, 1), hv).await;
        encodes(&hb, hv);

        let dv = v.min(5);
        let d = env
            .coord
            .describe_groups(
                DescribeGroupsRequest::default().with_groups(vec![gid(&group), gid("missing")]),
                dv,
            )
            .await;
        encodes(&d, dv);

        let lv = v.min(5);
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&m))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(s(&m))
        };
        let l = env.coord.leave_group(leave, lv).await;
        encodes(&l, lv);
        // Unknown member errors in both shapes.
        let bad = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_members(vec![MemberIdentity::default().with_member_id(s("x"))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(gid(&group))
                .with_member_id(s("x"))
        };
        encodes(&env.coord.leave_group(bad, lv).await, lv);
    }
    // DescribeGroups v6 (error message for missing groups).
    let d = env
        .coord
        .describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![gid("missing")]),
            6,
        )
        .await;
    assert_eq!(d.groups[0].error_code, codes::GROUP_ID_NOT_FOUND);
    encodes(&d, 6);
}

#[tokio::test]
async fn offset_and_admin_responses_encode_at_every_version() {
    let env = Env::new(config());
    for v in 2..=9i16 {
        let req = OffsetCommitRequest::default()
            .with_group_id(gid("g"))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(i64::from(v))])]);
        let r = env.coord.offset_commit(req, v).await;
        assert_eq!(r.topics[0].partitions[0].error_code, codes::NONE);
        encodes(&r, v);
    }
    for v in 1..=9i16 {
        let r = if v >= 8 {
            let req = OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid("g"))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(""))
                    .with_topics(None),
            ]);
            env.coord.offset_fetch(req, v).await
        } else {
            let req = OffsetFetchRequest::default()
                .with_group_id(gid("g"))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])]));
            let r = env.coord.offset_fetch(req, v).await;
            assert_eq!(r.topics[0].partitions[0].committed_offset, 9);
            r
        };
        encodes(&r, v);
    }
    for v in 0..=5i16 {
        let r = env.coord.list_groups(ListGroupsRequest::default(), v).await;
        assert_eq!(r.groups.len(), 1);
        encodes(&r, v);
    }
    let od = env
        .coord
        .offset_delete(OffsetDeleteRequest::default().with_group_id(gid("nope")), 0)
        .await;
    encodes(&od, 0);
    for v in 0..=2i16 {
        let r = env
            .coord
            .delete_groups(
                DeleteGroupsRequest::default().with_groups_names(vec![gid("nope")]),
                v,
            )
            .await;
        encodes(&r, v);
    }
}
