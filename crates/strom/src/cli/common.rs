//! Options and helpers shared by every client command.

use strom_client::ClientConfig;

/// `--bootstrap HOST:PORT[,HOST:PORT...]`, default `127.0.0.1:9092`, also read from `STROM_BOOTSTRAP`.
#[derive(clap::Args, Debug, Clone)]
pub struct Bootstrap {
    /// Broker addresses to bootstrap from, tried in turn: HOST:PORT[,HOST:PORT...].
    #[arg(
        long,
        env = "STROM_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,...]"
    )]
    pub bootstrap: String,
}

/// Client settings for CLI commands: a recognizable client id, and a short connect retry so an
/// unreachable broker is reported within a second.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        client_id: "strom-cli".into(),
        ..ClientConfig::default()
    }
}

/// Parses `key=value` (for `--config`).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

/// Whether an error is a closed stdout (`strom consume ... | head`), which ends quietly.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
