//! Prometheus text exposition (format 0.0.4) of the registry and of what the broker keeps in
//! memory: storage per partition, groups with their lag, the process. Work is proportional to
//! partitions plus committed offsets; each partition's lock is held only to copy six numbers.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::{api_name, process, Metrics, API_KEYS, API_VERSIONS, ERROR_CODES, LISTENERS, METRICS};
use crate::broker::Broker;

/// Escapes a label value (backslash, double quote, newline).
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One partition's figures, copied under its lock.
struct PartitionFigures {
    topic: String,
    partition: i32,
    offline: bool,
    size_bytes: u64,
    segments: usize,
    start: i64,
    end: i64,
    flushed: i64,
    high_watermark: i64,
    bytes_in: u64,
    records_in: u64,
    bytes_out: u64,
    records_out: u64,
}

fn partitions(broker: &Broker) -> Vec<PartitionFigures> {
    let mut topics = broker.topics.all();
    topics.sort_by_key(|t| t.name());
    let mut out = Vec::new();
    for t in topics {
        let name = t.name();
        for p in t.partitions.read().iter() {
            let mut f = PartitionFigures {
                topic: name.clone(),
                partition: p.index,
                offline: true,
                size_bytes: 0,
                segments: 0,
                start: -1,
                end: -1,
                flushed: -1,
                high_watermark: -1,
                bytes_in: p.stats.bytes_in.load(Relaxed),
                records_in: p.stats.records_in.load(Relaxed),
                bytes_out: p.stats.bytes_out.load(Relaxed),
                records_out: p.stats.records_out.load(Relaxed),
            };
            if let Ok(st) = p.lock() {
                f.offline = false;
                f.size_bytes = st.log.size_bytes();
                f.segments = st.log.segment_count();
                f.start = st.log.log_start_offset();
                f.end = st.log.log_end_offset();
                f.flushed = st.log.flushed_offset();
                f.high_watermark = st.high_watermark();
            }
            out.push(f);
        }
    }
    out
}

/// The whole exposition.
pub fn render(broker: &Broker) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let m = &METRICS;
    process_figures(&mut out, m);
    requests(&mut out, m);
    connections(&mut out, m);
    let parts = partitions(broker);
    traffic_and_storage(&mut out, m, &parts);
    groups(&mut out, broker, &parts);
    fetch_sessions(&mut out, broker);
    out
}

/// Kafka's FetchSessionCache gauges and eviction meter.
fn fetch_sessions(out: &mut String, broker: &Broker) {
    let f = broker.fetch_sessions.figures();
    family(
        out,
        "strom_fetch_sessions",
        "gauge",
        "Incremental fetch sessions cached (KIP-227).",
    );
    let _ = writeln!(out, "strom_fetch_sessions {}", f.sessions);
    family(
        out,
        "strom_fetch_session_partitions",
        "gauge",
        "Partitions held by all cached fetch sessions.",
    );
    let _ = writeln!(out, "strom_fetch_session_partitions {}", f.partitions);
    family(
        out,
        "strom_fetch_session_evictions_total",
        "counter",
        "Fetch sessions evicted to make room for new ones.",
    );
    let _ = writeln!(out, "strom_fetch_session_evictions_total {}", f.evictions);
    family(
        out,
        "strom_fetch_incremental_requests_total",
        "counter",
        "Fetch requests served as a continued session (only what changed sent and answered).",
    );
    let _ = writeln!(
        out,
        "strom_fetch_incremental_requests_total {}",
        f.incremental_fetches
    );
}

fn process_figures(out: &mut String, m: &Metrics) {
    family(
        out,
        "strom_build_info",
        "gauge",
        "The broker's version (always 1).",
    );
    let _ = writeln!(
        out,
        "strom_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        out,
        "strom_uptime_seconds",
        "gauge",
        "Seconds since the broker started.",
    );
    let _ = writeln!(out, "strom_uptime_seconds {}", m.uptime_seconds());
    family(
        out,
        "strom_metrics_enabled",
        "gauge",
        "1 when request-path counting is on (metrics.enabled).",
    );
    let _ = writeln!(out, "strom_metrics_enabled {}", u8::from(m.enabled()));
    if let Some(rss) = process::resident_memory_bytes() {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Some(fds) = process::open_fds() {
        family(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(out, "process_open_fds {fds}");
    }
    if let Some(max) = process::max_fds() {
        family(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
        );
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

fn requests(out: &mut String, m: &Metrics) {
    family(
        out,
        "strom_requests_total",
        "counter",
        "Kafka requests received, by API and version.",
    );
    for a in 0..API_KEYS {
        for v in 0..API_VERSIONS {
            let n = m.requests[a][v].load(Relaxed);
            if n > 0 {
                let api = api_name(a as i16);
                let _ = writeln!(
                    out,
                    "strom_requests_total{{api=\"{api}\",version=\"{v}\"}} {n}"
                );
            }
        }
    }
    family(
        out,
        "strom_request_errors_total",
        "counter",
        "Error codes in Kafka responses (top-level and per topic, partition, group or resource), by API and code: Kafka's ErrorsPerSec.",
    );
    for a in 0..API_KEYS {
        for slot in 0..ERROR_CODES {
            let n = m.errors[a][slot].load(Relaxed);
            if n > 0 {
                let code: i16 = if slot == 0 { -1 } else { slot as i16 };
                let name = strom_protocol::ResponseError::try_from_code(code)
                    .map(|e| format!("{e:?}"))
                    .unwrap_or_else(|| "Unknown".into());
                let api = api_name(a as i16);
                let _ = writeln!(
                    out,
                    "strom_request_errors_total{{api=\"{api}\",code=\"{code}\",error=\"{name}\"}} {n}"
                );
            }
        }
    }
    family(
        out,
        "strom_request_duration_seconds",
        "histogram",
        "Time from a request's arrival to its response being ready (acks=all includes the fsync wait), by API.",
    );
    for a in 0..API_KEYS {
        let h = &m.request_seconds[a];
        if h.count() > 0 {
            let labels = format!("api=\"{}\"", api_name(a as i16));
            h.render(out, "strom_request_duration_seconds", &labels);
        }
    }
    family(
        out,
        "strom_produce_fsync_wait_seconds",
        "histogram",
        "How long acks=all produces waited for the group-commit fsync.",
    );
    m.produce_fsync_wait
        .render(out, "strom_produce_fsync_wait_seconds", "");
    family(
        out,
        "strom_request_queue_seconds",
        "histogram",
        "How long a Kafka request waited for room in queued.max.request.bytes before it was handled.",
    );
    m.request_queue_wait
        .render(out, "strom_request_queue_seconds", "");
    family(
        out,
        "strom_fsync_duration_seconds",
        "histogram",
        "Each fsync of a partition's files by the flusher (its count is the number of fsyncs).",
    );
    m.fsync_seconds
        .render(out, "strom_fsync_duration_seconds", "");
    family(
        out,
        "strom_fsync_failures_total",
        "counter",
        "fsyncs that failed (the partition went offline).",
    );
    let _ = writeln!(
        out,
        "strom_fsync_failures_total {}",
        m.fsync_failures.load(Relaxed)
    );
    cleaner(out, &m.cleaner);
    family(
        out,
        "strom_throttle_time_seconds_total",
        "counter",
        "Time clients were throttled by their quotas (the connection muted), by quota kind.",
    );
    for kind in super::QUOTA_KINDS {
        let _ = writeln!(
            out,
            "strom_throttle_time_seconds_total{{quota=\"{kind}\"}} {}",
            m.throttle_ms(kind) as f64 / 1000.0
        );
    }
}

fn connections(out: &mut String, m: &Metrics) {
    family(
        out,
        "strom_connections_accepted_total",
        "counter",
        "Connections accepted, by listener.",
    );
    for (i, l) in LISTENERS.iter().enumerate() {
        let n = m.connections_accepted[i].load(Relaxed);
        let _ = writeln!(
            out,
            "strom_connections_accepted_total{{listener=\"{l}\"}} {n}"
        );
    }
    family(
        out,
        "strom_connections_refused_total",
        "counter",
        "Connections refused because max.connections was reached, by listener.",
    );
    for (i, l) in LISTENERS.iter().enumerate() {
        let n = m.connections_refused[i].load(Relaxed);
        let _ = writeln!(
            out,
            "strom_connections_refused_total{{listener=\"{l}\"}} {n}"
        );
    }
    family(
        out,
        "strom_connections_open",
        "gauge",
        "Connections open now, by listener.",
    );
    for (i, l) in LISTENERS.iter().enumerate() {
        let n = m.connections_open[i].load(Relaxed).max(0);
        let _ = writeln!(out, "strom_connections_open{{listener=\"{l}\"}} {n}");
    }
}

fn traffic_and_storage(out: &mut String, m: &Metrics, parts: &[PartitionFigures]) {
    let _ = m;
    // Per-topic sums first: what dashboards chart.
    let mut topics: Vec<(&str, [u64; 4])> = Vec::new();
    for p in parts {
        if topics.last().map(|(t, _)| *t) != Some(p.topic.as_str()) {
            topics.push((p.topic.as_str(), [0; 4]));
        }
        let sums = &mut topics.last_mut().expect("pushed above").1;
        sums[0] += p.bytes_in;
        sums[1] += p.records_in;
        sums[2] += p.bytes_out;
        sums[3] += p.records_out;
    }
    let per_topic = [
        (
            "strom_topic_bytes_in_total",
            "Record-batch bytes appended to the topic (produce and the JSON API).",
        ),
        (
            "strom_topic_records_in_total",
            "Records appended to the topic (from batch headers).",
        ),
        (
            "strom_topic_bytes_out_total",
            "Record-batch bytes sent to Kafka fetches of the topic.",
        ),
        (
            "strom_topic_records_out_total",
            "Records in the whole batches sent to Kafka fetches of the topic.",
        ),
    ];
    for (i, (name, help)) in per_topic.iter().enumerate() {
        family(out, name, "counter", help);
        for (t, sums) in &topics {
            let _ = writeln!(out, "{name}{{topic=\"{t}\"}} {}", sums[i]);
        }
    }
    type Field = fn(&PartitionFigures) -> String;
    let per_partition: [(&str, &str, &str, Field); 11] = [
        (
            "strom_partition_bytes_in_total",
            "counter",
            "Record-batch bytes appended to the partition.",
            |p| p.bytes_in.to_string(),
        ),
        (
            "strom_partition_records_in_total",
            "counter",
            "Records appended to the partition.",
            |p| p.records_in.to_string(),
        ),
        (
            "strom_partition_bytes_out_total",
            "counter",
            "Record-batch bytes fetched from the partition.",
            |p| p.bytes_out.to_string(),
        ),
        (
            "strom_partition_records_out_total",
            "counter",
            "Records in whole batches fetched from the partition.",
            |p| p.records_out.to_string(),
        ),
        (
            "strom_log_size_bytes",
            "gauge",
            "Bytes of the partition's segment files.",
            |p| p.size_bytes.to_string(),
        ),
        (
            "strom_log_segments",
            "gauge",
            "Segments of the partition.",
            |p| p.segments.to_string(),
        ),
        (
            "strom_log_start_offset",
            "gauge",
            "First offset still in the log (-1 offline).",
            |p| p.start.to_string(),
        ),
        (
            "strom_log_end_offset",
            "gauge",
            "Offset the next record gets (-1 offline).",
            |p| p.end.to_string(),
        ),
        (
            "strom_log_flushed_offset",
            "gauge",
            "Offset below which the log is fsynced (-1 offline).",
            |p| p.flushed.to_string(),
        ),
        (
            "strom_log_high_watermark",
            "gauge",
            "Offset below which consumers may read (-1 offline).",
            |p| p.high_watermark.to_string(),
        ),
        (
            "strom_partition_offline",
            "gauge",
            "1 when the partition refuses reads and writes (failed disk or damaged log).",
            |p| u8::from(p.offline).to_string(),
        ),
    ];
    for (name, kind, help, field) in per_partition {
        family(out, name, kind, help);
        for p in parts {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {}",
                p.topic,
                p.partition,
                field(p)
            );
        }
    }
    family(out, "strom_topics", "gauge", "Topics.");
    let _ = writeln!(out, "strom_topics {}", topics.len());
    family(
        out,
        "strom_partitions",
        "gauge",
        "Partitions of all topics.",
    );
    let _ = writeln!(out, "strom_partitions {}", parts.len());
    family(
        out,
        "strom_offline_partitions",
        "gauge",
        "Partitions that are offline.",
    );
    let offline = parts.iter().filter(|p| p.offline).count();
    let _ = writeln!(out, "strom_offline_partitions {offline}");
}

fn groups(out: &mut String, broker: &Broker, parts: &[PartitionFigures]) {
    let high_watermarks: HashMap<(&str, i32), i64> = parts
        .iter()
        .filter(|p| !p.offline)
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let groups = broker.group_summaries();
    family(out, "strom_groups", "gauge", "Consumer groups.");
    let _ = writeln!(out, "strom_groups {}", groups.len());
    family(out, "strom_group_members", "gauge", "Members of the group.");
    for g in &groups {
        let _ = writeln!(
            out,
            "strom_group_members{{group=\"{}\"}} {}",
            label(&g.group_id),
            g.members.len()
        );
    }
    family(
        out,
        "strom_group_state",
        "gauge",
        "1 for the group's current state.",
    );
    for g in &groups {
        let _ = writeln!(
            out,
            "strom_group_state{{group=\"{}\",state=\"{}\"}} 1",
            label(&g.group_id),
            g.state
        );
    }
    family(
        out,
        "strom_group_generation",
        "gauge",
        "The group's generation id; it grows by one with each rebalance.",
    );
    for g in &groups {
        let _ = writeln!(
            out,
            "strom_group_generation{{group=\"{}\"}} {}",
            label(&g.group_id),
            g.generation_id
        );
    }
    family(
        out,
        "strom_group_committed_offset",
        "gauge",
        "Committed offset, by group and partition.",
    );
    for g in &groups {
        for (t, p, o) in &g.offsets {
            let _ = writeln!(
                out,
                "strom_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {o}",
                label(&g.group_id),
                label(t)
            );
        }
    }
    family(
        out,
        "strom_group_lag",
        "gauge",
        "High watermark minus committed offset (0 when ahead), by group and partition.",
    );
    for g in &groups {
        for (t, p, o) in &g.offsets {
            if let Some(hw) = high_watermarks.get(&(t.as_str(), *p)) {
                let lag = (hw - o).max(0);
                let _ = writeln!(
                    out,
                    "strom_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {lag}",
                    label(&g.group_id),
                    label(t)
                );
            }
        }
    }
}

/// The log cleaner's counters and gauges (docs/metrics.md, "Log cleaner").
fn cleaner(out: &mut String, c: &super::CleanerMetrics) {
    for (name, help, value) in [
        (
            "strom_log_cleaner_runs_total",
            "Log cleaner passes that swapped cleaned segments in.",
            &c.runs,
        ),
        (
            "strom_log_cleaner_failures_total",
            "Log cleaner passes that failed (the log was left as it was).",
            &c.failures,
        ),
        (
            "strom_log_cleaner_read_bytes_total",
            "Segment bytes the log cleaner read and rewrote.",
            &c.bytes_read,
        ),
        (
            "strom_log_cleaner_written_bytes_total",
            "Cleaned segment bytes the log cleaner wrote.",
            &c.bytes_written,
        ),
        (
            "strom_log_cleaner_records_removed_total",
            "Records the log cleaner removed (superseded, expired tombstones, aborted).",
            &c.records_removed,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", value.load(Relaxed));
    }
    family(
        out,
        "strom_log_cleaner_last_run_duration_seconds",
        "gauge",
        "Wall time of the log cleaner's latest pass over one partition.",
    );
    let _ = writeln!(
        out,
        "strom_log_cleaner_last_run_duration_seconds {}",
        c.last_run_us.load(Relaxed) as f64 / 1e6
    );
    family(
        out,
        "strom_log_cleaner_max_dirty_ratio",
        "gauge",
        "Largest dirty ratio (dirty bytes over cleanable bytes) of a compacted partition at the cleaner's latest round.",
    );
    let _ = writeln!(
        out,
        "strom_log_cleaner_max_dirty_ratio {}",
        c.dirty_ratio_max()
    );
    family(
        out,
        "strom_log_cleaner_pass_seconds",
        "histogram",
        "Wall time of each log cleaner pass over one partition.",
    );
    c.seconds.render(out, "strom_log_cleaner_pass_seconds", "");
}
