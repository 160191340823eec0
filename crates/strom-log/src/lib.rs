//! strom-log
