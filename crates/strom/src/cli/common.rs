//! Options and helpers shared by every client command: where the brokers are and how to
//! reach them securely (kcat's `-X property=value` and `-F file`).

use anyhow::Context;
use strom_client::{ClientConfig, SecurityConfig};

/// `--bootstrap HOST:PORT[,HOST:PORT...]`, default `127.0.0.1:9092`, also read from
/// `STROM_BOOTSTRAP`; and the security properties.
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
    /// A client property, as kcat takes it (repeatable): security.protocol, sasl.mechanisms,
    /// sasl.username, sasl.password, ssl.ca.location, ssl.certificate.location,
    /// ssl.key.location, enable.ssl.certificate.verification,
    /// ssl.endpoint.identification.algorithm.
    #[arg(short = 'X', value_name = "PROPERTY=VALUE", value_parser = parse_key_value)]
    pub property: Vec<(String, String)>,
    /// Read properties from FILE (`property=value` lines, `#` comments); -X wins over it.
    #[arg(short = 'F', value_name = "FILE")]
    pub properties_file: Option<std::path::PathBuf>,
}

impl Bootstrap {
    /// The security settings from `-F` and then `-X`.
    pub fn security(&self) -> anyhow::Result<SecurityConfig> {
        let mut properties = Vec::new();
        if let Some(path) = &self.properties_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read properties file {}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let pair = parse_key_value(line)
                    .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
                properties.push(pair);
            }
        }
        properties.extend(self.property.iter().cloned());
        let pairs = properties.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(SecurityConfig::from_properties(pairs)?)
    }
}

/// Client settings for CLI commands: a recognizable client id and the security properties.
pub fn client_config(bootstrap: &Bootstrap) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig {
        client_id: "strom-cli".into(),
        security: bootstrap.security()?,
        ..ClientConfig::default()
    })
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
