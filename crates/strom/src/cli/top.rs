//! `strom top`: the console's figures in the terminal, for servers without a browser. Polls
//! the broker's HTTP API (`/api/cluster`, `/api/topics`, `/api/groups`) and redraws.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Most bytes read from one API answer.
const RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Each API call must finish within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// The broker's HTTP listener (its `http.listen`).
    #[arg(long, default_value = "127.0.0.1:9644", value_name = "HOST:PORT")]
    pub http: String,
    /// Time between refreshes.
    #[arg(long, default_value_t = 2000)]
    pub interval_ms: u64,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Log in as this user when the API asks for one (`http.authentication=basic`); the
    /// password comes from the environment variable STROM_HTTP_PASSWORD.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// Where `--user`'s password is read from (never a flag: flags show in `ps`).
const PASSWORD_VAR: &str = "STROM_HTTP_PASSWORD";

/// The `Authorization` header line for `--user`, or nothing.
fn authorization(user: Option<&str>) -> Result<String> {
    use base64::Engine;
    let Some(user) = user else {
        return Ok(String::new());
    };
    let password = std::env::var(PASSWORD_VAR)
        .with_context(|| format!("--user {user} needs the password in {PASSWORD_VAR}"))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Ok(format!("Authorization: Basic {token}\r\n"))
}

pub async fn run(args: TopArgs) -> Result<()> {
    let mut last: Option<(Instant, Value)> = None;
    let mut n = 0u64;
    let auth = authorization(args.user.as_deref())?;
    loop {
        let cluster = get(&args.http, "/api/cluster", &auth).await?;
        let topics = get(&args.http, "/api/topics", &auth).await?;
        let groups = get(&args.http, "/api/groups", &auth).await?;
        let now = Instant::now();
        let rate = |field: &str| -> f64 {
            match &last {
                Some((t, prev)) => {
                    let dt = now.duration_since(*t).as_secs_f64().max(1e-3);
                    (cluster[field].as_f64().unwrap_or(0.0) - prev[field].as_f64().unwrap_or(0.0))
                        .max(0.0)
                        / dt
                }
                None => 0.0,
            }
        };
        let mut out = String::new();
        if args.iterations != Some(1) {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(&format!(
            "strom {} node {}  up {:.0}s  topics {}  partitions {} (offline {})  groups {}  disk {}\n",
            cluster["version"].as_str().unwrap_or("?"),
            cluster["node_id"],
            cluster["uptime_seconds"].as_f64().unwrap_or(0.0),
            cluster["topics"],
            cluster["partitions"],
            cluster["offline_partitions"],
            cluster["groups"],
            bytes(cluster["disk_bytes"].as_f64().unwrap_or(0.0)),
        ));
        out.push_str(&format!(
            "in  {}/s {:.0} records/s   out {}/s {:.0} records/s\n\n",
            bytes(rate("bytes_in_total")),
            rate("records_in_total"),
            bytes(rate("bytes_out_total")),
            rate("records_out_total"),
        ));
        out.push_str(&format!(
            "{:<40} {:>5} {:>12} {:>10}\n",
            "TOPIC", "PARTS", "MESSAGES", "SIZE"
        ));
        for t in topics.as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{:<40} {:>5} {:>12} {:>10}\n",
                t["name"].as_str().unwrap_or(""),
                t["partitions"],
                t["messages"],
                bytes(t["size_bytes"].as_f64().unwrap_or(0.0)),
            ));
        }
        out.push_str(&format!(
            "\n{:<40} {:<20} {:>7} {:>10}\n",
            "GROUP", "STATE", "MEMBERS", "LAG"
        ));
        for g in groups.as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{:<40} {:<20} {:>7} {:>10}\n",
                g["group_id"].as_str().unwrap_or(""),
                g["state"].as_str().unwrap_or(""),
                g["members"].as_array().map_or(0, |m| m.len()),
                g["total_lag"],
            ));
        }
        print!("{out}");
        last = Some((now, cluster));
        n += 1;
        if args.iterations.is_some_and(|max| n >= max) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(args.interval_ms.max(100))).await;
    }
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// One HTTP/1.1 GET with `Connection: close` (and `auth`, a header line or nothing); the
/// body parsed as JSON.
async fn get(addr: &str, path: &str, auth: &str) -> Result<Value> {
    let call = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| {
                format!("cannot connect to the HTTP listener at {addr} (http.listen)")
            })?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s)
            .take(RESPONSE_BYTES_MAX as u64)
            .read_to_end(&mut buf)
            .await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .with_context(|| format!("{addr}{path} did not answer within {CALL_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{addr}{path}: not an HTTP response");
    };
    if head.starts_with("HTTP/1.1 401") {
        bail!(
            "{addr}{path}: {} (log in with --user NAME and the password in {PASSWORD_VAR})",
            head.lines().next().unwrap_or("")
        );
    }
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{addr}{path}: {}", head.lines().next().unwrap_or(""));
    }
    // The console's API answers with Content-Length; a chunked body would need decoding.
    serde_json::from_str(body).with_context(|| format!("{addr}{path}: the answer is not JSON"))
}
