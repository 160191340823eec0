//! The client's record types and their translation to and from Kafka record batches
//! (magic 2), using `kafka_protocol`'s batch codec.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use strom_protocol::record_batch::{set_base_sequence, BatchHeader, LOG_OVERHEAD};
use strom_protocol::records::{decode_batch, RecordsError};

use crate::error::{ClientError, Result};

/// A header of a record: a name and an optional value.
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

impl CompressionType {
    pub(crate) fn to_protocol(self) -> Compression {
        match self {
            CompressionType::None => Compression::None,
            CompressionType::Gzip => Compression::Gzip,
            CompressionType::Snappy => Compression::Snappy,
            CompressionType::Lz4 => Compression::Lz4,
            CompressionType::Zstd => Compression::Zstd,
        }
    }
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

/// Encodes records as one record batch with offsets 0..n (the broker assigns real offsets).
pub(crate) fn encode_batch(
    records: &[OutgoingRecord],
    compression: CompressionType,
) -> Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The codec starts a new batch whenever `offset - sequence` changes, so the
            // sequence follows the offset here and the batch header is patched below.
            sequence: i as i32,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: compression.to_protocol(),
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| ClientError::protocol(format!("cannot encode record batch: {e}")))?;
    clear_base_sequence(&mut buf);
    Ok(buf.freeze())
}

/// Sets the base sequence of the (single) batch to -1 ("no sequence", as a producer without
/// idempotence writes it); the CRC-32C, which covers it, is recomputed.
fn clear_base_sequence(batch: &mut BytesMut) {
    set_base_sequence(batch, NO_SEQUENCE);
}

/// Messages decoded from a fetch response.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub messages: Vec<Message>,
    /// One past the last offset of the last whole batch, so the position moves past batches
    /// that held only control records or records before the position.
    pub next_offset: Option<i64>,
}

/// Decodes the record batches of a fetch response into messages at or after `from_offset`,
/// skipping control records. A batch cut off at the end (the broker's size limit) is dropped:
/// the next fetch asks for it again. The records decompressed add up to at most
/// `decompressed_max_bytes`: decoding stops before the batch that would pass it (the next
/// fetch starts there), and a first batch that alone passes it is an error.
pub(crate) fn decode_messages(
    topic: &str,
    partition: i32,
    mut records: Bytes,
    from_offset: i64,
    decompressed_max_bytes: usize,
) -> Result<Decoded> {
    let mut out = Decoded::default();
    let mut decompressed_bytes = 0usize;
    while let Ok(header) = BatchHeader::parse(&records) {
        let Ok(batch_len) = usize::try_from(header.batch_length) else {
            break;
        };
        let total = LOG_OVERHEAD.saturating_add(batch_len);
        if total > records.len() {
            break; // a partial batch at the end
        }
        let mut batch = records.split_to(total);
        let budget = decompressed_max_bytes.saturating_sub(decompressed_bytes);
        let decoded = match decode_batch(&mut batch, budget) {
            Ok(decoded) => decoded,
            Err(RecordsError::TooLarge { .. }) if out.next_offset.is_some() => break,
            Err(e) => {
                return Err(ClientError::protocol(format!(
                "cannot decode the record batch at offset {} of {topic} partition {partition}: {e}",
                header.base_offset
            )))
            }
        };
        decompressed_bytes += decoded.records_bytes;
        out.next_offset = Some(header.last_offset() + 1);
        for r in decoded.set.records {
            if r.control || r.offset < from_offset {
                continue;
            }
            out.messages.push(Message {
                topic: topic.to_string(),
                partition,
                offset: r.offset,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
                timestamp: r.timestamp,
            });
        }
    }
    Ok(out)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const LIMIT: usize = strom_protocol::records::DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES;

    fn record(key: Option<&str>, value: &str) -> OutgoingRecord {
        OutgoingRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"v"))),
                ("n".into(), None),
            ],
            timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn batch_round_trips_with_every_codec() {
        let records = vec![record(Some("k1"), "Hello, Kafka!"), record(None, "second")];
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let codec: CompressionType = codec.parse().unwrap();
            let bytes = encode_batch(&records, codec).unwrap();
            let decoded = decode_messages("t", 2, bytes, 0, LIMIT).unwrap();
            assert_eq!(decoded.next_offset, Some(2));
            let messages = decoded.messages;
            assert_eq!(messages.len(), 2, "{codec:?}");
            assert_eq!(messages[0].offset, 0);
            assert_eq!(messages[0].key_str().as_deref(), Some("k1"));
            assert_eq!(messages[0].value_str(), "Hello, Kafka!");
            assert_eq!(messages[0].headers, records[0].headers);
            assert_eq!(messages[0].timestamp, 1_700_000_000_000);
            assert_eq!(messages[1].offset, 1);
            assert_eq!(messages[1].key, None);
            assert_eq!(messages[1].partition, 2);
        }
    }

    #[test]
    fn records_before_the_position_and_partial_batches_are_skipped() {
        let records = vec![record(None, "a"), record(None, "b"), record(None, "c")];
        let bytes = encode_batch(&records, CompressionType::None).unwrap();
        let header_len = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        assert_eq!(
            header_len as usize + 12,
            bytes.len(),
            "one batch for all records"
        );
        assert_eq!(&bytes[53..57], &(-1i32).to_be_bytes(), "no base sequence");
        let messages = decode_messages("t", 0, bytes.clone(), 2, LIMIT)
            .unwrap()
            .messages;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].value_str(), "c");

        let mut two = BytesMut::from(&bytes[..]);
        two.extend_from_slice(&bytes[..bytes.len() - 5]);
        let decoded = decode_messages("t", 0, two.freeze(), 0, LIMIT).unwrap();
        assert_eq!(decoded.next_offset, Some(3));
        let messages = decoded.messages;
        assert_eq!(messages.len(), 3, "the cut-off second batch is dropped");
    }

    #[test]
    fn decompression_is_bounded_per_batch_and_per_response() {
        // A batch that decompresses past the bound alone (a bomb a producer wrote) is an error
        // naming the batch, not an exhausted memory.
        let zeros = OutgoingRecord {
            value: Some(Bytes::from(vec![0u8; 4 << 20])),
            ..record(None, "")
        };
        let bomb = encode_batch(&[zeros], CompressionType::Zstd).unwrap();
        assert!(bomb.len() < 4096, "{} bytes", bomb.len());
        let err = decode_messages("t", 0, bomb, 0, 1 << 20).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("offset 0 of t partition 0"), "{text}");
        assert!(
            text.contains("decompress to more than 1048576 bytes"),
            "{text}"
        );

        // Two batches that fit the bound one at a time come back over two decodes.
        let big = |v: &str| OutgoingRecord {
            value: Some(Bytes::from(v.repeat(100_000))),
            ..record(None, "")
        };
        let first = encode_batch(&[big("a")], CompressionType::Lz4).unwrap();
        let mut second =
            BytesMut::from(&encode_batch(&[big("b")], CompressionType::Lz4).unwrap()[..]);
        strom_protocol::record_batch::set_base_offset(&mut second, 1);
        let mut both = BytesMut::from(&first[..]);
        both.extend_from_slice(&second);
        let both = both.freeze();
        let decoded = decode_messages("t", 0, both.clone(), 0, 150_000).unwrap();
        assert_eq!(decoded.next_offset, Some(1));
        assert_eq!(decoded.messages.len(), 1);
        assert_eq!(decoded.messages[0].value_str(), "a".repeat(100_000));
        let rest = both.slice(first.len()..);
        let decoded = decode_messages("t", 0, rest, 1, 150_000).unwrap();
        assert_eq!(decoded.messages[0].offset, 1);
        assert_eq!(decoded.messages[0].value_str(), "b".repeat(100_000));
    }

    #[test]
    fn unknown_codec_is_refused_with_the_choices() {
        let err = "brotli".parse::<CompressionType>().unwrap_err();
        assert!(err.contains("gzip"));
    }
}

#[cfg(test)]
mod proptests {
    use super::tests::LIMIT;
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = OutgoingRecord> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(
                (
                    "[a-z]{1,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                ),
                0..3,
            ),
            0i64..4_000_000_000_000,
        )
            .prop_map(|(key, value, headers, timestamp)| OutgoingRecord {
                key: key.map(Bytes::from),
                value: value.map(Bytes::from),
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k, v.map(Bytes::from)))
                    .collect(),
                timestamp,
            })
    }

    proptest! {
        /// Whatever goes into a batch comes out the same, in order, with offsets 0..n.
        #[test]
        fn any_records_round_trip(
            records in proptest::collection::vec(arb_record(), 1..20),
            codec in prop_oneof![
                Just(CompressionType::None),
                Just(CompressionType::Gzip),
                Just(CompressionType::Snappy),
                Just(CompressionType::Lz4),
                Just(CompressionType::Zstd),
            ],
        ) {
            let bytes = encode_batch(&records, codec).unwrap();
            let decoded = decode_messages("t", 0, bytes, 0, LIMIT).unwrap();
            prop_assert_eq!(decoded.next_offset, Some(records.len() as i64));
            prop_assert_eq!(decoded.messages.len(), records.len());
            for (i, (m, r)) in decoded.messages.iter().zip(&records).enumerate() {
                prop_assert_eq!(m.offset, i as i64);
                prop_assert_eq!(&m.key, &r.key);
                prop_assert_eq!(&m.value, &r.value);
                prop_assert_eq!(m.timestamp, r.timestamp);
                // Header names repeat at most by chance; the codec keeps the last of duplicates.
                let unique: std::collections::BTreeSet<&String> = r.headers.iter().map(|(k, _)| k).collect();
                if unique.len() == r.headers.len() {
                    prop_assert_eq!(&m.headers, &r.headers);
                }
            }
        }
    }
}
