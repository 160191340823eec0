//! The embedded consumer protocol of classic members, as far as a KIP-848 group needs it: the
//! subscription's topics, owned partitions and rack (ConsumerProtocolSubscription v0-v3), and
//! the assignment (ConsumerProtocolAssignment) of classic members. Hand-parsed and
//! bounds-checked so that hostile counts never allocate more than the bytes present.

use std::collections::{BTreeMap, BTreeSet};

use super::reader::Reader;

/// What a classic member's subscription metadata says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Subscription {
    pub version: i16,
    pub topics: BTreeSet<String>,
    /// Owned partitions by topic name (v1+; cooperative clients fill them).
    pub owned: BTreeMap<String, BTreeSet<i32>>,
    pub rack_id: Option<String>,
}

/// The embedded protocol's strings (i16 length) and arrays, over the shared cursor.
trait Embedded {
    fn string(&mut self) -> Option<String>;
    fn nullable_string(&mut self) -> Option<Option<String>>;
    fn skip_bytes(&mut self) -> Option<()>;
    fn topic_partitions(&mut self) -> Option<BTreeMap<String, BTreeSet<i32>>>;
}

impl Embedded for Reader<'_> {
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        self.utf8(len)
    }
    fn nullable_string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        Some(Some(self.utf8(usize::try_from(len).ok()?)?))
    }
    fn skip_bytes(&mut self) -> Option<()> {
        let len = self.i32()?;
        if len > 0 {
            self.take(usize::try_from(len).ok()?)?;
        }
        Some(())
    }
    fn topic_partitions(&mut self) -> Option<BTreeMap<String, BTreeSet<i32>>> {
        let mut out: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for _ in 0..self.count(6)? {
            let topic = self.string()?;
            let n = self.count(4)?;
            let entry = out.entry(topic).or_default();
            for _ in 0..n {
                entry.insert(self.i32()?);
            }
        }
        Some(out)
    }
}

/// `None` if the metadata is not a ConsumerProtocolSubscription.
pub(crate) fn subscription(metadata: &[u8]) -> Option<Subscription> {
    let mut r = Reader(metadata);
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..r.count(2)? {
        topics.insert(r.string()?);
    }
    r.skip_bytes()?;
    let mut sub = Subscription {
        version,
        topics,
        ..Subscription::default()
    };
    if version >= 1 {
        sub.owned = r.topic_partitions()?;
    }
    if version >= 2 {
        r.i32()?; // generation id
    }
    if version >= 3 {
        sub.rack_id = r.nullable_string()?;
    }
    Some(sub)
}

/// The partitions of a ConsumerProtocolAssignment (empty bytes: none); `None` if malformed.
pub(crate) fn assignment(bytes: &[u8]) -> Option<BTreeMap<String, BTreeSet<i32>>> {
    if bytes.is_empty() {
        return Some(BTreeMap::new());
    }
    let mut r = Reader(bytes);
    if r.i16()? < 0 {
        return None;
    }
    r.topic_partitions()
}

/// A ConsumerProtocolAssignment of `version` (every version has the same layout) with no user
/// data.
pub(crate) fn encode_assignment<'a>(
    version: i16,
    topics: impl Iterator<Item = (&'a str, &'a BTreeSet<i32>)>,
) -> bytes::Bytes {
    let topics: Vec<_> = topics.collect();
    let mut b = Vec::new();
    b.extend_from_slice(&version.clamp(0, 3).to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (name, partitions) in topics {
        b.extend_from_slice(&(name.len() as i16).to_be_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            b.extend_from_slice(&p.to_be_bytes());
        }
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    bytes::Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_reads_back_and_hostile_counts_are_refused() {
        let parts: BTreeSet<i32> = [0, 2].into_iter().collect();
        let bytes = encode_assignment(1, [("t", &parts)].into_iter());
        let read = assignment(&bytes).unwrap();
        assert_eq!(read["t"], parts);
        let mut hostile = vec![0u8, 0];
        hostile.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(assignment(&hostile), None);
        assert_eq!(subscription(&hostile), None);
    }

    #[test]
    fn a_v1_subscription_carries_owned_partitions() {
        let mut b = vec![0u8, 1];
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.push(b't');
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&3i32.to_be_bytes());
        let sub = subscription(&b).unwrap();
        assert_eq!(sub.topics, ["t".to_string()].into_iter().collect());
        assert_eq!(sub.owned["t"], [3].into_iter().collect());
    }
}
