//! The JSON-over-TCP protocol against the real `strom` binary over real sockets: the seed's
//! flow, consumer positions (once per consumer id, across connections, across a kill -9),
//! binary payloads, errors that leave the connection usable, the line-length bound,
//! pipelining and long polling.
//!
//! Build the binary first: `cargo build -p strom` (see `json_support`).

mod json_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use json_support::{Broker, Conn, RESPONSE_TIMEOUT_MS};
use serde_json::{json, Value};

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

#[test]
fn create_topic_without_partitions_uses_num_partitions_and_configs_apply() {
    let broker = Broker::start(&["num.partitions=4"]);
    let mut c = broker.connect();
    let r = c.ok(json!({"type":"create_topic","topic":"dflt"}));
    assert_eq!(r["partitions"], json!(4));
    c.ok(json!({"type":"create_topic","topic":"small","partitions":1,"configs":{"max.message.bytes":"200"}}));
    let r = c.ok(json!({"type":"describe_topic","topic":"small"}));
    assert_eq!(r["configs"], json!({"max.message.bytes":"200"}));
    // The Kafka produce path's checks apply to JSON produces too.
    let e = c.err(
        json!({"type":"produce","topic":"small","partition":0,"value":"x".repeat(500)}),
        "rejected",
    );
    assert!(e.contains("MessageTooLarge"), "{e}");
    c.err(
        json!({"type":"create_topic","topic":"badcfg","partitions":1,"configs":{"retention.ms":"soon"}}),
        "bad_request",
    );
}

/// A long-polling consume used to hold its consumer's position lock while it waited, so any
/// other consume sharing the lock (the same consumer on another connection, or another
/// consumer hashed to the same lock shard) stalled for the whole `wait_ms`.
#[test]
fn a_long_poll_does_not_hold_up_other_consumes() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"lp","partitions":1}));
    let port = broker.json_port;
    let poller = std::thread::spawn(move || {
        Conn::open(port).ok(json!({"type":"consume","topic":"lp","partition":0,"consumer_id":"same","wait_ms":4000}))
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let r = c.ok(json!({"type":"consume","topic":"lp","partition":0,"consumer_id":"same"}));
    assert!(values(&r).is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "the second consume waited {:?} for the long poll",
        started.elapsed()
    );
    let r = poller.join().unwrap();
    assert!(values(&r).is_empty());
}

#[test]
fn auto_commit_false_peeks_and_commit_moves_the_position() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"alo","partitions":1}));
    for v in ["a", "b", "c"] {
        c.ok(json!({"type":"produce","topic":"alo","partition":0,"value":v}));
    }
    let peek = json!({"type":"consume","topic":"alo","partition":0,"consumer_id":"w","max_messages":2,"auto_commit":false});
    let r = c.ok(peek.clone());
    assert_eq!(values(&r), ["a", "b"]);
    assert_eq!(r["next_offset"], json!(2));
    assert_eq!(
        values(&c.ok(peek.clone())),
        ["a", "b"],
        "the position did not move"
    );
    c.ok(json!({"type":"commit","topic":"alo","partition":0,"consumer_id":"w","offset":2}));
    assert_eq!(values(&c.ok(peek)), ["c"]);
    c.err(
        json!({"type":"consume","topic":"alo","partition":0,"consumer_id":"w","auto_commit":"no"}),
        "bad_request",
    );
}
