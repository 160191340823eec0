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
    /// ssl.endpoint.identification.algorithm; for `consume` isolation.level, group.protocol
    /// (classic or consumer) and group.remote.assignor, for `produce` transactional.id and
    /// transaction.timeout.ms.
    #[arg(short = 'X', value_name = "PROPERTY=VALUE", value_parser = parse_key_value)]
    pub property: Vec<(String, String)>,
    /// Read properties from FILE (`property=value` lines, `#` comments); -X wins over it.
    #[arg(short = 'F', value_name = "FILE")]
    pub properties_file: Option<std::path::PathBuf>,
}

impl Bootstrap {
    /// The properties from `-F` and then `-X`, in that order (a later one wins).
    pub fn properties(&self) -> anyhow::Result<Properties> {
        let mut pairs = Vec::new();
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
                pairs.push(pair);
            }
        }
        pairs.extend(self.property.iter().cloned());
        Ok(Properties(pairs))
    }
}

/// Properties a single command understands, and which command that is: named in the error
/// when another command is given one.
const COMMAND_PROPERTIES: &[(&str, &str)] = &[
    ("isolation.level", "strom consume"),
    ("group.protocol", "strom consume"),
    ("group.remote.assignor", "strom consume"),
    ("transactional.id", "strom produce"),
    ("transaction.timeout.ms", "strom produce"),
];

/// `-F` and `-X` properties. A command takes the ones it handles itself with
/// [`Properties::take`]; the rest must be security properties.
#[derive(Debug, Clone, Default)]
pub struct Properties(Vec<(String, String)>);

impl Properties {
    /// Removes every occurrence of `name` and returns the last value given.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut value = None;
        self.0.retain(|(k, v)| {
            if k.trim() == name {
                value = Some(v.trim().to_string());
                false
            } else {
                true
            }
        });
        value
    }

    /// The security settings; a property left over that belongs to another command is
    /// named with that command.
    pub fn security(&self) -> anyhow::Result<SecurityConfig> {
        for (key, _) in &self.0 {
            if let Some((_, command)) = COMMAND_PROPERTIES.iter().find(|(k, _)| k == &key.trim()) {
                anyhow::bail!("property {key} applies to `{command}` only");
            }
        }
        let pairs = self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        Ok(SecurityConfig::from_properties(pairs)?)
    }
}

/// A setting that has both a flag and a `-X` property (`--isolation-level` and
/// `isolation.level`): either may be given, and both only if they agree.
pub fn flag_or_property<T>(
    flag: Option<T>,
    flag_name: &str,
    properties: &mut Properties,
    property_name: &str,
) -> anyhow::Result<Option<T>>
where
    T: PartialEq + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let Some(text) = properties.take(property_name) else {
        return Ok(flag);
    };
    let from_property = text
        .parse::<T>()
        .map_err(|e| anyhow::anyhow!("property {property_name}: {e}"))?;
    match flag {
        Some(f) if f != from_property => {
            anyhow::bail!("{flag_name} and -X {property_name}={text} disagree; give one of them")
        }
        _ => Ok(Some(from_property)),
    }
}

/// Client settings for CLI commands: a recognizable client id and the security properties.
pub fn client_config(bootstrap: &Bootstrap) -> anyhow::Result<ClientConfig> {
    client_config_from(&bootstrap.properties()?)
}

/// [`client_config`] from properties a command already took its own from.
pub fn client_config_from(properties: &Properties) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig {
        client_id: "strom-cli".into(),
        security: properties.security()?,
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
