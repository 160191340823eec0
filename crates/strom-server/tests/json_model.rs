//! Model-based test of the JSON protocol: random sequences of produce, consume (from the
//! position or an explicit offset, moving the position or only peeking), commit and kill -9 + restart, run against the real binary
//! and checked against a simple in-memory model of what every acknowledged operation means.
//!
//! The sequence comes from a seed, printed at the start and in every failure; rerun one with
//! `STROM_TEST_SEED=<seed> cargo test -p strom-server --test json_model`.
//! Build the binary first: `cargo build -p strom` (see `json_support`).

mod json_support;

use std::collections::HashMap;

use json_support::{Broker, Conn};
use serde_json::{json, Value};

/// Operations per run; about 1 in 60 is a crash and restart.
const OPERATIONS: usize = 400;
const TOPICS: [(&str, i64); 2] = [("one", 1), ("three", 3)];
const CONSUMERS: [&str; 3] = ["c0", "c1", "c2"];
const KEYS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];

/// xorshift64*: small, deterministic, good enough to pick operations.
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
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Default)]
struct Model {
    /// (topic, partition) -> values in offset order.
    logs: HashMap<(String, i64), Vec<String>>,
    /// (consumer, topic, partition) -> position.
    positions: HashMap<(String, String, i64), i64>,
    /// key -> the partition of "three" it went to.
    key_partitions: HashMap<String, i64>,
}

#[test]
fn random_operations_with_crashes_match_the_model() {
    let seed = std::env::var("STROM_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
        | 1;
    eprintln!("json_model seed: {seed} (rerun with STROM_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    let mut broker = Broker::start(&[]);
    let mut conn = broker.connect();
    let mut model = Model::default();
    for (topic, partitions) in TOPICS {
        conn.ok(json!({"type":"create_topic","topic":topic,"partitions":partitions}));
        for p in 0..partitions {
            model.logs.insert((topic.to_string(), p), Vec::new());
        }
    }
    let mut step_log: Vec<String> = Vec::new();
    for step in 0..OPERATIONS {
        let (topic, partitions) = *rng.pick(&TOPICS);
        let partition = rng.below(partitions as u64) as i64;
        let roll = rng.below(60);
        let ctx = |what: &str, log: &[String]| {
            format!(
                "seed {seed}, step {step}: {what}\nlast steps:\n{}",
                log[log.len().saturating_sub(8)..].join("\n")
            )
        };
        if roll == 0 {
            step_log.push(format!("{step}: crash and restart"));
            drop(conn);
            broker.crash_and_restart();
            conn = broker.connect();
        } else if roll < 25 {
            let value = format!("v{step}");
            let mut req = json!({"type":"produce","topic":topic,"value":value});
            let key = if rng.below(2) == 0 {
                let k = *rng.pick(&KEYS);
                req["key"] = json!(k);
                Some(k)
            } else {
                None
            };
            if rng.below(2) == 0 {
                req["partition"] = json!(partition);
            }
            step_log.push(format!("{step}: {req}"));
            let r = call_ok(&mut conn, &req, &ctx("produce", &step_log));
            let p = r["partition"].as_i64().unwrap();
            if req.get("partition").is_some() {
                assert_eq!(p, partition, "{}", ctx("produce partition", &step_log));
            } else if let (Some(k), "three") = (key, topic) {
                let first = *model.key_partitions.entry(k.to_string()).or_insert(p);
                assert_eq!(p, first, "{}", ctx("one key, one partition", &step_log));
            }
            let log = model.logs.get_mut(&(topic.to_string(), p)).unwrap();
            assert_eq!(
                r["offset"].as_i64().unwrap(),
                log.len() as i64,
                "{}",
                ctx("offset", &step_log)
            );
            log.push(value);
        } else if roll < 50 {
            let consumer = *rng.pick(&CONSUMERS);
            let max = 1 + rng.below(6) as i64;
            let log = &model.logs[&(topic.to_string(), partition)];
            let mut req = json!({"type":"consume","topic":topic,"partition":partition,
                "consumer_id":consumer,"max_messages":max});
            let pos_key = (consumer.to_string(), topic.to_string(), partition);
            let from = if rng.below(8) == 0 {
                let o = rng.below(log.len() as u64 + 1) as i64;
                req["offset"] = json!(o);
                o
            } else {
                model.positions.get(&pos_key).copied().unwrap_or(0)
            };
            let auto_commit = rng.below(5) != 0;
            if !auto_commit {
                req["auto_commit"] = json!(false);
            }
            step_log.push(format!("{step}: {req}"));
            let r = call_ok(&mut conn, &req, &ctx("consume", &step_log));
            let end = (from + max).min(log.len() as i64);
            let want: Vec<Value> = (from..end)
                .map(|o| json!({"offset": o, "value": log[o as usize]}))
                .collect();
            let got: Vec<Value> = r["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| json!({"offset": m["offset"], "value": m["value"]}))
                .collect();
            assert_eq!(got, want, "{}", ctx("consumed messages", &step_log));
            assert_eq!(
                r["next_offset"],
                json!(end),
                "{}",
                ctx("next_offset", &step_log)
            );
            if auto_commit {
                model.positions.insert(pos_key, end);
            }
        } else {
            let consumer = *rng.pick(&CONSUMERS);
            let len = model.logs[&(topic.to_string(), partition)].len() as u64;
            let offset = rng.below(len + 1) as i64;
            let req = json!({"type":"commit","topic":topic,"partition":partition,
                "consumer_id":consumer,"offset":offset});
            step_log.push(format!("{step}: {req}"));
            call_ok(&mut conn, &req, &ctx("commit", &step_log));
            model
                .positions
                .insert((consumer.to_string(), topic.to_string(), partition), offset);
        }
    }
    // Finally every position reads back as the model says, after one more crash.
    broker.crash_and_restart();
    let mut conn = broker.connect();
    for ((consumer, topic, partition), pos) in &model.positions {
        let r = conn.ok(
            json!({"type":"position","topic":topic,"partition":partition,"consumer_id":consumer}),
        );
        assert_eq!(
            r["offset"],
            json!(pos),
            "seed {seed}: final position of {consumer} in {topic}/{partition}"
        );
    }
}

fn call_ok(conn: &mut Conn, req: &Value, ctx: &str) -> Value {
    let r = conn.call(req.clone());
    assert_eq!(r["ok"], json!(true), "{ctx}\nresponse: {r}");
    r
}
