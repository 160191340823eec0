//! The Kafka RecordBatch v2 header (magic 2): its byte layout, a read-only view of it, the
//! validation a produce and a recovery both run, and the few in-place patches a broker makes.
//! This is the one definition of the layout: the log, the broker's handlers and the client all
//! use it. No I/O, no record decoding on the hot path: append and read only ever look at the
//! 61-byte header; records are walked only by timestamp lookups.
//!
//! ```text
//! offset size field                  covered by CRC
//!   0     8  base_offset    i64      no   (patched by the log on append)
//!   8     4  batch_length   i32      no   (bytes after this field: total = 12 + batch_length)
//!  12     4  partition_leader_epoch  no
//!  16     1  magic          i8       no   (must be 2)
//!  17     4  crc            u32      no   (CRC-32C, Castagnoli, of bytes 21..total)
//!  21     2  attributes     i16      yes  (bits 0-2 compression, 3 log-append-time,
//!                                          4 transactional, 5 control, 6 delete horizon)
//!  23     4  last_offset_delta  i32  yes
//!  27     8  base_timestamp i64      yes  (the delete horizon when bit 6 is set)
//!  35     8  max_timestamp  i64      yes
//!  43     8  producer_id    i64      yes
//!  51     2  producer_epoch i16      yes
//!  53     4  base_sequence  i32      yes
//!  57     4  records_count  i32      yes
//!  61     .. records (possibly compressed)
//! ```
//! All integers are big-endian.

/// A produce payload (or a stored batch) failed a header-level check.
///
/// [`BatchError::is_corrupt_message`] tells the broker which Kafka error to answer with:
/// structural damage (size, magic, CRC) is `CORRUPT_MESSAGE`, a well-formed batch whose record
/// count and offset range disagree is `INVALID_RECORD`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a v2 batch header (61) at `position`.
    #[error("truncated batch header at byte {position}: {available} bytes left, need 61")]
    HeaderTooShort { position: usize, available: usize },
    /// Only record batch format v2 (magic 2) is accepted.
    #[error("unsupported record batch magic {magic} at byte {position} (only v2 is accepted)")]
    InvalidMagic { position: usize, magic: i8 },
    /// `batch_length` is smaller than the fixed part of a v2 header.
    #[error("invalid batch_length {batch_length} at byte {position} (minimum 49)")]
    InvalidBatchLength { position: usize, batch_length: i32 },
    /// `batch_length` points past the end of the buffer.
    #[error("batch at byte {position} claims {total_size} bytes but only {available} are present")]
    Truncated {
        position: usize,
        total_size: usize,
        available: usize,
    },
    /// CRC-32C over bytes 21.. of the batch does not match the stored one.
    #[error("CRC mismatch in batch at byte {position}: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        position: usize,
        stored: u32,
        computed: u32,
    },
    /// `records_count` is negative.
    #[error("invalid records_count {records_count} in batch at byte {position}")]
    InvalidRecordCount { position: usize, records_count: i32 },
    /// `last_offset_delta + 1 != records_count`, or the delta is negative.
    #[error("inconsistent batch at byte {position}: last_offset_delta {last_offset_delta}, records_count {records_count}")]
    InconsistentOffsets {
        position: usize,
        last_offset_delta: i32,
        records_count: i32,
    },
    /// The records section of an uncompressed batch does not decode (only checked when a
    /// caller walks records, e.g. timestamp lookups; never on append).
    #[error("malformed records in batch: {0}")]
    MalformedRecords(&'static str),
}

impl BatchError {
    /// True for structural damage (the broker answers `CORRUPT_MESSAGE`); false for a
    /// well-formed batch with inconsistent contents (`INVALID_RECORD`).
    pub fn is_corrupt_message(&self) -> bool {
        !matches!(
            self,
            BatchError::InvalidRecordCount { .. } | BatchError::InconsistentOffsets { .. }
        )
    }
}

/// Byte offsets of the header fields, named once so every parser and patcher agrees.
pub const BASE_OFFSET_AT: usize = 0;
pub const BATCH_LENGTH_AT: usize = 8;
/// Not covered by the CRC: a broker stamps it on append.
pub const PARTITION_LEADER_EPOCH_AT: usize = 12;
/// The same position in every record format (v0/v1 message sets too), so it tells them apart.
pub const MAGIC_AT: usize = 16;
pub const CRC_AT: usize = 17;
/// The CRC-32C covers the batch from here to its end.
pub const ATTRIBUTES_AT: usize = 21;
pub const LAST_OFFSET_DELTA_AT: usize = 23;
pub const BASE_TIMESTAMP_AT: usize = 27;
pub const MAX_TIMESTAMP_AT: usize = 35;
pub const PRODUCER_ID_AT: usize = 43;
pub const PRODUCER_EPOCH_AT: usize = 51;
pub const BASE_SEQUENCE_AT: usize = 53;
pub const RECORDS_COUNT_AT: usize = 57;

/// Bytes before and including `batch_length`: `total_size = LOG_OVERHEAD + batch_length`.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest legal `batch_length`: the header after the length field, with zero records.
pub const MIN_BATCH_LENGTH: i32 = (BatchHeader::SIZE - LOG_OVERHEAD) as i32;

/// Attribute bits: 0-2 the compression codec, 3 the timestamp type, 4 transactional, 5 control,
/// 6 delete horizon.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;
/// KIP-534: the log cleaner set `base_timestamp` to the time from which the batch's tombstones
/// (or its transaction marker) may be removed; record timestamp deltas are relative to it.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

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
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: u32::from_be_bytes(buf[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes")),
            attributes: be_i16(buf, ATTRIBUTES_AT),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_AT),
            producer_id: be_i64(buf, PRODUCER_ID_AT),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(buf, BASE_SEQUENCE_AT),
            records_count: be_i32(buf, RECORDS_COUNT_AT),
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

    /// Header checks for a batch read back from a log: like [`BatchHeader::check`], but a
    /// compacted batch keeps its offset range while holding fewer records, or none (Kafka's
    /// cleaner writes both), so the count only has to fit the range.
    pub fn check_stored(&self, position: usize, available: usize) -> Result<(), BatchError> {
        self.check_structure(position, available)?;
        self.check_stored_counts(position)
    }

    /// The count part of [`BatchHeader::check_stored`].
    fn check_stored_counts(&self, position: usize) -> Result<(), BatchError> {
        if self.records_count < 0
            || self.last_offset_delta < 0
            || i64::from(self.records_count) > i64::from(self.last_offset_delta) + 1
        {
            return Err(BatchError::InconsistentOffsets {
                position,
                last_offset_delta: self.last_offset_delta,
                records_count: self.records_count,
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
        // record count. (Compacted batches on disk break it: see `check_stored`.)
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

    /// When the cleaner may remove this batch's tombstones or marker (KIP-534), if a pass
    /// already set it.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & ATTR_DELETE_HORIZON != 0).then_some(self.base_timestamp)
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
pub fn check_batch(header: &BatchHeader, batch: &[u8], position: usize) -> Result<(), BatchError> {
    header.check(position, batch.len())?;
    check_crc(header, batch, position)
}

/// [`check_batch`] for a batch read back from a log, which may have been compacted
/// ([`BatchHeader::check_stored`]).
pub fn check_stored_batch(
    header: &BatchHeader,
    batch: &[u8],
    position: usize,
) -> Result<(), BatchError> {
    header.check_stored(position, batch.len())?;
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
    split_checked(buf, BatchHeader::check_counts)
}

/// [`validate_batches`] for batches read from another replica's log: compacted batches keep
/// their offset range with fewer records ([`BatchHeader::check_stored`]).
pub fn validate_stored_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, BatchError> {
    split_checked(buf, BatchHeader::check_stored_counts)
}

/// Walks concatenated batches: header, structure and CRC-32C of each, then `counts` (the
/// produce rule or the stored one).
fn split_checked(
    buf: &[u8],
    counts: fn(&BatchHeader, usize) -> Result<(), BatchError>,
) -> Result<Vec<BatchHeader>, BatchError> {
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
        counts(&header, position)?;
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

/// Overwrite `partition_leader_epoch` in place (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Bytes of a batch before `magic`: base offset, batch length and partition leader epoch.
/// None of them is covered by the CRC, so a broker stores a batch under its own base offset
/// and leader epoch by writing a new prefix ([`stamped_prefix`]) followed by the client's
/// bytes from `magic` on, unchanged: one vectored write, no copy of the batch.
pub const UNCHECKED_PREFIX_BYTES: usize = MAGIC_AT;
const _: () = assert!(UNCHECKED_PREFIX_BYTES <= ATTRIBUTES_AT);

/// The first [`UNCHECKED_PREFIX_BYTES`] of `batch` with the base offset set and, when given,
/// the partition leader epoch: what [`set_base_offset`] and [`set_partition_leader_epoch`]
/// would make of them, without touching `batch`.
pub fn stamped_prefix(
    batch: &[u8],
    base_offset: i64,
    leader_epoch: Option<i32>,
) -> [u8; UNCHECKED_PREFIX_BYTES] {
    let mut prefix = [0u8; UNCHECKED_PREFIX_BYTES];
    prefix.copy_from_slice(&batch[..UNCHECKED_PREFIX_BYTES]);
    set_base_offset(&mut prefix, base_offset);
    if let Some(epoch) = leader_epoch {
        set_partition_leader_epoch(&mut prefix, epoch);
    }
    prefix
}

/// Overwrite `base_sequence` and recompute the CRC (the field is covered by it). `batch` is one
/// whole batch.
pub fn set_base_sequence(batch: &mut [u8], base_sequence: i32) {
    assert!(
        batch.len() >= BatchHeader::SIZE,
        "set_base_sequence needs a whole batch"
    );
    batch[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
    rewrite_crc(batch);
}

/// The CRC stored in the header of `batch`, if it is long enough to have one.
pub fn stored_crc(batch: &[u8]) -> Option<u32> {
    let bytes = batch.get(CRC_AT..CRC_AT + 4)?;
    Some(u32::from_be_bytes(bytes.try_into().expect("4 bytes")))
}

/// Recompute the CRC of one whole batch after a patch of a covered field.
fn rewrite_crc(batch: &mut [u8]) {
    let total = (LOG_OVERHEAD + be_i32(batch, BATCH_LENGTH_AT).max(0) as usize).min(batch.len());
    let crc = compute_crc(&batch[..total]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
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
    rewrite_crc(batch);
}

/// Decode a zigzag varint (Kafka's `varint`/`varlong` in records) at `*pos`, advancing it.
pub fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, BatchError> {
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

/// Append a zigzag varint (Kafka's `varint`/`varlong` in records).
pub fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
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

    #[test]
    fn varlongs_round_trip_with_kafkas_zigzag_bytes() {
        for (v, bytes) in [
            (0i64, &[0u8][..]),
            (-1, &[1]),
            (1, &[2]),
            (-65, &[0x81, 0x01]),
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            assert_eq!(out, bytes, "{v}");
        }
        for v in [i64::MIN, -1_700_000_000_000, -1, 0, 63, 64, i64::MAX] {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
    }

    /// A batch of `count` records whose record bytes are opaque filler: the header checks and
    /// the CRC never look inside the records.
    fn batch(count: i32) -> Vec<u8> {
        let mut b = vec![0u8; BatchHeader::SIZE];
        b.extend_from_slice(b"records are opaque here");
        let batch_length = (b.len() - LOG_OVERHEAD) as i32;
        b[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&7i64.to_be_bytes());
        b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
        b[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&3i32.to_be_bytes());
        b[MAGIC_AT] = 2;
        b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&(ATTR_CONTROL | 4).to_be_bytes());
        b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&(count - 1).to_be_bytes());
        b[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&100i64.to_be_bytes());
        b[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&200i64.to_be_bytes());
        b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&9i64.to_be_bytes());
        b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&1i16.to_be_bytes());
        b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&5i32.to_be_bytes());
        b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
        rewrite_crc(&mut b);
        b
    }

    #[test]
    fn the_layout_is_kafkas_61_bytes() {
        // DefaultRecordBatch.RECORD_BATCH_OVERHEAD is 61 and its fields sit at these offsets.
        assert_eq!(BatchHeader::SIZE, RECORDS_COUNT_AT + 4);
        assert_eq!(MIN_BATCH_LENGTH, 49);
        let b = batch(2);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.magic),
            (7, 3, 2)
        );
        assert_eq!((h.last_offset_delta, h.records_count), (1, 2));
        assert_eq!((h.base_timestamp, h.max_timestamp), (100, 200));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 1, 5)
        );
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.last_offset(), 8);
        assert_eq!(h.compression(), 4);
        assert!(h.is_control() && !h.is_transactional());
        assert_eq!(Some(h.crc), stored_crc(&b));
        assert_eq!(h.crc, compute_crc(&b));
        assert_eq!(validate_batches(&b).unwrap(), vec![h]);
    }

    #[test]
    fn patches_keep_the_batch_valid() {
        let mut b = batch(1);
        set_base_offset(&mut b, 1 << 33);
        set_partition_leader_epoch(&mut b, 11);
        set_base_sequence(&mut b, -1);
        set_log_append_time(&mut b, 5_000);
        let h = validate_batches(&b).unwrap()[0];
        assert_eq!(h.base_offset, 1 << 33);
        assert_eq!(h.partition_leader_epoch, 11);
        assert_eq!(h.base_sequence, -1);
        assert_eq!(h.max_timestamp, 5_000);
        assert!(h.timestamp_type_log_append());
    }

    #[test]
    fn a_stamped_prefix_is_what_the_in_place_patches_make() {
        let b = batch(3);
        let mut patched = b.clone();
        set_base_offset(&mut patched, 77);
        set_partition_leader_epoch(&mut patched, 9);
        let prefix = stamped_prefix(&b, 77, Some(9));
        assert_eq!(prefix[..], patched[..UNCHECKED_PREFIX_BYTES]);
        assert_eq!(
            b[UNCHECKED_PREFIX_BYTES..],
            patched[UNCHECKED_PREFIX_BYTES..]
        );
        let kept = stamped_prefix(&b, 77, None);
        assert_eq!(
            kept[PARTITION_LEADER_EPOCH_AT..],
            b[PARTITION_LEADER_EPOCH_AT..MAGIC_AT]
        );
        let mut joined = prefix.to_vec();
        joined.extend_from_slice(&b[UNCHECKED_PREFIX_BYTES..]);
        let h = validate_batches(&joined).unwrap()[0];
        assert_eq!((h.base_offset, h.partition_leader_epoch), (77, 9));
    }

    #[test]
    fn a_patch_of_a_covered_field_without_a_new_crc_is_caught() {
        let mut b = batch(1);
        b[BASE_SEQUENCE_AT] ^= 1;
        assert!(matches!(
            validate_batches(&b),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert_eq!(stored_crc(&b[..20]), None);
    }
}
