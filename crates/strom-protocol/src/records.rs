//! Decoding the records of one record batch with every allocation bounded by the bytes at hand.
//!
//! Why not `kafka_protocol`'s `RecordBatchDecoder::decode` alone: it decompresses without an
//! output limit, so a batch of a few kilobytes that a producer wrote (it passed every produce
//! check: its CRC covers the compressed bytes) can expand to gigabytes in whoever decodes it —
//! the broker's JSON front end or a client. It also reserves memory from counts in the batch
//! (`records_count`, each record's header count) before it reads the elements, and a header
//! count of 2^31 makes the hash map behind the headers write gigabytes of control bytes.
//!
//! So this module decompresses itself, with a hard output limit (the caller's, typically a
//! named setting; [`DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES`] otherwise), checks that every count
//! fits in the decompressed bytes, and only then lets `kafka_protocol` decode the records.
//! Over the limit the caller gets [`RecordsError::TooLarge`], never an abort.
//!
//! Codecs, as Kafka writes them: gzip (possibly several members), Snappy in the xerial framing
//! of the Java client (or a raw block), the LZ4 frame format, and Zstandard frames.

use std::io::Read;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder, RecordSet};

use crate::record_batch::{read_varlong, BatchHeader};

/// Default bound on the records of one batch once decompressed: 64 times the default
/// `message.max.bytes` (1 MiB), far above what real data compresses by, far below what hurts.
pub const DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
const MIN_RECORD_BYTES: usize = 7;
/// The smallest encoded record header: key length and value length, one byte each.
const MIN_HEADER_BYTES: usize = 2;
/// xerial's Snappy stream header: magic (8 bytes), version and compatible version (4 each).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// Why the records of a batch could not be decoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RecordsError {
    /// The records decompress to more than the limit: refused rather than held in memory.
    #[error("{codec} records of the batch decompress to more than {limit_bytes} bytes (the limit on a decompressed batch)")]
    TooLarge {
        codec: &'static str,
        limit_bytes: usize,
    },
    /// The compressed bytes do not decode with their codec.
    #[error("cannot decompress {codec} records: {reason}")]
    Decompress { codec: &'static str, reason: String },
    /// The batch or its records are malformed (a count that cannot fit, a bad length, ...).
    #[error("malformed record batch: {0}")]
    Malformed(String),
}

fn codec_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// Decompress `input` with `compression`, refusing to produce more than `max_bytes`.
/// Uncompressed records are returned as they are (they are already in memory).
pub fn decompress(
    compression: Compression,
    input: &Bytes,
    max_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let codec = codec_name(compression);
    let failed = |e: std::io::Error| RecordsError::Decompress {
        codec,
        reason: e.to_string(),
    };
    match compression {
        Compression::None => Ok(input.clone()),
        Compression::Gzip => read_bounded(
            flate2::read::MultiGzDecoder::new(&input[..]),
            codec,
            max_bytes,
        ),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&input[..]).map_err(failed)?;
            read_bounded(decoder, codec, max_bytes)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&input[..]).map_err(failed)?;
            read_bounded(decoder, codec, max_bytes)
        }
        Compression::Snappy => snappy(input, max_bytes),
    }
}

/// Read a decoder to its end, but never more than `max_bytes`: one byte past the limit is
/// enough to know the batch is over it, and the rest is never produced.
fn read_bounded(
    decoder: impl Read,
    codec: &'static str,
    max_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let mut out = Vec::new();
    decoder
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordsError::Decompress {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > max_bytes {
        return Err(RecordsError::TooLarge {
            codec,
            limit_bytes: max_bytes,
        });
    }
    Ok(out.into())
}

/// Snappy as Kafka's clients write it: the xerial stream (a 16-byte header, then blocks each
/// behind a big-endian u32 length), or one raw block. Each block states its decompressed size
/// up front, so the limit is checked before anything is allocated for it.
fn snappy(input: &[u8], max_bytes: usize) -> Result<Bytes, RecordsError> {
    let codec = "snappy";
    let failed = |e: snap::Error| RecordsError::Decompress {
        codec,
        reason: e.to_string(),
    };
    let too_large = RecordsError::TooLarge {
        codec,
        limit_bytes: max_bytes,
    };
    let blocks: Vec<&[u8]> = if input.starts_with(XERIAL_MAGIC) {
        let mut blocks = Vec::new();
        let mut rest = input.get(XERIAL_HEADER_BYTES..).unwrap_or_default();
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_at_checked(4)
                .ok_or_else(|| RecordsError::Decompress {
                    codec,
                    reason: "truncated block length".into(),
                })?;
            let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
            let (block, tail) =
                tail.split_at_checked(len)
                    .ok_or_else(|| RecordsError::Decompress {
                        codec,
                        reason: format!("block of {len} bytes past the end"),
                    })?;
            blocks.push(block);
            rest = tail;
        }
        blocks
    } else {
        vec![input]
    };
    let mut total = 0usize;
    for block in &blocks {
        total = total.saturating_add(snap::raw::decompress_len(block).map_err(failed)?);
        if total > max_bytes {
            return Err(too_large);
        }
    }
    let mut out = vec![0u8; total];
    let mut at = 0;
    let mut decoder = snap::raw::Decoder::new();
    for block in blocks {
        at += decoder.decompress(block, &mut out[at..]).map_err(failed)?;
    }
    out.truncate(at);
    Ok(out.into())
}

/// Check that `records_count` records fit in `records`, and that no record claims more headers
/// than its bytes can hold, so the decoder's reservations stay within the bytes at hand.
/// Lengths inside each record are left to the decoder, which bounds them itself.
fn check_counts(records: &[u8], records_count: i32) -> Result<(), RecordsError> {
    let malformed = |m: String| RecordsError::Malformed(m);
    let count = usize::try_from(records_count)
        .map_err(|_| malformed(format!("negative record count {records_count}")))?;
    if count > records.len() / MIN_RECORD_BYTES {
        return Err(malformed(format!(
            "{count} records cannot fit in {} bytes",
            records.len()
        )));
    }
    let varint = |buf: &[u8], pos: &mut usize| {
        read_varlong(buf, pos).map_err(|e| RecordsError::Malformed(e.to_string()))
    };
    let mut pos = 0usize;
    for i in 0..count {
        let length = varint(records, &mut pos)?;
        let end = usize::try_from(length)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&end| end <= records.len())
            .ok_or_else(|| malformed(format!("record {i} has length {length} past the batch")))?;
        let record = &records[..end];
        let mut p = pos + 1; // attributes
        varint(record, &mut p)?; // timestamp delta
        varint(record, &mut p)?; // offset delta
        for _ in 0..2 {
            // key, then value: -1 is null
            let len = varint(record, &mut p)?;
            if len > 0 {
                p = p.saturating_add(len as usize);
            }
        }
        let headers = varint(record, &mut p)?;
        let room = end.saturating_sub(p) / MIN_HEADER_BYTES;
        if headers < 0 || headers as u64 > room as u64 {
            return Err(malformed(format!(
                "record {i} claims {headers} headers in {} bytes",
                end.saturating_sub(p)
            )));
        }
        pos = end;
    }
    Ok(())
}

/// The records of one batch and what they took once decompressed.
#[derive(Debug)]
pub struct DecodedBatch {
    pub set: RecordSet,
    /// Size of the records section after decompression (its stored size if uncompressed), so
    /// a caller decoding many batches can bound their sum too.
    pub records_bytes: usize,
}

/// Decode the one whole batch at the start of `batch` (advancing it past the batch),
/// decompressing its records to at most `max_decompressed_bytes`.
pub fn decode_batch(
    batch: &mut Bytes,
    max_decompressed_bytes: usize,
) -> Result<DecodedBatch, RecordsError> {
    let header = BatchHeader::parse(batch).map_err(|e| RecordsError::Malformed(e.to_string()))?;
    let records_count = header.records_count;
    let records_bytes = std::cell::Cell::new(0usize);
    let bounded = |records: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        let out = decompress(compression, records, max_decompressed_bytes)?;
        check_counts(&out, records_count)?;
        records_bytes.set(out.len());
        Ok(out)
    };
    let set =
        RecordBatchDecoder::decode_with_custom_compression(batch, Some(bounded)).map_err(|e| {
            match e.downcast::<RecordsError>() {
                Ok(e) => e,
                Err(e) => RecordsError::Malformed(e.to_string()),
            }
        })?;
    Ok(DecodedBatch {
        set,
        records_bytes: records_bytes.get(),
    })
}

#[doc(hidden)]
pub mod bombs;
#[cfg(test)]
mod tests;
