//! The server-side assignors of `group.consumer.assignors`: `uniform` (balanced and sticky:
//! a partition stays with its owner while that keeps the counts within one) and `range`
//! (per topic, consecutive partitions to the subscribers sorted by member id, so that members
//! get the same partition numbers of co-partitioned topics).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::model::{Assignment, TopicShape};

pub(crate) const UNIFORM: &str = "uniform";
pub(crate) const RANGE: &str = "range";

/// What an assignor works from: each member's subscribed topics, the topics that exist, and
/// the previous target assignment (for stickiness).
pub(crate) struct AssignmentSpec<'a> {
    pub members: BTreeMap<String, BTreeSet<String>>,
    pub topics: &'a BTreeMap<String, TopicShape>,
    pub previous: &'a BTreeMap<String, Assignment>,
}

pub(crate) fn assign(assignor: &str, spec: &AssignmentSpec<'_>) -> BTreeMap<String, Assignment> {
    match assignor {
        RANGE => range(spec),
        _ => uniform(spec),
    }
}

type Partition = (Uuid, i32);

fn subscribers<'a>(spec: &'a AssignmentSpec<'_>, topic: &str) -> Vec<&'a String> {
    spec.members
        .iter()
        .filter(|(_, topics)| topics.contains(topic))
        .map(|(id, _)| id)
        .collect()
}

fn collect(
    owner: BTreeMap<Partition, String>,
    spec: &AssignmentSpec<'_>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = spec
        .members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for ((topic, p), member) in owner {
        if let Some(a) = out.get_mut(&member) {
            a.entry(topic).or_default().insert(p);
        }
    }
    out
}

fn uniform(spec: &AssignmentSpec<'_>) -> BTreeMap<String, Assignment> {
    let mut subs_of: BTreeMap<Partition, Vec<&String>> = BTreeMap::new();
    for (name, shape) in spec.topics {
        let subs = subscribers(spec, name);
        if subs.is_empty() {
            continue;
        }
        for p in 0..shape.partitions {
            subs_of.insert((shape.id, p), subs.clone());
        }
    }
    let mut count: BTreeMap<&String, usize> = spec.members.keys().map(|m| (m, 0)).collect();
    let mut owner: BTreeMap<Partition, &String> = BTreeMap::new();
    // Stickiness: a partition stays with its previous owner if that member still subscribes.
    for (member, assignment) in spec.previous {
        for (topic, partitions) in assignment {
            for &p in partitions {
                if let Some(subs) = subs_of.get(&(*topic, p)) {
                    if let Some(m) = subs.iter().find(|s| **s == member) {
                        owner.insert((*topic, p), m);
                        *count.entry(m).or_default() += 1;
                    }
                }
            }
        }
    }
    // New partitions go to the least loaded subscriber.
    for (partition, subs) in &subs_of {
        if owner.contains_key(partition) {
            continue;
        }
        if let Some(m) = subs.iter().min_by_key(|m| count[*m]) {
            owner.insert(*partition, m);
            *count.entry(m).or_default() += 1;
        }
    }
    // Balance: move a partition from a member to a subscriber with at least two fewer, until
    // none can move. Each move lowers the sum of squared counts, so this ends.
    let mut moved = true;
    while moved {
        moved = false;
        for (partition, subs) in &subs_of {
            let from = owner[partition];
            let Some(to) = subs.iter().min_by_key(|m| count[*m]).copied() else {
                continue;
            };
            if count[from] > count[to] + 1 {
                owner.insert(*partition, to);
                *count.entry(from).or_default() -= 1;
                *count.entry(to).or_default() += 1;
                moved = true;
            }
        }
    }
    collect(
        owner.into_iter().map(|(p, m)| (p, m.clone())).collect(),
        spec,
    )
}

fn range(spec: &AssignmentSpec<'_>) -> BTreeMap<String, Assignment> {
    let mut owner: BTreeMap<Partition, String> = BTreeMap::new();
    for (name, shape) in spec.topics {
        let subs = subscribers(spec, name);
        if subs.is_empty() {
            continue;
        }
        let n = shape.partitions.max(0) as usize;
        let (each, extra) = (n / subs.len(), n % subs.len());
        let mut next = 0;
        for (i, member) in subs.iter().enumerate() {
            let take = each + usize::from(i < extra);
            for p in next..next + take {
                owner.insert((shape.id, p as i32), (*member).clone());
            }
            next += take;
        }
    }
    collect(owner, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_topics(shapes: &[(&str, i32)]) -> BTreeMap<String, TopicShape> {
        shapes
            .iter()
            .map(|(n, p)| {
                (
                    n.to_string(),
                    TopicShape {
                        id: Uuid::new_v4(),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn sizes(a: &BTreeMap<String, Assignment>) -> Vec<usize> {
        a.values()
            .map(|x| x.values().map(BTreeSet::len).sum())
            .collect()
    }

    #[test]
    fn uniform_balances_and_keeps_what_it_can() {
        let topics = spec_topics(&[("a", 6)]);
        let none = BTreeMap::new();
        let spec = AssignmentSpec {
            members: members(&[("m1", &["a"]), ("m2", &["a"])]),
            topics: &topics,
            previous: &none,
        };
        let first = uniform(&spec);
        assert_eq!(sizes(&first), vec![3, 3]);
        let spec = AssignmentSpec {
            members: members(&[("m1", &["a"]), ("m2", &["a"]), ("m3", &["a"])]),
            topics: &topics,
            previous: &first,
        };
        let second = uniform(&spec);
        assert_eq!(sizes(&second), vec![2, 2, 2]);
        // Each of m1 and m2 kept two of its three partitions.
        for m in ["m1", "m2"] {
            let before = first[m].values().next().unwrap();
            let after = second[m].values().next().unwrap();
            assert_eq!(before.intersection(after).count(), 2, "{m}");
        }
    }

    #[test]
    fn uniform_respects_different_subscriptions() {
        let topics = spec_topics(&[("a", 4), ("b", 2)]);
        let none = BTreeMap::new();
        let spec = AssignmentSpec {
            members: members(&[("m1", &["a"]), ("m2", &["a", "b"])]),
            topics: &topics,
            previous: &none,
        };
        let out = uniform(&spec);
        let b = topics["b"].id;
        assert!(!out["m1"].contains_key(&b));
        assert_eq!(sizes(&out), vec![3, 3]);
    }

    #[test]
    fn range_gives_consecutive_partitions_per_topic() {
        let topics = spec_topics(&[("a", 5)]);
        let none = BTreeMap::new();
        let spec = AssignmentSpec {
            members: members(&[("m1", &["a"]), ("m2", &["a"])]),
            topics: &topics,
            previous: &none,
        };
        let out = range(&spec);
        let a = topics["a"].id;
        assert_eq!(out["m1"][&a], [0, 1, 2].into_iter().collect());
        assert_eq!(out["m2"][&a], [3, 4].into_iter().collect());
    }
}
