//! The transactional producer's talks with its coordinators (KIP-98, transaction.version 1),
//! mirroring the Java client's `TransactionManager`: InitProducerId with the transactional
//! id, AddPartitionsToTxn before the first batch to a partition, AddOffsetsToTxn then
//! TxnOffsetCommit (to the group's coordinator, with the member's generation for KIP-447),
//! and EndTxn.
//!
//! Errors are sorted as Java sorts them: COORDINATOR_LOAD_IN_PROGRESS and
//! CONCURRENT_TRANSACTIONS are retried, NOT_COORDINATOR finds the coordinator again,
//! PRODUCER_FENCED and INVALID_PRODUCER_EPOCH (reported as PRODUCER_FENCED),
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED and INVALID_TXN_STATE are fatal, and the rest of a
//! transaction's failures are abortable. Retries stop after `max_block_ms`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest,
    ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::time::Instant;

use super::txn_state::{Call, TransactionState};
use crate::cluster::Client;
use crate::connection::Connection;
use crate::consumer::ConsumerGroupMetadata;
use crate::error::{ClientError, ResponseError, Result};
use crate::offsets::{group_id, topic_name, TopicPartition};

/// The highest version of each transaction API used: above them Kafka switches to
/// transaction.version 2 or the broker-only batched AddPartitionsToTxn. InitProducerId v4
/// answers PRODUCER_FENCED rather than INVALID_PRODUCER_EPOCH (KIP-588).
fn version_max(api_key: i16) -> i16 {
    const INIT_PRODUCER_ID: i16 = 22;
    if api_key == INIT_PRODUCER_ID {
        4
    } else {
        3
    }
}

/// What the producer's background task tells the transaction manager.
#[derive(Debug, Default)]
pub(crate) struct SenderReport {
    /// The first batch failure of the open transaction.
    failure: Mutex<Option<ClientError>>,
    /// A batch's sequence numbers were lost (a sequence error, a timed-out batch): the epoch
    /// must be bumped before the next transaction (KIP-360).
    epoch_bump: AtomicBool,
}

impl SenderReport {
    pub fn batch_failed(&self, err: &ClientError) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert_with(|| err.duplicate());
    }

    pub fn require_epoch_bump(&self) {
        self.epoch_bump.store(true, Ordering::Release);
    }

    fn take_failure(&self) -> Option<ClientError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// How a failure of a call that is not fenced or refused for good is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Otherwise {
    /// Only an abort may follow.
    Abortable,
    /// The producer cannot go on (an unexpected answer to InitProducerId or EndTxn).
    Fatal,
}

/// Which coordinator a request goes to.
enum Target<'a> {
    Transaction,
    Group(&'a str),
}

/// The transaction state of one transactional producer.
pub(crate) struct TransactionManager {
    client: Client,
    transactional_id: String,
    timeout_ms: i32,
    max_block: Duration,
    state: TransactionState,
    /// The error of `AbortableError` and `FatalError`.
    error: Option<ClientError>,
    producer: Option<(i64, i16)>,
    coordinator: Option<Arc<Connection>>,
    /// Partitions added to the open transaction.
    partitions: BTreeSet<TopicPartition>,
    /// Whether the coordinator knows of the open transaction (partitions or offsets added):
    /// without that there is no EndTxn to send.
    started: bool,
    report: Arc<SenderReport>,
}

impl TransactionManager {
    pub fn new(
        client: Client,
        transactional_id: String,
        timeout_ms: i32,
        max_block: Duration,
        report: Arc<SenderReport>,
    ) -> Self {
        TransactionManager {
            client,
            transactional_id,
            timeout_ms,
            max_block,
            state: TransactionState::Uninitialized,
            error: None,
            producer: None,
            coordinator: None,
            partitions: BTreeSet::new(),
            started: false,
            report,
        }
    }

    pub fn state(&self) -> TransactionState {
        self.state
    }

    /// Checks the state allows `call`, after taking in batch failures the task reported.
    pub fn start(&mut self, call: Call) -> Result<()> {
        if matches!(
            self.state,
            TransactionState::InTransaction | TransactionState::Committing
        ) {
            if let Some(err) = self.report.take_failure() {
                self.fail_batch(err);
            }
        }
        match (self.state, &self.error) {
            (TransactionState::FatalError, Some(err)) => return Err(err.duplicate()),
            (TransactionState::AbortableError, Some(err)) if call != Call::Abort => {
                return Err(err.duplicate())
            }
            _ => {}
        }
        self.state = call
            .start(self.state)
            .map_err(|why| ClientError::Invalid(format!("{}: {why}", self.describe())))?;
        Ok(())
    }

    /// Sorts a failed batch: fenced and unauthorized are fatal, the rest abortable.
    fn fail_batch(&mut self, err: ClientError) {
        match err.code() {
            Some(
                ResponseError::ProducerFenced
                | ResponseError::TransactionalIdAuthorizationFailed
                | ResponseError::ClusterAuthorizationFailed,
            ) => self.enter_fatal(err),
            _ => self.enter_abortable(err),
        }
    }

    fn describe(&self) -> String {
        format!("transactional id {}", self.transactional_id)
    }

    fn enter_fatal(&mut self, err: ClientError) {
        tracing::warn!(transactional_id = %self.transactional_id, error = %err, "fatal transaction error");
        self.state = TransactionState::FatalError;
        self.error = Some(err);
    }

    fn enter_abortable(&mut self, err: ClientError) {
        if self.state == TransactionState::Aborting {
            return; // already on the way out
        }
        tracing::debug!(transactional_id = %self.transactional_id, error = %err, "abortable transaction error");
        self.state = TransactionState::AbortableError;
        self.error = Some(err);
    }

    /// Takes the verdict of a failed call: fatal, abortable, or (a timeout, a broker out of
    /// reach) none, leaving the state for a retry of the call. Returns the error to report.
    fn judge(
        &mut self,
        err: ClientError,
        otherwise: Otherwise,
        undecided_keeps: bool,
    ) -> ClientError {
        let code = err.code();
        let fenced = matches!(
            code,
            Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
        );
        let fatal = matches!(
            code,
            Some(
                ResponseError::TransactionalIdAuthorizationFailed
                    | ResponseError::ClusterAuthorizationFailed
                    | ResponseError::InvalidTxnState
                    | ResponseError::UnsupportedVersion
                    | ResponseError::UnsupportedForMessageFormat
            )
        );
        if fenced {
            let fenced = ClientError::kafka_with_message(
                ResponseError::ProducerFenced.code(),
                self.describe(),
                Some("fenced by a newer producer with the same transactional id"),
            );
            self.enter_fatal(fenced.duplicate());
            return fenced;
        }
        if fatal {
            self.enter_fatal(err.duplicate());
            return err;
        }
        let undecided = code.is_none() || err.is_retriable();
        if undecided && undecided_keeps {
            return err;
        }
        match otherwise {
            Otherwise::Fatal => self.enter_fatal(err.duplicate()),
            Otherwise::Abortable => self.enter_abortable(err.duplicate()),
        }
        err
    }

    /// InitProducerId with the transactional id: the producer id and epoch to send with.
    pub async fn init(&mut self) -> Result<(i64, i16)> {
        self.start(Call::Init)?;
        let bumped = self.init_producer_id(None).await;
        let producer = bumped.map_err(|e| self.judge(e, Otherwise::Fatal, true))?;
        self.state = TransactionState::Ready;
        Ok(producer)
    }

    /// InitProducerId; with the current id and epoch (`bump_from`) it bumps the epoch
    /// (KIP-360) instead of fencing this producer.
    async fn init_producer_id(&mut self, bump_from: Option<(i64, i16)>) -> Result<(i64, i16)> {
        let (id, epoch) = bump_from.unwrap_or((-1, -1));
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(self.txn_id()))
            .with_transaction_timeout_ms(self.timeout_ms)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch);
        let response = self
            .call(Target::Transaction, "InitProducerId", &request, |r| {
                r.error_code
            })
            .await?;
        let producer = (response.producer_id.0, response.producer_epoch);
        tracing::debug!(transactional_id = %self.transactional_id, ?producer, "transactional producer");
        self.producer = Some(producer);
        Ok(producer)
    }

    /// Adds a partition to the open transaction before its first record is sent.
    pub async fn add_partition(&mut self, topic: &str, partition: i32) -> Result<()> {
        self.start(Call::Send)?;
        let tp = (topic.to_string(), partition);
        if self.partitions.contains(&tp) {
            return Ok(());
        }
        let (producer_id, epoch) = self.producer()?;
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(self.txn_id())
            .with_v3_and_below_producer_id(ProducerId(producer_id))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![partition])]);
        let added = self
            .call(Target::Transaction, "AddPartitionsToTxn", &request, |r| {
                let partition_code = r
                    .results_by_topic_v3_and_below
                    .iter()
                    .flat_map(|t| t.results_by_partition.iter())
                    .map(|p| p.partition_error_code)
                    .find(|c| *c != 0);
                partition_code.unwrap_or(r.error_code)
            })
            .await;
        added.map_err(|e| self.judge(e, Otherwise::Abortable, false))?;
        self.partitions.insert(tp);
        self.started = true;
        Ok(())
    }

    /// AddOffsetsToTxn, then TxnOffsetCommit to the group's coordinator: the offsets are
    /// committed with the transaction, and only if the group's generation still matches.
    pub async fn send_offsets(
        &mut self,
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        self.start(Call::SendOffsets)?;
        let (producer_id, epoch) = self.producer()?;
        let add = AddOffsetsToTxnRequest::default()
            .with_transactional_id(self.txn_id())
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_group_id(group_id(&group.group_id));
        let added = self
            .call(Target::Transaction, "AddOffsetsToTxn", &add, |r| {
                r.error_code
            })
            .await;
        added.map_err(|e| self.judge(e, Otherwise::Abortable, false))?;
        self.started = true;
        let mut by_topic: BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            by_topic.entry(topic.as_str()).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::new())),
            );
        }
        let commit = TxnOffsetCommitRequest::default()
            .with_transactional_id(self.txn_id())
            .with_group_id(group_id(&group.group_id))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch)
            .with_generation_id(group.generation_id)
            .with_member_id(StrBytes::from_string(group.member_id.clone()))
            .with_group_instance_id(group.group_instance_id.clone().map(StrBytes::from_string))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let committed = self
            .call(
                Target::Group(&group.group_id),
                "TxnOffsetCommit",
                &commit,
                |r| {
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| p.error_code)
                        .find(|c| *c != 0)
                        .unwrap_or(0)
                },
            )
            .await;
        committed.map_err(|e| self.judge(e, Otherwise::Abortable, false))?;
        Ok(())
    }

    /// Ends the open transaction once its batches are answered (the caller flushed).
    /// Returns a new producer epoch when the abort had to bump it.
    pub async fn end(&mut self, commit: bool) -> Result<Option<(i64, i16)>> {
        if commit {
            if let Some(err) = self.report.take_failure() {
                self.fail_batch(err);
                return Err(self
                    .error
                    .as_ref()
                    .map_or(ClientError::Closed, ClientError::duplicate));
            }
        }
        let (producer_id, epoch) = self.producer()?;
        if self.started {
            let request = EndTxnRequest::default()
                .with_transactional_id(self.txn_id())
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_committed(commit);
            let what = if commit {
                "EndTxn commit"
            } else {
                "EndTxn abort"
            };
            let ended = self
                .call(Target::Transaction, what, &request, |r| r.error_code)
                .await;
            ended.map_err(|e| self.judge(e, Otherwise::Fatal, true))?;
        }
        let mut bumped = None;
        if !commit {
            // What failed in the aborted transaction is over.
            self.report.take_failure();
            if self.report.epoch_bump.swap(false, Ordering::AcqRel) {
                let bump = self.init_producer_id(Some((producer_id, epoch))).await;
                bumped = Some(bump.map_err(|e| self.judge(e, Otherwise::Fatal, false))?);
            }
        }
        self.partitions.clear();
        self.started = false;
        self.error = None;
        self.state = TransactionState::Ready;
        Ok(bumped)
    }

    fn producer(&self) -> Result<(i64, i16)> {
        self.producer.ok_or_else(|| {
            ClientError::Invalid(format!(
                "{}: init_transactions has not completed",
                self.describe()
            ))
        })
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.transactional_id.clone()))
    }

    /// Sends a request to a coordinator, retrying what Java retries, for up to `max_block`.
    async fn call<R: Request>(
        &mut self,
        target: Target<'_>,
        what: &str,
        request: &R,
        error_code: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response> {
        let deadline = Instant::now() + self.max_block;
        let mut attempt = 0;
        loop {
            let err = match self.send_once(&target, request).await {
                Ok(response) => match error_code(&response) {
                    0 => return Ok(response),
                    code => ClientError::kafka(code, format!("{what} of {}", self.describe())),
                },
                Err(e) => e,
            };
            let retry = match err.code() {
                Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                    self.forget_coordinator(&target);
                    true
                }
                Some(
                    ResponseError::CoordinatorLoadInProgress
                    | ResponseError::ConcurrentTransactions
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::RequestTimedOut,
                ) => true,
                Some(_) => false,
                None if err.is_retriable() => {
                    self.forget_coordinator(&target);
                    true
                }
                None => false,
            };
            if !retry || Instant::now() >= deadline {
                return Err(err);
            }
            tracing::debug!(what, error = %err, "transaction request will be retried");
            self.client.backoff(attempt.min(4)).await;
            attempt += 1;
        }
    }

    async fn send_once<R: Request>(
        &mut self,
        target: &Target<'_>,
        request: &R,
    ) -> Result<R::Response> {
        let conn = match target {
            Target::Transaction => match &self.coordinator {
                Some(c) if !c.is_broken() => c.clone(),
                _ => {
                    let addr = self
                        .client
                        .find_transaction_coordinator(&self.transactional_id)
                        .await?;
                    let conn = self.client.connection(&addr).await?;
                    self.coordinator = Some(conn.clone());
                    conn
                }
            },
            Target::Group(group) => {
                let addr = self.client.find_coordinator(group).await?;
                self.client.connection(&addr).await?
            }
        };
        let version = conn.version_for::<R>()?.min(version_max(R::KEY));
        conn.send_version(request, version).await
    }

    fn forget_coordinator(&mut self, target: &Target<'_>) {
        if let Target::Transaction = target {
            if let Some(c) = self.coordinator.take() {
                self.client.invalidate_connection(c.addr());
            }
        }
    }
}
