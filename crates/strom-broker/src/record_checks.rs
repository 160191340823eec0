//! What Kafka's LogValidator does record by record when a topic asks for it: keys on
//! compacted topics, CreateTime timestamps inside `message.timestamp.before.max.ms` /
//! `after.max.ms`, and a `compression.type` other than `producer` (the batch is rewritten in
//! the topic's codec). A topic that asks for none of these never reaches this module: its
//! batches are stored exactly as the client sent them, without a look inside.

use bytes::Bytes;
use strom_log::BatchHeader;
use strom_protocol::kafka_protocol::records::Compression;
use strom_protocol::records::{decode_batch, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES};

use crate::append::{AppendError, AppendOptions, TimestampWindow};
use crate::partition::Partition;

/// Kafka's `RecordBatch.NO_TIMESTAMP`: a record without one is never out of range.
const NO_TIMESTAMP: i64 = -1;

/// True when `options` ask for a look at the records themselves.
pub(crate) fn records_checked(options: &AppendOptions) -> bool {
    options.keys_required || options.timestamp_window.is_some()
}

/// Check every record of `records` (whole batches, described by `headers`) as the topic's
/// options ask; all refused records are reported, by their index in their batch.
pub(crate) fn check_records(
    records: &Bytes,
    headers: &[BatchHeader],
    options: &AppendOptions,
    partition: &Partition,
    now_ms: i64,
) -> Result<(), AppendError> {
    let mut rest = records.clone();
    let mut key_errors = Vec::new();
    let mut timestamp_errors = Vec::new();
    for h in headers {
        let mut batch = rest.split_to(h.total_size());
        if h.is_control() {
            continue;
        }
        let decoded = decode_batch(&mut batch, DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES)
            .map_err(|e| AppendError::RecordErrors(vec![(0, e.to_string())]))?;
        for (i, record) in decoded.set.records.iter().enumerate() {
            let index = i as i32;
            if options.keys_required && record.key.is_none() {
                key_errors.push((
                    index,
                    format!(
                        "Compacted topic cannot accept message without key in topic partition {}-{}.",
                        partition.topic, partition.index
                    ),
                ));
            } else if let Some(window) = options.timestamp_window {
                if let Some(message) = timestamp_error(record.timestamp, i as i64, window, now_ms) {
                    timestamp_errors.push((index, message));
                }
            }
        }
    }
    // As LogValidator: any timestamp error makes the whole answer INVALID_TIMESTAMP, with
    // every refused record listed.
    if !timestamp_errors.is_empty() {
        key_errors.extend(timestamp_errors);
        key_errors.sort_by_key(|(i, _)| *i);
        return Err(AppendError::InvalidTimestamps(key_errors));
    }
    if key_errors.is_empty() {
        Ok(())
    } else {
        Err(AppendError::RecordErrors(key_errors))
    }
}

/// Kafka's wording for a CreateTime timestamp outside the topic's window; `offset` is the
/// record's offset inside the batch, as the producer numbered it.
fn timestamp_error(
    timestamp: i64,
    offset: i64,
    window: TimestampWindow,
    now_ms: i64,
) -> Option<String> {
    if timestamp == NO_TIMESTAMP {
        return None;
    }
    let behind = now_ms.saturating_sub(timestamp);
    if behind > window.before_max_ms || behind.saturating_neg() > window.after_max_ms {
        Some(format!(
            "Timestamp {timestamp} of message with offset {offset} is out of range. The timestamp should be within [{}, {}]",
            now_ms.saturating_sub(window.before_max_ms),
            now_ms.saturating_add(window.after_max_ms)
        ))
    } else {
        None
    }
}

/// The payload with each batch in `target`'s codec (control batches as they are, as Kafka
/// leaves markers uncompressed), or the payload itself when every batch already is.
pub(crate) fn recompress(
    records: Bytes,
    headers: &[BatchHeader],
    target: Compression,
) -> Result<Bytes, AppendError> {
    if headers
        .iter()
        .all(|h| h.is_control() || i16::from(h.compression()) == target_id(target))
    {
        return Ok(records);
    }
    let mut rest = records;
    let mut out = bytes::BytesMut::new();
    for h in headers {
        let batch = rest.split_to(h.total_size());
        if h.is_control() {
            out.extend_from_slice(&batch);
            continue;
        }
        let rewritten = strom_protocol::recompress::recompress(
            &batch,
            target,
            DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
        )
        .map_err(|e| AppendError::RecordErrors(vec![(0, e.to_string())]))?;
        out.extend_from_slice(&rewritten);
    }
    Ok(out.freeze())
}

/// The attributes codec bits of `target`, to compare with a stored batch's.
fn target_id(target: Compression) -> i16 {
    match target {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: TimestampWindow = TimestampWindow {
        before_max_ms: 1_000,
        after_max_ms: 500,
    };

    #[test]
    fn the_window_is_inclusive_at_both_ends_as_kafka_compares() {
        let now = 10_000;
        assert_eq!(timestamp_error(9_000, 0, WINDOW, now), None);
        assert_eq!(timestamp_error(10_500, 0, WINDOW, now), None);
        assert!(timestamp_error(8_999, 0, WINDOW, now).is_some());
        assert!(timestamp_error(10_501, 0, WINDOW, now).is_some());
        assert_eq!(timestamp_error(NO_TIMESTAMP, 0, WINDOW, now), None);
    }

    #[test]
    fn the_message_names_the_timestamp_offset_and_window() {
        let m = timestamp_error(1, 3, WINDOW, 10_000).unwrap();
        assert_eq!(
            m,
            "Timestamp 1 of message with offset 3 is out of range. The timestamp should be within [9000, 10500]"
        );
    }

    #[test]
    fn extreme_windows_do_not_overflow() {
        let wide = TimestampWindow {
            before_max_ms: i64::MAX,
            after_max_ms: i64::MAX,
        };
        assert_eq!(timestamp_error(i64::MIN, 0, wide, 10_000), None);
        assert_eq!(timestamp_error(i64::MAX, 0, wide, 10_000), None);
    }
}
