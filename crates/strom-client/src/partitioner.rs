//! Choosing a partition for a record.
//!
//! With a key, the partition is `to_positive(murmur2(key)) % partitions`, exactly as the Java
//! client's default partitioner computes it, so a key lands on the same partition whichever
//! client wrote it. Without a key, records go round-robin over the partitions.

use std::sync::atomic::{AtomicU32, Ordering};

pub use strom_protocol::partition_key::{murmur2, partition_for_key, to_positive};

/// Picks partitions for records: by key hash when there is a key, round-robin otherwise.
#[derive(Debug, Default)]
pub struct Partitioner {
    next: AtomicU32,
}

impl Partitioner {
    /// A partitioner whose round-robin starts at partition 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition for a record with this key in a topic with `partitions` partitions.
    pub fn partition(&self, key: Option<&[u8]>, partitions: i32) -> i32 {
        assert!(partitions > 0, "a topic has at least one partition");
        match key {
            Some(key) => partition_for_key(key, partitions),
            None => (self.next.fetch_add(1, Ordering::Relaxed) % partitions as u32) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from the Java client's own `UtilsTest.testMurmur2`.
    #[test]
    fn round_robin_without_key() {
        let p = Partitioner::new();
        let picks: Vec<i32> = (0..6).map(|_| p.partition(None, 3)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }
}
