//! Strom's protocol layer: framing, request headers, supported API versions and response
//! encoding for the Apache Kafka wire protocol. Pure codec: no I/O, no async.
//!
//! Layout:
//! - [`alloc_guard`]: a global allocator that survives decoders reserving memory for huge
//!   lengths read off the wire (the one part of this crate with `unsafe`).
//! - [`control`]: transaction markers (control batches) in Kafka's layout.
//! - [`frame`]: two-step framing (is a whole size-prefixed frame buffered, and is it under the limit?).
//! - [`header`]: request header decoding, including the KIP-511 path for ApiVersions requests newer
//!   than ours and the error for unknown API keys.
//! - [`versions`]: the API version ranges this broker serves, advertised in ApiVersions.
//! - [`partition_key`]: the Java client's murmur2 key partitioning.
//! - [`record_batch`]: the RecordBatch v2 header layout and view (the one definition the log,
//!   the broker and the client share), batch validation, CRC-32C and in-place patches.
//! - [`recompress`]: a batch rewritten in another codec (a topic's `compression.type`).
//! - [`records`]: decoding a batch's records with decompression and reservations bounded.
//! - [`response`]: encodes a response body behind its size prefix and header.
//!
//! Message bodies themselves come from the `kafka-protocol` crate, generated from Kafka's own JSON
//! schemas; it is re-exported so every crate uses the same version.

pub mod alloc_guard;
pub mod control;
pub mod frame;
pub mod header;
pub mod partition_key;
pub mod recompress;
pub mod record_batch;
pub mod records;
pub mod response;
pub mod versions;

pub use kafka_protocol;
pub use kafka_protocol::error::ResponseError;
