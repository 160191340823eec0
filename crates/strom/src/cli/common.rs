//! Options shared by every client command.

/// `--bootstrap HOST:PORT`, default `127.0.0.1:9092`, also read from `STROM_BOOTSTRAP`.
#[derive(clap::Args, Debug, Clone)]
pub struct Bootstrap {
    /// Broker address to bootstrap from.
    #[arg(long, env = "STROM_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}
