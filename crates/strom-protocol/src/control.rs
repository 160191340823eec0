//! Transaction markers: the control batches a transaction coordinator writes to every partition
//! of a transaction when it ends (KIP-98), in Kafka's exact layout (`EndTransactionMarker` and
//! `MemoryRecords.withEndTransactionMarker`):
//!
//! ```text
//! RecordBatch v2 header: attributes = 0x30 (transactional | control), producer id and epoch of
//!   the transaction, base_sequence -1, records_count 1, last_offset_delta 0,
//!   base_timestamp = max_timestamp = the coordinator's time
//! one record: length varint | attributes i8 (0) | timestamp_delta varint (0)
//!   | offset_delta varint (0) | key_length varint (4) | key | value_length varint (6) | value
//!   | header_count varint (0)
//! key:   version i16 (0) | type i16 (0 = ABORT, 1 = COMMIT)
//! value: version i16 (0) | coordinator_epoch i32
//! ```

use crate::record_batch::{
    compute_crc, read_varlong, BatchHeader, ATTR_CONTROL, ATTR_TRANSACTIONAL, CRC_AT,
};

pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

fn varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A whole marker batch (base offset 0, to be assigned by the log).
pub fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp_ms: i64,
) -> Vec<u8> {
    let control_type = if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut record = vec![0u8]; // attributes
    varint(&mut record, 0); // timestamp delta
    varint(&mut record, 0); // offset delta
    varint(&mut record, 4);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&control_type.to_be_bytes());
    varint(&mut record, 6);
    record.extend_from_slice(&0i16.to_be_bytes());
    record.extend_from_slice(&coordinator_epoch.to_be_bytes());
    varint(&mut record, 0); // headers
    let mut body = Vec::with_capacity(record.len() + 2);
    varint(&mut body, record.len() as i64);
    body.extend_from_slice(&record);

    let total = BatchHeader::SIZE + body.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    out.extend_from_slice(&((total - 12) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    out.extend_from_slice(&(ATTR_TRANSACTIONAL | ATTR_CONTROL).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
    out.extend_from_slice(&producer_id.to_be_bytes());
    out.extend_from_slice(&producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&1i32.to_be_bytes()); // records count
    out.extend_from_slice(&body);
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// The control type (ABORT 0, COMMIT 1, or another) of a whole control batch's first record;
/// `None` when the bytes are not a readable control record.
pub fn control_type(batch: &[u8]) -> Option<i16> {
    let mut pos = BatchHeader::SIZE;
    let _length = read_varlong(batch, &mut pos).ok()?;
    pos += 1; // attributes
    read_varlong(batch, &mut pos).ok()?; // timestamp delta
    read_varlong(batch, &mut pos).ok()?; // offset delta
    let key_length = read_varlong(batch, &mut pos).ok()?;
    if key_length < 4 {
        return None;
    }
    let key = batch.get(pos..pos + 4)?;
    Some(i16::from_be_bytes([key[2], key[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::validate_batches;

    #[test]
    fn markers_are_valid_control_batches_with_their_type() {
        for commit in [true, false] {
            let b = encode_marker(42, 3, commit, 0, 1_700_000_000_000);
            let headers = validate_batches(&b).unwrap();
            let h = headers[0];
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
            assert_eq!((h.base_sequence, h.records_count), (-1, 1));
            assert_eq!(control_type(&b), Some(i16::from(commit)));
        }
    }

    /// Kafka's bytes for `EndTransactionMarker(COMMIT, 0)` record: key 0x0000_0001, value
    /// 0x0000_0000_0000.
    #[test]
    fn the_record_matches_kafkas_layout() {
        let b = encode_marker(1, 0, true, 0, 0);
        let record = &b[BatchHeader::SIZE..];
        assert_eq!(
            record,
            &[
                32, // length 16, zigzag
                0, 0, 0, // attributes, timestamp delta, offset delta
                8, 0, 0, 0, 1, // key
                12, 0, 0, 0, 0, 0, 0, // value
                0  // headers
            ]
        );
    }
}
