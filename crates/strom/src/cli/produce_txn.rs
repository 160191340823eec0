//! `strom produce --transactional-id ID`: stdin written in transactions, as Kafka's console
//! producer does with `transactional.id`. The whole input is one transaction, or every
//! `--transaction-size` records are; a failure aborts the open transaction, so a
//! read_committed consumer sees every record of the input or none of it (per transaction).

use std::collections::VecDeque;

use anyhow::{Context, Result};
use strom_client::producer::Delivery;
use strom_client::Producer;

/// The transaction settings of one `strom produce`, from flags and `-X`.
#[derive(Debug, Clone)]
pub struct TxnSettings {
    pub transactional_id: String,
    /// Records per transaction; `None`: the whole input.
    pub size: Option<u64>,
    /// `transaction.timeout.ms`, when given.
    pub timeout_ms: Option<i32>,
}

/// The open transaction of a transactional `strom produce`.
pub struct Transactions<'a> {
    producer: &'a Producer,
    transactional_id: String,
    size: Option<u64>,
    /// Records enqueued in the open transaction; `None` when none is open.
    open: Option<u64>,
}

impl<'a> Transactions<'a> {
    /// Registers the transactional id with its coordinator. This fences an earlier producer
    /// with the same id and aborts what it left open.
    pub async fn init(producer: &'a Producer, settings: &TxnSettings) -> Result<Self> {
        producer.init_transactions().await.with_context(|| {
            format!(
                "cannot initialize transactional id {}",
                settings.transactional_id
            )
        })?;
        Ok(Transactions {
            producer,
            transactional_id: settings.transactional_id.clone(),
            size: settings.size,
            open: None,
        })
    }

    /// Opens a transaction unless one is open; call before enqueueing a record.
    pub async fn before_record(&mut self) -> Result<()> {
        if self.open.is_none() {
            self.producer.begin_transaction().await?;
            self.open = Some(0);
        }
        Ok(())
    }

    /// Counts an enqueued record and commits when the transaction is full. The deliveries of
    /// a committed transaction are answered, so `in_flight` is emptied.
    pub async fn after_record(&mut self, in_flight: &mut VecDeque<Delivery>) -> Result<()> {
        let records = self.open.get_or_insert(0);
        *records += 1;
        if self.size.is_some_and(|size| *records >= size) {
            self.commit(in_flight).await?;
        }
        Ok(())
    }

    /// Commits the open transaction, if any.
    pub async fn commit(&mut self, in_flight: &mut VecDeque<Delivery>) -> Result<()> {
        if self.open.is_none() {
            return Ok(());
        }
        self.producer.commit_transaction().await.with_context(|| {
            format!(
                "cannot commit the transaction of transactional id {}",
                self.transactional_id
            )
        })?;
        self.open = None;
        for d in in_flight.drain(..) {
            d.wait().await?;
        }
        Ok(())
    }

    /// Aborts the open transaction after a failure. An abort that fails too is reported but
    /// not returned: the first failure is the one to show, and the coordinator aborts the
    /// transaction at its timeout anyway.
    pub async fn abort(&mut self) {
        if self.open.take().is_none() {
            return;
        }
        if let Err(e) = self.producer.abort_transaction().await {
            tracing::warn!(transactional_id = %self.transactional_id, error = %e,
                "cannot abort the transaction; the coordinator aborts it at its timeout");
        }
    }
}
