//! The metadata image: what the replicated metadata log says about the cluster, as every node
//! applies it (brokers, topics, partition assignments, leaders, leader epochs, ISR). It is a
//! pure function of the log: [`MetadataImage::apply`] never looks at clocks, disks or the
//! network, so every node that applied the same entries holds the same image.
//!
//! Leader election lives here too, so that it is decided once, by the log order, and never by
//! a node's local view: fencing a broker moves each partition it led to the first replica (in
//! assignment order) that is in the ISR and not fenced, and bumps the leader epoch; with no
//! such replica the partition has no leader (`unclean.leader.election.enable=false`: a replica
//! outside the ISR is never elected).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// No leader: every replica of the ISR is fenced.
pub const NO_LEADER: i32 = -1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// The Kafka listener clients are told about.
    pub host: String,
    pub port: i32,
    /// Its heartbeats stopped: it leads nothing and is left out of every ISR.
    pub fenced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Assignment order; the first one is the preferred leader.
    pub replicas: Vec<i32>,
    pub leader: i32,
    /// Bumped at every leader change; stamped into each batch the leader appends and used to
    /// fence a leader that lost its place (and the followers that fetch from it).
    pub leader_epoch: i32,
    /// In-sync replicas: the leader and the followers that have everything acknowledged.
    pub isr: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub topic_id: Uuid,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionImage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicImage>,
    /// Broker state kept whole in the log: each node's file of SCRAM users, ACLs and client
    /// quotas, by name. (Absent from snapshots written before it existed.)
    #[serde(default)]
    pub docs: BTreeMap<String, SharedDoc>,
}

/// One replicated document and how many times it was replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedDoc {
    pub version: u64,
    pub content: String,
}

/// One entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker started (or restarted) and serves Kafka at host:port.
    RegisterBroker {
        id: i32,
        host: String,
        port: i32,
    },
    /// The controller saw no heartbeat from the broker for `broker.session.timeout.ms`.
    FenceBroker {
        id: i32,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
        /// One replica list per partition.
        assignments: Vec<Vec<i32>>,
    },
    DeleteTopic {
        name: String,
    },
    /// The partition leader shrinks or expands its ISR. Refused unless `leader` and
    /// `leader_epoch` are still current (a deposed leader cannot change the ISR).
    AlterIsr {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// CreatePartitions: new partitions appended to a topic, one replica list each.
    CreatePartitions {
        name: String,
        assignments: Vec<Vec<i32>>,
    },
    /// AlterConfigs / IncrementalAlterConfigs: the topic's whole set of overrides.
    AlterTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// A node changed a replicated document (users, ACLs, quotas): its whole new content,
    /// applied only if the document is still at `expected_version` (else another node's
    /// change came first and this one must be redone on top of it).
    PutDoc {
        name: String,
        expected_version: u64,
        content: String,
    },
    /// Auto leader rebalance: leadership goes back to the preferred replica (the first of the
    /// assignment). Refused unless the partition is still in `leader_epoch` and the preferred
    /// replica is alive and in the ISR.
    ElectPreferredLeader {
        topic: String,
        partition: i32,
        leader_epoch: i32,
    },
}

/// A preferred leader election to propose: (topic, partition, current leader epoch).
pub type Election = (String, i32, i32);

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    #[default]
    Done,
    /// The command was valid when proposed but not at its place in the log.
    Refused(String),
}

impl MetadataImage {
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        match command {
            Command::RegisterBroker { id, host, port } => {
                // A restarted broker lost its in-memory replication state: whatever it led
                // moves to another in-sync replica (a new epoch), and it comes back as a
                // follower that truncates to the new leader before it catches up.
                if self.brokers.contains_key(id) {
                    self.fence(*id);
                }
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        host: host.clone(),
                        port: *port,
                        fenced: false,
                    },
                );
                self.elect_leaderless(*id);
                CommandResult::Done
            }
            Command::FenceBroker { id } => {
                let Some(b) = self.brokers.get_mut(id) else {
                    return CommandResult::Refused(format!("broker {id} is not registered"));
                };
                b.fenced = true;
                self.fence(*id);
                CommandResult::Done
            }
            Command::UnfenceBroker { id } => {
                let Some(b) = self.brokers.get_mut(id) else {
                    return CommandResult::Refused(format!("broker {id} is not registered"));
                };
                b.fenced = false;
                self.elect_leaderless(*id);
                CommandResult::Done
            }
            Command::CreateTopic {
                name,
                topic_id,
                configs,
                assignments,
            } => {
                if self.topics.contains_key(name) {
                    return CommandResult::Refused(format!("Topic '{name}' already exists."));
                }
                let partitions = self.new_partitions(assignments);
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        topic_id: *topic_id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                CommandResult::Done
            }
            Command::CreatePartitions { name, assignments } => {
                let added = self.new_partitions(assignments);
                match self.topics.get_mut(name) {
                    Some(t) => {
                        t.partitions.extend(added);
                        CommandResult::Done
                    }
                    None => CommandResult::Refused(format!("unknown topic {name}")),
                }
            }
            Command::AlterTopicConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.configs = configs.clone();
                    CommandResult::Done
                }
                None => CommandResult::Refused(format!("unknown topic {name}")),
            },
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => CommandResult::Done,
                None => CommandResult::Refused(format!("unknown topic {name}")),
            },
            Command::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
            } => {
                let p = match self.partition_mut(topic, *partition) {
                    Ok(p) => p,
                    Err(refused) => return refused,
                };
                if p.leader != *leader || p.leader_epoch != *leader_epoch {
                    return CommandResult::Refused(format!(
                        "stale leader {leader} epoch {leader_epoch} (now {} epoch {})",
                        p.leader, p.leader_epoch
                    ));
                }
                if !isr.contains(leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
                    return CommandResult::Refused(format!("invalid ISR {isr:?}"));
                }
                p.isr = isr.clone();
                CommandResult::Done
            }
            Command::PutDoc {
                name,
                expected_version,
                content,
            } => {
                let version = self.docs.get(name).map_or(0, |d| d.version);
                if version != *expected_version {
                    return CommandResult::Refused(format!(
                        "{name} is at version {version}, not {expected_version}"
                    ));
                }
                self.docs.insert(
                    name.clone(),
                    SharedDoc {
                        version: version + 1,
                        content: content.clone(),
                    },
                );
                CommandResult::Done
            }
            Command::ElectPreferredLeader {
                topic,
                partition,
                leader_epoch,
            } => {
                let alive = self.live_brokers();
                let p = match self.partition_mut(topic, *partition) {
                    Ok(p) => p,
                    Err(refused) => return refused,
                };
                if p.leader_epoch != *leader_epoch {
                    return CommandResult::Refused(format!(
                        "stale epoch {leader_epoch} (now {})",
                        p.leader_epoch
                    ));
                }
                match p.replicas.first().copied() {
                    Some(preferred)
                        if preferred != p.leader
                            && p.isr.contains(&preferred)
                            && alive.contains(&preferred) =>
                    {
                        p.leader = preferred;
                        p.leader_epoch += 1;
                        CommandResult::Done
                    }
                    _ => CommandResult::Refused("the preferred replica cannot lead now".into()),
                }
            }
        }
    }

    /// Kafka's auto leader rebalance check: for every broker whose share of partitions it
    /// prefers but does not lead is above `imbalance_percent`, the partitions that can move
    /// back to it now (it is alive and in the ISR), as (topic, partition, leader epoch).
    pub fn preferred_elections(&self, imbalance_percent: u32) -> Vec<Election> {
        let alive = self.live_brokers();
        // Per preferred broker: how many partitions prefer it, and those that can move now.
        let mut preferred: BTreeMap<i32, (u32, Vec<Election>)> = BTreeMap::new();
        for (name, t) in &self.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                let Some(first) = p.replicas.first().copied() else {
                    continue;
                };
                let entry = preferred.entry(first).or_default();
                entry.0 += 1;
                if p.leader != first && p.isr.contains(&first) && alive.contains(&first) {
                    entry.1.push((name.clone(), i as i32, p.leader_epoch));
                }
            }
        }
        preferred
            .into_values()
            .filter(|(total, movable)| {
                (movable.len() as u64) * 100 > u64::from(imbalance_percent) * u64::from(*total)
            })
            .flat_map(|(_, movable)| movable)
            .collect()
    }

    /// A partition a command names, or the refusal of a command naming none.
    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionImage, CommandResult> {
        self.topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(usize::try_from(partition).ok()?))
            .ok_or_else(|| CommandResult::Refused(format!("unknown partition {topic}-{partition}")))
    }

    /// Fresh partitions: every replica in the ISR, the first live one leading, epoch 0.
    fn new_partitions(&self, assignments: &[Vec<i32>]) -> Vec<PartitionImage> {
        assignments
            .iter()
            .map(|replicas| {
                let leader = replicas
                    .iter()
                    .copied()
                    .find(|r| self.alive(*r))
                    .unwrap_or(NO_LEADER);
                PartitionImage {
                    replicas: replicas.clone(),
                    leader,
                    leader_epoch: 0,
                    isr: replicas.clone(),
                }
            })
            .collect()
    }

    fn alive(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Takes a fenced broker out of every ISR (but never empties one: the last member stays,
    /// as Kafka keeps it, so that it alone can lead again) and moves its leaderships.
    fn fence(&mut self, id: i32) {
        let alive: Vec<i32> = self
            .brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(i, _)| *i)
            .collect();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                }
                if p.leader == id {
                    p.leader = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != id && p.isr.contains(r) && alive.contains(r))
                        .unwrap_or(NO_LEADER);
                    p.leader_epoch += 1;
                }
            }
        }
    }

    /// A broker came back: partitions without a leader whose ISR holds it get it as leader.
    fn elect_leaderless(&mut self, id: i32) {
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if p.leader == NO_LEADER && p.isr.contains(&id) {
                    p.leader = id;
                    p.leader_epoch += 1;
                }
            }
        }
    }

    /// Live (unfenced) brokers, by id.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionImage> {
        self.topics
            .get(topic)
            .and_then(|t| t.partitions.get(usize::try_from(partition).ok()?))
    }
}

/// Round-robin replica assignment over `brokers` (sorted), as Kafka's rack-unaware
/// assignment does: partition `p`'s replicas start at broker `p % n`, so leadership is spread.
pub fn assign_replicas(
    brokers: &[i32],
    partitions: i32,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, String> {
    assign_replicas_from(brokers, 0, partitions, replication_factor)
}

/// [`assign_replicas`] for partitions `first..first + partitions` (CreatePartitions), so the
/// round-robin continues where the topic's existing partitions left it.
pub fn assign_replicas_from(
    brokers: &[i32],
    first: i32,
    partitions: i32,
    replication_factor: usize,
) -> Result<Vec<Vec<i32>>, String> {
    if replication_factor > brokers.len() {
        return Err(format!(
            "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {} broker(s) are registered.",
            brokers.len()
        ));
    }
    let n = brokers.len();
    let first = first.max(0) as usize;
    Ok((first..first + partitions.max(0) as usize)
        .map(|p| {
            (0..replication_factor)
                .map(|r| brokers[(p + r) % n])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_brokers() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image.apply(&Command::RegisterBroker {
                id,
                host: "127.0.0.1".into(),
                port: 9000 + id,
            });
        }
        image.apply(&Command::CreateTopic {
            name: "t".into(),
            topic_id: Uuid::nil(),
            configs: BTreeMap::new(),
            assignments: assign_replicas(&[1, 2, 3], 3, 3).unwrap(),
        });
        image
    }

    #[test]
    fn fencing_a_leader_elects_the_next_isr_replica_and_bumps_the_epoch() {
        let mut image = three_brokers();
        assert_eq!(image.partition("t", 0).unwrap().leader, 1);
        image.apply(&Command::FenceBroker { id: 1 });
        let p = image.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch), (2, 1));
        assert_eq!(p.isr, vec![2, 3]);
        // A partition it only followed keeps its leader and epoch.
        let p1 = image.partition("t", 1).unwrap();
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (2, 0, vec![2, 3])
        );
    }

    #[test]
    fn the_last_isr_member_stays_and_no_unclean_election_happens() {
        let mut image = three_brokers();
        image.apply(&Command::FenceBroker { id: 2 });
        image.apply(&Command::FenceBroker { id: 3 });
        image.apply(&Command::FenceBroker { id: 1 });
        let p = image.partition("t", 0).unwrap();
        assert_eq!(p.leader, NO_LEADER);
        assert_eq!(p.isr, vec![1]);
        // Broker 3 comes back but was not in the ISR: still no leader.
        image.apply(&Command::UnfenceBroker { id: 3 });
        assert_eq!(image.partition("t", 0).unwrap().leader, NO_LEADER);
        image.apply(&Command::UnfenceBroker { id: 1 });
        let p = image.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
    }

    #[test]
    fn a_deposed_leader_cannot_alter_the_isr() {
        let mut image = three_brokers();
        image.apply(&Command::FenceBroker { id: 1 });
        let stale = Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 0,
            isr: vec![1],
        };
        assert!(matches!(image.apply(&stale), CommandResult::Refused(_)));
        let ok = Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader: 2,
            leader_epoch: 1,
            isr: vec![2, 3, 1],
        };
        assert_eq!(image.apply(&ok), CommandResult::Done);
    }

    #[test]
    fn leadership_goes_back_to_the_preferred_replica_once_it_is_in_sync() {
        let mut image = three_brokers();
        image.apply(&Command::FenceBroker { id: 1 });
        // Broker 1 prefers partition 0 and leads none of it: 100% imbalance, but it is fenced.
        assert!(image.preferred_elections(10).is_empty());
        image.apply(&Command::UnfenceBroker { id: 1 });
        assert!(
            image.preferred_elections(10).is_empty(),
            "not in the ISR yet"
        );
        let p = image.partition("t", 0).unwrap().clone();
        image.apply(&Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            isr: vec![2, 3, 1],
        });
        let elections = image.preferred_elections(10);
        assert_eq!(elections, vec![("t".to_string(), 0, 1)]);
        // A proposal from an older epoch is refused; the current one moves leadership back.
        let stale = Command::ElectPreferredLeader {
            topic: "t".into(),
            partition: 0,
            leader_epoch: 0,
        };
        assert!(matches!(image.apply(&stale), CommandResult::Refused(_)));
        let (topic, partition, leader_epoch) = elections[0].clone();
        let elect = Command::ElectPreferredLeader {
            topic,
            partition,
            leader_epoch,
        };
        assert_eq!(image.apply(&elect), CommandResult::Done);
        let p = image.partition("t", 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
        assert!(image.preferred_elections(10).is_empty());
        // Under the threshold nothing moves: 1 of 1 is 100% > 10%, but 0% is not.
        assert!(image.preferred_elections(100).is_empty());
    }

    #[test]
    fn assignment_spreads_leaders_and_refuses_too_few_brokers() {
        let a = assign_replicas(&[1, 2, 3], 3, 2).unwrap();
        assert_eq!(a, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
        assert!(assign_replicas(&[1], 1, 3).is_err());
    }
}
