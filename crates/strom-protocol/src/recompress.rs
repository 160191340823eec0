//! Rewriting one record batch in another codec, as Kafka does for a topic whose
//! `compression.type` is not `producer`.
//!
//! The records section of a v2 batch is the same bytes whatever the codec: only the envelope
//! changes. So the records are decompressed (bounded, as every decode here) and compressed
//! again without being parsed: keys, values, repeated header names, offset and timestamp
//! deltas all stay byte for byte as the producer wrote them. The 61-byte header keeps every
//! field (producer id, epoch, sequence, timestamps) except the codec bits, the batch length
//! and the CRC, which cover the new bytes.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use kafka_protocol::records::Compression;

use crate::record_batch::{
    compute_crc, BatchHeader, ATTRIBUTES_AT, ATTR_COMPRESSION_MASK, BATCH_LENGTH_AT, CRC_AT,
    LOG_OVERHEAD,
};
use crate::records::{decompress, RecordsError};

/// The codec a batch's attributes name (bits 0-2), None for an id Kafka does not define.
pub fn compression_of(attributes: i16) -> Option<Compression> {
    Some(match attributes & ATTR_COMPRESSION_MASK {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        _ => return None,
    })
}

fn codec_id(compression: Compression) -> i16 {
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// The one whole batch `batch` rewritten with `target`'s codec, or the batch itself when it
/// already uses it. Records decompress to at most `max_decompressed_bytes`.
pub fn recompress(
    batch: &Bytes,
    target: Compression,
    max_decompressed_bytes: usize,
) -> Result<Bytes, RecordsError> {
    let header = BatchHeader::parse(batch).map_err(|e| RecordsError::Malformed(e.to_string()))?;
    let end = header.total_size();
    if end > batch.len() {
        return Err(RecordsError::Malformed(format!(
            "batch of {end} bytes in {} bytes",
            batch.len()
        )));
    }
    let source = compression_of(header.attributes).ok_or_else(|| {
        RecordsError::Malformed(format!(
            "unknown compression codec id {}",
            header.attributes & ATTR_COMPRESSION_MASK
        ))
    })?;
    if source == target {
        return Ok(batch.slice(..end));
    }
    let raw = decompress(
        source,
        &batch.slice(BatchHeader::SIZE..end),
        max_decompressed_bytes,
    )?;
    let mut out = BytesMut::with_capacity(BatchHeader::SIZE + raw.len());
    out.put_slice(&batch[..BatchHeader::SIZE]);
    compress_records(target, &raw, &mut out)?;
    let attributes = (header.attributes & !ATTR_COMPRESSION_MASK) | codec_id(target);
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    let length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| RecordsError::Malformed("the recompressed batch is over 2 GiB".to_string()))?;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Append the (uncompressed) records section `raw` to `out`, compressed with `target`.
pub fn compress_records(
    target: Compression,
    raw: &[u8],
    out: &mut BytesMut,
) -> Result<(), RecordsError> {
    let copy = |b: &mut BytesMut| {
        b.put_slice(raw);
        Ok(())
    };
    let compressed = match target {
        Compression::None => {
            out.put_slice(raw);
            Ok(())
        }
        Compression::Gzip => codec::Gzip::compress(out, copy),
        Compression::Snappy => codec::Snappy::compress(out, copy),
        Compression::Lz4 => codec::Lz4::compress(out, copy),
        Compression::Zstd => codec::Zstd::compress(out, copy),
    };
    compressed.map_err(|e| RecordsError::Decompress {
        codec: "target",
        reason: format!("cannot compress the records again: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{decode_batch, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES};
    use indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn batch(compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..50)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: 7,
                producer_epoch: 2,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: 100 + i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(format!("value-{i}-").repeat(20))),
                headers: IndexMap::from([(StrBytes::from_static_str("h"), Some(Bytes::from("v")))]),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn decoded(b: &Bytes) -> Vec<Record> {
        let mut b = b.clone();
        decode_batch(&mut b, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES)
            .unwrap()
            .set
            .records
    }

    #[test]
    fn every_codec_to_every_codec_keeps_the_records_and_the_header_fields() {
        for from in ALL {
            let original = batch(from);
            let before = BatchHeader::parse(&original).unwrap();
            for to in ALL {
                let rewritten = recompress(&original, to, 1 << 20).unwrap();
                let after = BatchHeader::parse(&rewritten).unwrap();
                after.check(0, rewritten.len()).unwrap();
                assert_eq!(compression_of(after.attributes), Some(to));
                assert_eq!(after.producer_id, before.producer_id);
                assert_eq!(after.base_sequence, before.base_sequence);
                assert_eq!(after.max_timestamp, before.max_timestamp);
                assert_eq!(after.records_count, before.records_count);
                assert_eq!(
                    decoded(&rewritten),
                    decoded(&original),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn records_over_the_limit_are_refused_not_expanded() {
        let original = batch(Compression::Zstd);
        let e = recompress(&original, Compression::Gzip, 100).unwrap_err();
        assert!(matches!(e, RecordsError::TooLarge { .. }), "{e}");
    }
}
