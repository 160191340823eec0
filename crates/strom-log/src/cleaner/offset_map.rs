//! The cleaner's key map: a 128-bit hash of each key to the offset of its newest record, with a
//! fixed upper bound on entries (Kafka's `SkimpyOffsetMap` sized by
//! `log.cleaner.dedupe.buffer.size`). When it is full the cleaner stops reading the dirty
//! section at a batch boundary and cleans only up to there; the rest waits for the next pass.
//!
//! Two different keys with the same 128-bit hash would make the older one's newest record look
//! superseded (Kafka accepts the same risk with MD5): at 2^-128 per pair it is not a concern.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Memory one entry takes, counted generously: the 16-byte hash, the 8-byte offset, and the
/// hash table's own overhead (control byte, alignment padding, spare slots).
pub const ENTRY_BYTES: usize = 40;

/// Kafka's `log.cleaner.io.buffer.load.factor`: fill the map to this share of its room.
const LOAD_FACTOR: f64 = 0.9;

#[derive(Debug)]
pub(crate) struct OffsetMap {
    offsets: HashMap<u128, i64>,
    max_entries: usize,
}

impl OffsetMap {
    /// A map that never holds more than `budget_bytes` worth of entries (at least one).
    pub fn with_budget(budget_bytes: usize) -> OffsetMap {
        let max_entries = ((budget_bytes / ENTRY_BYTES) as f64 * LOAD_FACTOR) as usize;
        OffsetMap {
            offsets: HashMap::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// Whether `more` new keys would still fit.
    pub fn has_room_for(&self, more: usize) -> bool {
        self.offsets.len().saturating_add(more) <= self.max_entries
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn put(&mut self, key: &[u8], offset: i64) {
        let slot = self.offsets.entry(key_hash(key)).or_insert(offset);
        *slot = (*slot).max(offset);
    }

    /// The newest offset seen for `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.offsets.get(&key_hash(key)).copied()
    }
}

/// Two SipHash runs with different prefixes: 128 bits, stable within a process (the map never
/// leaves memory).
fn key_hash(key: &[u8]) -> u128 {
    let half = |prefix: u8| {
        let mut h = DefaultHasher::new();
        prefix.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_offset_and_respects_its_budget() {
        let mut map = OffsetMap::with_budget(10 * ENTRY_BYTES);
        assert_eq!(map.max_entries, 9);
        map.put(b"a", 5);
        map.put(b"a", 3);
        map.put(b"b", 7);
        assert_eq!(map.get(b"a"), Some(5));
        assert_eq!(map.get(b"c"), None);
        assert!(map.has_room_for(7) && !map.has_room_for(8));
        assert_eq!(map.len(), 2);
    }
}
