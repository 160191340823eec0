//! A KIP-848 group as one record of the offsets log (kind 5, `docs/groups.md`): its epochs,
//! members, target assignment, and the subscription it was computed from. Written whenever
//! any of that changes (not for a heartbeat that changes nothing), latest wins per group, so
//! that after a restart or a failover the members carry on at their epochs, as Kafka restores
//! its consumer groups from `__consumer_offsets`. Deadlines are not stored: they restart at
//! the restore.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use uuid::Uuid;

use super::model::{
    Assignment, ClassicMeta, ConsumerGroup, ConsumerMember, MemberState, TopicShape,
};
use super::reader::Reader;

/// The blob's own version, so that its layout can grow.
const VERSION: u8 = 1;

struct Writer(Vec<u8>);

impl Writer {
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn count(&mut self, n: usize) {
        self.i32(i32::try_from(n).unwrap_or(i32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.i32(-1),
            Some(s) => self.str(s),
        }
    }
    fn assignment(&mut self, a: &Assignment) {
        self.count(a.len());
        for (id, ps) in a {
            self.0.extend_from_slice(id.as_bytes());
            self.count(ps.len());
            for p in ps {
                self.i32(*p);
            }
        }
    }
}

pub(crate) fn encode(cg: &ConsumerGroup) -> Bytes {
    let mut w = Writer(vec![VERSION]);
    w.i32(cg.group_epoch);
    w.i32(cg.assignment_epoch);
    w.count(cg.members.len());
    for m in cg.members.values() {
        w.str(&m.member_id);
        w.opt(m.instance_id.as_deref());
        w.opt(m.rack_id.as_deref());
        w.str(&m.client_id);
        w.str(&m.client_host);
        w.i32(m.rebalance_timeout_ms);
        w.count(m.subscribed_topic_names.len());
        for t in &m.subscribed_topic_names {
            w.str(t);
        }
        w.opt(m.subscribed_topic_regex.as_deref());
        w.opt(m.server_assignor.as_deref());
        w.i32(m.member_epoch);
        w.i32(m.previous_member_epoch);
        w.0.push(match m.state {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        });
        w.assignment(&m.assigned);
        w.assignment(&m.pending_revocation);
        match &m.classic {
            None => w.i32(-1),
            Some(c) => {
                w.i32(c.session_timeout_ms);
                w.count(c.protocols.len());
                for (name, metadata) in &c.protocols {
                    w.str(name);
                    w.bytes(metadata);
                }
            }
        }
    }
    w.count(cg.target.len());
    for (member, a) in &cg.target {
        w.str(member);
        w.assignment(a);
    }
    w.count(cg.subscription.len());
    for (name, shape) in &cg.subscription {
        w.str(name);
        w.0.extend_from_slice(shape.id.as_bytes());
        w.i32(shape.partitions);
    }
    w.count(cg.regex_matches.len());
    for (regex, names) in &cg.regex_matches {
        w.str(regex);
        w.count(names.len());
        for n in names {
            w.str(n);
        }
    }
    Bytes::from(w.0)
}

/// The blob's strings (i32 length, -1 for null), ids and assignments, over the shared cursor.
trait Blob {
    fn bytes(&mut self) -> Option<&[u8]>;
    fn str(&mut self) -> Option<String>;
    fn opt(&mut self) -> Option<Option<String>>;
    fn uuid(&mut self) -> Option<Uuid>;
    fn assignment(&mut self) -> Option<Assignment>;
}

impl Blob for Reader<'_> {
    fn bytes(&mut self) -> Option<&[u8]> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn str(&mut self) -> Option<String> {
        let n = self.count(1)?;
        self.utf8(n)
    }
    fn opt(&mut self) -> Option<Option<String>> {
        let n = self.i32()?;
        if n < 0 {
            return Some(None);
        }
        Some(Some(self.utf8(usize::try_from(n).ok()?)?))
    }
    fn uuid(&mut self) -> Option<Uuid> {
        Some(Uuid::from_bytes(self.take(16)?.try_into().ok()?))
    }
    fn assignment(&mut self) -> Option<Assignment> {
        let mut a = Assignment::new();
        for _ in 0..self.count(20)? {
            let id = self.uuid()?;
            let mut ps = BTreeSet::new();
            for _ in 0..self.count(4)? {
                ps.insert(self.i32()?);
            }
            a.insert(id, ps);
        }
        Some(a)
    }
}

/// The group a blob describes, with every deadline counted from `now_ms`; `None` if the blob
/// is not one this build wrote.
pub(crate) fn decode(blob: &[u8], session_timeout_ms: i32, now_ms: i64) -> Option<ConsumerGroup> {
    let mut r = Reader(blob);
    if r.take(1)? != [VERSION] {
        return None;
    }
    let mut cg = ConsumerGroup {
        group_epoch: r.i32()?,
        assignment_epoch: r.i32()?,
        ..ConsumerGroup::default()
    };
    for _ in 0..r.count(1)? {
        let mut m = ConsumerMember::new(r.str()?);
        m.instance_id = r.opt()?;
        m.rack_id = r.opt()?;
        m.client_id = r.str()?;
        m.client_host = r.str()?;
        m.rebalance_timeout_ms = r.i32()?;
        for _ in 0..r.count(1)? {
            m.subscribed_topic_names.insert(r.str()?);
        }
        m.subscribed_topic_regex = r.opt()?;
        m.server_assignor = r.opt()?;
        m.member_epoch = r.i32()?;
        m.previous_member_epoch = r.i32()?;
        m.state = match r.take(1)?[0] {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => return None,
        };
        m.assigned = r.assignment()?;
        m.pending_revocation = r.assignment()?;
        let classic_session = r.i32()?;
        if classic_session >= 0 {
            let mut protocols = Vec::new();
            for _ in 0..r.count(1)? {
                let name = r.str()?;
                protocols.push((name, Bytes::copy_from_slice(r.bytes()?)));
            }
            m.classic = Some(ClassicMeta {
                session_timeout_ms: classic_session,
                protocols,
            });
        }
        let session = m
            .classic
            .as_ref()
            .map_or(session_timeout_ms, |c| c.session_timeout_ms);
        m.session_deadline_ms = now_ms.saturating_add(i64::from(session.max(0)));
        if m.state == MemberState::UnrevokedPartitions {
            m.revocation_deadline_ms =
                Some(now_ms.saturating_add(i64::from(m.rebalance_timeout_ms.max(0))));
        }
        if let Some(instance) = &m.instance_id {
            cg.static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        cg.members.insert(m.member_id.clone(), m);
    }
    for _ in 0..r.count(1)? {
        let member = r.str()?;
        cg.target.insert(member, r.assignment()?);
    }
    for _ in 0..r.count(1)? {
        let name = r.str()?;
        let id = r.uuid()?;
        cg.subscription.insert(
            name,
            TopicShape {
                id,
                partitions: r.i32()?,
            },
        );
    }
    let mut matches: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for _ in 0..r.count(1)? {
        let regex = r.str()?;
        let mut names = BTreeSet::new();
        for _ in 0..r.count(1)? {
            names.insert(r.str()?);
        }
        matches.insert(regex, names);
    }
    cg.regex_matches = matches;
    r.is_empty().then_some(cg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_reads_back_as_it_was_written() {
        let t = Uuid::new_v4();
        let mut cg = ConsumerGroup {
            group_epoch: 7,
            assignment_epoch: 6,
            ..ConsumerGroup::default()
        };
        let mut m = ConsumerMember::new("m1".into());
        m.instance_id = Some("i".into());
        m.subscribed_topic_names.insert("t".into());
        m.subscribed_topic_regex = Some("t.*".into());
        m.member_epoch = 6;
        m.previous_member_epoch = 5;
        m.state = MemberState::UnrevokedPartitions;
        m.assigned.insert(t, [0, 1].into_iter().collect());
        m.pending_revocation.insert(t, [2].into_iter().collect());
        m.classic = Some(ClassicMeta {
            session_timeout_ms: 10_000,
            protocols: vec![("range".into(), Bytes::from_static(b"\x00\x01"))],
        });
        cg.members.insert("m1".into(), m);
        cg.target.insert(
            "m1".into(),
            [(t, [0].into_iter().collect())].into_iter().collect(),
        );
        cg.subscription.insert(
            "t".into(),
            TopicShape {
                id: t,
                partitions: 3,
            },
        );
        cg.regex_matches
            .insert("t.*".into(), ["t".to_string()].into_iter().collect());
        let blob = encode(&cg);
        let back = decode(&blob, 45_000, 1000).unwrap();
        assert_eq!(encode(&back), blob);
        let m = &back.members["m1"];
        assert_eq!(
            m.session_deadline_ms, 11_000,
            "the classic member's own session"
        );
        assert_eq!(back.static_members["i"], "m1");
        assert!(decode(&blob[..blob.len() - 1], 45_000, 0).is_none());
    }
}
