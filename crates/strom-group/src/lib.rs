//! strom-group
