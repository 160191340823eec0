//! `strom topic create|list|describe|delete`.

use std::io::Write;

use anyhow::Result;
use strom_client::{Admin, NewTopic};

use super::common::{client_config, parse_key_value, Bootstrap};

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topic names, one per line.
    List(ListArgs),
    /// Show a topic's partitions, leaders and configs.
    Describe(NameArgs),
    /// Delete a topic and all its messages.
    Delete(NameArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replicas per partition (1 on a single broker).
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Replicas chosen per partition, kafka-topics' form: partitions separated by `,`, the
    /// broker ids of one partition by `:`, the first its preferred leader (`3:1,2:3,1:2`).
    #[arg(long, value_name = "IDS", value_parser = parse_assignment,
          conflicts_with_all = ["partitions", "replication_factor"])]
    pub replica_assignment: Option<ReplicaAssignment>,
    /// Topic config, e.g. `--config retention.ms=60000`; repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub configs: Vec<(String, String)>,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Include internal topics such as `__consumer_offsets`.
    #[arg(long)]
    pub internal: bool,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    /// Topic name.
    pub name: String,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

pub async fn run(cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let assignments = args.replica_assignment.map_or_else(Vec::new, |a| a.0);
            let partitions = if assignments.is_empty() {
                args.partitions
            } else {
                assignments.len() as i32
            };
            let topic = NewTopic {
                name: args.name.clone(),
                partitions,
                replication_factor: args.replication_factor,
                configs: args.configs,
                assignments,
            };
            admin.create_topics(vec![topic]).await?;
            println!(
                "created topic {} with {} partition{}",
                args.name,
                partitions,
                if partitions == 1 { "" } else { "s" }
            );
        }
        TopicCommand::List(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let topics = admin.list_topics().await?;
            let mut out = std::io::stdout().lock();
            for t in topics.iter().filter(|t| args.internal || !t.internal) {
                writeln!(out, "{}", t.name)?;
            }
        }
        TopicCommand::Describe(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let d = admin.describe_topic(&args.name).await?;
            let mut out = std::io::stdout().lock();
            let rf = d.info.partitions.first().map_or(0, |p| p.replicas.len());
            write!(out, "Topic: {}", d.info.name)?;
            if !d.info.id.is_nil() {
                write!(out, "\tId: {}", d.info.id)?;
            }
            writeln!(
                out,
                "\tPartitions: {}\tReplicationFactor: {}",
                d.info.partitions.len(),
                rf
            )?;
            for p in &d.info.partitions {
                writeln!(
                    out,
                    "\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                    p.partition,
                    if p.leader < 0 {
                        "none".to_string()
                    } else {
                        p.leader.to_string()
                    },
                    join(&p.replicas),
                    join(&p.isr)
                )?;
            }
            if !d.configs.is_empty() {
                writeln!(out, "Configs:")?;
                for c in &d.configs {
                    writeln!(
                        out,
                        "\t{}={}{}",
                        c.name,
                        c.value.as_deref().unwrap_or(""),
                        if c.is_default { "" } else { "\t(set on topic)" }
                    )?;
                }
            }
        }
        TopicCommand::Delete(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            admin.delete_topic(&args.name).await?;
            println!("deleted topic {}", args.name);
        }
    }
    Ok(())
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The replicas of each partition, in partition order.
#[derive(Debug, Clone)]
pub struct ReplicaAssignment(pub Vec<Vec<i32>>);

/// `3:1,2:3,1:2` as the replicas of partitions 0, 1 and 2.
fn parse_assignment(s: &str) -> std::result::Result<ReplicaAssignment, String> {
    s.split(',')
        .map(|partition| {
            partition
                .split(':')
                .map(|id| {
                    id.trim()
                        .parse::<i32>()
                        .map_err(|_| format!("not a broker id: {id:?}"))
                })
                .collect()
        })
        .collect::<std::result::Result<_, _>>()
        .map(ReplicaAssignment)
}
