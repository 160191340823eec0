//! Per-topic settings: the Kafka names a topic may override, validated when a topic is
//! created or altered, and resolved against the broker-wide defaults.

use std::collections::BTreeMap;

use strom_log::LogConfig;
use strom_protocol::kafka_protocol::records::Compression;

use crate::config::BrokerConfig;

/// Topic config names we accept, with the broker setting that supplies the default.
pub const TOPIC_CONFIGS: &[(&str, Option<&str>)] = &[
    ("cleanup.policy", None),
    ("retention.ms", Some("log.retention.ms")),
    ("retention.bytes", Some("log.retention.bytes")),
    ("segment.bytes", Some("log.segment.bytes")),
    ("segment.ms", Some("log.roll.ms")),
    ("max.message.bytes", Some("message.max.bytes")),
    ("message.timestamp.type", None),
    ("index.interval.bytes", Some("log.index.interval.bytes")),
    ("flush.messages", Some("log.flush.interval.messages")),
    ("flush.ms", Some("log.flush.interval.ms")),
    ("compression.type", None),
    ("min.insync.replicas", None),
    ("delete.retention.ms", None),
    ("min.compaction.lag.ms", None),
    ("unclean.leader.election.enable", None),
    ("message.timestamp.after.max.ms", None),
    ("message.timestamp.before.max.ms", None),
    ("max.compaction.lag.ms", None),
    ("min.cleanable.dirty.ratio", None),
    // Accepted and reported like Kafka's, without effect here (no tiered storage,
    // replication throttles, preallocation; recompression uses each codec's default level).
    ("compression.gzip.level", None),
    ("compression.lz4.level", None),
    ("compression.zstd.level", None),
    ("file.delete.delay.ms", None),
    ("follower.replication.throttled.replicas", None),
    ("leader.replication.throttled.replicas", None),
    ("local.retention.bytes", None),
    ("local.retention.ms", None),
    ("preallocate", None),
    ("remote.storage.enable", None),
    ("segment.index.bytes", None),
    ("segment.jitter.ms", None),
];

/// Kafka's `ConfigDef.Type` ids as DescribeConfigs v3+ reports them.
pub mod config_type {
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const LONG: i8 = 5;
    pub const DOUBLE: i8 = 6;
    pub const LIST: i8 = 7;
}

/// What DescribeConfigs says about a topic config: its Kafka type, the broker setting Kafka
/// names as its synonym, and a one-line description (include_documentation).
pub fn config_info(name: &str) -> (i8, Option<&'static str>, &'static str) {
    use config_type::*;
    match name {
        "cleanup.policy" => (LIST, Some("log.cleanup.policy"), "Retention policy for old log segments: delete, compact, or both. With compact, the log cleaner keeps the newest record of each key."),
        "retention.ms" => (LONG, Some("log.retention.ms"), "Longest time a log segment is kept before it is deleted; -1 keeps segments forever."),
        "retention.bytes" => (LONG, Some("log.retention.bytes"), "Largest size a partition may reach before old segments are deleted; -1 means no limit."),
        "segment.bytes" => (INT, Some("log.segment.bytes"), "Size at which the active log segment is rolled."),
        "segment.ms" => (LONG, Some("log.roll.ms"), "Age at which the active log segment is rolled even if not full."),
        "max.message.bytes" => (INT, Some("message.max.bytes"), "Largest record batch the topic accepts."),
        "message.timestamp.type" => (STRING, Some("log.message.timestamp.type"), "Whether record timestamps are the producer's (CreateTime) or the broker's append time (LogAppendTime)."),
        "index.interval.bytes" => (INT, Some("log.index.interval.bytes"), "Bytes between entries of the sparse offset index."),
        "flush.messages" => (LONG, Some("log.flush.interval.messages"), "Messages written to a partition before it is fsynced; -1 leaves it to the durability policy."),
        "flush.ms" => (LONG, Some("log.flush.interval.ms"), "Time after which a partition is fsynced; -1 leaves it to the durability policy."),
        "compression.type" => (STRING, Some("compression.type"), "Codec of stored batches: producer keeps what the producer sent; uncompressed, gzip, snappy, lz4 or zstd rewrites batches in another codec on produce."),
        "min.insync.replicas" => (INT, Some("min.insync.replicas"), "Replicas that must acknowledge an acks=all write; a single broker is always one."),
        "delete.retention.ms" => (LONG, Some("log.cleaner.delete.retention.ms"), "How long tombstones and transaction markers are kept on compacted topics."),
        "min.compaction.lag.ms" => (LONG, Some("log.cleaner.min.compaction.lag.ms"), "Minimum age before a record may be compacted."),
        "unclean.leader.election.enable" => (BOOLEAN, Some("unclean.leader.election.enable"), "Whether an out-of-sync replica may become leader (no effect on a single broker)."),
        "compression.gzip.level" => (INT, Some("compression.gzip.level"), "Broker-side gzip level (no effect: batches are stored as produced)."),
        "compression.lz4.level" => (INT, Some("compression.lz4.level"), "Broker-side lz4 level (no effect: batches are stored as produced)."),
        "compression.zstd.level" => (INT, Some("compression.zstd.level"), "Broker-side zstd level (no effect: batches are stored as produced)."),
        "file.delete.delay.ms" => (LONG, Some("log.segment.delete.delay.ms"), "Delay before a deleted segment's files are removed."),
        "follower.replication.throttled.replicas" => (LIST, None, "Replicas throttled on the follower side (no effect on a single broker)."),
        "leader.replication.throttled.replicas" => (LIST, None, "Replicas throttled on the leader side (no effect on a single broker)."),
        "local.retention.bytes" => (LONG, Some("log.local.retention.bytes"), "Local retention by size with tiered storage (no effect: no tiered storage)."),
        "local.retention.ms" => (LONG, Some("log.local.retention.ms"), "Local retention by time with tiered storage (no effect: no tiered storage)."),
        "max.compaction.lag.ms" => (LONG, Some("log.cleaner.max.compaction.lag.ms"), "Maximum time a record stays uncompacted."),
        "message.timestamp.after.max.ms" => (LONG, Some("log.message.timestamp.after.max.ms"), "How far ahead of the broker's clock a CreateTime timestamp may be (INVALID_TIMESTAMP beyond)."),
        "message.timestamp.before.max.ms" => (LONG, Some("log.message.timestamp.before.max.ms"), "How far behind the broker's clock a CreateTime timestamp may be (INVALID_TIMESTAMP beyond)."),
        "min.cleanable.dirty.ratio" => (DOUBLE, Some("log.cleaner.min.cleanable.ratio"), "Dirty ratio that makes a log eligible for compaction."),
        "preallocate" => (BOOLEAN, Some("log.preallocate"), "Whether segment files are preallocated (no effect)."),
        "remote.storage.enable" => (BOOLEAN, None, "Tiered storage for the topic; only false is supported."),
        "segment.index.bytes" => (INT, Some("log.index.size.max.bytes"), "Size of a segment's offset index file."),
        "segment.jitter.ms" => (LONG, None, "Random jitter subtracted from segment.ms (no effect)."),
        _ => (STRING, None, ""),
    }
}

/// A topic's overrides (name -> value as text), as stored in `topic.json`.
pub type TopicOverrides = BTreeMap<String, String>;

/// Topic configs Kafka 3.x took and 4.0 removed. Tools and clients of the 3.x era still send
/// them in CreateTopics and AlterConfigs, so they are accepted, then dropped (never stored nor
/// described), as they would have no effect here anyway.
pub const REMOVED_TOPIC_CONFIGS: &[&str] =
    &["message.format.version", "message.downconversion.enable"];

/// Whether `name` is one of [`REMOVED_TOPIC_CONFIGS`].
pub fn is_removed(name: &str) -> bool {
    REMOVED_TOPIC_CONFIGS.contains(&name)
}

/// Checks one override; the message becomes the INVALID_CONFIG error text.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    if name == "message.downconversion.enable" && !matches!(value, "true" | "false") {
        return Err(format!("Invalid value {value} for configuration {name}"));
    }
    if is_removed(name) {
        return Ok(());
    }
    if !TOPIC_CONFIGS.iter().any(|(n, _)| *n == name) {
        return Err(format!("Unknown topic config name: {name}"));
    }
    let int = |min: i64| -> Result<(), String> {
        match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        }
    };
    match name {
        "cleanup.policy" => {
            if value.split(',').all(|p| matches!(p.trim(), "delete" | "compact")) {
                Ok(())
            } else {
                Err(format!("Invalid value {value} for configuration cleanup.policy"))
            }
        }
        "message.timestamp.type" => match value {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "compression.type" => match topic_compression(value) {
            Some(_) => Ok(()),
            None => Err(format!(
                "Invalid value {value} for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"
            )),
        },
        "retention.ms" | "retention.bytes" => int(-1),
        "segment.bytes" => int(14),
        "segment.ms" | "max.message.bytes" | "min.insync.replicas" => int(1),
        "index.interval.bytes" | "delete.retention.ms" | "min.compaction.lag.ms" => int(0),
        "flush.messages" | "flush.ms" => int(-1),
        "unclean.leader.election.enable" | "preallocate" => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        // Tiered storage is not available, so it cannot be turned on.
        "remote.storage.enable" => match value {
            "false" => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "compression.gzip.level" => match value.trim().parse::<i64>() {
            Ok(-1 | 1..=9) => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "compression.lz4.level" => match value.trim().parse::<i64>() {
            Ok(1..=17) => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "compression.zstd.level" => match value.trim().parse::<i64>() {
            Ok(-131072..=22) => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
        "local.retention.bytes" | "local.retention.ms" => int(-2),
        "file.delete.delay.ms"
        | "max.compaction.lag.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "segment.jitter.ms" => int(0),
        "segment.index.bytes" => int(4),
        // Throttled replica lists: "*" or partition:broker pairs; accepted as given.
        _ => Ok(()),
    }
}

/// A topic's effective settings: overrides over broker defaults.
#[derive(Debug, Clone)]
pub struct EffectiveTopicConfig {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub compact: bool,
    /// `cleanup.policy` includes `compact` (alone or with `delete`): records need keys, and
    /// the log cleaner compacts the topic.
    pub keys_required: bool,
    /// `min.cleanable.dirty.ratio`, `delete.retention.ms`, `min.compaction.lag.ms`,
    /// `max.compaction.lag.ms` (see `strom_log::CleanerConfig`).
    pub min_cleanable_dirty_ratio: f64,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub index_interval_bytes: u32,
    pub flush_messages: i64,
    /// `compression.type`: the codec batches are stored in, None for `producer` (as sent).
    pub compression: Option<Compression>,
    /// `message.timestamp.before.max.ms` and `message.timestamp.after.max.ms`.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

/// The codec a `compression.type` value asks for: `Some(None)` for `producer` (keep the
/// producer's codec), None for a value Kafka does not know.
pub fn topic_compression(value: &str) -> Option<Option<Compression>> {
    Some(Some(match value.trim() {
        "producer" => return Some(None),
        "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return None,
    }))
}

impl EffectiveTopicConfig {
    pub fn resolve(broker: &BrokerConfig, overrides: &TopicOverrides) -> Self {
        let get = |name: &str| {
            overrides
                .get(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let policy = overrides
            .get("cleanup.policy")
            .map(String::as_str)
            .unwrap_or("delete");
        Self {
            retention_ms: get("retention.ms").unwrap_or(broker.log_retention_ms),
            retention_bytes: get("retention.bytes").unwrap_or(broker.log_retention_bytes),
            segment_bytes: get("segment.bytes").map_or(broker.log_segment_bytes, |v| v as u64),
            segment_ms: get("segment.ms").unwrap_or(broker.log_roll_ms),
            max_message_bytes: get("max.message.bytes")
                .map_or(broker.message_max_bytes, |v| v as usize),
            log_append_time: overrides.get("message.timestamp.type").map(String::as_str)
                == Some("LogAppendTime"),
            compact: policy.contains("compact") && !policy.contains("delete"),
            keys_required: policy.contains("compact"),
            index_interval_bytes: get("index.interval.bytes")
                .map_or(broker.log_index_interval_bytes, |v| v as u32),
            flush_messages: get("flush.messages").unwrap_or(broker.log_flush_interval_messages),
            compression: overrides
                .get("compression.type")
                .and_then(|v| topic_compression(v))
                .flatten(),
            timestamp_before_max_ms: get("message.timestamp.before.max.ms").unwrap_or(i64::MAX),
            timestamp_after_max_ms: get("message.timestamp.after.max.ms").unwrap_or(i64::MAX),
            min_cleanable_dirty_ratio: overrides
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(broker.log_cleaner_min_cleanable_ratio),
            delete_retention_ms: get("delete.retention.ms")
                .unwrap_or(broker.log_cleaner_delete_retention_ms),
            min_compaction_lag_ms: get("min.compaction.lag.ms")
                .unwrap_or(broker.log_cleaner_min_compaction_lag_ms),
            max_compaction_lag_ms: get("max.compaction.lag.ms")
                .unwrap_or(broker.log_cleaner_max_compaction_lag_ms),
        }
    }

    /// What the log cleaner obeys for this topic; `None` when it is not compacted.
    pub fn cleaner_config(&self, broker: &BrokerConfig) -> Option<strom_log::CleanerConfig> {
        self.keys_required.then(|| strom_log::CleanerConfig {
            dedupe_buffer_bytes: broker.log_cleaner_dedupe_buffer_size,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            max_compaction_lag_ms: (self.max_compaction_lag_ms < i64::MAX)
                .then_some(self.max_compaction_lag_ms),
            delete_retention_ms: self.delete_retention_ms,
            max_decompressed_batch_bytes: broker.decompressed_batch_max_bytes,
        })
    }

    /// What a domain append obeys.
    pub fn append_options(&self) -> crate::append::AppendOptions {
        crate::append::AppendOptions {
            max_message_bytes: self.max_message_bytes,
            log_append_time: self.log_append_time,
            flush_messages: self.flush_messages,
            leader_epoch: 0,
            keys_required: self.keys_required,
            compression: self.compression,
            timestamp_window: (!self.log_append_time
                && (self.timestamp_before_max_ms != i64::MAX
                    || self.timestamp_after_max_ms != i64::MAX))
                .then_some(crate::append::TimestampWindow {
                    before_max_ms: self.timestamp_before_max_ms,
                    after_max_ms: self.timestamp_after_max_ms,
                }),
        }
    }

    /// The log's view. A compacted topic keeps everything: compaction itself is not
    /// implemented yet, and deleting by time would lose keys a compacted topic must keep.
    pub fn log_config(&self, flush_on_roll: bool) -> LogConfig {
        let keep = |v: i64| (!self.compact && v >= 0).then_some(v);
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: Some(self.segment_ms),
            retention_ms: keep(self.retention_ms),
            retention_bytes: keep(self.retention_bytes).map(|v| v as u64),
            index_interval_bytes: self.index_interval_bytes,
            flush_on_roll,
        }
    }
}

/// The value DescribeConfigs reports for `name`, and whether it is the default.
pub fn describe_value(
    broker: &BrokerConfig,
    overrides: &TopicOverrides,
    name: &str,
) -> (String, bool) {
    if let Some(v) = overrides.get(name) {
        return (v.clone(), false);
    }
    let v = match name {
        "cleanup.policy" => "delete".to_string(),
        "retention.ms" => broker.log_retention_ms.to_string(),
        "retention.bytes" => broker.log_retention_bytes.to_string(),
        "segment.bytes" => broker.log_segment_bytes.to_string(),
        "segment.ms" => broker.log_roll_ms.to_string(),
        "max.message.bytes" => broker.message_max_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".to_string(),
        "index.interval.bytes" => broker.log_index_interval_bytes.to_string(),
        "flush.messages" => broker.log_flush_interval_messages.to_string(),
        "flush.ms" => broker.log_flush_interval_ms.to_string(),
        "compression.type" => "producer".to_string(),
        "min.insync.replicas" => "1".to_string(),
        "delete.retention.ms" => broker.log_cleaner_delete_retention_ms.to_string(),
        "min.compaction.lag.ms" => broker.log_cleaner_min_compaction_lag_ms.to_string(),
        "max.compaction.lag.ms" => broker.log_cleaner_max_compaction_lag_ms.to_string(),
        "unclean.leader.election.enable" => "false".to_string(),
        "compression.gzip.level" => "-1".to_string(),
        "compression.lz4.level" => "9".to_string(),
        "compression.zstd.level" => "3".to_string(),
        "file.delete.delay.ms" => "60000".to_string(),
        "local.retention.bytes" | "local.retention.ms" => "-2".to_string(),
        "message.timestamp.after.max.ms" | "message.timestamp.before.max.ms" => {
            i64::MAX.to_string()
        }
        "min.cleanable.dirty.ratio" => broker.log_cleaner_min_cleanable_ratio.to_string(),
        "preallocate" | "remote.storage.enable" => "false".to_string(),
        "segment.index.bytes" => "10485760".to_string(),
        "segment.jitter.ms" => "0".to_string(),
        _ => String::new(),
    };
    (v, true)
}
