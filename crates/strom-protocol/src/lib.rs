//! strom-protocol
