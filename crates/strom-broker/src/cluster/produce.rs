//! The produce path's cluster checks: only the leader appends, acks=all is refused below
//! `min.insync.replicas`, and an acks=all answer waits until the high watermark (the smallest
//! log end among the ISR) covers the append.

use std::pin::pin;

use strom_protocol::ResponseError as E;

use crate::partition::Partition;

/// The leader epoch to stamp, or the error to answer with before anything is appended
/// (Kafka's `Partition.appendRecordsToLeader` order: leadership, then the ISR size).
pub fn check_leader(partition: &Partition, acks: i16, min_insync: i32) -> Result<i32, E> {
    let state = partition.lock().map_err(|_| E::KafkaStorageError)?;
    let Some(r) = &state.replica else {
        return Err(E::NotLeaderOrFollower);
    };
    if !r.is_leader() {
        return Err(E::NotLeaderOrFollower);
    }
    if acks == -1 && (r.isr.len() as i32) < min_insync {
        return Err(E::NotEnoughReplicas);
    }
    Ok(r.leader_epoch)
}

/// Waits until everything below `end` is replicated to the ISR, while this node still leads
/// the partition in `epoch`.
pub async fn wait_replicated(
    partition: &Partition,
    end: i64,
    epoch: i32,
    min_insync: i32,
    deadline: tokio::time::Instant,
) -> Result<(), E> {
    loop {
        let mut notified = pin!(partition.appended.notified());
        notified.as_mut().enable();
        {
            let state = partition.lock().map_err(|_| E::KafkaStorageError)?;
            let Some(r) = &state.replica else {
                return Err(E::NotLeaderOrFollower);
            };
            if !r.is_leader() || r.leader_epoch != epoch {
                // Deposed before the ISR had it: the new leader may or may not have it; the
                // client retries (idempotence makes that safe).
                return Err(E::NotLeaderOrFollower);
            }
            if state.high_watermark() >= end {
                return Ok(());
            }
            if (r.isr.len() as i32) < min_insync {
                return Err(E::NotEnoughReplicasAfterAppend);
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Err(E::RequestTimedOut);
        }
    }
}

/// The whole batches of `bytes` (as read from a log) that end below `end`.
pub fn below_offset(bytes: bytes::Bytes, end: i64) -> bytes::Bytes {
    use strom_protocol::record_batch::{BATCH_LENGTH_AT, LAST_OFFSET_DELTA_AT, LOG_OVERHEAD};
    let mut pos = 0usize;
    while bytes.len() - pos >= LAST_OFFSET_DELTA_AT + 4 {
        let at = |i: usize, n: usize| &bytes[pos + i..pos + i + n];
        let base = i64::from_be_bytes(at(0, 8).try_into().expect("8 bytes"));
        let length = i32::from_be_bytes(at(BATCH_LENGTH_AT, 4).try_into().expect("4 bytes"));
        let delta = i32::from_be_bytes(at(LAST_OFFSET_DELTA_AT, 4).try_into().expect("4 bytes"));
        let size = LOG_OVERHEAD + length.max(0) as usize;
        if base + i64::from(delta) >= end || pos + size > bytes.len() {
            break;
        }
        pos += size;
    }
    bytes.slice(..pos)
}

#[cfg(test)]
mod tests {
    use super::below_offset;
    use bytes::{BufMut, Bytes, BytesMut};

    /// A fake batch: only the header fields `below_offset` reads are meaningful.
    fn batch(base: i64, records: i32, out: &mut BytesMut) {
        let length = 49 + 10; // a header past the length field, plus a body
        out.put_i64(base);
        out.put_i32(length);
        out.put_i32(0); // leader epoch
        out.put_u8(2); // magic
        out.put_u32(0); // crc
        out.put_i16(0); // attributes
        out.put_i32(records - 1); // last offset delta
        out.put_bytes(0, length as usize - 15);
    }

    #[test]
    fn whole_batches_below_the_high_watermark_stay_and_the_rest_goes() {
        let mut buf = BytesMut::new();
        batch(0, 3, &mut buf);
        let one = buf.len();
        batch(3, 2, &mut buf);
        let bytes: Bytes = buf.freeze();
        assert_eq!(below_offset(bytes.clone(), 5).len(), bytes.len());
        assert_eq!(below_offset(bytes.clone(), 4).len(), one);
        assert_eq!(below_offset(bytes.clone(), 3).len(), one);
        assert!(below_offset(bytes.clone(), 2).is_empty());
        // A partial last batch (a cut at the byte budget) is dropped.
        assert_eq!(below_offset(bytes.slice(..bytes.len() - 1), 5).len(), one);
    }
}
