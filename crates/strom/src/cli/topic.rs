//! `strom topic ...` (placeholder until the client commands land).

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// List.
    List(super::common::Bootstrap),
}

pub async fn run(_cmd: TopicCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
