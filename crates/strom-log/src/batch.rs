//! A read-only view of the Kafka RecordBatch v2 header (magic 2) plus the few in-place patches
//! the log needs. No I/O, no record decoding on the hot path: append and read only ever look at
//! the 61-byte header; records are walked only by timestamp lookups.
//!
//! ```text
//! offset size field                  covered by CRC
//!   0     8  base_offset    i64      no   (patched by the log on append)
//!   8     4  batch_length   i32      no   (bytes after this field: total = 12 + batch_length)
//!  12     4  partition_leader_epoch  no
//!  16     1  magic          i8       no   (must be 2)
//!  17     4  crc            u32      no   (CRC-32C, Castagnoli, of bytes 21..total)
//!  21     2  attributes     i16      yes  (bits 0-2 compression, 3 log-append-time,
//!                                          4 transactional, 5 control)
//!  23     4  last_offset_delta  i32  yes
//!  27     8  base_timestamp i64      yes
//!  35     8  max_timestamp  i64      yes
//!  43     8  producer_id    i64      yes
//!  51     2  producer_epoch i16      yes
//!  53     4  base_sequence  i32      yes
//!  57     4  records_count  i32      yes
//!  61     .. records (possibly compressed)
//! ```
//! All integers are big-endian.

use crate::error::BatchError;

/// Byte offsets of the header fields, named once so the parser and the patchers agree.
const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

/// Bytes before and including `batch_length`: `total_size = LOG_OVERHEAD + batch_length`.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest legal `batch_length`: the header after the length field, with zero records.
pub const MIN_BATCH_LENGTH: i32 = (BatchHeader::SIZE - LOG_OVERHEAD) as i32;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The parsed fixed-size header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Size of the v2 header in bytes, up to and including `records_count`.
    pub const SIZE: usize = 61;

    /// Parse the header at the start of `buf`. Only checks that 61 bytes are present; the
    /// semantic checks live in [`BatchHeader::check`] and [`validate_batches`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < Self::SIZE {
            return Err(BatchError::HeaderTooShort {
                position: 0,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_AT),
            batch_length: be_i32(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[MAGIC_AT] as i8,
            crc: u32::from_be_bytes(buf[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes")),
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Header-only checks (no CRC): magic, length, record count and offset range.
    /// `position` only labels the error. `available` is the number of bytes from the start of
    /// this batch to the end of the buffer (or file) it sits in.
    pub fn check(&self, position: usize, available: usize) -> Result<(), BatchError> {
        self.check_structure(position, available)?;
        self.check_counts(position)
    }

    /// The checks that say where the batch ends: magic, length, and that it fits.
    fn check_structure(&self, position: usize, available: usize) -> Result<(), BatchError> {
        if self.magic != 2 {
            return Err(BatchError::InvalidMagic {
                position,
                magic: self.magic,
            });
        }
        if self.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidBatchLength {
                position,
                batch_length: self.batch_length,
            });
        }
        let total_size = self.total_size();
        if total_size > available {
            return Err(BatchError::Truncated {
                position,
                total_size,
                available,
            });
        }
        Ok(())
    }

    /// Record count and offset range.
    fn check_counts(&self, position: usize) -> Result<(), BatchError> {
        if self.records_count < 0 {
            return Err(BatchError::InvalidRecordCount {
                position,
                records_count: self.records_count,
            });
        }
        // Kafka's produce-path rule: the offset range must be non-empty and agree with the
        // record count. (Compaction can break this for stored batches; this log never compacts.)
        if self.last_offset_delta < 0
            || i64::from(self.last_offset_delta) + 1 != i64::from(self.records_count)
        {
            return Err(BatchError::InconsistentOffsets {
                position,
                last_offset_delta: self.last_offset_delta,
                records_count: self.records_count,
            });
        }
        Ok(())
    }

    /// Bytes this batch occupies: the 12-byte prefix plus `batch_length`.
    /// Only meaningful after `batch_length >= MIN_BATCH_LENGTH` was checked.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// True when the timestamp type bit says LogAppendTime (every record's timestamp is then
    /// `max_timestamp`).
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE_LOG_APPEND != 0
    }
}

/// CRC-32C of the batch body as Kafka defines it: from `attributes` to the end.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Check one whole batch (`batch.len()` must be exactly its total size): header checks plus CRC.
pub(crate) fn check_batch(
    header: &BatchHeader,
    batch: &[u8],
    position: usize,
) -> Result<(), BatchError> {
    header.check(position, batch.len())?;
    check_crc(header, batch, position)
}

/// The CRC-32C of one whole batch whose structure was checked.
fn check_crc(header: &BatchHeader, batch: &[u8], position: usize) -> Result<(), BatchError> {
    let computed = compute_crc(&batch[..header.total_size()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            position,
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Split a produce payload (one or more concatenated batches) into validated batches: magic 2,
/// a sane `batch_length` inside the buffer, a matching CRC-32C, `records_count >= 0` and a
/// consistent `last_offset_delta`. Returns the headers in order. An empty buffer yields an empty
/// vector; trailing bytes too short for a header are an error (a torn batch is never accepted).
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    let mut headers = Vec::new();
    let mut position = 0usize;
    while position < buf.len() {
        let rest = &buf[position..];
        let header = BatchHeader::parse(rest).map_err(|_| BatchError::HeaderTooShort {
            position,
            available: rest.len(),
        })?;
        // Kafka's order (LogValidator): a structurally broken or damaged batch is
        // CORRUPT_MESSAGE before its counts are judged (INVALID_RECORD).
        header.check_structure(position, rest.len())?;
        let total = header.total_size();
        check_crc(&header, &rest[..total], position)?;
        header.check_counts(position)?;
        headers.push(header);
        position += total;
    }
    Ok(headers)
}

/// Overwrite the base offset (bytes 0..8, big-endian) in place. The CRC does not cover it, so it
/// is not recomputed.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// For LogAppendTime topics: set `max_timestamp` to `now_ms`, set the timestamp-type attribute
/// bit, and recompute the CRC (both fields are covered by it). `batch` is one whole batch.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(
        batch.len() >= BatchHeader::SIZE,
        "set_log_append_time needs a whole batch"
    );
    let attributes = be_i16(batch, ATTRIBUTES_AT) | ATTR_TIMESTAMP_TYPE_LOG_APPEND;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let total = (LOG_OVERHEAD + be_i32(batch, BATCH_LENGTH_AT).max(0) as usize).min(batch.len());
    let crc = compute_crc(&batch[..total]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Decode a zigzag varint (Kafka's `varint`/`varlong` in records) at `*pos`, advancing it.
fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
    let mut raw: u64 = 0;
    // A 64-bit varint takes at most 10 bytes; the bound keeps a damaged buffer from looping.
    for i in 0..10 {
        let byte = *buf
            .get(*pos)
            .ok_or(BatchError::MalformedRecords("varint past end"))?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(BatchError::MalformedRecords("varint longer than 10 bytes"))
}

/// One record's position inside its batch, as needed by timestamp lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
}

/// Walk the records of one whole *uncompressed* batch, calling `f` with each record's offset
/// and timestamp deltas until it returns `false`. Reads only the record prefixes and skips the
/// rest by the record length, so it never looks at keys or values.
pub fn walk_records(
    batch: &[u8],
    header: &BatchHeader,
    f: &mut dyn FnMut(RecordMeta) -> bool,
) -> Result<(), BatchError> {
    if header.compression() != 0 {
        return Err(BatchError::MalformedRecords(
            "cannot walk a compressed batch",
        ));
    }
    let end = header.total_size().min(batch.len());
    let mut pos = BatchHeader::SIZE;
    for _ in 0..header.records_count.max(0) {
        let length = read_varlong(batch, &mut pos)?;
        if length < 0 || pos as i64 + length > end as i64 {
            return Err(BatchError::MalformedRecords("record length out of bounds"));
        }
        let record_end = pos + length as usize;
        let mut p = pos + 1; // attributes: i8, unused
        let timestamp_delta = read_varlong(&batch[..record_end], &mut p)?;
        let offset_delta = read_varlong(&batch[..record_end], &mut p)?;
        let offset_delta = i32::try_from(offset_delta)
            .map_err(|_| BatchError::MalformedRecords("offset delta out of range"))?;
        if !f(RecordMeta {
            offset_delta,
            timestamp_delta,
        }) {
            return Ok(());
        }
        pos = record_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BatchBuilder, TestRecord};

    fn sample() -> Vec<u8> {
        BatchBuilder::new()
            .record(TestRecord::new(1_000, Some(b"k1"), Some(b"v1")))
            .record(TestRecord::new(1_005, None, Some(b"v2")))
            .record(TestRecord::new(1_003, Some(b"k3"), None))
            .build()
    }

    #[test]
    fn parse_reads_every_field() {
        let b = BatchBuilder::new()
            .base_offset(42)
            .producer(7, 3, 11)
            .partition_leader_epoch(5)
            .record(TestRecord::new(10, None, Some(b"x")))
            .record(TestRecord::new(30, None, Some(b"y")))
            .build();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.partition_leader_epoch, 5);
        assert_eq!(h.magic, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.last_offset(), 43);
        assert_eq!(h.base_timestamp, 10);
        assert_eq!(h.max_timestamp, 30);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, 11)
        );
        assert_eq!(h.records_count, 2);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_transactional() && !h.is_control() && !h.timestamp_type_log_append());
        assert_eq!(h.crc, compute_crc(&b));
    }

    #[test]
    fn parse_needs_61_bytes() {
        let b = sample();
        assert!(matches!(
            BatchHeader::parse(&b[..60]),
            Err(BatchError::HeaderTooShort { available: 60, .. })
        ));
    }

    #[test]
    fn attribute_bits() {
        let b = BatchBuilder::new()
            .attributes(0x10 | 0x20 | 0x08 | 3)
            .record(TestRecord::new(1, None, None))
            .build();
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.compression(), 3);
        assert!(h.is_transactional() && h.is_control() && h.timestamp_type_log_append());
    }

    #[test]
    fn validate_splits_concatenated_batches() {
        let mut buf = sample();
        let second = BatchBuilder::new()
            .record(TestRecord::new(5, None, Some(b"z")))
            .build();
        buf.extend_from_slice(&second);
        let hs = validate_batches(&buf).unwrap();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].records_count, 3);
        assert_eq!(hs[1].records_count, 1);
        assert_eq!(hs[0].total_size() + hs[1].total_size(), buf.len());
        assert!(validate_batches(&[]).unwrap().is_empty());
    }

    #[test]
    fn validate_rejects_bad_magic() {
        let mut b = sample();
        b[MAGIC_AT] = 1;
        let e = validate_batches(&b).unwrap_err();
        assert!(matches!(e, BatchError::InvalidMagic { magic: 1, .. }));
        assert!(e.is_corrupt_message());
    }

    #[test]
    fn validate_rejects_crc_mismatch_anywhere_in_body() {
        let b = sample();
        for i in ATTRIBUTES_AT..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x40;
            let e = validate_batches(&c).unwrap_err();
            // Flipping a header field may trip a header check first; either way it fails.
            assert!(
                e.is_corrupt_message() || matches!(e, BatchError::InconsistentOffsets { .. }),
                "{e}"
            );
        }
        let mut c = b.clone();
        let last = c.len() - 1;
        c[last] ^= 1;
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn validate_rejects_bad_lengths() {
        let b = sample();
        // Torn: a few bytes missing at the end.
        assert!(matches!(
            validate_batches(&b[..b.len() - 3]),
            Err(BatchError::Truncated { .. })
        ));
        // Trailing garbage shorter than a header.
        let mut c = b.clone();
        c.extend_from_slice(&[0; 10]);
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::HeaderTooShort { available: 10, .. })
        ));
        // batch_length below the header size.
        let mut d = b.clone();
        d[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&d),
            Err(BatchError::InvalidBatchLength { .. })
        ));
        let mut d = b.clone();
        d[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&d),
            Err(BatchError::InvalidBatchLength { .. })
        ));
    }

    /// Rewrite a header field and fix the CRC, so only the semantic check can catch it.
    fn with_field(b: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut c = b.to_vec();
        c[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = compute_crc(&c);
        c[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        c
    }

    #[test]
    fn validate_rejects_inconsistent_counts() {
        let b = sample();
        let c = with_field(&b, 57, &(-1i32).to_be_bytes());
        let e = validate_batches(&c).unwrap_err();
        assert!(matches!(e, BatchError::InvalidRecordCount { .. }));
        assert!(!e.is_corrupt_message());
        let c = with_field(&b, 23, &5i32.to_be_bytes());
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::InconsistentOffsets { .. })
        ));
        let c = with_field(&b, 23, &(-1i32).to_be_bytes());
        assert!(matches!(
            validate_batches(&c),
            Err(BatchError::InconsistentOffsets { .. })
        ));
    }

    #[test]
    fn set_base_offset_keeps_crc_valid() {
        let mut b = sample();
        set_base_offset(&mut b, 1 << 40);
        let hs = validate_batches(&b).unwrap();
        assert_eq!(hs[0].base_offset, 1 << 40);
    }

    #[test]
    fn set_log_append_time_recomputes_crc() {
        let mut b = sample();
        set_log_append_time(&mut b, 99_999);
        let hs = validate_batches(&b).unwrap();
        assert_eq!(hs[0].max_timestamp, 99_999);
        assert!(hs[0].timestamp_type_log_append());
        assert_eq!(hs[0].base_timestamp, 1_000);
    }

    #[test]
    fn walk_records_yields_deltas() {
        let b = sample();
        let h = BatchHeader::parse(&b).unwrap();
        let mut seen = Vec::new();
        walk_records(&b, &h, &mut |r| {
            seen.push((r.offset_delta, r.timestamp_delta));
            true
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 0), (1, 5), (2, 3)]);
    }

    #[test]
    fn varint_roundtrip_edges() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i64::MAX,
            i64::MIN,
            i32::MAX as i64,
        ] {
            let mut buf = Vec::new();
            crate::testing::write_varlong(&mut buf, v);
            let mut pos = 0;
            assert_eq!(read_varlong(&buf, &mut pos).unwrap(), v);
            assert_eq!(pos, buf.len());
        }
        let mut pos = 0;
        assert!(read_varlong(&[0x80; 11], &mut pos).is_err());
    }
}
