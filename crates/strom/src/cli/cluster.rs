//! `strom cluster status --controller HOST:PORT`: the metadata quorum as one node sees it
//! (asked over the inter-node RPC on its `controller.listen`).

use std::time::Duration;

use anyhow::Context;
use strom_cluster::messages::{Request, Response};
use strom_cluster::rpc::Peer;

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// Quorum leader, term, voters with their replication lag, and the registered brokers.
    Status {
        /// A node's controller address (its `controller.listen`).
        #[arg(long, default_value = "127.0.0.1:9093", value_name = "HOST:PORT")]
        controller: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status { controller, json } = cmd;
    let peer = Peer::new(controller.clone());
    let (resp, _) = peer
        .call::<_, Response>(&Request::Status, &[], Duration::from_secs(5))
        .await
        .with_context(|| format!("cannot ask {controller}"))?;
    let Response::Status(s) = resp else {
        anyhow::bail!("unexpected answer from {controller}: {resp:?}");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
    println!("node {} sees leader {leader}, term {}", s.node_id, s.term);
    println!(
        "last log index {}, last applied {}",
        s.last_log_index.map_or("-".into(), |i| i.to_string()),
        s.last_applied.map_or("-".into(), |i| i.to_string())
    );
    let last = s.last_log_index.unwrap_or(0);
    for v in &s.voters {
        let lag = s
            .replication
            .iter()
            .find(|(id, _)| id == v)
            .map(|(_, m)| last.saturating_sub(m.unwrap_or(0)).to_string())
            .unwrap_or_else(|| "-".into());
        let role = if Some(*v) == s.leader {
            "leader"
        } else {
            "voter"
        };
        println!("voter {v}: {role}, lag {lag}");
    }
    for (id, addr, fenced) in &s.brokers {
        let state = if *fenced { "fenced" } else { "alive" };
        println!("broker {id}: {addr} {state}");
    }
    Ok(())
}
