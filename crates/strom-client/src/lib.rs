//! strom-client
pub mod admin;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod records;

pub use admin::Admin;
pub use cluster::{Client, ClientConfig};
pub use error::{ClientError, Result};
pub use producer::{Producer, ProducerRecord};
