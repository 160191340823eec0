//! The broker layer: topics and partitions, the Kafka request handlers, idempotent-producer
//! state, group commit, retention and the glue to the group coordinator.
//!
//! Layout:
//! - [`config`]: every broker setting (Kafka names and defaults) and where it comes from.
//! - [`topics`], [`topic_config`], [`partition`]: the registry of topics on disk.
//! - [`append`]: the domain write path (`append -> Result<Appended, AppendError>`) that the
//!   Kafka and JSON front ends share; `record_checks` has the record-level checks and the
//!   recompression a topic's settings may ask of it.
//! - [`producer_state`]: idempotent produce (sequence checks, duplicate detection).
//! - [`txn`]: the transaction coordinator and its durable log (`__transaction_state`).
//! - [`flusher`]: group commit for durable acknowledgements.
//! - [`background`]: retention and periodic flushing.
//! - [`listeners`] and [`security`]: Kafka-style listeners; TLS settings, SASL sessions,
//!   SCRAM users and the ACL authorizer.
//! - [`quota`]: client quotas (byte rates, request time, connection rates) and per-address
//!   connection limits; throttling as Kafka's KIP-219.
//! - [`metrics`]: request counters and histograms (atomics) and the Prometheus exposition.
//! - [`cluster`]: cluster mode (metadata quorum, Kafka-style partition replication); absent
//!   on a single node.
//! - [`broker`]: the [`Broker`] itself; [`handlers`] has one file per Kafka API family.
//! - [`local`] and [`local_group`]: the in-process API front ends other than Kafka (the JSON
//!   protocol) use: produce, read, positions, and consumer group members; [`local_admin`]
//!   adds what the HTTP console needs (topic details, configs, groups with lag, resets).
//!
//! The broker sees decoded requests and answers encoded responses; sockets live in
//! `strom-server`, files in `strom-log`.

pub mod append;
pub mod background;
pub mod blocking;
pub mod broker;
pub mod cluster;
pub mod config;
pub mod fetch_sessions;
pub mod flusher;
pub mod handlers;
pub mod listeners;
pub mod local;
pub mod local_admin;
pub mod local_group;
pub mod log_cleaner;
pub mod meta;
pub mod metrics;
pub mod partition;
pub mod producer_snapshot;
pub mod producer_state;
pub mod quota;
mod record_checks;
pub mod recovery_point;
pub mod security;
pub mod topic_config;
pub mod topics;
pub mod txn;

pub use broker::{Broker, Reply, RequestContext};
pub use config::{BrokerConfig, ConfigBuilder, ConfigError, FsyncPolicy};
