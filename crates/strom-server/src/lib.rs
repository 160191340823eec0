//! strom-server
