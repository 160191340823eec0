//! Shared by the JSON protocol tests: a real `strom serve --json-listen` process and a line
//! client.
//!
//! The binary is `$STROM_BIN`, else the newer of `target/debug/strom` and
//! `target/release/strom`; build it first (`cargo build -p strom`). Cargo builds a binary only
//! for the tests of its own package, so these tests cannot build it themselves.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A broker that needs longer than this to listen is broken.
pub const START_TIMEOUT_MS: u64 = 20_000;
/// Every response must arrive within this.
pub const RESPONSE_TIMEOUT_MS: u64 = 20_000;

pub fn strom_binary() -> PathBuf {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// A `strom serve --json-listen` process on its own data dir; killed (and the dir removed)
/// on drop. Ports and data dir stay the same across restarts.
pub struct Broker {
    child: Option<Child>,
    pub kafka_port: u16,
    pub json_port: u16,
    data_dir: PathBuf,
    settings: Vec<String>,
}

impl Broker {
    pub fn start(settings: &[&str]) -> Broker {
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
    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn connect(&self) -> Conn {
        Conn::open(self.json_port)
    }

    /// The broker process's id (to read its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
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

pub struct Conn {
    pub reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the JSON port");
        s.set_read_timeout(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS)))
            .unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write request");
    }

    pub fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read response");
        assert!(n > 0, "connection closed instead of answering");
        assert!(line.ends_with('\n'), "response is one line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("response is JSON ({e}): {line}"))
    }

    pub fn call(&mut self, request: Value) -> Value {
        let mut line = serde_json::to_vec(&request).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        self.recv()
    }

    /// A call that must succeed.
    pub fn ok(&mut self, request: Value) -> Value {
        let r = self.call(request.clone());
        assert_eq!(r["ok"], json!(true), "{request} failed: {r}");
        r
    }

    /// A call that must fail with this error code.
    pub fn err(&mut self, request: Value, code: &str) -> String {
        let r = self.call(request.clone());
        assert_eq!(r["ok"], json!(false), "{request} should fail: {r}");
        assert_eq!(r["code"], json!(code), "{request}: {r}");
        r["error"].as_str().expect("error text").to_string()
    }
}
