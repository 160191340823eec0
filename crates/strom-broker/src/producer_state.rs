//! Idempotent-producer state of one partition: per producer id, its epoch and the last five
//! batches it wrote, so a retried batch is acknowledged with its original offsets instead of
//! being written twice, and a gap in sequence numbers is refused.
//!
//! The state is rebuilt at startup from the batch headers of the active segment (see
//! `Partition::open`), so it survives restarts for producers that wrote recently.

use std::collections::{HashMap, VecDeque};

use strom_log::BatchHeader;

/// Kafka keeps the last five batches per producer; clients bound in-flight requests to five
/// when idempotence is on for the same reason.
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchRecord {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
    /// The batch's max timestamp as stored; Kafka answers a duplicate with it.
    timestamp: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or next in sequence: append it.
    Append,
    /// A retry of a batch already written at these offsets: acknowledge without writing.
    Duplicate { base_offset: i64, timestamp: i64 },
    /// A gap or reordering: OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder,
    /// An older epoch than the producer's current one: INVALID_PRODUCER_EPOCH.
    StaleEpoch,
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX like Kafka's DefaultRecordBatch.incrementSequence.
    ((h.base_sequence as i64 + h.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

impl ProducerStates {
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return SequenceCheck::Append;
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Apache Kafka accepts any sequence from a producer it has no state for.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::StaleEpoch;
        }
        if h.producer_epoch > entry.epoch {
            // A bumped epoch restarts the sequence at zero.
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::OutOfOrder
            };
        }
        let last_seq = last_seq_of(h);
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate {
                base_offset: b.base_offset,
                timestamp: b.timestamp,
            };
        }
        match entry.batches.back() {
            Some(last) if next_seq(last.last_seq) != h.base_sequence => SequenceCheck::OutOfOrder,
            _ => SequenceCheck::Append,
        }
    }

    /// Records a batch that was appended (its header carries the assigned base offset).
    pub fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchRecord {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            base_offset: h.base_offset,
            last_offset: h.base_offset + h.last_offset_delta as i64,
            timestamp: h.max_timestamp,
        });
        while entry.batches.len() > BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
    }

    /// Highest epoch seen for a producer id, so InitProducerId can bump past it.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerStates::default();
        for (i, seq) in [0, 3, 6].into_iter().enumerate() {
            let h = header(7, 0, seq, 3, i as i64 * 3);
            assert_eq!(s.check(&h), SequenceCheck::Append);
            s.record(&h);
        }
        assert_eq!(
            s.check(&header(7, 0, 3, 3, -1)),
            SequenceCheck::Duplicate {
                base_offset: 3,
                timestamp: 0
            }
        );
        assert_eq!(s.check(&header(7, 0, 10, 1, -1)), SequenceCheck::OutOfOrder);
        assert_eq!(s.check(&header(7, 0, 9, 1, -1)), SequenceCheck::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1, i as i64));
        }
        assert_eq!(
            s.check(&header(1, 0, 2, 1, -1)),
            SequenceCheck::Duplicate {
                base_offset: 2,
                timestamp: 0
            }
        );
        assert_eq!(s.check(&header(1, 0, 1, 1, -1)), SequenceCheck::OutOfOrder);
    }

    #[test]
    fn epochs_fence_old_producers_and_reset_sequences() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 2, 0, 1, 0));
        assert_eq!(s.check(&header(1, 1, 1, 1, -1)), SequenceCheck::StaleEpoch);
        assert_eq!(s.check(&header(1, 3, 5, 1, -1)), SequenceCheck::OutOfOrder);
        assert_eq!(s.check(&header(1, 3, 0, 1, -1)), SequenceCheck::Append);
        assert_eq!(s.check(&header(99, 0, 42, 1, -1)), SequenceCheck::Append);
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)), SequenceCheck::Append);
    }
}
