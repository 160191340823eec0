//! [`Admin`] calls for transactions: list them (ListTransactions) and describe one
//! (DescribeTransactions). This broker coordinates every transaction, so the first broker of
//! the cluster answers.

use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{ClientError, Result};

/// One transactional id as ListTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: String,
}

/// One transactional id's state (DescribeTransactions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_time_ms: i64,
    /// (topic, partition) of the open transaction.
    pub partitions: Vec<(String, i32)>,
}

impl Admin {
    async fn coordinator(&self) -> Result<std::sync::Arc<crate::connection::Connection>> {
        let brokers = self.client().brokers();
        let first = brokers
            .first()
            .ok_or_else(|| ClientError::protocol("no broker known"))?;
        self.client().connection(&first.addr).await
    }

    /// Every transactional id the coordinator knows, sorted by id.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>> {
        let conn = self.coordinator().await?;
        let response = conn.send(&ListTransactionsRequest::default()).await?;
        ClientError::check(response.error_code, || "listing transactions".into())?;
        let mut out: Vec<TransactionListing> = response
            .transaction_states
            .into_iter()
            .map(|t| TransactionListing {
                transactional_id: t.transactional_id.0.to_string(),
                producer_id: t.producer_id.0,
                state: t.transaction_state.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(out)
    }

    /// One transactional id's state and the partitions of its open transaction.
    pub async fn describe_transaction(&self, id: &str) -> Result<TransactionDescription> {
        let conn = self.coordinator().await?;
        let request = DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.into()))]);
        let response = conn.send(&request).await?;
        let t = response
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::protocol("DescribeTransactions answered nothing"))?;
        ClientError::check(t.error_code, || format!("describing transaction {id}"))?;
        Ok(TransactionDescription {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.topic.0.to_string();
                    topic.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
        })
    }
}
