//! strom-client
pub mod cluster;
pub mod connection;
pub mod error;
pub mod partitioner;
pub mod records;
