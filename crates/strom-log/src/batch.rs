//! The RecordBatch v2 header view now lives in `strom_protocol::record_batch`, the one
//! definition shared by the log, the broker and the client; this module re-exports it under its
//! old path so `strom_log::batch::*` keeps working. The tests below stay here because they
//! build batches with real records through [`crate::testing`].

pub use strom_protocol::record_batch::*;

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
