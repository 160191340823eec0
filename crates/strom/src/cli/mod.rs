//! One module per subcommand. Client commands share `--bootstrap` handling in `common`.

pub mod acl;
pub mod cluster;
pub mod common;
pub mod consume;
pub mod demo;
mod demo_cluster;
pub mod group;
pub mod produce;
pub mod produce_txn;
pub mod serve;
pub mod top;
pub mod topic;
pub mod txn;
pub mod user;

/// Logs go to stderr; the level comes from `RUST_LOG` (default `info` for the broker,
/// `warn` for client commands so their stdout stays clean).
pub fn init_logging(broker: bool, format: LogFormat) {
    // openraft narrates every vote and append at info; its warnings are what matter here.
    let default = if broker { "info,openraft=warn" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
