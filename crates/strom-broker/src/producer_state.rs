//! Idempotent-producer state of one partition: per producer id, its epoch and the last five
//! batches it wrote, so a retried batch is acknowledged with its original offsets instead of
//! being written twice, and a gap in sequence numbers is refused.
//!
//! The state survives restarts through snapshots (`producer_snapshot`): it is loaded from the
//! newest snapshot and rebuilt forward from the batch headers written after it. It is bounded:
//! a producer that wrote nothing for `producer.id.expiration.ms` is forgotten (as in Kafka),
//! and so is the least recently active one when a partition already holds
//! `producer.state.max.producers.per.partition` of them, so batch headers with arbitrary
//! producer ids cannot grow memory without limit. A forgotten producer is treated as Kafka
//! treats an unknown one: its next batch is accepted whatever its sequence.
//!
//! It also knows each producer's open transaction in the partition (KIP-98): the offset of its
//! first transactional batch here, until a marker ends it. The smallest of those is the
//! partition's first unstable offset, which bounds the last stable offset (LSO). Open
//! transactions are kept apart from the producer entries, so expiring or evicting an idle
//! producer never moves the LSO.
//!
//! Snapshot encoding (big-endian), the body of a `<offset>.snapshot` file:
//! ```text
//! version u8 (=2) | count u32 | count x producer | txns u32 | txns x open txn
//!   | crc32c u32 of everything before it
//! producer: producer_id i64 | epoch i16 | last_append_ms i64 | batches u8 (<= 5) | batches x
//!           (first_seq i32 | last_seq i32 | base_offset i64 | last_offset i64 | timestamp i64)
//! open txn: producer_id i64 | first_offset i64
//! ```
//! Version 1 (written before transactions) is the same without the open-transaction part.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use strom_log::{AbortedTxn, BatchHeader};

/// Kafka keeps the last five batches per producer; clients bound in-flight requests to five
/// when idempotence is on for the same reason.
pub const BATCHES_REMEMBERED: usize = 5;

/// Default of `producer.state.max.producers.per.partition`.
pub const MAX_PRODUCERS_DEFAULT: usize = 10_000;

const SNAPSHOT_VERSION: u8 = 2;
const SNAPSHOT_VERSION_NO_TXNS: u8 = 1;
const BATCH_RECORD_BYTES: usize = 4 + 4 + 8 + 8 + 8;
const PRODUCER_FIXED_BYTES: usize = 8 + 2 + 8 + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchRecord {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
    /// The batch's max timestamp as stored; Kafka answers a duplicate with it.
    timestamp: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    /// When this producer last wrote here (the broker's clock, or a batch timestamp when the
    /// state was rebuilt from the log), for expiration.
    last_append_ms: i64,
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

#[derive(Debug, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    max_producers: usize,
    /// Open transactions: producer id -> offset of its first transactional batch here.
    open_txns: BTreeMap<i64, i64>,
    /// The same, ordered by first offset, for the first unstable offset in O(log n).
    unstable: BTreeSet<(i64, i64)>,
}

/// One producer as DescribeProducers shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerView {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub current_txn_start_offset: i64,
}

impl Default for ProducerStates {
    fn default() -> Self {
        ProducerStates::new(MAX_PRODUCERS_DEFAULT)
    }
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
    pub fn new(max_producers: usize) -> ProducerStates {
        ProducerStates {
            producers: HashMap::new(),
            max_producers: max_producers.max(1),
            open_txns: BTreeMap::new(),
            unstable: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

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

    /// Records a batch that was appended (its header carries the assigned base offset) at
    /// `now_ms`. Rebuilding from the log passes the batch's own timestamp.
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return;
        }
        if h.is_transactional() && !self.open_txns.contains_key(&h.producer_id) {
            self.open_txns.insert(h.producer_id, h.base_offset);
            self.unstable.insert((h.base_offset, h.producer_id));
        }
        if !self.producers.contains_key(&h.producer_id)
            && self.producers.len() >= self.max_producers
        {
            self.evict_least_recent();
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
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

    /// A transaction marker written at `marker_offset` ends the producer's open transaction
    /// (if any). A marker of a newer epoch (a fenced or timed-out transaction) makes that
    /// epoch current, as Kafka's `appendEndTxnMarker` does. An abort returns its
    /// aborted-transaction index entry.
    pub fn end_txn(
        &mut self,
        producer_id: i64,
        epoch: i16,
        marker_offset: i64,
        commit: bool,
    ) -> Option<AbortedTxn> {
        let first = self.open_txns.remove(&producer_id);
        if let Some(first) = first {
            self.unstable.remove(&(first, producer_id));
        }
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            if epoch > entry.epoch {
                entry.epoch = epoch;
                entry.batches.clear();
            }
        }
        (!commit).then(|| AbortedTxn {
            producer_id,
            first_offset: first.unwrap_or(marker_offset),
            last_offset: marker_offset,
            last_stable_offset: self.first_unstable_offset().unwrap_or(marker_offset + 1),
        })
    }

    /// The first offset of the oldest open transaction: the LSO can not pass it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.unstable.first().map(|&(offset, _)| offset)
    }

    /// Whether the producer has an open transaction in this partition.
    pub fn in_txn(&self, producer_id: i64) -> bool {
        self.open_txns.contains_key(&producer_id)
    }

    /// Every known producer, for DescribeProducers.
    pub fn views(&self) -> Vec<ProducerView> {
        let mut out: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(&id, e)| ProducerView {
                producer_id: id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.batches.back().map_or(-1, |b| b.timestamp),
                current_txn_start_offset: self.open_txns.get(&id).copied().unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|v| v.producer_id);
        out
    }

    /// One O(n) pass, only when the cap is reached by a new producer id.
    fn evict_least_recent(&mut self) {
        if let Some(&id) = self
            .producers
            .iter()
            .min_by_key(|(id, e)| (e.last_append_ms, **id))
            .map(|(id, _)| id)
        {
            self.producers.remove(&id);
        }
    }

    /// Forgets producers that wrote nothing for `expiration_ms` (`producer.id.expiration.ms`).
    /// Returns how many were removed.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_append_ms) < expiration_ms);
        before - self.producers.len()
    }

    /// Highest epoch seen for a producer id, so InitProducerId can bump past it.
    pub fn epoch_of(&self, producer_id: i64) -> Option<i16> {
        self.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// The snapshot encoding (see the module docs), producers in id order.
    pub fn encode(&self) -> Vec<u8> {
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        let mut out = Vec::with_capacity(
            9 + ids.len() * (PRODUCER_FIXED_BYTES + BATCHES_REMEMBERED * BATCH_RECORD_BYTES),
        );
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
        for id in ids {
            let e = &self.producers[id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_append_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
                out.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(&(self.open_txns.len() as u32).to_be_bytes());
        for (id, first) in &self.open_txns {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&first.to_be_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot; `None` for anything damaged or of another version.
    pub fn decode(bytes: &[u8], max_producers: usize) -> Option<ProducerStates> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader { bytes: body, at: 0 };
        let version = r.take::<1>()?[0];
        if version != SNAPSHOT_VERSION && version != SNAPSHOT_VERSION_NO_TXNS {
            return None;
        }
        let count = u32::from_be_bytes(r.take()?) as usize;
        // Each producer needs at least its fixed part: bounds the count before any work.
        if count > body.len() / PRODUCER_FIXED_BYTES {
            return None;
        }
        let mut states = ProducerStates::new(max_producers);
        for _ in 0..count {
            let id = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let last_append_ms = i64::from_be_bytes(r.take()?);
            let n = r.take::<1>()?[0] as usize;
            if n > BATCHES_REMEMBERED {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchRecord {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    base_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                    timestamp: i64::from_be_bytes(r.take()?),
                });
            }
            states.producers.insert(
                id,
                ProducerEntry {
                    epoch,
                    last_append_ms,
                    batches,
                },
            );
        }
        if version == SNAPSHOT_VERSION {
            let txns = u32::from_be_bytes(r.take()?) as usize;
            if txns > body.len() / 16 {
                return None;
            }
            for _ in 0..txns {
                let id = i64::from_be_bytes(r.take()?);
                let first = i64::from_be_bytes(r.take()?);
                states.open_txns.insert(id, first);
                states.unstable.insert((first, id));
            }
        }
        (r.at == body.len()).then_some(states)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let out = self.bytes.get(self.at..self.at + N)?.try_into().ok()?;
        self.at += N;
        Some(out)
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
            s.record(&h, 0);
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
            s.record(&header(1, 0, i, 1, i as i64), 0);
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
        s.record(&header(1, 2, 0, 1, 0), 0);
        assert_eq!(s.check(&header(1, 1, 1, 1, -1)), SequenceCheck::StaleEpoch);
        assert_eq!(s.check(&header(1, 3, 5, 1, -1)), SequenceCheck::OutOfOrder);
        assert_eq!(s.check(&header(1, 3, 0, 1, -1)), SequenceCheck::Append);
        assert_eq!(s.check(&header(99, 0, 42, 1, -1)), SequenceCheck::Append);
        assert_eq!(s.check(&header(-1, -1, -1, 1, -1)), SequenceCheck::Append);
    }

    #[test]
    fn snapshots_roundtrip_and_refuse_damage() {
        let mut s = ProducerStates::new(100);
        for pid in 0..7 {
            for seq in 0..(pid as i32 + 1) {
                s.record(
                    &header(pid, 1, seq * 2, 2, pid * 100 + seq as i64 * 2),
                    50 + pid,
                );
            }
        }
        let bytes = s.encode();
        assert_eq!(ProducerStates::decode(&bytes, 100), Some(s));
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x10;
            assert_eq!(ProducerStates::decode(&flipped, 100), None, "flip at {i}");
        }
        assert_eq!(ProducerStates::decode(&bytes[..bytes.len() - 1], 100), None);
        assert_eq!(ProducerStates::decode(&[], 100), None);
    }

    #[test]
    fn open_transactions_bound_the_lso_and_survive_snapshots_and_eviction() {
        let mut s = ProducerStates::new(1);
        let txn = |pid, seq, offset| BatchHeader {
            attributes: strom_protocol::record_batch::ATTR_TRANSACTIONAL,
            ..header(pid, 0, seq, 2, offset)
        };
        s.record(&txn(1, 0, 10), 0);
        s.record(&txn(1, 2, 12), 0);
        s.record(&txn(2, 0, 14), 0);
        assert_eq!(s.first_unstable_offset(), Some(10));
        let decoded = ProducerStates::decode(&s.encode(), 1).unwrap();
        assert_eq!(decoded, s);
        // Producer 1 was evicted by producer 2 (cap 1), but its transaction is still open.
        assert_eq!(s.epoch_of(1), None);
        assert!(s.in_txn(1));
        let aborted = s.end_txn(1, 0, 16, false).unwrap();
        assert_eq!(
            aborted,
            AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 16,
                last_stable_offset: 14
            }
        );
        assert_eq!(s.end_txn(2, 0, 17, true), None);
        assert_eq!(s.first_unstable_offset(), None);
    }

    #[test]
    fn version_1_snapshots_still_load() {
        let mut s = ProducerStates::new(10);
        s.record(&header(5, 0, 0, 1, 0), 0);
        let mut v1 = s.encode();
        v1.truncate(v1.len() - 8); // crc and the empty open-transaction count
        v1[0] = 1;
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(ProducerStates::decode(&v1, 10), Some(s));
    }

    #[test]
    fn idle_producers_expire_and_the_count_is_capped() {
        let mut s = ProducerStates::new(3);
        for pid in 0..3 {
            s.record(&header(pid, 0, 0, 1, pid), 1_000 + pid);
        }
        // A fourth producer evicts the least recently active one (producer 0).
        s.record(&header(9, 0, 0, 1, 9), 2_000);
        assert_eq!(s.len(), 3);
        assert_eq!(s.epoch_of(0), None);
        assert!(s.epoch_of(1).is_some() && s.epoch_of(9).is_some());
        assert_eq!(
            s.expire(2_500, 1_000),
            2,
            "producers 1 and 2 are older than a second"
        );
        assert_eq!(s.epoch_of(9), Some(0));
        // A forgotten producer is unknown: any sequence is accepted, as Kafka does.
        assert_eq!(s.check(&header(1, 0, 77, 1, -1)), SequenceCheck::Append);
    }
}
