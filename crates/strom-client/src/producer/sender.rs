//! The producer's background task: takes records into per-partition batches, sends the
//! ready ones grouped by leader (one batch per partition per request, at most
//! `max_request_size` bytes and `max_in_flight_requests` requests per broker), and answers
//! each record's delivery.
//!
//! Retries keep order. A partition whose batch fails stops sending, lets its other in-flight
//! batches come back, then sends the failed ones again in sequence order with their original
//! sequence numbers, so the broker drops what it already wrote. The retry budget is
//! `delivery_timeout_ms` from when the record was accepted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId,
};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::accumulator::{Batch, PartitionQueue};
use super::queue::QueueReceiver;
use super::transaction::SenderReport;
use super::{Command, ProducerConfig};
use crate::batch::{encode_batch, restamp, ProducerStamp};
use crate::cluster::Client;
use crate::error::{ClientError, ResponseError, Result};
use crate::offsets::topic_name;

type PartitionKey = (String, i32);

/// What a request's answer task hands back: the leader, the batches it carried, the answer.
type Answered = (i32, Vec<(PartitionKey, Batch)>, Result<ProduceResponse>);

/// How often the task wakes with nothing to do but batches to expire.
const IDLE_TICK: Duration = Duration::from_millis(100);

struct Sender {
    client: Client,
    config: Arc<ProducerConfig>,
    buffer: Arc<Semaphore>,
    partitions: BTreeMap<PartitionKey, PartitionQueue>,
    next_batch_id: u64,
    /// Ids of batches not yet answered, for `flush`.
    live: BTreeSet<u64>,
    /// Flush requests with the first batch id created after them.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    /// Requests in flight per leader.
    leader_in_flight: HashMap<i32, usize>,
    answers: JoinSet<Answered>,
    /// The producer id and epoch (idempotence), once InitProducerId answered.
    producer: Option<(i64, i16)>,
    /// No InitProducerId attempt before this instant.
    producer_backoff: Option<Instant>,
    idempotent: bool,
    /// A transactional producer: the handle sets the producer id (`Command::Producer`), batches
    /// carry the transactional bit, and failures are reported rather than epochs bumped here.
    transactional: bool,
    report: Arc<SenderReport>,
}

/// Runs until the producer is dropped or closed and every accepted record is answered.
pub(crate) async fn run(
    client: Client,
    config: Arc<ProducerConfig>,
    rx: QueueReceiver,
    buffer: Arc<Semaphore>,
    report: Arc<SenderReport>,
) {
    let mut s = Sender {
        idempotent: config.idempotent(),
        transactional: config.idempotent() && config.transactional_id.is_some(),
        report,
        client,
        config,
        buffer,
        partitions: BTreeMap::new(),
        next_batch_id: 0,
        live: BTreeSet::new(),
        flushes: Vec::new(),
        leader_in_flight: HashMap::new(),
        answers: JoinSet::new(),
        producer: None,
        producer_backoff: None,
    };
    let mut closing = false;
    loop {
        let wake = s.send_ready(closing).await;
        s.answer_flushes();
        if closing && s.live.is_empty() && s.answers.is_empty() {
            return;
        }
        let wake = wake.unwrap_or_else(|| Instant::now() + IDLE_TICK);
        tokio::select! {
            commands = rx.0.recv(), if !closing => match commands {
                Some(mut commands) => {
                    for c in commands.drain(..) {
                        s.accept(c);
                    }
                    rx.0.recycle(commands);
                }
                None => closing = true,
            },
            Some(answered) = s.answers.join_next(), if !s.answers.is_empty() => {
                if let Ok(answered) = answered {
                    s.on_answer(answered);
                }
                while let Some(Ok(answered)) = s.answers.try_join_next() {
                    s.on_answer(answered);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

impl Sender {
    fn accept(&mut self, command: Command) {
        match command {
            Command::Flush(done) => self.flushes.push((self.next_batch_id, done)),
            Command::Producer(id, epoch) => self.producer = Some((id, epoch)),
            Command::AbortUnsent(done) => {
                self.abort_unsent();
                let _ = done.send(());
            }
            Command::Record(mut p) => {
                let key = (std::mem::take(&mut p.topic), p.partition);
                let queue = self.partitions.entry(key).or_default();
                if let Some(id) = queue.append(p, self.config.batch_size, &mut self.next_batch_id) {
                    self.live.insert(id);
                }
            }
        }
    }

    /// Fails every batch not yet sent: its transaction is being aborted. Batches sent once
    /// keep their sequence numbers in play, so they finish (or time out) as usual.
    fn abort_unsent(&mut self) {
        let aborted = ClientError::Invalid("record not sent: its transaction was aborted".into());
        let mut unsent = Vec::new();
        for q in self.partitions.values_mut() {
            let (keep, drop): (Vec<Batch>, Vec<Batch>) =
                q.queue.drain(..).partition(|b| b.stamp.is_some());
            q.queue.extend(keep);
            unsent.extend(drop);
        }
        for batch in unsent {
            self.release(&batch);
            batch.fail(&aborted);
        }
    }

    fn answer_flushes(&mut self) {
        let oldest = self.live.first().copied().unwrap_or(u64::MAX);
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(upto, _)| oldest >= *upto);
        self.flushes = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    /// Sends every ready batch the in-flight limits allow; returns when to look again.
    async fn send_ready(&mut self, closing: bool) -> Option<Instant> {
        let now = Instant::now();
        let mut wake: Option<Instant> = None;
        let mut soonest = |at: Instant| {
            wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
        };
        self.expire(now);
        if self.transactional && self.producer.is_none() {
            return wake; // nothing is accepted before init_transactions
        }
        if self.idempotent && self.producer.is_none() && !self.partitions.is_empty() {
            if self.producer_backoff.is_some_and(|t| t > now) {
                soonest(self.producer_backoff.unwrap_or(now));
                return wake;
            }
            if let Err(e) = self.init_producer_id().await {
                tracing::debug!(error = %e, "InitProducerId failed, retrying");
                let at = Instant::now() + self.config.client.retry_backoff;
                self.producer_backoff = Some(at);
                soonest(at);
                return wake;
            }
        }
        let linger = Duration::from_millis(self.config.linger_ms);
        let urgent = closing || !self.flushes.is_empty();
        let per_partition = if self.idempotent {
            self.config.max_in_flight_requests.clamp(1, 5)
        } else {
            1
        };
        // Ready partitions by leader.
        let mut by_leader: BTreeMap<i32, Vec<PartitionKey>> = BTreeMap::new();
        let keys: Vec<PartitionKey> = self.partitions.keys().cloned().collect();
        for key in keys {
            let q = &self.partitions[&key];
            let Some(front) = q.queue.front() else {
                continue;
            };
            if !q.held.is_empty() || q.in_flight >= per_partition {
                continue;
            }
            if let Some(t) = q.backoff_until.filter(|t| *t > now) {
                soonest(t);
                continue;
            }
            let ready = urgent
                || q.queue.len() > 1
                || front.bytes >= self.config.batch_size
                || !front.open()
                || front.created + linger <= now;
            if !ready {
                soonest(front.created + linger);
                continue;
            }
            let leader = match self.client.cached_leader(&key.0, key.1) {
                Some(l) => Ok(l),
                None => self.client.leader(&key.0, key.1).await,
            };
            match leader {
                Ok(l) => by_leader.entry(l).or_default().push(key),
                Err(e) => {
                    tracing::debug!(topic = %key.0, partition = key.1, error = %e, "no leader");
                    self.client.invalidate_topic(&key.0);
                    let at = self.backoff(self.partitions[&key].failures);
                    let q = self.partitions.get_mut(&key).expect("present");
                    q.failures += 1;
                    q.backoff_until = Some(at);
                    soonest(at);
                }
            }
        }
        for (leader, keys) in by_leader {
            self.send_to_leader(leader, keys, per_partition).await;
        }
        wake
    }

    /// Fills requests to one leader from its ready partitions, one batch per partition per
    /// request, while its in-flight limit allows.
    async fn send_to_leader(&mut self, leader: i32, keys: Vec<PartitionKey>, per_partition: usize) {
        let conn = match self.client.broker_connection(leader).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(leader, error = %e, "cannot reach leader");
                for key in &keys {
                    self.client.invalidate_topic(&key.0);
                    let at = {
                        let q = &self.partitions[key];
                        self.backoff(q.failures)
                    };
                    let q = self.partitions.get_mut(key).expect("present");
                    q.failures += 1;
                    q.backoff_until = Some(at);
                }
                return;
            }
        };
        let requests_max = self.config.max_in_flight_requests.clamp(1, 5);
        loop {
            if self.leader_in_flight.get(&leader).copied().unwrap_or(0) >= requests_max {
                return;
            }
            let mut items: Vec<(PartitionKey, Batch)> = Vec::new();
            let mut bytes = 0usize;
            for key in &keys {
                let q = self.partitions.get_mut(key).expect("present");
                if q.in_flight >= per_partition || !q.held.is_empty() {
                    continue;
                }
                let Some(front) = q.queue.front() else {
                    continue;
                };
                let size = front.encoded.as_ref().map_or(front.bytes, Bytes::len);
                if !items.is_empty() && bytes + size > self.config.max_request_size {
                    continue;
                }
                let mut batch = q.queue.pop_front().expect("front exists");
                if let Err(e) = self.prepare(key, &mut batch) {
                    self.finish_failed(key, batch, &e);
                    continue;
                }
                bytes += batch.encoded.as_ref().map_or(0, Bytes::len);
                self.partitions.get_mut(key).expect("present").in_flight += 1;
                items.push((key.clone(), batch));
            }
            if items.is_empty() {
                return;
            }
            let request = self.request(&items);
            if self.config.acks.as_i16() == 0 {
                let written = conn.send_without_response(&request).await;
                for (key, batch) in items {
                    self.partitions.get_mut(&key).expect("present").in_flight -= 1;
                    match &written {
                        Ok(()) => self.finish_ok(&key, batch, -1, -1),
                        Err(e) => self.on_batch_error(&key, batch, e.duplicate()),
                    }
                }
                continue;
            }
            match conn.submit(&request).await {
                Ok(pending) => {
                    *self.leader_in_flight.entry(leader).or_default() += 1;
                    self.answers
                        .spawn(async move { (leader, items, pending.wait().await) });
                }
                Err(e) => {
                    for (key, batch) in items {
                        self.partitions.get_mut(&key).expect("present").in_flight -= 1;
                        self.on_batch_error(&key, batch, e.duplicate());
                    }
                    return;
                }
            }
        }
    }

    /// Encodes a batch on its first send and stamps it with its sequence (idempotence).
    fn prepare(&mut self, key: &PartitionKey, batch: &mut Batch) -> Result<()> {
        let q = self.partitions.get_mut(key).expect("present");
        let stamp = match (self.idempotent, batch.stamp, self.producer) {
            (false, _, _) | (true, _, None) => ProducerStamp::NONE,
            (true, Some(stamp), _) => stamp,
            (true, None, Some(producer)) => ProducerStamp {
                transactional: self.transactional,
                ..q.stamp_next(producer, batch.len())
            },
        };
        match &batch.encoded {
            None => {
                let records = std::mem::take(&mut batch.records);
                batch.encoded = Some(encode_batch(&records, self.config.compression, stamp)?);
            }
            Some(bytes) if batch.stamp != Some(stamp) && self.idempotent => {
                batch.encoded = Some(restamp(bytes, stamp));
            }
            Some(_) => {}
        }
        if self.idempotent {
            batch.stamp = Some(stamp);
        }
        batch.attempts += 1;
        Ok(())
    }

    fn request(&self, items: &[(PartitionKey, Batch)]) -> ProduceRequest {
        let mut topics: BTreeMap<&str, Vec<PartitionProduceData>> = BTreeMap::new();
        for ((topic, partition), batch) in items {
            topics.entry(topic.as_str()).or_default().push(
                PartitionProduceData::default()
                    .with_index(*partition)
                    .with_records(batch.encoded.clone()),
            );
        }
        ProduceRequest::default()
            .with_acks(self.config.acks.as_i16())
            .with_timeout_ms(self.config.client.request_timeout.as_millis() as i32)
            .with_topic_data(
                topics
                    .into_iter()
                    .map(|(t, parts)| {
                        TopicProduceData::default()
                            .with_name(topic_name(t))
                            .with_partition_data(parts)
                    })
                    .collect(),
            )
    }

    fn on_answer(&mut self, (leader, items, answer): Answered) {
        if let Some(n) = self.leader_in_flight.get_mut(&leader) {
            *n = n.saturating_sub(1);
        }
        for (key, batch) in items {
            self.partitions.get_mut(&key).expect("present").in_flight -= 1;
            let result = match &answer {
                Ok(response) => partition_answer(response, &key),
                Err(e) => Err(e.duplicate()),
            };
            match result {
                Ok((offset, time)) => {
                    self.partitions.get_mut(&key).expect("present").failures = 0;
                    self.finish_ok(&key, batch, offset, time)
                }
                Err(e) => self.on_batch_error(&key, batch, e),
            }
            self.release_held(&key);
        }
    }

    /// A failed batch: held for a retry (in order, once the partition's in-flight batches
    /// are back) or failed for good.
    fn on_batch_error(&mut self, key: &PartitionKey, batch: Batch, err: ClientError) {
        let retry = err.is_retriable() || is_sequence_error(&err);
        if !retry {
            tracing::debug!(topic = %key.0, partition = key.1, error = %err, "produce failed");
            self.finish_failed(key, batch, &err);
            return;
        }
        tracing::debug!(topic = %key.0, partition = key.1, error = %err, "produce will be retried");
        if matches!(
            err.code(),
            Some(ResponseError::NotLeaderOrFollower | ResponseError::UnknownTopicOrPartition)
        ) || !matches!(err, ClientError::Kafka { .. })
        {
            self.client.invalidate_topic(&key.0);
        }
        let at = {
            let q = &self.partitions[key];
            self.backoff(q.failures)
        };
        let q = self.partitions.get_mut(key).expect("present");
        q.failures += 1;
        q.backoff_until = Some(at);
        q.held.push((batch, err));
        self.release_held(key);
    }

    /// Once a partition has nothing in flight, its held batches go back to the front of the
    /// queue in sequence order. The oldest one failing with a sequence error means the broker
    /// lost track of this producer: that batch fails and the epoch is bumped.
    fn release_held(&mut self, key: &PartitionKey) {
        let q = self.partitions.get_mut(key).expect("present");
        if q.in_flight > 0 || q.held.is_empty() {
            return;
        }
        let mut held = std::mem::take(&mut q.held);
        held.sort_by_key(|(b, _)| (b.stamp.map(|s| s.base_sequence), b.id));
        let mut bump = false;
        let now = Instant::now();
        let mut back: Vec<Batch> = Vec::new();
        for (i, (batch, err)) in held.into_iter().enumerate() {
            if i == 0 && is_sequence_error(&err) {
                tracing::warn!(topic = %key.0, partition = key.1, error = %err, "bumping the producer epoch");
                bump = true;
                self.finish_failed(key, batch, &err);
            } else if self.expired(&batch, now) {
                bump |= batch.stamp.is_some();
                let timeout = self.timeout_error(key, &err);
                self.finish_failed(key, batch, &timeout);
            } else {
                back.push(batch);
            }
        }
        let q = self.partitions.get_mut(key).expect("present");
        for batch in back.into_iter().rev() {
            q.queue.push_front(batch);
        }
        if bump {
            self.bump_epoch(key);
        }
    }

    /// Fails batches waiting in queues past their delivery timeout.
    fn expire(&mut self, now: Instant) {
        let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        let keys: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, q)| q.queue.front().is_some_and(|b| b.created + timeout <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let mut bump = false;
            loop {
                let q = self.partitions.get_mut(&key).expect("present");
                if q.queue.front().is_none_or(|b| b.created + timeout > now) {
                    break;
                }
                let batch = q.queue.pop_front().expect("front exists");
                bump |= batch.stamp.is_some();
                let err = ClientError::Timeout {
                    what: format!(
                        "delivery of records to topic {} partition {} (delivery_timeout_ms)",
                        key.0, key.1
                    ),
                    timeout_ms: self.config.delivery_timeout_ms,
                };
                self.finish_failed(&key, batch, &err);
            }
            if bump && self.partitions[&key].in_flight == 0 {
                self.bump_epoch(&key);
            }
        }
    }

    fn expired(&self, batch: &Batch, now: Instant) -> bool {
        batch.created + Duration::from_millis(self.config.delivery_timeout_ms) <= now
    }

    fn timeout_error(&self, key: &PartitionKey, last: &ClientError) -> ClientError {
        ClientError::Timeout {
            what: format!(
                "delivery of records to topic {} partition {} (delivery_timeout_ms; last error: {last})",
                key.0, key.1
            ),
            timeout_ms: self.config.delivery_timeout_ms,
        }
    }

    /// A sequence gap this producer cannot close: a new epoch (the Java client's local bump
    /// for idempotent producers), or a new producer id when the epoch is exhausted; the
    /// partition's remaining batches are numbered again from 0.
    fn bump_epoch(&mut self, key: &PartitionKey) {
        if !self.idempotent {
            return;
        }
        if self.transactional {
            // Only the coordinator may bump a transactional producer's epoch: on abort.
            self.report.require_epoch_bump();
            return;
        }
        if let Some((id, epoch)) = self.producer {
            if epoch < i16::MAX {
                self.producer = Some((id, epoch + 1));
            } else {
                self.producer = None; // InitProducerId again before the next send
            }
        }
        if let Some(producer) = self.producer {
            self.partitions
                .get_mut(key)
                .expect("present")
                .renumber(producer);
        } else if let Some(q) = self.partitions.get_mut(key) {
            for b in q.queue.iter_mut() {
                b.stamp = None;
            }
            q.sequence_owner = None;
        }
    }

    fn finish_ok(&mut self, key: &PartitionKey, batch: Batch, offset: i64, time: i64) {
        self.release(&batch);
        batch.succeed(&key.0, key.1, offset, time);
    }

    fn finish_failed(&mut self, _key: &PartitionKey, batch: Batch, err: &ClientError) {
        if self.transactional {
            self.report.batch_failed(err);
        }
        self.release(&batch);
        batch.fail(err);
    }

    fn release(&mut self, batch: &Batch) {
        self.live.remove(&batch.id);
        self.buffer.add_permits(batch.buffer_bytes);
    }

    fn backoff(&self, failures: u32) -> Instant {
        let base = self.config.client.retry_backoff;
        let pause = base
            .saturating_mul(1u32 << failures.min(16))
            .min(self.config.client.retry_backoff_max);
        Instant::now() + pause
    }

    async fn init_producer_id(&mut self) -> Result<()> {
        let conn = self.client.any_connection().await?;
        if !conn.supports(22) {
            tracing::warn!(
                "the broker does not support InitProducerId; producing without idempotence"
            );
            self.idempotent = false;
            return Ok(());
        }
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = conn.send(&request).await?;
        ClientError::check(response.error_code, || "InitProducerId".into())?;
        self.producer = Some((response.producer_id.0, response.producer_epoch));
        tracing::debug!(
            producer_id = response.producer_id.0,
            epoch = response.producer_epoch,
            "idempotent producer"
        );
        Ok(())
    }
}

/// Errors of the idempotence bookkeeping: a gap or a producer the broker does not know. On a
/// batch that follows a failed one they resolve by resending in order.
fn is_sequence_error(err: &ClientError) -> bool {
    matches!(
        err.code(),
        Some(ResponseError::OutOfOrderSequenceNumber | ResponseError::UnknownProducerId)
    )
}

/// The (base offset, log-append time) for one partition of a Produce response.
fn partition_answer(response: &ProduceResponse, key: &PartitionKey) -> Result<(i64, i64)> {
    let (topic, partition) = key;
    let answer = response
        .responses
        .iter()
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == *partition)
        .ok_or_else(|| {
            ClientError::protocol(format!(
                "Produce response has no answer for topic {topic} partition {partition}"
            ))
        })?;
    match ResponseError::try_from_code(answer.error_code) {
        None => Ok((answer.base_offset, answer.log_append_time_ms)),
        // The broker has this batch already (a retry of a written one): delivered.
        Some(ResponseError::DuplicateSequenceNumber) => {
            Ok((answer.base_offset, answer.log_append_time_ms))
        }
        Some(_) => Err(ClientError::kafka_with_message(
            answer.error_code,
            format!("producing to topic {topic} partition {partition}"),
            answer.error_message.as_deref(),
        )),
    }
}
