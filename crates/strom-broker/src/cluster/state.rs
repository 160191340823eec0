//! A partition's replication state on this node, kept beside its log under the partition's
//! own lock (only in cluster mode: a single node has none, and its high watermark is what
//! it always was).
//!
//! The leader computes the high watermark as Kafka does: the smallest log end among the ISR,
//! its own counted as its durable end (flushed offset, unless `log.fsync=never`). It never
//! moves back: a member that has not fetched yet since this node became leader counts as the
//! high watermark this node knew then.

use std::collections::HashMap;
use std::time::Instant;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
pub struct Follower {
    /// Its log end: the offset it fetched from last.
    pub log_end: i64,
    /// When it last had everything the leader had (Kafka's `lastCaughtUpTimeMs`).
    pub caught_up_at: Instant,
    /// The leader's log end and the time at its previous fetch.
    last_fetch_leader_end: i64,
    last_fetch_at: Instant,
}

#[derive(Debug, Clone)]
pub struct ReplicaState {
    /// This node's id.
    pub me: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    /// Leader: what each follower fetched.
    pub followers: HashMap<i32, Follower>,
    /// Leader: the high watermark known when it took over (the floor it never goes under).
    /// Follower: the high watermark the leader last reported.
    pub high_watermark: i64,
    /// When this node took this role (a follower that never fetched counts as caught up then).
    pub since: Instant,
}

impl ReplicaState {
    pub fn is_leader(&self) -> bool {
        self.leader == self.me
    }

    /// The high watermark given this node's durable (or, with `log.fsync=never`, written) log
    /// end `local_end`.
    pub fn high_watermark(&self, local_end: i64) -> i64 {
        if !self.is_leader() {
            return self.high_watermark.min(local_end);
        }
        let mut hw = local_end;
        for r in self.isr.iter().filter(|r| **r != self.me) {
            let end = self
                .followers
                .get(r)
                .map_or(self.high_watermark, |f| f.log_end);
            hw = hw.min(end);
        }
        hw.max(self.high_watermark.min(local_end))
    }

    /// When `replica` last had everything this leader had.
    pub fn caught_up_at(&self, replica: i32) -> Instant {
        self.followers
            .get(&replica)
            .map_or(self.since, |f| f.caught_up_at.max(self.since))
    }

    /// A follower fetched from `offset` while the leader's log ended at `leader_end`.
    pub fn record_fetch(&mut self, replica: i32, offset: i64, leader_end: i64, now: Instant) {
        let f = self.followers.entry(replica).or_insert(Follower {
            log_end: offset,
            caught_up_at: now,
            last_fetch_leader_end: leader_end,
            last_fetch_at: now,
        });
        f.log_end = offset;
        if offset >= leader_end {
            f.caught_up_at = now;
        } else if offset >= f.last_fetch_leader_end {
            f.caught_up_at = f.caught_up_at.max(f.last_fetch_at);
        }
        f.last_fetch_leader_end = leader_end;
        f.last_fetch_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader() -> ReplicaState {
        ReplicaState {
            me: 1,
            leader: 1,
            leader_epoch: 3,
            isr: vec![1, 2, 3],
            replicas: vec![1, 2, 3],
            followers: HashMap::new(),
            high_watermark: 10,
            since: Instant::now(),
        }
    }

    #[test]
    fn the_high_watermark_is_the_smallest_isr_end_and_never_moves_back() {
        let mut r = leader();
        let now = Instant::now();
        // Nobody fetched yet: the floor.
        assert_eq!(r.high_watermark(20), 10);
        r.record_fetch(2, 18, 20, now);
        assert_eq!(r.high_watermark(20), 10, "follower 3 has not fetched");
        r.record_fetch(3, 15, 20, now);
        assert_eq!(r.high_watermark(20), 15);
        assert_eq!(
            r.high_watermark(12),
            12,
            "the leader's own durable end counts"
        );
        // A follower out of the ISR no longer holds it back.
        r.isr = vec![1, 2];
        assert_eq!(r.high_watermark(20), 18);
    }
}
