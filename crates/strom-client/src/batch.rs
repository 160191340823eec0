//! The record-batch codec (magic 2), written here rather than taken from `kafka_protocol`
//! for two reasons: Kafka headers are an ordered list in which a name may repeat (the
//! generated codec keeps them in a map and so drops all but the last value of a name), and a
//! batch from a hostile broker must never make the client reserve memory from a count on the
//! wire. Compression goes through `kafka_protocol::compression`.
//!
//! ```text
//! batch:  0 base offset i64 | 8 length i32 | 12 leader epoch i32 | 16 magic i8 | 17 crc u32 |
//!         21 attributes i16 | 23 last offset delta i32 | 27 base timestamp i64 |
//!         35 max timestamp i64 | 43 producer id i64 | 51 producer epoch i16 |
//!         53 base sequence i32 | 57 record count i32 | 61 records (maybe compressed)
//! record: length varint | attributes i8 | timestamp delta varlong | offset delta varint |
//!         key length varint (-1: null) | key | value length varint (-1: null) | value |
//!         header count varint | (name length varint | name | value length varint | value)*
//! ```
//!
//! The CRC-32C covers the bytes from the attributes to the end. Varints are zig-zag encoded.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use kafka_protocol::records::Compression;
use strom_protocol::records::{decompress, RecordsError};

use crate::consumer::aborted::AbortedTransactions;
use crate::error::{ClientError, Result};
use crate::records::{CompressionType, Header, Message, OutgoingRecord};

pub(crate) const CRC_POS: usize = 17;
pub(crate) const ATTRIBUTES_POS: usize = 21;
pub(crate) const LAST_OFFSET_DELTA_POS: usize = 23;
pub(crate) const PRODUCER_ID_POS: usize = 43;
pub(crate) const PRODUCER_EPOCH_POS: usize = 51;
pub(crate) const BASE_SEQUENCE_POS: usize = 53;
pub(crate) const BATCH_HEADER_BYTES: usize = 61;
/// Bytes of a batch counted by its length field start after the base offset and the length.
const LOG_OVERHEAD_BYTES: usize = 12;
/// The smallest possible encoded record: length, attributes, two deltas, null key and value,
/// no headers (one byte each).
const RECORD_BYTES_MIN: usize = 7;
/// Attribute bits: the codec in the low three, then timestamp type, transactional, control.
const COMPRESSION_MASK: i16 = 0x07;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

/// The producer identity written into a batch header; `NONE` for a producer without
/// idempotence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerStamp {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
    /// The batch belongs to a transaction (the transactional attribute bit).
    pub transactional: bool,
}

impl ProducerStamp {
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
}

/// Encodes records as one batch with offsets 0..n (the broker assigns real offsets).
pub(crate) fn encode_batch(
    records: &[OutgoingRecord],
    compression: CompressionType,
    stamp: ProducerStamp,
) -> Result<Bytes> {
    if records.is_empty() {
        return Err(ClientError::Invalid(
            "a batch needs at least one record".into(),
        ));
    }
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let estimate: usize = records.iter().map(|r| r.size_estimate()).sum();
    // Uncompressed records go straight into the batch; compressed ones through `raw`.
    let mut raw = BytesMut::new();
    if compression != CompressionType::None {
        raw.reserve(estimate);
        for (i, r) in records.iter().enumerate() {
            put_record(&mut raw, r, i, base_ts)?;
        }
    }
    let mut buf = BytesMut::with_capacity(BATCH_HEADER_BYTES + raw.len().max(estimate));
    buf.put_i64(0); // base offset
    buf.put_i32(0); // length, patched below
    buf.put_i32(-1); // partition leader epoch
    buf.put_i8(2); // magic
    buf.put_u32(0); // crc, patched below
    let codec = match compression {
        CompressionType::None => 0,
        CompressionType::Gzip => 1,
        CompressionType::Snappy => 2,
        CompressionType::Lz4 => 3,
        CompressionType::Zstd => 4,
    };
    let transactional = if stamp.transactional {
        TRANSACTIONAL_FLAG
    } else {
        0
    };
    buf.put_i16(codec | transactional);
    buf.put_i32(len_i32(records.len() - 1)?);
    buf.put_i64(base_ts);
    buf.put_i64(max_ts);
    buf.put_i64(stamp.producer_id);
    buf.put_i16(stamp.epoch);
    buf.put_i32(stamp.base_sequence);
    buf.put_i32(len_i32(records.len())?);
    let copy = |out: &mut dyn BufMutDyn| out.put(&raw);
    let compressed = match compression {
        CompressionType::None => {
            for (i, r) in records.iter().enumerate() {
                put_record(&mut buf, r, i, base_ts)?;
            }
            Ok(buf.len() - BATCH_HEADER_BYTES)
        }
        CompressionType::Gzip => codec::Gzip::compress(&mut buf, |b| Ok(copy(b))),
        CompressionType::Snappy => codec::Snappy::compress(&mut buf, |b| Ok(copy(b))),
        CompressionType::Lz4 => codec::Lz4::compress(&mut buf, |b| Ok(copy(b))),
        CompressionType::Zstd => codec::Zstd::compress(&mut buf, |b| Ok(copy(b))),
    };
    compressed.map_err(|e| ClientError::protocol(format!("cannot compress a batch: {e}")))?;
    let length = len_i32(buf.len() - LOG_OVERHEAD_BYTES)?;
    buf[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_POS..]);
    buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(buf.freeze())
}

/// Appends one record, its length first. The length is computed rather than measured from a
/// scratch copy, so each record's bytes are copied once.
fn put_record(out: &mut BytesMut, r: &OutgoingRecord, index: usize, base_ts: i64) -> Result<()> {
    let ts_delta = r.timestamp - base_ts;
    let index = len_i32(index)?;
    let header_count = len_i32(r.headers.len())?;
    let bytes_len = |b: Option<&[u8]>| b.map_or(1, |b| varlong_len(b.len() as i64) + b.len());
    let mut len = 1
        + varlong_len(ts_delta)
        + varlong_len(i64::from(index))
        + bytes_len(r.key.as_deref())
        + bytes_len(r.value.as_deref())
        + varlong_len(i64::from(header_count));
    for (name, value) in &r.headers {
        len += bytes_len(Some(name.as_bytes())) + bytes_len(value.as_deref());
    }
    put_varint(out, len_i32(len)?);
    out.put_i8(0);
    put_varlong(out, ts_delta);
    put_varint(out, index);
    put_bytes(out, r.key.as_deref())?;
    put_bytes(out, r.value.as_deref())?;
    put_varint(out, header_count);
    for (name, value) in &r.headers {
        put_bytes(out, Some(name.as_bytes()))?;
        put_bytes(out, value.as_deref())?;
    }
    Ok(())
}

/// Bytes of `v` as a zig-zag varint.
fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Object-safe `put` for the compressors' differing buffer types.
trait BufMutDyn {
    /// Appends `bytes`; returns how many.
    fn put(&mut self, bytes: &[u8]) -> usize;
}

impl<T: BufMut> BufMutDyn for T {
    fn put(&mut self, bytes: &[u8]) -> usize {
        self.put_slice(bytes);
        bytes.len()
    }
}

/// Rewrites the producer id, epoch and base sequence of an encoded batch (an epoch bump
/// renumbers batches not yet acknowledged) and recomputes the CRC.
pub(crate) fn restamp(batch: &Bytes, stamp: ProducerStamp) -> Bytes {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "a batch has a full header"
    );
    let mut b = BytesMut::from(&batch[..]);
    b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&stamp.producer_id.to_be_bytes());
    b[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2].copy_from_slice(&stamp.epoch.to_be_bytes());
    b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&stamp.base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
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
/// the next fetch asks for it again. A malformed batch is an error, never a panic, and no
/// count read off the wire reserves memory beyond what the bytes at hand can hold. The records
/// decompressed add up to at most `decompressed_max_bytes`: decoding stops before the batch
/// that would pass it (the next fetch starts there), and a first batch that alone passes it
/// is an error.
pub(crate) fn decode_messages(
    topic: &str,
    partition: i32,
    mut records: Bytes,
    from_offset: i64,
    decompressed_max_bytes: usize,
    mut aborted: Option<&mut AbortedTransactions>,
) -> Result<Decoded> {
    let mut out = Decoded::default();
    let mut decompressed_bytes = 0usize;
    let mut decoded_any = false;
    while records.len() >= BATCH_HEADER_BYTES {
        let base_offset = be_i64(&records[0..8]);
        let batch_len = be_i32(&records[8..12]);
        let Ok(batch_len) = usize::try_from(batch_len) else {
            return Err(bad("negative batch length"));
        };
        let total = LOG_OVERHEAD_BYTES.saturating_add(batch_len);
        if total > records.len() {
            break; // a partial batch at the end
        }
        let batch = records.split_to(total);
        if total < BATCH_HEADER_BYTES {
            return Err(bad("batch shorter than its header"));
        }
        if batch[16] != 2 {
            return Err(bad(&format!("unsupported magic {}", batch[16])));
        }
        let crc = u32::from_be_bytes(batch[CRC_POS..CRC_POS + 4].try_into().expect("4"));
        if crc != crc32c::crc32c(&batch[ATTRIBUTES_POS..]) {
            return Err(bad("CRC mismatch"));
        }
        let attributes = i16::from_be_bytes([batch[21], batch[22]]);
        let last_delta = be_i32(&batch[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4]);
        let base_ts = be_i64(&batch[27..35]);
        let count = be_i32(&batch[57..61]);
        let next_before = out.next_offset;
        out.next_offset = Some(
            base_offset
                .saturating_add(i64::from(last_delta))
                .saturating_add(1),
        );
        let control = attributes & CONTROL_FLAG != 0;
        if let Some(aborted) = aborted.as_deref_mut() {
            let producer_id = be_i64(&batch[PRODUCER_ID_POS..PRODUCER_ID_POS + 8]);
            let abort_marker = control && control_type(&batch)? == Some(CONTROL_TYPE_ABORT);
            let last_offset = base_offset.saturating_add(i64::from(last_delta));
            let transactional = attributes & TRANSACTIONAL_FLAG != 0;
            if aborted.skip(producer_id, transactional, abort_marker, last_offset) {
                continue;
            }
        }
        if control {
            continue;
        }
        let compression = match attributes & COMPRESSION_MASK {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            c => return Err(bad(&format!("unknown compression codec {c}"))),
        };
        let budget = decompressed_max_bytes.saturating_sub(decompressed_bytes);
        let body = match decompress(compression, &batch.slice(BATCH_HEADER_BYTES..), budget) {
            Ok(body) => body,
            // The batches before fit: stop here, the next fetch starts at this batch.
            Err(RecordsError::TooLarge { .. }) if decoded_any => {
                out.next_offset = next_before;
                break;
            }
            Err(e) => {
                return Err(ClientError::protocol(format!(
                    "cannot decode the record batch at offset {base_offset} of {topic} \
                     partition {partition}: {e}"
                )))
            }
        };
        decompressed_bytes += body.len();
        decoded_any = true;
        let count = usize::try_from(count).map_err(|_| bad("negative record count"))?;
        out.messages
            .reserve(count.min(body.len() / RECORD_BYTES_MIN));
        let mut reader = Reader {
            body: &body,
            pos: 0,
            end: body.len(),
        };
        for _ in 0..count {
            let (offset_delta, mut message) = decode_record(&mut reader, base_ts)?;
            let offset = base_offset.saturating_add(i64::from(offset_delta));
            if offset < from_offset {
                continue;
            }
            message.topic = topic.to_string();
            message.partition = partition;
            message.offset = offset;
            out.messages.push(message);
        }
    }
    Ok(out)
}

/// The control record type of an abort marker (a commit marker is 1).
const CONTROL_TYPE_ABORT: i16 = 0;

/// The type of a control batch's marker, read from its first record's key (version i16,
/// type i16); `None` for a batch without a readable marker. Markers are never compressed.
fn control_type(batch: &Bytes) -> Result<Option<i16>> {
    let body = batch.slice(BATCH_HEADER_BYTES..);
    if body.is_empty() {
        return Ok(None);
    }
    let mut reader = Reader {
        body: &body,
        pos: 0,
        end: body.len(),
    };
    let (_, record) = decode_record(&mut reader, 0)?;
    Ok(record
        .key
        .filter(|k| k.len() >= 4)
        .map(|k| i16::from_be_bytes([k[2], k[3]])))
}

/// Reads the fields of records from a batch's (decompressed) records between `pos` and
/// `end`. Keys and values are slices of `body`, sharing its memory; reading through a slice
/// rather than splitting `Bytes` per field keeps the reference count out of the loop.
struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8> {
        if self.pos >= self.end {
            return Err(bad("truncated record"));
        }
        let b = self.body[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn varlong(&mut self) -> Result<i64> {
        let mut z: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.u8()?;
            z |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn varint(&mut self) -> Result<i32> {
        i32::try_from(self.varlong()?).map_err(|_| bad("varint out of range"))
    }

    fn bytes(&mut self) -> Result<Option<Bytes>> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        if len > self.end - self.pos {
            return Err(bad("truncated record"));
        }
        let b = self.body.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(Some(b))
    }
}

/// Decodes one record; returns its offset delta and the message without topic, partition
/// and offset.
fn decode_record(buf: &mut Reader<'_>, base_ts: i64) -> Result<(i32, Message)> {
    let len = usize::try_from(buf.varint()?).map_err(|_| bad("negative record length"))?;
    if len > buf.end - buf.pos {
        return Err(bad("record longer than its batch"));
    }
    let mut r = Reader {
        body: buf.body,
        pos: buf.pos,
        end: buf.pos + len,
    };
    buf.pos += len;
    r.u8()?; // attributes, unused
    let ts_delta = r.varlong()?;
    let offset_delta = r.varint()?;
    let key = r.bytes()?;
    let value = r.bytes()?;
    let count = usize::try_from(r.varint()?).map_err(|_| bad("negative header count"))?;
    // Each header takes at least two bytes: cap the reservation by what is left.
    let mut headers: Vec<Header> = Vec::with_capacity(count.min((r.end - r.pos) / 2));
    for _ in 0..count {
        let name = r.bytes()?.ok_or_else(|| bad("null header name"))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("header name is not UTF-8"))?;
        headers.push((name, r.bytes()?));
    }
    Ok((
        offset_delta,
        Message {
            topic: String::new(),
            partition: 0,
            offset: 0,
            key,
            value,
            headers,
            timestamp: base_ts.saturating_add(ts_delta),
        },
    ))
}

fn bad(what: &str) -> ClientError {
    ClientError::protocol(format!("malformed record batch: {what}"))
}

fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b.try_into().expect("8 bytes"))
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b.try_into().expect("4 bytes"))
}

fn len_i32(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| ClientError::Invalid("record or batch larger than 2 GiB".into()))
}

fn put_varint(buf: &mut BytesMut, v: i32) {
    put_varlong(buf, i64::from(v));
}

fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}

fn put_bytes(buf: &mut BytesMut, b: Option<&[u8]>) -> Result<()> {
    match b {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, len_i32(b.len())?);
            buf.put_slice(b);
        }
    }
    Ok(())
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
                ("h".into(), Some(Bytes::from_static(b"second h"))),
            ],
            timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            8192,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut buf = BytesMut::new();
            put_varlong(&mut buf, v);
            assert_eq!(varlong_len(v), buf.len(), "{v}");
        }
    }

    #[test]
    fn batch_round_trips_with_every_codec() {
        let records = vec![record(Some("k1"), "Hello, Kafka!"), record(None, "second")];
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let codec: CompressionType = codec.parse().unwrap();
            let bytes = encode_batch(&records, codec, ProducerStamp::NONE).unwrap();
            let decoded = decode_messages("t", 2, bytes, 0, LIMIT, None).unwrap();
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
        let bytes = encode_batch(&records, CompressionType::None, ProducerStamp::NONE).unwrap();
        let header_len = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        assert_eq!(
            header_len as usize + 12,
            bytes.len(),
            "one batch for all records"
        );
        assert_eq!(&bytes[53..57], &(-1i32).to_be_bytes(), "no base sequence");
        let messages = decode_messages("t", 0, bytes.clone(), 2, LIMIT, None)
            .unwrap()
            .messages;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].value_str(), "c");

        let mut two = BytesMut::from(&bytes[..]);
        two.extend_from_slice(&bytes[..bytes.len() - 5]);
        let decoded = decode_messages("t", 0, two.freeze(), 0, LIMIT, None).unwrap();
        assert_eq!(decoded.next_offset, Some(3));
        let messages = decoded.messages;
        assert_eq!(messages.len(), 3, "the cut-off second batch is dropped");
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
                    "[a-c]{1,2}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                ),
                0..6,
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
            let bytes = encode_batch(&records, codec, ProducerStamp::NONE).unwrap();
            let decoded = decode_messages("t", 0, bytes, 0, LIMIT, None).unwrap();
            prop_assert_eq!(decoded.next_offset, Some(records.len() as i64));
            prop_assert_eq!(decoded.messages.len(), records.len());
            for (i, (m, r)) in decoded.messages.iter().zip(&records).enumerate() {
                prop_assert_eq!(m.offset, i as i64);
                prop_assert_eq!(&m.key, &r.key);
                prop_assert_eq!(&m.value, &r.value);
                prop_assert_eq!(m.timestamp, r.timestamp);
                prop_assert_eq!(&m.headers, &r.headers);
            }
        }
    }
}

#[cfg(test)]
mod hostile {
    //! A batch from a buggy or hostile broker is an error or fewer messages, never a panic and
    //! never a reservation sized by a count on the wire.

    use super::tests::LIMIT;
    use super::*;
    use proptest::prelude::*;

    fn valid() -> Bytes {
        let records: Vec<OutgoingRecord> = (0..5)
            .map(|i| OutgoingRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value {i}"))),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
                timestamp: 1_700_000_000_000 + i,
            })
            .collect();
        encode_batch(&records, CompressionType::None, ProducerStamp::NONE).unwrap()
    }

    /// Re-seals a mutated batch with a correct CRC, so the mutation reaches the record parser.
    fn reseal(mut b: BytesMut) -> Bytes {
        if b.len() >= BATCH_HEADER_BYTES {
            let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
            b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        }
        b.freeze()
    }

    #[test]
    fn a_record_count_of_two_billion_is_an_error_not_an_allocation() {
        let mut b = BytesMut::from(&valid()[..]);
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let err = decode_messages("t", 0, reseal(b), 0, LIMIT, None).unwrap_err();
        assert!(err.to_string().contains("malformed record batch"), "{err}");
    }

    #[test]
    fn decompression_stops_at_the_budget() {
        // 40 KB of records that gzip to far less: over a 30 KB budget the first batch is an
        // error, and a second batch past the budget is left for the next fetch.
        let records: Vec<OutgoingRecord> = (0..40)
            .map(|_| OutgoingRecord {
                key: None,
                value: Some(Bytes::from(vec![b'z'; 1000])),
                headers: Vec::new(),
                timestamp: 0,
            })
            .collect();
        let one = encode_batch(&records, CompressionType::Gzip, ProducerStamp::NONE).unwrap();
        assert!(one.len() < 5_000);
        let err = decode_messages("t", 0, one.clone(), 0, 30_000, None).unwrap_err();
        assert!(err.to_string().contains("decompress to more than"), "{err}");
        let mut two = BytesMut::from(&one[..]);
        two.extend_from_slice(&one);
        let decoded = decode_messages("t", 0, two.freeze(), 0, 60_000, None).unwrap();
        assert_eq!(decoded.messages.len(), 40, "the second batch waits");
        assert_eq!(decoded.next_offset, Some(40));
    }

    #[test]
    fn restamping_sets_the_producer_fields_and_keeps_the_crc_valid() {
        let stamp = ProducerStamp {
            producer_id: 42,
            epoch: 3,
            base_sequence: 17,
            transactional: false,
        };
        let b = restamp(&valid(), stamp);
        assert_eq!(be_i64(&b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8]), 42);
        assert_eq!(i16::from_be_bytes([b[51], b[52]]), 3);
        assert_eq!(be_i32(&b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4]), 17);
        assert_eq!(
            decode_messages("t", 0, b, 0, LIMIT, None)
                .unwrap()
                .messages
                .len(),
            5
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_messages("t", 0, Bytes::from(bytes), 0, LIMIT, None);
        }

        #[test]
        fn mutated_batches_never_panic(
            flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let mut b = BytesMut::from(&valid()[..]);
            for (i, v) in flips {
                // Leave the framing alone half the time so the record parser sees the damage.
                let i = BATCH_HEADER_BYTES.min(b.len()) + i % (b.len() - BATCH_HEADER_BYTES.min(b.len())).max(1);
                if i < b.len() {
                    b[i] = v;
                }
            }
            let whole = reseal(b);
            let _ = decode_messages("t", 0, whole.clone(), 0, LIMIT, None);
            let _ = decode_messages("t", 0, whole.slice(..cut.min(whole.len())), 0, LIMIT, None);
        }
    }
}
