//! `strom consume` (placeholder until it lands).

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {}

pub async fn run(_args: ConsumeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
