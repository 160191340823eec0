//! Model-based test of the offsets store: random commits, offset deletes, group deletes,
//! clean reopens and crash cuts (the file truncated at a random byte, as a crash mid-write
//! leaves it), checked against a `BTreeMap`. The seed is printed; rerun one with
//! `STROM_TEST_SEED=<seed> cargo test -p strom-group --test model`.

mod common;

use std::collections::BTreeMap;

use common::*;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, TopicName,
};
use strom_group::codes;

type Model = BTreeMap<(String, String, i32), i64>;

/// xorshift64*: tiny, deterministic, good enough to pick operations.
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

const GROUPS: [&str; 4] = ["g0", "g1", "g2", "g3"];

fn pick_partition(rng: &mut Rng) -> (&'static str, i32) {
    if rng.below(3) == 0 {
        ("u", 0)
    } else {
        ("t", rng.below(3) as i32)
    }
}

fn check(env: &Env, model: &Model, seed: u64, step: usize) {
    for g in GROUPS {
        let want: Vec<(String, i32, i64)> = model
            .iter()
            .filter(|((mg, _, _), _)| mg == g)
            .map(|((_, t, p), o)| (t.clone(), *p, *o))
            .collect();
        assert_eq!(
            env.coord.committed_offsets(g),
            want,
            "seed {seed}, step {step}, group {g}"
        );
    }
}

fn file_len(env: &Env) -> u64 {
    std::fs::metadata(env.dir.path().join("offsets.log"))
        .unwrap()
        .len()
}

async fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed.max(1));
    let mut env = Env::new(config());
    let mut model = Model::new();
    // (file length, model) after each operation since the last open.
    let mut history: Vec<(u64, Model)> = vec![(file_len(&env), model.clone())];
    for step in 0..steps {
        match rng.below(100) {
            0..=54 => {
                let g = GROUPS[rng.below(4) as usize];
                let (t, p) = pick_partition(&mut rng);
                let o = rng.below(1_000_000) as i64;
                let req = OffsetCommitRequest::default()
                    .with_group_id(gid(g))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(o)])]);
                let r = env.coord.offset_commit(req, 8).await;
                assert_eq!(
                    r.topics[0].partitions[0].error_code,
                    codes::NONE,
                    "seed {seed}"
                );
                model.insert((g.into(), t.into(), p), o);
            }
            55..=69 => {
                let g = GROUPS[rng.below(4) as usize];
                let (t, p) = pick_partition(&mut rng);
                let req = OffsetDeleteRequest::default()
                    .with_group_id(gid(g))
                    .with_topics(vec![OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(p)
                        ])]);
                env.coord.offset_delete(req, 0).await;
                model.remove(&(g.to_string(), t.to_string(), p));
            }
            70..=77 => {
                let g = GROUPS[rng.below(4) as usize];
                env.coord
                    .delete_groups(
                        DeleteGroupsRequest::default().with_groups_names(vec![gid(g)]),
                        2,
                    )
                    .await;
                model.retain(|(mg, _, _), _| mg != g);
            }
            78..=89 => {
                env.reopen();
                check(&env, &model, seed, step);
                history = vec![(file_len(&env), model.clone())];
                continue;
            }
            _ => {
                // Crash: cut the file anywhere after the last open's state.
                let lo = history[0].0;
                let hi = file_len(&env);
                let cut = lo + rng.below(hi - lo + 1);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(env.dir.path().join("offsets.log"))
                    .unwrap();
                f.set_len(cut).unwrap();
                drop(f);
                let survived = history
                    .iter()
                    .rev()
                    .find(|(len, _)| *len <= cut)
                    .map(|(_, m)| m.clone())
                    .unwrap();
                env.reopen();
                model = survived;
                check(&env, &model, seed, step);
                history = vec![(file_len(&env), model.clone())];
                continue;
            }
        }
        // Appends go straight to the file (no user-space buffer), so its length is current.
        check(&env, &model, seed, step);
        history.push((file_len(&env), model.clone()));
    }
    env.reopen();
    check(&env, &model, seed, steps);
}

#[tokio::test]
async fn offsets_store_matches_model_across_reopens_and_crash_cuts() {
    let seeds: Vec<u64> = match std::env::var("STROM_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("STROM_TEST_SEED must be a u64")],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            (0..4).map(|i| base.wrapping_add(i * 7919)).collect()
        }
    };
    for seed in seeds {
        eprintln!("model test seed {seed}");
        run(seed, 250).await;
    }
}
