//! A real `strom serve` for integration tests.
//!
//! The tests run the `strom` binary of this workspace (`target/debug/strom` or
//! `target/release/strom`, whichever is newer; `STROM_BIN` overrides). Cargo builds a binary
//! only for tests of its own package, so build it first:
//!
//! ```text
//! cargo build -p strom && cargo test -p strom-client
//! ```
//!
//! Without the binary the tests print why and pass without running (`broker!()` returns).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to accept connections after it starts.
const BROKER_START_TIMEOUT_MS: u64 = 15_000;

/// Starts a broker or returns from the test with a message saying why it cannot.
#[macro_export]
macro_rules! broker {
    () => {
        match support::Broker::start() {
            Some(b) => b,
            None => return,
        }
    };
}

/// The `strom` binary, if it was built: `$STROM_BIN` if set, else the newer of
/// `target/debug/strom` and `target/release/strom` (CI builds the release one).
pub fn strom_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STROM_BIN") {
        return Some(PathBuf::from(path));
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let name = format!("strom{}", std::env::consts::EXE_SUFFIX);
    let candidates = [
        target.join("debug").join(&name),
        target.join("release").join(&name),
    ];
    let newest = candidates
        .iter()
        .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p.clone())))
        .max_by_key(|(modified, _)| *modified)
        .map(|(_, p)| p);
    if newest.is_none() {
        eprintln!(
            "SKIPPED: no strom binary under {}; run `cargo build -p strom` before these tests",
            target.display()
        );
    }
    newest
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A running `strom serve` on a temporary data directory; killed on drop.
pub struct Broker {
    child: Child,
    pub addr: String,
    pub binary: PathBuf,
    data_dir: tempfile::TempDir,
    /// Arguments after `serve --listen ADDR --data-dir DIR`, kept for restarts.
    extra_args: Vec<String>,
}

impl Broker {
    pub fn start() -> Option<Broker> {
        Self::start_with(&[])
    }

    /// Starts a broker with more `serve` arguments, e.g. `["--set", "name=value"]`.
    pub fn start_with(args: &[&str]) -> Option<Broker> {
        let binary = strom_binary()?;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let extra_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn(&binary, &addr, data_dir.path(), &extra_args);
        let mut broker = Broker {
            child,
            addr,
            binary,
            data_dir,
            extra_args,
        };
        broker.wait_listening();
        Some(broker)
    }

    /// Kills the broker (SIGKILL) and starts it again on the same address and data.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills the broker (SIGKILL); `start_again` brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed broker again on the same address and data.
    pub fn start_again(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(BROKER_START_TIMEOUT_MS);
        // The new process may lose a race for the port right after the old one died; retry.
        loop {
            self.child = spawn(
                &self.binary,
                &self.addr,
                self.data_dir.path(),
                &self.extra_args,
            );
            std::thread::sleep(Duration::from_millis(100));
            match self.child.try_wait() {
                Ok(Some(_)) if Instant::now() < deadline => continue,
                _ => break,
            }
        }
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(BROKER_START_TIMEOUT_MS);
        loop {
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("strom serve exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "strom serve did not start listening"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `strom ARGS... --bootstrap ADDR` with `stdin`, returning (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--bootstrap", &self.addr]);
        run_cli(&self.binary, &full, stdin)
    }
}

fn spawn(binary: &PathBuf, addr: &str, data_dir: &std::path::Path, extra: &[String]) -> Child {
    Command::new(binary)
        .args(["serve", "--listen", addr, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn strom serve")
}

/// Runs the `strom` binary; returns (exit code, stdout, stderr).
pub fn run_cli(binary: &PathBuf, args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("STROM_BOOTSTRAP")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strom");
    let mut input = child.stdin.take().expect("stdin");
    // A command that fails early exits without reading stdin; that is not a test failure.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let out = child.wait_with_output().expect("wait for strom");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
