//! The server layer: TCP listeners and connections. The Kafka listener frames requests, hands
//! them to the broker and writes responses in order; the JSON listener serves the seed's
//! newline-delimited JSON protocol. Both bound their connections and in-flight work, and both
//! stop on the shared shutdown signal.
//!
//! Layout: [`shutdown`] (the signal), [`accept`] (the accept loop and connection bound both
//! listeners share), [`kafka`] (listener and connection), [`request_budget`]
//! (`queued.max.request.bytes`), [`json`] (the JSON protocol listener), [`tls`] (the rustls
//! acceptor and certificate subjects), [`tls_reload`] (certificate reload on SIGHUP or a
//! changed file), [`http`] (metrics, health, the JSON API and the web console, with an HTTP
//! Basic login and the Kafka ACLs when security is on, and HTTPS).

pub mod accept;
pub mod http;
pub mod json;
pub mod kafka;
pub mod request_budget;
pub mod shutdown;
pub mod tls;
pub mod tls_reload;

pub use shutdown::{Shutdown, ShutdownController};
