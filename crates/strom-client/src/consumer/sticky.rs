//! The `cooperative-sticky` assignor (KIP-429, incremental rebalancing): members keep the
//! partitions they own where the balance allows, and a partition that must move is first only
//! taken from its owner; the owner revokes it and rejoins, and the next rebalance gives it to
//! its new member. Unlike the eager `range` protocol, no member stops reading the partitions
//! it keeps.
//!
//! Balance: every member ends with `partitions / members` partitions of what it subscribes to,
//! or one more, when all members subscribe to the same topics (the common case); with
//! different subscriptions each partition goes to the least loaded subscriber.

use std::collections::{BTreeMap, BTreeSet};

use crate::offsets::TopicPartition;

/// The assignor's name in JoinGroup.
pub const COOPERATIVE_STICKY_ASSIGNOR: &str = "cooperative-sticky";

/// A member's subscription as the leader sees it.
#[derive(Debug, Clone, Default)]
pub struct MemberState {
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Partitions it owned in the previous generation (subscription version 1+).
    pub owned: Vec<TopicPartition>,
}

/// Computes each member's partitions. Partitions taken from a member are not given to
/// another member in the same round: they are left out until the owner has revoked them.
pub fn cooperative_sticky_assign(
    members: &BTreeMap<String, MemberState>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut all: BTreeSet<TopicPartition> = BTreeSet::new();
    for state in members.values() {
        for t in &state.topics {
            if let Some(&n) = partition_counts.get(t) {
                all.extend((0..n).map(|p| (t.clone(), p)));
            }
        }
    }
    let wants = |m: &str, tp: &TopicPartition| members[m].topics.contains(&tp.0);
    // Keep what each member owns and may still have; a partition claimed twice (a stale
    // owner) stays with the first claimant.
    let mut assigned: BTreeMap<String, Vec<TopicPartition>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let mut taken: BTreeSet<TopicPartition> = BTreeSet::new();
    for (m, state) in members {
        for tp in &state.owned {
            if all.contains(tp) && wants(m, tp) && taken.insert(tp.clone()) {
                assigned.get_mut(m).expect("every member").push(tp.clone());
            }
        }
    }
    // Targets: an even share, the extra ones going to the members that hold the most now.
    let total = all.len();
    let n = members.len().max(1);
    let mut order: Vec<&String> = members.keys().collect();
    order.sort_by_key(|m| std::cmp::Reverse(assigned[*m].len()));
    let target: BTreeMap<&String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, total / n + usize::from(i < total % n)))
        .collect();
    // Take the excess from members above their share; those partitions wait a round.
    let mut revoking: BTreeSet<TopicPartition> = BTreeSet::new();
    for (m, parts) in assigned.iter_mut() {
        parts.sort();
        while parts.len() > target[m] {
            revoking.insert(parts.pop().expect("longer than its target"));
        }
    }
    // Free partitions go to the least loaded member that subscribes to them.
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let candidate = members
            .keys()
            .filter(|m| wants(m, tp))
            .filter(|m| assigned[*m].len() < target[m])
            .min_by_key(|m| assigned[*m].len())
            .or_else(|| {
                members
                    .keys()
                    .filter(|m| wants(m, tp))
                    .min_by_key(|m| assigned[*m].len())
            });
        if let Some(m) = candidate {
            assigned.get_mut(m).expect("every member").push(tp.clone());
        }
    }
    debug_assert!(revoking
        .iter()
        .all(|tp| assigned.values().all(|ps| !ps.contains(tp))));
    assigned
        .into_iter()
        .map(|(m, parts)| {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in parts {
                by_topic.entry(t).or_default().push(p);
            }
            for ps in by_topic.values_mut() {
                ps.sort();
            }
            (m, by_topic)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(topics: &[&str], owned: &[(&str, i32)]) -> MemberState {
        MemberState {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        }
    }

    fn count(a: &BTreeMap<String, BTreeMap<String, Vec<i32>>>, m: &str) -> usize {
        a[m].values().map(Vec::len).sum()
    }

    #[test]
    fn a_new_member_gets_partitions_only_after_the_owner_revoked_them() {
        let counts = BTreeMap::from([("t".to_string(), 4)]);
        let mut members = BTreeMap::from([
            (
                "a".to_string(),
                state(&["t"], &[("t", 0), ("t", 1), ("t", 2), ("t", 3)]),
            ),
            ("b".to_string(), state(&["t"], &[])),
        ]);
        // Round 1: a keeps two, gives up two; b gets nothing yet (they are being revoked).
        let first = cooperative_sticky_assign(&members, &counts);
        assert_eq!(first["a"]["t"], vec![0, 1]);
        assert_eq!(count(&first, "b"), 0);
        // Round 2, after a revoked 2 and 3: b gets them, a keeps its two.
        members.get_mut("a").unwrap().owned = vec![("t".into(), 0), ("t".into(), 1)];
        let second = cooperative_sticky_assign(&members, &counts);
        assert_eq!(second["a"]["t"], vec![0, 1]);
        assert_eq!(second["b"]["t"], vec![2, 3]);
    }

    #[test]
    fn owners_keep_their_partitions_and_free_ones_are_spread() {
        let counts = BTreeMap::from([("t".to_string(), 5)]);
        let members = BTreeMap::from([
            ("a".to_string(), state(&["t"], &[("t", 3)])),
            ("b".to_string(), state(&["t"], &[("t", 0)])),
            ("c".to_string(), state(&["t"], &[])),
        ]);
        let a = cooperative_sticky_assign(&members, &counts);
        assert!(a["a"]["t"].contains(&3));
        assert!(a["b"]["t"].contains(&0));
        let sizes: Vec<usize> = ["a", "b", "c"].iter().map(|m| count(&a, m)).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 5);
        assert!(sizes.iter().all(|n| (1..=2).contains(n)), "{sizes:?}");
    }
}
