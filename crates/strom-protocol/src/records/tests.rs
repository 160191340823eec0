//! Bounded decoding: real bombs for each codec (1 GiB of zeros, see `bombs`), hostile counts,
//! and round trips of ordinary batches.

use std::io::Write;

use bytes::BytesMut;

use super::bombs::{batch_around, gzip_bomb, lz4_bomb, snappy_claim_bomb, snappy_zeros, zstd_bomb};
use kafka_protocol::records::{
    Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use super::*;
use crate::record_batch::{compute_crc, CRC_AT, LAST_OFFSET_DELTA_AT, RECORDS_COUNT_AT};

const MIB: usize = 1 << 20;
const LIMIT: usize = MIB;

#[test]
fn a_gibibyte_bomb_of_each_codec_is_refused_at_the_limit() {
    let bombs = [
        (Compression::Gzip, 1i16, gzip_bomb()),
        (Compression::Snappy, 2, snappy_claim_bomb()),
        (Compression::Lz4, 3, lz4_bomb()),
        (Compression::Zstd, 4, zstd_bomb()),
    ];
    for (compression, codec, bomb) in bombs {
        let name = codec_name(compression);
        assert!(bomb.len() < 8 * MIB, "{name} bomb is {} bytes", bomb.len());
        let started = std::time::Instant::now();
        let e = decompress(compression, &Bytes::from(bomb.clone()), LIMIT).unwrap_err();
        assert_eq!(
            e,
            RecordsError::TooLarge {
                codec: name,
                limit_bytes: LIMIT
            }
        );
        assert!(e.to_string().contains("more than 1048576 bytes"), "{e}");
        let mut batch = batch_around(&bomb, codec);
        assert_eq!(
            decode_batch(&mut batch, LIMIT).unwrap_err(),
            RecordsError::TooLarge {
                codec: name,
                limit_bytes: LIMIT
            }
        );
        // Only the first megabyte or so is ever produced, so this is quick even unoptimised.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{name}"
        );
    }
}

#[test]
fn a_real_snappy_stream_past_the_limit_is_refused_before_it_is_decompressed() {
    let stream = snappy_zeros(64 * MIB);
    let e = decompress(Compression::Snappy, &Bytes::from(stream.clone()), LIMIT).unwrap_err();
    assert!(matches!(e, RecordsError::TooLarge { .. }), "{e}");
    let out = decompress(Compression::Snappy, &Bytes::from(stream), 64 * MIB).unwrap();
    assert_eq!(out.len(), 64 * MIB);
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn a_bomb_just_at_the_limit_still_decodes() {
    let zeros = vec![0u8; 3 * MIB];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&zeros).unwrap();
    let gz = gz.finish().unwrap();
    let out = decompress(Compression::Gzip, &Bytes::from(gz.clone()), 3 * MIB).unwrap();
    assert_eq!(out.len(), 3 * MIB);
    assert!(matches!(
        decompress(Compression::Gzip, &Bytes::from(gz), 3 * MIB - 1),
        Err(RecordsError::TooLarge { .. })
    ));
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}").repeat(50))),
            headers: [(
                kafka_protocol::protocol::StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"v")),
            )]
            .into_iter()
            .collect(),
        })
        .collect()
}

#[test]
fn ordinary_batches_of_every_codec_decode_as_kafka_protocol_decodes_them() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records(100), &options).unwrap();
        let bytes = buf.freeze();
        let expected = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
        let mut input = bytes.clone();
        let decoded = decode_batch(&mut input, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES).unwrap();
        let got = decoded.set;
        assert!(input.is_empty(), "the whole batch is consumed");
        assert!(decoded.records_bytes > 100 * 300, "{compression:?}");
        assert_eq!(got.records, expected.records, "{compression:?}");
        assert_eq!(got.records.len(), 100);
        assert_eq!(got.compression, compression);
        // The same batch with a limit below its decompressed size is refused.
        if compression != Compression::None {
            assert!(matches!(
                decode_batch(&mut bytes.clone(), 1_000),
                Err(RecordsError::TooLarge { .. })
            ));
        }
    }
}

/// One uncompressed record whose header count is `headers`, with no header bytes after it.
fn record_claiming_headers(headers: i64) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    body.extend_from_slice(&[0, 0]); // timestamp delta 0, offset delta 0
    body.extend_from_slice(&[1, 1]); // key and value: null (-1 zigzag = 1)
    let mut z = ((headers << 1) ^ (headers >> 63)) as u64;
    while z >= 0x80 {
        body.push(z as u8 | 0x80);
        z >>= 7;
    }
    body.push(z as u8);
    let mut rec = vec![(body.len() as u8) << 1];
    rec.extend_from_slice(&body);
    rec
}

#[test]
fn a_record_claiming_two_billion_headers_is_refused_before_any_reservation() {
    // The story: kafka_protocol reserves an IndexMap for the claimed header count before it
    // reads a header; 2^31 - 1 headers made it write 4 GiB of hash-table control bytes.
    let mut batch = batch_around(&record_claiming_headers(i32::MAX as i64), 0);
    let e = decode_batch(&mut batch, LIMIT).unwrap_err();
    assert!(
        matches!(&e, RecordsError::Malformed(m) if m.contains("2147483647 headers")),
        "{e}"
    );
    // A claim the bytes can hold passes the check and decodes.
    let mut batch = batch_around(&record_claiming_headers(0), 0);
    assert_eq!(
        decode_batch(&mut batch, LIMIT).unwrap().set.records.len(),
        1
    );
}

#[test]
fn a_record_count_the_bytes_cannot_hold_is_refused() {
    let mut b = batch_around(&record_claiming_headers(0), 0).to_vec();
    b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
        .copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    let crc = compute_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let e = decode_batch(&mut Bytes::from(b), LIMIT).unwrap_err();
    assert!(
        matches!(&e, RecordsError::Malformed(m) if m.contains("cannot fit")),
        "{e}"
    );
}

#[test]
fn garbage_is_an_error_for_every_codec() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let e = decompress(
            compression,
            &Bytes::from_static(b"not compressed at all"),
            LIMIT,
        )
        .unwrap_err();
        assert!(matches!(e, RecordsError::Decompress { .. }), "{e}");
    }
}
