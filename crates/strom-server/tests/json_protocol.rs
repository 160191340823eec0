//! The JSON-over-TCP protocol against the real `strom` binary over real sockets: the seed's
//! flow, consumer positions (once per consumer id, across connections, across a kill -9),
//! binary payloads, errors that leave the connection usable, the line-length bound,
//! pipelining and long polling.
//!
//! The binary is `$STROM_BIN`, else the newer of `target/debug/strom` and
//! `target/release/strom`; build it first (`cargo build -p strom`). Cargo builds a binary only
//! for the tests of its own package, so these tests cannot build it themselves.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A broker that needs longer than this to listen is broken.
const START_TIMEOUT_MS: u64 = 20_000;
/// Every response must arrive within this.
const RESPONSE_TIMEOUT_MS: u64 = 20_000;

fn strom_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STROM_BIN") {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let candidates = ["debug", "release"].map(|profile| {
        target
            .join(profile)
            .join(format!("strom{}", std::env::consts::EXE_SUFFIX))
    });
    candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_else(|| {
            panic!(
                "no strom binary in {}; run `cargo build -p strom` or set STROM_BIN",
                target.display()
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// A `strom serve --json-listen` process on its own data dir; killed (and the dir removed)
/// on drop. Ports and data dir stay the same across restarts.
struct Broker {
    child: Option<Child>,
    kafka_port: u16,
    json_port: u16,
    data_dir: PathBuf,
    settings: Vec<String>,
}

impl Broker {
    fn start(settings: &[&str]) -> Broker {
        let data_dir = std::env::temp_dir().join(format!(
            "strom-json-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        let mut b = Broker {
            child: None,
            kafka_port: free_port(),
            json_port: free_port(),
            data_dir,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(strom_binary());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.kafka_port))
            .arg("--json-listen")
            .arg(format!("127.0.0.1:{}", self.json_port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--set", "group.initial.rebalance.delay.ms=0"]);
        for s in &self.settings {
            cmd.args(["--set", s]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strom serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        // Probe the Kafka port: both listeners are bound before the broker opens, and probing
        // the JSON port would use up its connection slots in the max.connections test.
        while TcpStream::connect(("127.0.0.1", self.kafka_port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("strom serve exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "strom did not listen within {START_TIMEOUT_MS} ms"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would, then start again on the same ports and data dir.
    fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    fn connect(&self) -> Conn {
        Conn::open(self.json_port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the JSON port");
        s.set_read_timeout(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS)))
            .unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write request");
    }

    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read response");
        assert!(n > 0, "connection closed instead of answering");
        assert!(line.ends_with('\n'), "response is one line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("response is JSON ({e}): {line}"))
    }

    fn call(&mut self, request: Value) -> Value {
        let mut line = serde_json::to_vec(&request).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        self.recv()
    }

    /// A call that must succeed.
    fn ok(&mut self, request: Value) -> Value {
        let r = self.call(request.clone());
        assert_eq!(r["ok"], json!(true), "{request} failed: {r}");
        r
    }

    /// A call that must fail with this error code.
    fn err(&mut self, request: Value, code: &str) -> String {
        let r = self.call(request.clone());
        assert_eq!(r["ok"], json!(false), "{request} should fail: {r}");
        assert_eq!(r["code"], json!(code), "{request}: {r}");
        r["error"].as_str().expect("error text").to_string()
    }
}

fn values(consumed: &Value) -> Vec<String> {
    consumed["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["value"].as_str().expect("text value").to_string())
        .collect()
}

fn offsets(consumed: &Value) -> Vec<i64> {
    consumed["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect()
}

#[test]
fn the_seed_flow_works_and_each_consumer_id_gets_each_message_once() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    let r = c.ok(json!({"type":"create_topic","topic":"demo-topic","partitions":3}));
    assert_eq!(r["partitions"], json!(3));

    let r = c.ok(json!({"type":"produce","topic":"demo-topic","partition":0,"value":"Hello, Kafka!","key":"k1"}));
    assert_eq!(
        (r["partition"].clone(), r["offset"].clone()),
        (json!(0), json!(0))
    );
    let r = c.ok(json!({"type":"produce","topic":"demo-topic","partition":0,"value":"second","headers":{"h":"1"}}));
    assert_eq!(r["offset"], json!(1));

    let r = c.ok(json!({"type":"consume","topic":"demo-topic","partition":0,"consumer_id":"c1","max_messages":1}));
    let m = &r["messages"][0];
    assert_eq!(
        (m["offset"].clone(), m["value"].clone(), m["key"].clone()),
        (json!(0), json!("Hello, Kafka!"), json!("k1"))
    );
    assert!(m["timestamp"].as_i64().unwrap() > 0);
    assert_eq!(r["next_offset"], json!(1));

    let r = c.ok(json!({"type":"consume","topic":"demo-topic","partition":0,"consumer_id":"c1"}));
    assert_eq!(values(&r), ["second"]);
    assert_eq!(r["messages"][0]["headers"], json!({"h":"1"}));
    assert_eq!(r["messages"][0]["key"], json!(null));
    let r = c.ok(json!({"type":"consume","topic":"demo-topic","partition":0,"consumer_id":"c1"}));
    assert_eq!(
        values(&r),
        Vec::<String>::new(),
        "nothing is delivered twice"
    );

    // Another consumer id has its own position.
    let r = c.ok(json!({"type":"consume","topic":"demo-topic","partition":0,"consumer_id":"c2"}));
    assert_eq!(values(&r), ["Hello, Kafka!", "second"]);

    // `offset` rereads; `commit` and `position` move and show the position.
    let r = c.ok(
        json!({"type":"consume","topic":"demo-topic","partition":0,"consumer_id":"c1","offset":1}),
    );
    assert_eq!(values(&r), ["second"]);
    c.ok(json!({"type":"commit","topic":"demo-topic","partition":0,"consumer_id":"c1","offset":0}));
    let r = c.ok(json!({"type":"position","topic":"demo-topic","partition":0,"consumer_id":"c1"}));
    assert_eq!(r["offset"], json!(0));
    let r = c.ok(json!({"type":"position","topic":"demo-topic","partition":1,"consumer_id":"c1"}));
    assert_eq!(r["offset"], json!(null));
    let r = c.ok(json!({"type":"consume","topic":"demo-topic","partition":0,"consumer_id":"c1"}));
    assert_eq!(offsets(&r), [0, 1]);

    let r = c.ok(json!({"type":"list_topics"}));
    assert_eq!(r["topics"], json!([{"topic":"demo-topic","partitions":3}]));
    let r = c.ok(json!({"type":"describe_topic","topic":"demo-topic"}));
    assert_eq!(
        r["partitions"][0],
        json!({"partition":0,"start_offset":0,"end_offset":2})
    );
    assert_eq!(
        r["partitions"][2],
        json!({"partition":2,"start_offset":0,"end_offset":0})
    );
}

#[test]
fn without_a_partition_records_go_by_key_hash_or_round_robin() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"t","partitions":3}));
    let first = c.ok(json!({"type":"produce","topic":"t","key":"user-42","value":"a"}));
    for _ in 0..5 {
        let again = c.ok(json!({"type":"produce","topic":"t","key":"user-42","value":"b"}));
        assert_eq!(
            again["partition"], first["partition"],
            "one key, one partition"
        );
    }
    let mut seen: Vec<i64> = (0..3)
        .map(|_| {
            c.ok(json!({"type":"produce","topic":"t","value":"x"}))["partition"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [0, 1, 2], "keyless records visit every partition");
}

#[test]
fn binary_payloads_travel_as_base64_and_tombstones_as_null() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"bin","partitions":1}));
    // 0x00 0xff 0xfe is not UTF-8.
    c.ok(json!({"type":"produce","topic":"bin","partition":0,"value_b64":"AP/+","key_b64":"/w==","headers_b64":{"raw":"gA=="}}));
    // Valid UTF-8 sent as base64 comes back as text.
    c.ok(json!({"type":"produce","topic":"bin","partition":0,"value_b64":"aMOpbGxv"}));
    c.ok(json!({"type":"produce","topic":"bin","partition":0,"key":"gone","value":null}));
    let r = c.ok(json!({"type":"consume","topic":"bin","partition":0,"consumer_id":"b"}));
    let m = r["messages"].as_array().unwrap();
    assert_eq!(m[0]["value_b64"], json!("AP/+"));
    assert!(m[0].get("value").is_none());
    assert_eq!(m[0]["key_b64"], json!("/w=="));
    assert_eq!(m[0]["headers_b64"], json!({"raw":"gA=="}));
    assert_eq!(m[1]["value"], json!("héllo"));
    assert_eq!(
        (m[2]["value"].clone(), m[2]["key"].clone()),
        (json!(null), json!("gone"))
    );
}

#[test]
fn errors_answer_with_a_reason_and_the_connection_stays_usable() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"e","partitions":2}));
    c.ok(json!({"type":"produce","topic":"e","partition":0,"value":"v"}));

    c.send_raw(b"{\"type\": \"produce\", oops}\n");
    let r = c.recv();
    assert_eq!(
        (r["ok"].clone(), r["code"].clone()),
        (json!(false), json!("bad_json"))
    );
    c.send_raw(b"42\n");
    assert_eq!(c.recv()["code"], json!("bad_request"));

    let e = c.err(json!({"type":"teleport"}), "bad_request");
    assert!(e.contains("unknown type \"teleport\""), "{e}");
    let e = c.err(json!({"type":"produce","topic":"e"}), "bad_request");
    assert!(e.contains("missing field \"value\""), "{e}");
    let e = c.err(
        json!({"type":"consume","topic":"e","partition":0}),
        "bad_request",
    );
    assert!(e.contains("missing field \"consumer_id\""), "{e}");
    let e = c.err(
        json!({"type":"produce","topic":"nope","value":"v"}),
        "unknown_topic",
    );
    assert!(e.contains("nope"), "{e}");
    c.err(
        json!({"type":"consume","topic":"nope","partition":0,"consumer_id":"x"}),
        "unknown_topic",
    );
    let e = c.err(
        json!({"type":"produce","topic":"e","partition":7,"value":"v"}),
        "unknown_partition",
    );
    assert!(e.contains("has no partition 7"), "{e}");
    c.err(
        json!({"type":"consume","topic":"e","partition":0,"consumer_id":"x","offset":99}),
        "offset_out_of_range",
    );
    c.err(
        json!({"type":"create_topic","topic":"e","partitions":1}),
        "topic_already_exists",
    );
    c.err(
        json!({"type":"create_topic","topic":"bad name","partitions":1}),
        "invalid_topic",
    );
    c.err(
        json!({"type":"create_topic","topic":"zero","partitions":0}),
        "bad_request",
    );
    c.err(
        json!({"type":"consume","topic":"e","partition":0,"consumer_id":""}),
        "bad_request",
    );

    // The `id` is echoed, on errors too.
    let r = c.call(json!({"id":"req-9","type":"list_topics"}));
    assert_eq!(r["id"], json!("req-9"));
    let r = c.call(json!({"id":10,"type":"nope"}));
    assert_eq!(r["id"], json!(10));

    // Blank lines get no response; the next request still does.
    c.send_raw(b"\n  \r\n");
    let r = c.ok(json!({"type":"consume","topic":"e","partition":0,"consumer_id":"x"}));
    assert_eq!(values(&r), ["v"]);
}

#[test]
fn a_too_long_line_gets_an_error_and_is_discarded() {
    let broker = Broker::start(&["json.max.line.bytes=1024"]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"l","partitions":1}));
    // A produce whose line is far over the limit, sent in pieces; it must not be appended.
    let big = format!(
        "{{\"type\":\"produce\",\"topic\":\"l\",\"partition\":0,\"value\":\"{}\"}}\n",
        "x".repeat(100_000)
    );
    for piece in big.as_bytes().chunks(7_000) {
        c.send_raw(piece);
    }
    let r = c.recv();
    assert_eq!(r["code"], json!("line_too_long"), "{r}");
    assert!(r["error"].as_str().unwrap().contains("1024"));
    // A request just under the limit still works, and the big one was not appended.
    let value = "y".repeat(900);
    let r = c.ok(json!({"type":"produce","topic":"l","partition":0,"value":value}));
    assert_eq!(r["offset"], json!(0));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"p","partitions":1}));
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend_from_slice(
            format!("{{\"id\":{i},\"type\":\"produce\",\"topic\":\"p\",\"partition\":0,\"value\":\"m{i}\"}}\n").as_bytes(),
        );
    }
    c.send_raw(&batch);
    for i in 0..200 {
        let r = c.recv();
        assert_eq!(
            (r["id"].clone(), r["offset"].clone()),
            (json!(i), json!(i)),
            "{r}"
        );
    }
    let r = c.ok(
        json!({"type":"consume","topic":"p","partition":0,"consumer_id":"p","max_messages":1000}),
    );
    assert_eq!(offsets(&r), (0..200).collect::<Vec<i64>>());
}

#[test]
fn one_consumer_id_on_two_connections_never_gets_a_message_twice() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"shared","partitions":1}));
    for i in 0..300 {
        c.ok(json!({"type":"produce","topic":"shared","partition":0,"value":format!("m{i}")}));
    }
    let port = broker.json_port;
    let readers: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Conn::open(port);
                let mut got = Vec::new();
                loop {
                    let r = c.ok(json!({"type":"consume","topic":"shared","partition":0,"consumer_id":"same","max_messages":7}));
                    let o = offsets(&r);
                    if o.is_empty() {
                        return got;
                    }
                    got.extend(o);
                }
            })
        })
        .collect();
    let mut all: Vec<i64> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(
        all,
        (0..300).collect::<Vec<i64>>(),
        "every message exactly once"
    );
}

#[test]
fn a_consume_with_wait_ms_returns_as_soon_as_a_message_arrives() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"w","partitions":1}));
    let port = broker.json_port;
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        Conn::open(port).ok(json!({"type":"produce","topic":"w","partition":0,"value":"late"}));
    });
    let started = Instant::now();
    let r =
        c.ok(json!({"type":"consume","topic":"w","partition":0,"consumer_id":"w","wait_ms":10000}));
    assert_eq!(values(&r), ["late"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "woken by the append, not the timeout"
    );
    producer.join().unwrap();
    // With nothing new, the wait runs out and the answer is empty.
    let started = Instant::now();
    let r =
        c.ok(json!({"type":"consume","topic":"w","partition":0,"consumer_id":"w","wait_ms":200}));
    assert!(values(&r).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[test]
fn messages_and_consumer_positions_survive_a_crash() {
    let mut broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"d","partitions":2}));
    for i in 0..10 {
        c.ok(json!({"type":"produce","topic":"d","partition":i % 2,"value":format!("m{i}")}));
    }
    let r = c.ok(
        json!({"type":"consume","topic":"d","partition":0,"consumer_id":"keep","max_messages":3}),
    );
    assert_eq!(values(&r), ["m0", "m2", "m4"]);
    c.ok(json!({"type":"commit","topic":"d","partition":1,"consumer_id":"keep","offset":4}));
    drop(c);

    broker.crash_and_restart();
    let mut c = broker.connect();
    let r = c.ok(json!({"type":"consume","topic":"d","partition":0,"consumer_id":"keep"}));
    assert_eq!(
        values(&r),
        ["m6", "m8"],
        "continues where it ended before the crash"
    );
    let r = c.ok(json!({"type":"consume","topic":"d","partition":1,"consumer_id":"keep"}));
    assert_eq!(values(&r), ["m9"], "the committed position survived");
    let r = c.ok(json!({"type":"consume","topic":"d","partition":1,"consumer_id":"fresh"}));
    assert_eq!(values(&r), ["m1", "m3", "m5", "m7", "m9"]);
}

#[test]
fn connections_beyond_max_connections_are_told_why() {
    let broker = Broker::start(&["max.connections=2"]);
    let mut a = broker.connect();
    let mut b = broker.connect();
    a.ok(json!({"type":"list_topics"}));
    b.ok(json!({"type":"list_topics"}));
    let mut third = broker.connect();
    let r = third.recv();
    assert_eq!(r["code"], json!("too_many_connections"), "{r}");
    drop(a);
    // The freed slot is usable again (the server notices the close asynchronously).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if try_list_topics(broker.json_port) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot of a closed connection was never freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `list_topics` on a fresh connection; false if refused or closed.
fn try_list_topics(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS)));
    if s.write_all(b"{\"type\":\"list_topics\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    match BufReader::new(s).read_line(&mut line) {
        Ok(n) if n > 0 => {
            serde_json::from_str::<Value>(&line).is_ok_and(|r| r["ok"] == json!(true))
        }
        _ => false,
    }
}

#[test]
fn an_idle_connection_is_closed_after_connections_max_idle_ms() {
    let broker = Broker::start(&["connections.max.idle.ms=300"]);
    let mut c = broker.connect();
    c.ok(json!({"type":"list_topics"}));
    // Half a request, then silence: the broker closes the connection.
    c.send_raw(b"{\"type\":");
    let started = Instant::now();
    let mut line = String::new();
    let n = c
        .reader
        .read_line(&mut line)
        .expect("the broker closes, not the read timeout");
    assert_eq!(n, 0, "closed without a response: {line:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A busy connection is not idle.
    let mut busy = broker.connect();
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        busy.ok(json!({"type":"list_topics"}));
    }
}
