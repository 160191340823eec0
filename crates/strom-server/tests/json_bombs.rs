//! Compression bombs through the real binary: a Kafka producer stores a small batch that
//! decompresses to 1 GiB (gzip, snappy, lz4, zstd), and a JSON consumer reads it.
//!
//! The story: the JSON front end decoded stored batches with `kafka_protocol`'s decoder, which
//! decompresses without an output limit, so one such batch made a JSON consume allocate a
//! gigabyte per read (Snappy: a block that *claims* 1 GiB was allocated and zeroed before
//! it was checked). Now decompression stops at `decompressed.batch.max.bytes`, the read fails
//! with a clear error, and the broker keeps serving the records after the bomb.
//!
//! Build the binary first: `cargo build -p strom` (see `json_support`).

mod json_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use json_support::Broker;
use serde_json::json;
use strom_protocol::records::bombs::{
    batch_around, gzip_bomb, lz4_bomb, snappy_claim_bomb, zstd_bomb,
};

/// A Produce v7 request (acks=-1) of `batch` to partition 0 of `topic`, as the Kafka wire
/// protocol frames it; returns the partition's error code and base offset.
fn kafka_produce(port: u16, topic: &str, batch: &[u8]) -> (i16, i64) {
    let mut body = Vec::new();
    body.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    body.extend_from_slice(&7i16.to_be_bytes()); // version (zstd needs 7)
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&5i16.to_be_bytes());
    body.extend_from_slice(b"bombs"); // client id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks
    body.extend_from_slice(&30_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp).unwrap();
    // correlation id (4), topic count (4), name (2 + n), partition count (4), index (4).
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    let code = i16::from_be_bytes(resp[at..at + 2].try_into().unwrap());
    let base_offset = i64::from_be_bytes(resp[at + 2..at + 10].try_into().unwrap());
    (code, base_offset)
}

/// The broker's peak resident memory, from /proc/<pid>/status.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[test]
fn a_bomb_of_each_codec_is_a_clear_error_and_the_records_after_it_are_served() {
    // The LZ4 bomb is 4 MiB compressed (LZ4 expands at most ~255 times): let it in.
    let broker = Broker::start(&["message.max.bytes=8388608"]);
    let mut c = broker.connect();
    c.ok(json!({"type":"create_topic","topic":"bombs","partitions":1}));
    let bombs = [
        ("gzip", batch_around(&gzip_bomb(), 1)),
        ("snappy", batch_around(&snappy_claim_bomb(), 2)),
        ("lz4", batch_around(&lz4_bomb(), 3)),
        ("zstd", batch_around(&zstd_bomb(), 4)),
    ];
    for (i, (codec, batch)) in bombs.iter().enumerate() {
        let (code, offset) = kafka_produce(broker.kafka_port, "bombs", batch);
        assert_eq!((code, offset), (0, 2 * i as i64), "{codec} bomb stored");
        let r = c.ok(json!({"type":"produce","topic":"bombs","partition":0,"value":format!("after {codec}")}));
        assert_eq!(r["offset"], json!(2 * i as i64 + 1));
    }
    for (i, (codec, _)) in bombs.iter().enumerate() {
        let at = 2 * i as i64;
        let error = c.err(
            json!({"type":"consume","topic":"bombs","partition":0,"consumer_id":"c","offset":at}),
            "storage_error",
        );
        assert!(
            error.contains(&format!("batch at offset {at} of bombs partition 0"))
                && error.contains(&format!(
                    "{codec} records of the batch decompress to more than 67108864 bytes"
                ))
                && error.contains("decompressed.batch.max.bytes"),
            "{codec}: {error}"
        );
        let r = c.ok(json!({"type":"consume","topic":"bombs","partition":0,"consumer_id":"c","offset":at + 1,"max_messages":1}));
        assert_eq!(r["messages"][0]["offset"], json!(at + 1), "{codec}");
        assert_eq!(r["messages"][0]["value"], json!(format!("after {codec}")));
    }
    // Four gigabytes were asked for; the broker's memory stayed near its limit of 64 MiB
    // per read (plus the bombs themselves and the runtime).
    let peak = peak_rss_mib(broker.pid());
    assert!(peak < 400, "the broker's peak RSS was {peak} MiB");
}

#[test]
fn the_limit_is_a_setting() {
    // 1 MiB of zeros, gzip-compressed, read with a limit below and above its size.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // One record: length, attributes, timestamp and offset deltas, null key, a 1 MiB value.
    let value_len = 1 << 20;
    let mut body = vec![0u8, 0, 0, 1];
    let mut z = (value_len as u64) << 1;
    while z >= 0x80 {
        body.push(z as u8 | 0x80);
        z >>= 7;
    }
    body.push(z as u8);
    body.extend(std::iter::repeat_n(0u8, value_len));
    body.push(0); // no headers
    let mut record = Vec::new();
    let mut z = (body.len() as u64) << 1;
    while z >= 0x80 {
        record.push(z as u8 | 0x80);
        z >>= 7;
    }
    record.push(z as u8);
    record.extend_from_slice(&body);
    gz.write_all(&record).unwrap();
    let batch = batch_around(&gz.finish().unwrap(), 1);

    for (limit, ok) in [(1 << 20, false), (2 << 20, true)] {
        let broker = Broker::start(&[&format!("decompressed.batch.max.bytes={limit}")]);
        let mut c = broker.connect();
        c.ok(json!({"type":"create_topic","topic":"t","partitions":1}));
        assert_eq!(kafka_produce(broker.kafka_port, "t", &batch), (0, 0));
        let req = json!({"type":"consume","topic":"t","partition":0,"consumer_id":"c","offset":0});
        if ok {
            let r = c.ok(req);
            let value = r["messages"][0]["value"].as_str().unwrap().to_string();
            assert_eq!(value.len(), value_len, "a 1 MiB value of NUL characters");
        } else {
            let error = c.err(req, "storage_error");
            assert!(
                error.contains(&format!("more than {limit} bytes")),
                "{error}"
            );
        }
    }
}
