//! Consumer.
pub mod assignor;
