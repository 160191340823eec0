//! The metrics registry: per-request counters and latency histograms kept in atomics, and
//! [`render`] which writes them with the storage, group and process figures read at scrape
//! time in Prometheus' text format. Every name is documented in `docs/metrics.md`.
//!
//! Cost on the request path: a few relaxed atomic adds per request (its API and version, its
//! latency bucket) and per partition of a produce or fetch (bytes and records). No lock, no
//! allocation, nothing per message: record counts come from batch headers. Storage figures,
//! lag and group state are computed only when someone scrapes, from what the broker already
//! keeps in memory (the log is never scanned).
//!
//! The registry is one static, as a process runs one broker; `metrics.enabled=false` turns the
//! request-path counting off (for measuring its cost); scrape-time figures are always there.

mod histogram;
mod process;
mod render;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

pub use histogram::Histogram;
pub use render::render;

/// API keys counted (Kafka's are all below this); others are not counted.
pub const API_KEYS: usize = 128;
/// Versions counted per API.
pub const API_VERSIONS: usize = 32;
/// Error codes counted per API: slot 0 holds code -1 (UNKNOWN_SERVER_ERROR), slot n code n.
const ERROR_CODES: usize = 128;

/// The listeners whose connections are counted, by the name `accept_loop` is given.
pub const LISTENERS: [&str; 3] = ["kafka", "json", "http"];

/// Most `log.cleaner.threads` (each keeps its own slot of [`CleanerMetrics::dirty_ratio_max`]).
pub const CLEANER_THREADS_MAX: usize = 8;

/// The log cleaner's figures, Kafka's `LogCleaner` / `LogCleanerManager` gauges in counters.
pub struct CleanerMetrics {
    /// Passes that swapped cleaned segments in.
    pub runs: AtomicU64,
    /// Passes that failed (an I/O error or a damaged segment; the log is left as it was).
    pub failures: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_removed: AtomicU64,
    /// Wall time of whole passes (their MB/s is bytes read over this sum).
    pub seconds: Histogram,
    /// Wall time of the latest pass, in microseconds.
    pub last_run_us: AtomicU64,
    /// Per cleaner thread, the largest dirty ratio (`f64` bits) among its partitions at its
    /// latest round: Kafka's `max-dirty-percent`, as a ratio.
    pub dirty_ratio_max: [AtomicU64; CLEANER_THREADS_MAX],
}

impl CleanerMetrics {
    /// The largest dirty ratio over every cleaner thread's latest round.
    pub fn dirty_ratio_max(&self) -> f64 {
        self.dirty_ratio_max
            .iter()
            .map(|bits| f64::from_bits(bits.load(Relaxed)))
            .fold(0.0, f64::max)
    }
}

pub struct Metrics {
    enabled: AtomicBool,
    started: OnceLock<Instant>,
    requests: [[AtomicU64; API_VERSIONS]; API_KEYS],
    errors: [[AtomicU64; ERROR_CODES]; API_KEYS],
    request_seconds: [Histogram; API_KEYS],
    /// How long acks=all produces waited for their fsync (the deferred part of the request).
    pub produce_fsync_wait: Histogram,
    /// How long a whole Kafka request waited for room in `queued.max.request.bytes` before
    /// it was handled: the broker's request queue time.
    pub request_queue_wait: Histogram,
    /// Each fsync of a partition's segment (or directory) by the flusher.
    pub fsync_seconds: Histogram,
    pub fsync_failures: AtomicU64,
    /// The log cleaner (`log_cleaner`).
    pub cleaner: CleanerMetrics,
    connections_accepted: [AtomicU64; LISTENERS.len()],
    connections_refused: [AtomicU64; LISTENERS.len()],
    connections_open: [AtomicI64; LISTENERS.len()],
    /// Milliseconds clients were throttled, by quota kind (produce, fetch, request): the
    /// sum of Kafka's `throttle-time` sensors.
    throttle_ms: [AtomicU64; QUOTA_KINDS.len()],
}

/// The quota kinds throttle time is counted by, in `quota::Kind` order.
pub const QUOTA_KINDS: [&str; 3] = ["produce", "fetch", "request"];

/// The process's registry.
pub static METRICS: Metrics = Metrics::new();

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            enabled: AtomicBool::new(true),
            started: OnceLock::new(),
            requests: [const { [const { AtomicU64::new(0) }; API_VERSIONS] }; API_KEYS],
            errors: [const { [const { AtomicU64::new(0) }; ERROR_CODES] }; API_KEYS],
            request_seconds: [const { Histogram::new() }; API_KEYS],
            produce_fsync_wait: Histogram::new(),
            request_queue_wait: Histogram::new(),
            fsync_seconds: Histogram::new(),
            fsync_failures: AtomicU64::new(0),
            cleaner: CleanerMetrics {
                runs: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                bytes_read: AtomicU64::new(0),
                bytes_written: AtomicU64::new(0),
                records_removed: AtomicU64::new(0),
                seconds: Histogram::new(),
                last_run_us: AtomicU64::new(0),
                dirty_ratio_max: [const { AtomicU64::new(0) }; CLEANER_THREADS_MAX],
            },
            connections_accepted: [const { AtomicU64::new(0) }; LISTENERS.len()],
            connections_refused: [const { AtomicU64::new(0) }; LISTENERS.len()],
            connections_open: [const { AtomicI64::new(0) }; LISTENERS.len()],
            throttle_ms: [const { AtomicU64::new(0) }; QUOTA_KINDS.len()],
        }
    }

    /// A client was throttled for `ms` by the quota of kind `kind` (a name in
    /// [`QUOTA_KINDS`]); counted whether or not request metrics are enabled.
    pub fn throttled(&self, kind: &str, ms: u64) {
        if let Some(i) = QUOTA_KINDS.iter().position(|k| *k == kind) {
            self.throttle_ms[i].fetch_add(ms, Relaxed);
        }
    }

    /// Milliseconds throttled so far by the quota of kind `kind`.
    pub fn throttle_ms(&self, kind: &str) -> u64 {
        QUOTA_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.throttle_ms[i].load(Relaxed))
    }

    /// `metrics.enabled`; also starts the uptime clock.
    pub fn configure(&self, enabled: bool) {
        self.enabled.store(enabled, Relaxed);
        let _ = self.started.set(Instant::now());
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    pub fn uptime_seconds(&self) -> f64 {
        self.started
            .get_or_init(Instant::now)
            .elapsed()
            .as_secs_f64()
    }

    /// A request of `api` and `version` arrived: counts it and starts its latency timer.
    /// `None` when counting is off.
    #[inline]
    pub fn request_started(&self, api: i16, version: i16) -> Option<RequestTimer> {
        if !self.enabled() {
            return None;
        }
        let (a, v) = (usize::try_from(api).ok()?, usize::try_from(version).ok()?);
        if a >= API_KEYS || v >= API_VERSIONS {
            return None;
        }
        self.requests[a][v].fetch_add(1, Relaxed);
        Some(RequestTimer {
            api: a,
            started: Instant::now(),
        })
    }

    /// A response of `api` carried error `code` (one partition's, or the request's).
    #[inline]
    pub fn error(&self, api: i16, code: i16) {
        if code == 0 || !self.enabled() {
            return;
        }
        let slot = if code == -1 { 0 } else { code as usize };
        if let (Ok(a), true) = (usize::try_from(api), code >= -1) {
            if a < API_KEYS && slot < ERROR_CODES {
                self.errors[a][slot].fetch_add(1, Relaxed);
            }
        }
    }

    fn listener(name: &str) -> Option<usize> {
        LISTENERS.iter().position(|l| *l == name)
    }

    pub fn connection_accepted(&self, listener: &str) {
        if let Some(i) = Self::listener(listener) {
            self.connections_accepted[i].fetch_add(1, Relaxed);
            self.connections_open[i].fetch_add(1, Relaxed);
        }
    }

    pub fn connection_closed(&self, listener: &str) {
        if let Some(i) = Self::listener(listener) {
            self.connections_open[i].fetch_sub(1, Relaxed);
        }
    }

    pub fn connection_refused(&self, listener: &str) {
        if let Some(i) = Self::listener(listener) {
            self.connections_refused[i].fetch_add(1, Relaxed);
        }
    }
}

/// Times one request from its arrival to its response (deferred ones included).
#[must_use]
pub struct RequestTimer {
    api: usize,
    started: Instant,
}

impl RequestTimer {
    pub fn finish(self) {
        METRICS.request_seconds[self.api].observe(self.started.elapsed());
    }
}

/// A partition's traffic. Lives in the partition, so it goes when its topic is deleted.
#[derive(Debug, Default)]
pub struct PartitionStats {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_out: AtomicU64,
}

impl PartitionStats {
    #[inline]
    pub fn appended(&self, bytes: usize, records: u64) {
        if METRICS.enabled() {
            self.bytes_in.fetch_add(bytes as u64, Relaxed);
            self.records_in.fetch_add(records, Relaxed);
        }
    }

    /// A fetch sent `bytes` of whole batches holding `records` records.
    #[inline]
    pub fn fetched(&self, bytes: usize, records: u64) {
        if METRICS.enabled() {
            self.bytes_out.fetch_add(bytes as u64, Relaxed);
            self.records_out.fetch_add(records, Relaxed);
        }
    }
}

/// Records in the whole batches of `data`, from their headers (a partial batch at the end,
/// which a fetch may send, is not counted).
pub fn records_in_batches(data: &[u8]) -> u64 {
    use strom_protocol::record_batch::{BATCH_LENGTH_AT, LOG_OVERHEAD, RECORDS_COUNT_AT};
    let mut records = 0u64;
    let mut pos = 0usize;
    while data.len() >= pos + RECORDS_COUNT_AT + 4 {
        let at = pos + BATCH_LENGTH_AT;
        let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let Ok(len) = usize::try_from(len) else { break };
        let total = LOG_OVERHEAD + len;
        if data.len() < pos + total {
            break;
        }
        let c = pos + RECORDS_COUNT_AT;
        let count = i32::from_be_bytes([data[c], data[c + 1], data[c + 2], data[c + 3]]);
        records += u64::try_from(count).unwrap_or(0);
        pos += total;
    }
    records
}

/// The API's name as Kafka spells it in its own metrics (`request="Produce"`).
pub fn api_name(api: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(api) {
        Ok(k) => format!("{k:?}"),
        Err(_) => format!("api{api}"),
    }
}
