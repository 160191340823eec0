//! Per-topic settings: the Kafka names a topic may override, validated when a topic is
//! created or altered, and resolved against the broker-wide defaults.

use std::collections::BTreeMap;

use strom_log::LogConfig;

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
];

/// A topic's overrides (name -> value as text), as stored in `topic.json`.
pub type TopicOverrides = BTreeMap<String, String>;

/// Checks one override; the message becomes the INVALID_CONFIG error text.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
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
        // The broker stores batches as producers compressed them; recompressing on the produce
        // path is not supported, so only "producer" is accepted.
        "compression.type" => match value {
            "producer" => Ok(()),
            _ => Err(format!(
                "compression.type={value} is not supported: Strom stores batches as the producer compressed them (use producer)"
            )),
        },
        "retention.ms" | "retention.bytes" => int(-1),
        "segment.bytes" => int(14),
        "segment.ms" | "max.message.bytes" | "min.insync.replicas" => int(1),
        "index.interval.bytes" | "delete.retention.ms" | "min.compaction.lag.ms" => int(0),
        "flush.messages" | "flush.ms" => int(-1),
        "unclean.leader.election.enable" => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("Invalid value {value} for configuration {name}")),
        },
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
    pub index_interval_bytes: u32,
    pub flush_messages: i64,
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
            index_interval_bytes: get("index.interval.bytes")
                .map_or(broker.log_index_interval_bytes, |v| v as u32),
            flush_messages: get("flush.messages").unwrap_or(broker.log_flush_interval_messages),
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
        "delete.retention.ms" => "86400000".to_string(),
        "min.compaction.lag.ms" => "0".to_string(),
        "unclean.leader.election.enable" => "false".to_string(),
        _ => String::new(),
    };
    (v, true)
}
