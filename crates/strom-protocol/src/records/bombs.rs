//! Compression bombs for tests (here and against the real binary): each decompresses to
//! 1 GiB of zeros but is built without ever holding 1 GiB, from a small compressed piece
//! repeated where the format allows it. Doc-hidden; not part of the API.

use std::io::Write;

use bytes::Bytes;

use crate::record_batch::{
    compute_crc, BatchHeader, ATTRIBUTES_AT, BASE_SEQUENCE_AT, BATCH_LENGTH_AT, CRC_AT,
    LAST_OFFSET_DELTA_AT, LOG_OVERHEAD, MAGIC_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT,
    RECORDS_COUNT_AT,
};

/// What every bomb here expands to.
pub const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// 1 GiB of zeros as gzip: 1 MiB of zeros compressed once, as 1024 concatenated gzip members
/// (Kafka's gzip stream is a multi-member stream).
pub fn gzip_bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; MIB]).unwrap();
    e.finish().unwrap().repeat(GIB / MIB)
}

/// 1 GiB of zeros as zstd: one frame of 1 MiB of zeros, repeated (a zstd stream may hold
/// several frames).
pub fn zstd_bomb() -> Vec<u8> {
    zstd::bulk::compress(&vec![0u8; MIB], 19)
        .unwrap()
        .repeat(GIB / MIB)
}

/// 1 GiB of zeros as one LZ4 frame: a 4 MiB block of zeros, compressed once and repeated (the
/// blocks are independent and the frame carries no content checksum, so this is a valid frame).
pub fn lz4_bomb() -> Vec<u8> {
    let mut e = lz4::EncoderBuilder::new()
        .block_size(lz4::BlockSize::Max4MB)
        .block_mode(lz4::BlockMode::Independent)
        .checksum(lz4::ContentChecksum::NoChecksum)
        .build(Vec::new())
        .unwrap();
    e.write_all(&vec![0u8; 4 * MIB]).unwrap();
    let (frame, result) = e.finish();
    result.unwrap();
    // magic (4), FLG, BD, [content size (8)], [dictionary id (4)], header checksum; then
    // blocks of a little-endian length, data and [a block checksum (4)]; then the end mark.
    let flags = frame[4];
    let header_len =
        7 + if flags & 0x08 != 0 { 8 } else { 0 } + if flags & 0x01 != 0 { 4 } else { 0 };
    let block_checksum = if flags & 0x10 != 0 { 4 } else { 0 };
    let (header, rest) = frame.split_at(header_len);
    let data_len = (u32::from_le_bytes(rest[..4].try_into().unwrap()) & 0x7fff_ffff) as usize;
    let block = &rest[..4 + data_len + block_checksum];
    assert_eq!(rest.len(), block.len() + 4, "one block, then the end mark");
    let mut bomb = header.to_vec();
    bomb.extend_from_slice(&block.repeat(GIB / (4 * MIB)));
    bomb.extend_from_slice(&[0, 0, 0, 0]);
    bomb
}

/// Snappy cannot expand much more than 20 times, so its bomb is a block that *claims* 1 GiB:
/// decoders that size their buffer from the claim (as `kafka_protocol`'s does) allocate and
/// zero it before they find out.
pub fn snappy_claim_bomb() -> Vec<u8> {
    let mut block = Vec::new();
    let mut n = GIB as u32;
    while n >= 0x80 {
        block.push(n as u8 | 0x80);
        n >>= 7;
    }
    block.push(n as u8);
    block.extend_from_slice(&[0; 16]);
    let mut stream = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    stream.extend_from_slice(&(block.len() as u32).to_be_bytes());
    stream.extend_from_slice(&block);
    stream
}

/// A real xerial Snappy stream of `total` bytes of zeros (32 KiB blocks, as the Java client
/// writes).
pub fn snappy_zeros(total: usize) -> Vec<u8> {
    let block = snap::raw::Encoder::new()
        .compress_vec(&vec![0u8; 32 * 1024])
        .unwrap();
    let mut stream = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    for _ in 0..total / (32 * 1024) {
        stream.extend_from_slice(&(block.len() as u32).to_be_bytes());
        stream.extend_from_slice(&block);
    }
    stream
}

/// One v2 batch of one record around already-compressed `records` (`codec` is the attributes'
/// compression id), with a valid CRC, as a producer could send it: every produce check looks
/// only at the header and the CRC.
pub fn batch_around(records: &[u8], codec: i16) -> Bytes {
    let mut b = vec![0u8; BatchHeader::SIZE];
    b.extend_from_slice(records);
    let batch_length = (b.len() - LOG_OVERHEAD) as i32;
    b[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    b[MAGIC_AT] = 2;
    b[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&codec.to_be_bytes());
    b[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4].copy_from_slice(&0i32.to_be_bytes());
    b[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&1i32.to_be_bytes());
    // No producer id, epoch or sequence: not an idempotent batch.
    b[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&(-1i64).to_be_bytes());
    b[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&(-1i16).to_be_bytes());
    b[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = compute_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    b.into()
}
