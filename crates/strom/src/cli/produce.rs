//! `strom produce` (placeholder until it lands).

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {}

pub async fn run(_args: ProduceArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
