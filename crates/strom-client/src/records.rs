//! The client's record types: [`Message`] read from a partition, headers, the compression
//! codecs. The batch codec that carries them is `batch`.

use bytes::Bytes;

/// A header of a record: a name and an optional value. A record's headers are an ordered
/// list in which a name may repeat, as in Kafka.
pub type Header = (String, Option<Bytes>);

/// One message read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was read from.
    pub topic: String,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// The key, if the producer set one.
    pub key: Option<Bytes>,
    /// The value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Headers in the order the producer wrote them.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch: creation time, or log-append time if the topic says so.
    pub timestamp: i64,
}

impl Message {
    /// The value as UTF-8 text (lossy), empty for a tombstone.
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default())
    }

    /// The key as UTF-8 text (lossy), if there is a key.
    pub fn key_str(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.key.as_deref().map(String::from_utf8_lossy)
    }
}

/// The compression codec of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionType {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing, as the Java client writes it).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl std::str::FromStr for CompressionType {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(CompressionType::None),
            "gzip" => Ok(CompressionType::Gzip),
            "snappy" => Ok(CompressionType::Snappy),
            "lz4" => Ok(CompressionType::Lz4),
            "zstd" => Ok(CompressionType::Zstd),
            other => Err(format!(
                "unknown compression '{other}' (expected none, gzip, snappy, lz4 or zstd)"
            )),
        }
    }
}

/// What the producer needs of a record to put it in a batch.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp: i64,
}

impl OutgoingRecord {
    /// A rough upper bound of the record's encoded size, for the batch-size limit.
    pub fn size_estimate(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 10)
            .sum();
        self.key.as_ref().map_or(0, |k| k.len())
            + self.value.as_ref().map_or(0, |v| v.len())
            + headers
            + 21
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
