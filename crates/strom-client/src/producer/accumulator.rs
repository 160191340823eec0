//! The producer's batches: each partition's queue of batches waiting to be sent, how a record
//! joins the last batch or opens a new one, and how a batch answers its records' deliveries.
//!
//! A batch never grows past `batch_size` bytes of records, whatever the linger: the size is
//! checked as each record arrives, not when the batch is sent.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{PendingRecord, RecordMetadata};
use crate::batch::ProducerStamp;
use crate::error::{ClientError, Result};
use crate::records::OutgoingRecord;

/// Records of one partition sent together.
pub(crate) struct Batch {
    /// Increasing in creation order; `flush` waits for every batch up to an id.
    pub id: u64,
    /// The records, until the batch is encoded for its first send.
    pub records: Vec<OutgoingRecord>,
    pub timestamps: Vec<i64>,
    pub waiters: Vec<oneshot::Sender<Result<RecordMetadata>>>,
    /// Estimated bytes of the records (the batch-size bound).
    pub bytes: usize,
    /// Buffer bytes to give back when the batch is answered.
    pub buffer_bytes: usize,
    /// When its first record was accepted: the start of the linger and of the delivery timeout.
    pub created: Instant,
    /// The encoded batch once sent; retries send these same bytes.
    pub encoded: Option<Bytes>,
    /// Producer id, epoch and base sequence, once the batch was first sent (idempotence).
    pub stamp: Option<ProducerStamp>,
    /// How many times it was sent.
    pub attempts: u32,
}

impl Batch {
    pub fn new(id: u64, created: Instant) -> Batch {
        Batch {
            id,
            records: Vec::new(),
            timestamps: Vec::new(),
            waiters: Vec::new(),
            bytes: 0,
            buffer_bytes: 0,
            created,
            encoded: None,
            stamp: None,
            attempts: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether more records may join: not yet sent.
    pub fn open(&self) -> bool {
        self.encoded.is_none()
    }

    pub fn push(&mut self, p: PendingRecord) {
        self.bytes += p.record.size_estimate();
        self.buffer_bytes += p.buffer_bytes as usize;
        self.timestamps.push(p.record.timestamp);
        self.records.push(p.record);
        self.waiters.push(p.done);
    }

    /// Answers every record with its offset.
    pub fn succeed(self, topic: &str, partition: i32, base_offset: i64, append_time: i64) {
        for (i, (ts, waiter)) in self.timestamps.iter().zip(self.waiters).enumerate() {
            let _ = waiter.send(Ok(RecordMetadata {
                topic: topic.to_string(),
                partition,
                offset: if base_offset < 0 {
                    -1
                } else {
                    base_offset + i as i64
                },
                timestamp: if append_time >= 0 { append_time } else { *ts },
            }));
        }
    }

    /// Fails every record with `err`.
    pub fn fail(self, err: &ClientError) {
        for waiter in self.waiters {
            let _ = waiter.send(Err(err.duplicate()));
        }
    }
}

/// One partition's batches and its idempotence bookkeeping.
#[derive(Default)]
pub(crate) struct PartitionQueue {
    /// Batches waiting to be sent, oldest first. Batches put back for a retry come first,
    /// in sequence order; only the last batch may still take records.
    pub queue: VecDeque<Batch>,
    /// Batches of this partition in requests not yet answered.
    pub in_flight: usize,
    /// Batches that failed while others were still in flight, with their errors: they go
    /// back to the queue, in order, once every in-flight batch has come back.
    pub held: Vec<(Batch, ClientError)>,
    /// The next base sequence and the (producer id, epoch) the sequences belong to.
    pub next_sequence: i32,
    pub sequence_owner: Option<(i64, i16)>,
    /// No sends before this instant (retry backoff).
    pub backoff_until: Option<Instant>,
    /// Consecutive failed rounds, for the backoff.
    pub failures: u32,
}

impl PartitionQueue {
    /// Adds a record to the last batch if it is open and the record fits `batch_size`, else
    /// to a new batch. Returns the id of a new batch, if one was opened.
    pub fn append(
        &mut self,
        p: PendingRecord,
        batch_size: usize,
        next_id: &mut u64,
    ) -> Option<u64> {
        let size = p.record.size_estimate();
        if let Some(last) = self.queue.back_mut() {
            if last.open() && last.bytes + size <= batch_size {
                last.push(p);
                return None;
            }
        }
        let id = *next_id;
        *next_id += 1;
        let mut batch = Batch::new(id, p.accepted);
        batch.push(p);
        self.queue.push_back(batch);
        Some(id)
    }

    /// Whether a batch of this partition was sent and not yet answered: its sequence
    /// numbers are still in play.
    pub fn has_unresolved(&self) -> bool {
        self.in_flight > 0 || !self.held.is_empty() || self.queue.iter().any(|b| b.stamp.is_some())
    }

    /// The stamp for a batch sent for the first time: the partition's next sequence under
    /// the current producer id and epoch. A partition starts again at sequence 0 under a new
    /// epoch, but only once none of its batches under the old one are unresolved.
    pub fn stamp_next(&mut self, producer: (i64, i16), records: usize) -> ProducerStamp {
        if self.sequence_owner != Some(producer) && !self.has_unresolved() {
            self.sequence_owner = Some(producer);
            self.next_sequence = 0;
        }
        let (producer_id, epoch) = self.sequence_owner.unwrap_or(producer);
        let stamp = ProducerStamp {
            producer_id,
            epoch,
            base_sequence: self.next_sequence,
            transactional: false,
        };
        self.next_sequence = add_sequence(self.next_sequence, records);
        stamp
    }

    /// After an epoch bump: the partition's unsent and returned batches are numbered afresh
    /// under the new producer id and epoch when next sent.
    pub fn renumber(&mut self, producer: (i64, i16)) {
        debug_assert_eq!(self.in_flight, 0, "renumbering with batches in flight");
        self.sequence_owner = Some(producer);
        self.next_sequence = 0;
        for b in self.queue.iter_mut() {
            b.stamp = None;
        }
    }
}

/// Sequences wrap from `i32::MAX` to 0, as Kafka's do.
pub(crate) fn add_sequence(seq: i32, n: usize) -> i32 {
    ((i64::from(seq) + n as i64) % (i64::from(i32::MAX) + 1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(value: usize) -> (PendingRecord, oneshot::Receiver<Result<RecordMetadata>>) {
        let (done, rx) = oneshot::channel();
        (
            PendingRecord {
                topic: "t".into(),
                partition: 0,
                record: OutgoingRecord {
                    key: None,
                    value: Some(Bytes::from(vec![b'x'; value])),
                    headers: Vec::new(),
                    timestamp: 0,
                },
                done,
                buffer_bytes: value as u32,
                accepted: Instant::now(),
            },
            rx,
        )
    }

    #[test]
    fn batches_stop_at_batch_size_and_a_big_record_travels_alone() {
        let mut q = PartitionQueue::default();
        let mut next_id = 0;
        let mut receivers = Vec::new();
        for _ in 0..100 {
            let (p, rx) = pending(500);
            receivers.push(rx);
            q.append(p, 16 * 1024, &mut next_id);
        }
        let (p, _rx) = pending(40_000);
        q.append(p, 16 * 1024, &mut next_id);
        assert!(q.queue.iter().all(|b| b.bytes <= 16 * 1024 || b.len() == 1));
        assert_eq!(q.queue.iter().map(Batch::len).sum::<usize>(), 101);
        assert_eq!(q.queue.back().unwrap().len(), 1);
        assert!(q.queue.len() >= 4, "{} batches", q.queue.len());
    }

    #[test]
    fn sequences_restart_under_a_new_epoch_only_when_resolved_and_wrap() {
        let mut q = PartitionQueue::default();
        let s = q.stamp_next((7, 0), 3);
        assert_eq!((s.producer_id, s.epoch, s.base_sequence), (7, 0, 0));
        q.in_flight = 1;
        let s = q.stamp_next((7, 1), 2);
        assert_eq!(
            (s.epoch, s.base_sequence),
            (0, 3),
            "old epoch continues while unresolved"
        );
        q.in_flight = 0;
        let s = q.stamp_next((7, 1), 2);
        assert_eq!((s.epoch, s.base_sequence), (1, 0));
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
    }
}
