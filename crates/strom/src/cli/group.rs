//! `strom group ...` (placeholder until the client commands land).

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List.
    List(super::common::Bootstrap),
}

pub async fn run(_cmd: GroupCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
