//! Randomized membership traffic: clients join, sync, heartbeat, commit and leave with
//! random versions, stale or bogus ids and generations, while the manual clock jumps. The
//! coordinator checks its group invariants after every operation (debug builds), so this
//! test finds logic errors as panics; restarts in between check that a restored group holds
//! the same invariants. At the end, once the clock passes every deadline,
//! every parked JoinGroup/SyncGroup must have been answered: no wait outlives its timeout.
//! Rerun one seed with `STROM_TEST_SEED=<seed> cargo test -p strom-group --test fuzz_membership`.

mod common;

use common::*;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, SyncGroupResponse, TopicName,
};
use strom_group::{codes, GroupConfig};
use tokio::task::JoinHandle;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Client {
    instance: Option<String>,
    member_id: String,
    generation: i32,
    leader: bool,
    join: Option<(JoinHandle<JoinGroupResponse>, i16)>,
    sync: Option<JoinHandle<SyncGroupResponse>>,
}

async fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed.max(1));
    let mut env = Env::new(GroupConfig {
        initial_rebalance_delay_ms: [0, 3000][rng.below(2) as usize],
        ..config()
    });
    let mut clients: Vec<Client> = (0..5)
        .map(|i| Client {
            instance: (i % 3 == 0).then(|| format!("inst-{i}")),
            ..Default::default()
        })
        .collect();
    let (mut joins_ok, mut syncs_ok, mut max_generation, mut reopens) = (0, 0, 0, 0);
    for _ in 0..steps {
        // Collect finished requests first.
        for c in clients.iter_mut() {
            if c.join.as_ref().is_some_and(|(h, _)| h.is_finished()) {
                let (h, _) = c.join.take().unwrap();
                let r = h.await.unwrap();
                if !r.member_id.is_empty() {
                    c.member_id = r.member_id.to_string();
                }
                if r.error_code == codes::NONE {
                    joins_ok += 1;
                    max_generation = max_generation.max(r.generation_id);
                    c.generation = r.generation_id;
                    c.leader = r.leader == r.member_id;
                } else if r.error_code == codes::UNKNOWN_MEMBER_ID {
                    c.member_id.clear();
                }
            }
            if c.sync.as_ref().is_some_and(|h| h.is_finished()) {
                let r = c.sync.take().unwrap().await.unwrap();
                syncs_ok += usize::from(r.error_code == codes::NONE);
            }
        }
        let ci = rng.below(clients.len() as u64) as usize;
        let member = match rng.below(10) {
            0 => "bogus".to_string(),
            _ => clients[ci].member_id.clone(),
        };
        let generation = match rng.below(8) {
            0 => -1,
            1 => clients[ci].generation + 1,
            _ => clients[ci].generation,
        };
        let instance = clients[ci].instance.clone();
        match rng.below(100) {
            // Mostly well-behaved: join when without a member id, sometimes rejoin anyway.
            0..=24
                if clients[ci].join.is_none()
                    && clients[ci].sync.is_none()
                    && (clients[ci].member_id.is_empty() || rng.below(4) == 0) =>
            {
                let v = if instance.is_some() {
                    5 + rng.below(5) as i16
                } else {
                    rng.below(10) as i16
                };
                let topics: &[&str] = if rng.below(4) == 0 {
                    &["t", "u"]
                } else {
                    &["t"]
                };
                let mut req = join_req("g", &member, instance.as_deref(), topics);
                if rng.below(8) == 0 {
                    // Garbage subscription metadata must not upset anything.
                    let junk: Vec<u8> = (0..rng.below(24)).map(|_| rng.below(256) as u8).collect();
                    req.protocols[0].metadata = bytes::Bytes::from(junk);
                }
                clients[ci].join = Some((spawn_join(&env.coord, req, v), v));
            }
            0..=44 if clients[ci].join.is_none() && clients[ci].sync.is_none() => {
                let assignments: Vec<(String, Vec<u8>)> = if clients[ci].leader {
                    clients
                        .iter()
                        .map(|c| (c.member_id.clone(), b"a".to_vec()))
                        .collect()
                } else {
                    Vec::new()
                };
                let refs: Vec<(&str, &[u8])> = assignments
                    .iter()
                    .map(|(m, a)| (m.as_str(), a.as_slice()))
                    .collect();
                let req = sync_req("g", &member, generation, &refs)
                    .with_group_instance_id(instance.as_deref().map(s));
                clients[ci].sync = Some(spawn_sync(&env.coord, req, rng.below(6) as i16));
            }
            45..=69 => {
                let req = hb_req("g", &member, generation)
                    .with_group_instance_id(instance.as_deref().map(s));
                let r = env.coord.heartbeat(req, rng.below(5) as i16).await;
                if r.error_code == codes::UNKNOWN_MEMBER_ID {
                    clients[ci].member_id.clear();
                }
            }
            70..=77 => {
                let req = OffsetCommitRequest::default()
                    .with_group_id(gid("g"))
                    .with_generation_id_or_member_epoch(generation)
                    .with_member_id(s(&member))
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(rng.below(4) as i32)
                            .with_committed_offset(rng.below(100) as i64)])]);
                env.coord.offset_commit(req, 2 + rng.below(8) as i16).await;
            }
            78..=82 => {
                let v = rng.below(6) as i16;
                let req = if v >= 3 {
                    LeaveGroupRequest::default()
                        .with_group_id(gid("g"))
                        .with_members(vec![MemberIdentity::default()
                            .with_member_id(s(&member))
                            .with_group_instance_id(instance.as_deref().map(s))])
                } else {
                    LeaveGroupRequest::default()
                        .with_group_id(gid("g"))
                        .with_member_id(s(&member))
                };
                env.coord.leave_group(req, v).await;
            }
            // A restart (membership is restored from the log) while no request is parked:
            // a parked request would hold the old coordinator, whose timers no longer run.
            83..=85 if clients.iter().all(|c| c.join.is_none() && c.sync.is_none()) => {
                env.reopen();
                reopens += 1;
            }
            _ => env.advance(rng.below(12_000) as i64),
        }
        settle().await;
    }
    eprintln!(
        "seed {seed}: {joins_ok} joins and {syncs_ok} syncs succeeded, generation {max_generation}, {reopens} reopens"
    );
    // Liveness: past every deadline, nothing may still be parked.
    for _ in 0..4 {
        env.advance(400_000);
        settle().await;
    }
    for (i, c) in clients.iter().enumerate() {
        assert!(
            c.join.as_ref().is_none_or(|(h, _)| h.is_finished()),
            "seed {seed}: client {i}'s JoinGroup is still parked"
        );
        assert!(
            c.sync.as_ref().is_none_or(|h| h.is_finished()),
            "seed {seed}: client {i}'s SyncGroup is still parked"
        );
    }
}

#[tokio::test]
async fn random_membership_traffic_keeps_invariants_and_answers_every_wait() {
    let seeds: Vec<u64> = match std::env::var("STROM_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("STROM_TEST_SEED must be a u64")],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            (0..20).map(|i| base.wrapping_add(i * 104_729)).collect()
        }
    };
    for seed in seeds {
        eprintln!("membership fuzz seed {seed}");
        run(seed, 400).await;
    }
}
