//! Looking inside one stored batch and writing it again with fewer records, as Kafka's
//! `MemoryRecords.filterTo` does: records are kept byte for byte (their offset and timestamp
//! deltas stay relative to the unchanged header), the header keeps its base offset, offset
//! range (`last_offset_delta`), timestamps and producer id/epoch/sequence, and only the record
//! count, the batch length and the CRC change. A compressed batch is decompressed (bounded),
//! filtered and compressed again with its own codec.
//!
//! The exception is KIP-534's delete horizon: a batch that keeps a tombstone or a marker is
//! written once with the horizon as its base timestamp and the delete-horizon attribute bit;
//! each record's timestamp delta is then rewritten against it, so every record reads back with
//! the timestamp it had (as Kafka's `MemoryRecordsBuilder` does with `deleteHorizonMs`).

use bytes::{Bytes, BytesMut};
use strom_protocol::recompress::{compress_records, compression_of};
use strom_protocol::record_batch::{
    compute_crc, read_varlong, write_varlong, BatchHeader, ATTRIBUTES_AT, ATTR_COMPRESSION_MASK,
    ATTR_CONTROL, ATTR_DELETE_HORIZON, BASE_TIMESTAMP_AT, BATCH_LENGTH_AT, CRC_AT, LOG_OVERHEAD,
    RECORDS_COUNT_AT,
};
use strom_protocol::records::decompress;

use crate::error::LogError;

/// One record inside a decompressed records section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    /// The whole record, its length prefix included.
    pub bytes: &'a [u8],
    pub attributes: u8,
    pub timestamp_delta: i64,
    /// Where the offset delta starts in `bytes` (all after it stays as it is on a rewrite).
    pub offset_delta_at: usize,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    /// False for a tombstone (null value).
    pub has_value: bool,
}

fn malformed(what: &str) -> LogError {
    LogError::Corrupt(format!("cleaner: {what}"))
}

/// The records section of `batch`, decompressed to at most `max_bytes`.
pub(crate) fn records_section(
    batch: &[u8],
    header: &BatchHeader,
    max_bytes: usize,
) -> Result<Bytes, LogError> {
    let codec = compression_of(header.attributes).ok_or_else(|| malformed("unknown codec"))?;
    let body = Bytes::copy_from_slice(&batch[BatchHeader::SIZE..header.total_size()]);
    decompress(codec, &body, max_bytes).map_err(|e| malformed(&e.to_string()))
}

/// Split a records section into its `count` records.
pub(crate) fn parse_records(raw: &[u8], count: i32) -> Result<Vec<RawRecord<'_>>, LogError> {
    let bad = |e: strom_protocol::record_batch::BatchError| malformed(&e.to_string());
    let mut out = Vec::with_capacity(count.clamp(0, 4096) as usize);
    let mut pos = 0usize;
    for _ in 0..count.max(0) {
        let start = pos;
        let length = read_varlong(raw, &mut pos).map_err(bad)?;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&e| e <= raw.len())
            .ok_or_else(|| malformed("record length out of bounds"))?;
        let record = &raw[..end];
        let attributes = *record
            .get(pos)
            .ok_or_else(|| malformed("record without attributes"))?;
        let mut p = pos + 1;
        let timestamp_delta = read_varlong(record, &mut p).map_err(bad)?;
        let offset_delta_at = p - start;
        let offset_delta = i32::try_from(read_varlong(record, &mut p).map_err(bad)?)
            .map_err(|_| malformed("offset delta out of range"))?;
        let key = field(record, &mut p)?;
        let value_length = read_varlong(record, &mut p).map_err(bad)?;
        out.push(RawRecord {
            bytes: &raw[start..end],
            attributes,
            timestamp_delta,
            offset_delta_at,
            offset_delta,
            key,
            has_value: value_length >= 0,
        });
        pos = end;
    }
    Ok(out)
}

/// A length-prefixed byte field (`-1`: null).
fn field<'a>(record: &'a [u8], p: &mut usize) -> Result<Option<&'a [u8]>, LogError> {
    let length = read_varlong(record, p).map_err(|e| malformed(&e.to_string()))?;
    if length < 0 {
        return Ok(None);
    }
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| p.checked_add(l))
        .filter(|&e| e <= record.len())
        .ok_or_else(|| malformed("key runs past its record"))?;
    let bytes = &record[*p..end];
    *p = end;
    Ok(Some(bytes))
}

/// `record` with its timestamp delta taken from `base` instead of `new_base` (same timestamp).
fn rebase_record(record: &RawRecord<'_>, base: i64, new_base: i64, out: &mut Vec<u8>) {
    let timestamp = base.saturating_add(record.timestamp_delta);
    let mut body = Vec::with_capacity(record.bytes.len() + 8);
    body.push(record.attributes);
    write_varlong(&mut body, timestamp.saturating_sub(new_base));
    body.extend_from_slice(&record.bytes[record.offset_delta_at..]);
    write_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// `original` with only the records `kept` (a subset of its records, in order), compressed with
/// its own codec; with `delete_horizon_ms`, stamped with it (see the module docs). With nothing
/// kept: the header alone, as Kafka's empty batches are (no codec, no control bit), which keeps
/// the batch's offset range and producer fields.
pub(crate) fn rebuild(
    original: &[u8],
    header: &BatchHeader,
    kept: &[RawRecord<'_>],
    delete_horizon_ms: Option<i64>,
) -> Result<Vec<u8>, LogError> {
    let mut out = BytesMut::with_capacity(original.len());
    out.extend_from_slice(&original[..BatchHeader::SIZE]);
    let mut attributes = header.attributes;
    if kept.is_empty() {
        attributes &= !(ATTR_COMPRESSION_MASK | ATTR_CONTROL);
    } else {
        let raw: Vec<u8> = match delete_horizon_ms {
            None => kept.iter().flat_map(|r| r.bytes.iter().copied()).collect(),
            Some(horizon) => {
                attributes |= ATTR_DELETE_HORIZON;
                out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8]
                    .copy_from_slice(&horizon.to_be_bytes());
                let mut raw = Vec::with_capacity(original.len());
                for r in kept {
                    rebase_record(r, header.base_timestamp, horizon, &mut raw);
                }
                raw
            }
        };
        let codec = compression_of(header.attributes).ok_or_else(|| malformed("unknown codec"))?;
        compress_records(codec, &raw, &mut out).map_err(|e| malformed(&e.to_string()))?;
    }
    let count = i32::try_from(kept.len()).map_err(|_| malformed("too many records"))?;
    let length =
        i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| malformed("batch over 2 GiB"))?;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{BatchBuilder, TestRecord};
    use strom_protocol::record_batch::check_stored_batch;

    #[test]
    fn rebuild_keeps_the_offset_range_and_chosen_records() {
        let batch = BatchBuilder::new()
            .base_offset(100)
            .producer(7, 1, 40)
            .record(TestRecord::new(10, Some(b"a"), Some(b"1")))
            .record(TestRecord::new(11, Some(b"b"), None))
            .record(TestRecord::new(12, Some(b"a"), Some(b"2")))
            .build();
        let header = BatchHeader::parse(&batch).unwrap();
        let raw = records_section(&batch, &header, 1 << 20).unwrap();
        let records = parse_records(&raw, header.records_count).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].key, Some(&b"b"[..]));
        assert!(!records[1].has_value && records[2].has_value);
        let rebuilt = rebuild(&batch, &header, &records[1..], None).unwrap();
        let h = BatchHeader::parse(&rebuilt).unwrap();
        check_stored_batch(&h, &rebuilt, 0).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.records_count),
            (100, 102, 2)
        );
        assert_eq!((h.producer_id, h.base_sequence), (7, 40));
        let again = parse_records(&rebuilt[BatchHeader::SIZE..], 2).unwrap();
        assert_eq!(again[1].offset_delta, 2);
        let empty = rebuild(&batch, &header, &[], None).unwrap();
        let h = BatchHeader::parse(&empty).unwrap();
        check_stored_batch(&h, &empty, 0).unwrap();
        assert_eq!(
            (h.records_count, h.last_offset(), empty.len()),
            (0, 102, 61)
        );
    }
}
