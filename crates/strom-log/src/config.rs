//! Per-partition log settings, with Kafka's defaults. Times are in milliseconds, sizes in bytes.

/// Settings of one [`crate::PartitionLog`]. Can be changed at run time with
/// [`crate::PartitionLog::set_config`]; changes apply from the next append or retention pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll when appending would make the active segment larger than this (`segment.bytes`).
    /// A single append larger than this still goes into one (fresh) segment. Values above
    /// `u32::MAX` are treated as `u32::MAX`, because index positions are u32.
    pub segment_bytes: u64,
    /// Roll when the active segment is at least this old (`segment.ms`), measured from its
    /// first append.
    pub segment_ms: Option<i64>,
    /// Delete segments whose newest timestamp is older than this (`retention.ms`); `None`
    /// keeps data forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest segments while the partition is larger than this
    /// (`retention.bytes`); `None` means unlimited.
    pub retention_bytes: Option<u64>,
    /// Add a sparse index entry after at least this many bytes (`index.interval.bytes`).
    /// Smaller means faster lookups and more memory per segment.
    pub index_interval_bytes: u32,
    /// On roll, fsync the old segment and the directory (so a new segment's file name is
    /// durable). Without it a new segment's directory entry is only made durable by `flush`.
    pub flush_on_roll: bool,
}

/// Kafka's `log.segment.bytes` default: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Kafka's `log.roll.ms` / `log.retention.ms` default: 7 days.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's `log.index.interval.bytes` default.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: Some(DEFAULT_SEGMENT_MS),
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            flush_on_roll: true,
        }
    }
}
