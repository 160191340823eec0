//! # strom-client
//!
//! Rust clients for Strom and any other Kafka-compatible broker, speaking the Kafka wire
//! protocol through the message types of the `kafka-protocol` crate.
//!
//! - [`Producer`]: `create_topic`, `send` (returns the offset), keyed records with headers
//!   (partitioned by murmur2 like the Java client), batching (`linger_ms`, `batch_size`,
//!   `max_request_size`), compression and acks; idempotent by default (exactly once and in
//!   order per partition, retried for `delivery_timeout_ms`), its buffer bounded by
//!   `buffer_memory` bytes. See [`producer`] for the delivery guarantees.
//! - [`Consumer`]: manual assignment with positions and `seek`, or membership in a consumer
//!   group (`subscribe`, `range` or `cooperative-sticky` assignment, heartbeats); `poll` (at
//!   most `max_poll_records`), `commit`, resume from the committed offsets, `pause`/`resume`,
//!   a `Stream` of messages ([`Consumer::into_stream`]), auto-commit, a [`RebalanceListener`],
//!   `max_poll_interval_ms` and static membership; the group protocol is the classic one or
//!   KIP-848's ([`GroupProtocol::Consumer`], the broker assigns). Delivery to the application
//!   is at least once (see [`consumer`]).
//! - [`Admin`]: create, delete, list and describe topics; list and describe groups with lag.
//! - [`blocking`]: the producer and consumer for code without an async runtime.
//!
//! ## The seed's tour
//!
//! ```no_run
//! # async fn tour() -> Result<(), strom_client::ClientError> {
//! use std::time::Duration;
//! use strom_client::{Consumer, Producer};
//!
//! let producer = Producer::connect("127.0.0.1:9092").await?;
//! producer.create_topic("demo-topic", 3).await?;
//! let offset = producer.send("demo-topic", "Hello, Kafka!", 0).await?;
//! println!("stored at offset {offset}");
//!
//! let mut consumer = Consumer::connect("127.0.0.1:9092").await?;
//! consumer.assign("demo-topic", 0).await?;
//! for msg in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{} at offset {}", msg.value_str(), msg.offset);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Every client takes a bootstrap list, `"a:9092,b:9092"`, tried in turn.
//!
//! ## TLS and SASL
//!
//! `ClientConfig::security` secures every connection the client opens:
//!
//! ```no_run
//! # async fn secure() -> Result<(), strom_client::ClientError> {
//! use strom_client::{Client, ClientConfig, SecurityConfig};
//! let security = SecurityConfig::from_properties([
//!     ("security.protocol", "SASL_SSL"),
//!     ("sasl.mechanisms", "SCRAM-SHA-512"),
//!     ("sasl.username", "alice"),
//!     ("sasl.password", "alice-secret"),
//!     ("ssl.ca.location", "ca.pem"),
//! ])?;
//! let config = ClientConfig { security, ..ClientConfig::default() };
//! let client = Client::connect_with("broker.example:9093", config).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## A broker you do not trust
//!
//! The generated response decoders (`kafka-protocol`) reserve memory from array lengths read
//! off the wire before decoding the elements; a broker that claims 2^31 elements makes the
//! allocator fail and Rust abort the process. Record batches are decoded by this crate, never
//! reserve from wire counts and decompress within `ConsumerConfig::decompressed_max_bytes`,
//! but for the rest a program that talks to brokers it does not trust should install
//! [`HugeAllocationGuard`] as its global allocator, as the `strom` binary does (`tests/fuzz_responses.rs` runs a hostile broker
//! against every client call with it):
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: strom_client::HugeAllocationGuard = strom_client::HugeAllocationGuard;
//! ```
//!
//! Errors are one type, [`ClientError`]; Kafka error codes keep their protocol names
//! (`UnknownTopicOrPartition`, `TopicAlreadyExists`, ...) and a broker that cannot be reached
//! reads `cannot reach broker at 127.0.0.1:9092: connection refused`.
//!
//! ## Layout
//!
//! - `connection`: one TCP connection, framing, correlation ids, ApiVersions negotiation.
//! - `security`: [`SecurityConfig`] (`security.protocol`, TLS, SASL) from kcat's property
//!   names; `transport`: TCP or TLS (`tls`) under a connection, then SASL (`sasl`, with the
//!   client side of SCRAM in `scram`).
//! - `cluster`: [`Client`], the shared cluster handle: metadata, connections, reconnects.
//! - `records`: [`Message`], headers, compression codecs; `batch`: the record-batch codec.
//! - `partitioner`: murmur2 and the partitioner.
//! - `producer/`: the producer and its batching task.
//! - `consumer/`: the consumer, fetching, group membership (classic in `group`, KIP-848 in
//!   `consumer_protocol` and `reconcile`), the range assignor, the stream.
//!
//! Runnable programs: `crates/strom-client/examples/` (producer, consumer group, admin).
//! - `offsets`: ListOffsets and OffsetFetch helpers; `admin`: [`Admin`].

pub mod admin;
pub mod admin_txn;
mod batch;
pub mod blocking;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod records;
mod sasl;
mod scram;
pub mod security;
mod tls;
pub mod transport;

pub use admin::{Admin, NewTopic};
pub use cluster::{Client, ClientConfig};
pub use consumer::{
    Assignor, Consumer, ConsumerConfig, ConsumerGroupMetadata, GroupProtocol, IsolationLevel,
    Message, OffsetReset, RebalanceListener,
};
pub use error::{ClientError, ResponseError, Result};
pub use offsets::OffsetSpec;
pub use producer::{
    Acks, Producer, ProducerConfig, ProducerRecord, RecordMetadata, TransactionState,
};
pub use records::CompressionType;
pub use security::{SaslMechanism, SecurityConfig, SecurityProtocol};
pub use strom_protocol::alloc_guard::HugeAllocationGuard;
