//! `strom txn list|describe`: the transaction coordinator's view of transactional ids.

use std::io::Write;

use anyhow::Result;
use strom_client::Admin;

use super::common::{client_config, Bootstrap};
use super::group::table;

#[derive(clap::Subcommand, Debug)]
pub enum TxnCommand {
    /// List transactional ids with their producer id and state.
    List(ListArgs),
    /// Show one transactional id: state, producer id and epoch, timeout, open partitions.
    Describe(DescribeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Transactional id.
    pub transactional_id: String,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

pub async fn run(cmd: TxnCommand) -> Result<()> {
    match cmd {
        TxnCommand::List(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let rows: Vec<Vec<String>> = admin
                .list_transactions()
                .await?
                .into_iter()
                .map(|t| vec![t.transactional_id, t.producer_id.to_string(), t.state])
                .collect();
            let mut out = std::io::stdout().lock();
            table(
                &mut out,
                &["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"],
                &rows,
            )?;
        }
        TxnCommand::Describe(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let d = admin.describe_transaction(&args.transactional_id).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "Transactional id: {}\tState: {}\tProducer: {} epoch {}\tTimeout: {} ms",
                d.transactional_id, d.state, d.producer_id, d.producer_epoch, d.timeout_ms
            )?;
            if d.start_time_ms >= 0 {
                writeln!(out, "Started: {} ms", d.start_time_ms)?;
            }
            if !d.partitions.is_empty() {
                let rows: Vec<Vec<String>> = d
                    .partitions
                    .iter()
                    .map(|(t, p)| vec![t.clone(), p.to_string()])
                    .collect();
                writeln!(out)?;
                table(&mut out, &["TOPIC", "PARTITION"], &rows)?;
            }
        }
    }
    Ok(())
}
