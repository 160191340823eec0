//! The consumer's fetches, one in flight per broker at a time and all brokers at once, and the
//! records they brought that `poll` has not returned yet.
//!
//! Each fetch runs in a task of its own, so it goes on while the application handles what the
//! last `poll` returned (prefetching), and a slow broker does not hold up the others. As in
//! librdkafka, a partition is fetched ahead of what the application has read: a fetch names
//! every partition its broker leads that is not in another fetch in flight, each from its
//! fetch offset, the end of its buffered records (or its position when none are buffered).
//! The position moves only as `poll` returns records. When a fetch comes back, a partition's
//! records are kept only if the partition is still assigned, not paused, and its fetch offset
//! is still the one asked for: a seek, a pause or a rebalance while the fetch was out drops
//! the partition's buffer, and with it the fetch's records.
//!
//! Bounds: one response per broker holds at most `fetch_max_bytes` (`partition_max_bytes` per
//! partition), and no fetch is sent while the buffer holds `buffered_max_bytes` of records
//! (librdkafka's `queued.max.messages.kbytes`).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fetch::{self, Outcome};
use super::ConsumerConfig;
use crate::cluster::Client;
use crate::error::Result;
use crate::offsets::TopicPartition;
use crate::records::Message;

/// A fetch that came back from a broker.
pub(crate) struct Completed {
    pub broker: i32,
    /// The partitions asked for and the offset each was asked from.
    pub asked: Vec<(TopicPartition, i64)>,
    pub result: Result<Vec<(TopicPartition, Outcome)>>,
}

/// Records of one partition waiting for `poll`, in offset order.
struct PartitionBuffer {
    messages: VecDeque<Message>,
    /// The position once every buffered record is returned: past the last record and past
    /// the control batches and aborted records the fetch skipped after it.
    end: i64,
}

pub(crate) struct Fetcher {
    buffers: BTreeMap<TopicPartition, PartitionBuffer>,
    /// Bytes of keys, values and headers in `buffers`.
    buffered_bytes: usize,
    /// Per broker, the partitions of its fetch in flight.
    in_flight: BTreeMap<i32, Vec<TopicPartition>>,
    /// Where the next `take` starts, so every partition gets its turn.
    next_turn: Option<TopicPartition>,
    done_tx: mpsc::UnboundedSender<Completed>,
    done_rx: mpsc::UnboundedReceiver<Completed>,
}

impl Fetcher {
    pub fn new() -> Self {
        // Unbounded, yet at most one message per broker: a broker has one fetch in flight.
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Fetcher {
            buffers: BTreeMap::new(),
            buffered_bytes: 0,
            in_flight: BTreeMap::new(),
            next_turn: None,
            done_tx,
            done_rx,
        }
    }

    /// Whether a partition is in a fetch in flight, so must not be fetched again yet.
    pub fn is_in_flight(&self, tp: &TopicPartition) -> bool {
        self.in_flight.values().any(|parts| parts.contains(tp))
    }

    /// Where a partition's next fetch starts: after its buffered records, else (`None`) at
    /// its position.
    pub fn buffered_end(&self, tp: &TopicPartition) -> Option<i64> {
        self.buffers.get(tp).map(|b| b.end)
    }

    pub fn has_buffered(&self) -> bool {
        !self.buffers.is_empty()
    }

    /// Whether a broker may be sent a fetch: none in flight and room in the buffer.
    pub fn may_fetch_from(&self, broker: i32, buffered_max_bytes: usize) -> bool {
        !self.in_flight.contains_key(&broker) && self.buffered_bytes < buffered_max_bytes
    }

    /// Sends a fetch to `broker` in a task of its own; its answer comes from `next_completed`.
    pub fn send(
        &mut self,
        client: &Client,
        config: &Arc<ConsumerConfig>,
        broker: i32,
        asked: Vec<(TopicPartition, i64)>,
    ) {
        debug_assert!(!self.in_flight.contains_key(&broker));
        self.in_flight
            .insert(broker, asked.iter().map(|(tp, _)| tp.clone()).collect());
        let client = client.clone();
        let config = config.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = match client.broker_connection(broker).await {
                Ok(conn) => {
                    fetch::fetch(&conn, &config, &asked, config.fetch_max_wait_ms.max(0)).await
                }
                Err(e) => Err(e),
            };
            // The consumer may be gone; then nobody needs the answer.
            let _ = done.send(Completed {
                broker,
                asked,
                result,
            });
        });
    }

    /// The next fetch to come back, waiting until `deadline` at most.
    pub async fn next_completed(&mut self, deadline: Instant) -> Option<Completed> {
        if self.in_flight.is_empty() {
            return None;
        }
        let completed = tokio::select! {
            c = self.done_rx.recv() => c,
            _ = tokio::time::sleep_until(deadline) => None,
        }?;
        self.in_flight.remove(&completed.broker);
        Some(completed)
    }

    /// A fetch that came back without waiting, if any.
    pub fn try_completed(&mut self) -> Option<Completed> {
        let completed = self.done_rx.try_recv().ok()?;
        self.in_flight.remove(&completed.broker);
        Some(completed)
    }

    /// Appends a partition's fetched records to its buffer; `end` is where its position goes
    /// after them. Without records, only moves the end of a buffer there is.
    pub fn buffer(&mut self, tp: TopicPartition, messages: Vec<Message>, end: i64) {
        self.buffered_bytes += messages.iter().map(message_bytes).sum::<usize>();
        match self.buffers.get_mut(&tp) {
            Some(b) => {
                debug_assert!(messages.first().is_none_or(|m| m.offset >= b.end));
                b.messages.extend(messages);
                b.end = end;
            }
            None if messages.is_empty() => {}
            None => {
                self.buffers.insert(
                    tp,
                    PartitionBuffer {
                        messages: messages.into(),
                        end,
                    },
                );
            }
        }
    }

    /// Forgets the buffered records of some partitions; their positions stay where `poll`
    /// left them, so they are fetched again from there. Their fetches in flight are dropped
    /// when they come back (see the module's note).
    pub fn drop_partitions(&mut self, which: impl Fn(&TopicPartition) -> bool) {
        let mut freed = 0;
        self.buffers.retain(|tp, b| {
            if which(tp) {
                freed += b.messages.iter().map(message_bytes).sum::<usize>();
                false
            } else {
                true
            }
        });
        self.buffered_bytes -= freed;
    }

    /// Forgets every buffered record.
    pub fn clear(&mut self) {
        self.buffers.clear();
        self.buffered_bytes = 0;
    }

    /// Takes up to `max` buffered records, a partition's in offset order, taking turns among
    /// partitions from one call to the next; moves each partition's position past what is
    /// taken (past its fetch's end once its buffer is empty).
    pub fn take(
        &mut self,
        max: usize,
        positions: &mut BTreeMap<TopicPartition, Option<i64>>,
    ) -> Vec<Message> {
        let mut out = Vec::new();
        let start = self.next_turn.take();
        let order: Vec<TopicPartition> = match &start {
            Some(s) => self
                .buffers
                .range::<TopicPartition, _>((Bound::Included(s), Bound::Unbounded))
                .chain(self.buffers.range::<TopicPartition, _>(..s))
                .map(|(tp, _)| tp.clone())
                .collect(),
            None => self.buffers.keys().cloned().collect(),
        };
        for tp in order {
            if out.len() >= max {
                self.next_turn = Some(tp);
                break;
            }
            let Some(buffer) = self.buffers.get_mut(&tp) else {
                continue;
            };
            let n = buffer.messages.len().min(max - out.len());
            let taken: Vec<Message> = buffer.messages.drain(..n).collect();
            self.buffered_bytes -= taken.iter().map(message_bytes).sum::<usize>();
            let next = match buffer.messages.front() {
                Some(first_left) => first_left.offset,
                None => buffer.end,
            };
            if buffer.messages.is_empty() {
                self.buffers.remove(&tp);
            }
            if let Some(pos) = positions.get_mut(&tp) {
                *pos = Some(next);
            }
            out.extend(taken);
        }
        out
    }
}

/// What a buffered record counts for against `buffered_max_bytes`.
fn message_bytes(m: &Message) -> usize {
    let headers: usize = m
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
        .sum();
    m.key.as_ref().map_or(0, |k| k.len()) + m.value.as_ref().map_or(0, |v| v.len()) + headers
}
