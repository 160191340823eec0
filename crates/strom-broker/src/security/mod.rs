//! Security: who a connection is and what it may do.
//!
//! Layout: [`settings`] (the `ssl.*`, `sasl.*` and authorizer settings), [`scram`] (SCRAM
//! credentials and the server side of an exchange), [`users`] (the durable SCRAM user
//! store), [`principal_mapping`] (`ssl.principal.mapping.rules`), [`session`] (a connection's
//! SASL state: handshake, authenticate, principal), [`acl`] (Kafka's ACL model), [`authorizer`]
//! (durable ACLs and the allow/deny decision) and [`password_check`] (a user's password against
//! the store, for HTTP Basic logins).
//! TLS itself lives in `strom-server`, which hands the certificate's principal in.

pub mod acl;
pub mod authorizer;
pub mod password_check;
pub mod principal_mapping;
pub mod scram;
pub mod session;
pub mod settings;
pub mod users;
