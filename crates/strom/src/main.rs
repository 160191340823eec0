//! `strom`: the single binary. `serve` runs the broker; `demo` runs the seed's demonstration;
//! `topic`, `produce`, `consume`, `group` and `txn` are kcat-like client commands; `top` shows
//! live figures from the HTTP API; `cluster` shows the metadata quorum; `user` and `acl`
//! manage SCRAM users and ACLs in a data directory.

mod cli;

/// Survives requests that claim huge array lengths (see `strom_protocol::alloc_guard`).
#[global_allocator]
static GLOBAL: strom_protocol::alloc_guard::HugeAllocationGuard =
    strom_protocol::alloc_guard::HugeAllocationGuard;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "strom",
    version,
    about = "A Kafka-compatible streaming broker in one binary"
)]
struct Cli {
    /// Log lines as text (default) or one JSON object per line, for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text)]
    log_format: cli::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (Kafka protocol, optional JSON protocol) with its embedded log.
    Serve(cli::serve::ServeArgs),
    /// Start a broker on a temp dir and walk through the seed's demonstration.
    Demo(cli::demo::DemoArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cli::topic::TopicCommand),
    /// Produce one message per line of stdin.
    Produce(cli::produce::ProduceArgs),
    /// Consume messages and print them.
    Consume(cli::consume::ConsumeArgs),
    /// List and describe consumer groups.
    #[command(subcommand)]
    Group(cli::group::GroupCommand),
    /// Live figures in the terminal: throughput, topics, groups and lag (over the HTTP API).
    Top(cli::top::TopArgs),
    /// List and describe transactions.
    #[command(subcommand)]
    Txn(cli::txn::TxnCommand),
    /// Manage SCRAM users in a data directory (for SASL PLAIN and SCRAM logins).
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// Manage ACLs in a data directory (enforced with authorizer.class.name).
    #[command(subcommand)]
    Acl(cli::acl::AclCommand),
    /// Show the metadata quorum of a cluster (leader, voters, lag, brokers).
    #[command(subcommand)]
    Cluster(cli::cluster::ClusterCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(
        matches!(cli.command, Command::Serve(_) | Command::Demo(_)),
        cli.log_format,
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cli::serve::run(args).await,
            Command::Demo(args) => cli::demo::run(args).await,
            Command::Topic(cmd) => cli::topic::run(cmd).await,
            Command::Produce(args) => cli::produce::run(args).await,
            Command::Consume(args) => cli::consume::run(args).await,
            Command::Group(cmd) => cli::group::run(cmd).await,
            Command::Top(args) => cli::top::run(args).await,
            Command::Txn(cmd) => cli::txn::run(cmd).await,
            Command::Cluster(cmd) => cli::cluster::run(cmd).await,
            Command::User(cmd) => cli::user::run(cmd).await,
            Command::Acl(cmd) => cli::acl::run(cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks every argument's definition (types, conflicts, defaults) only at run time;
    /// this makes a bad one fail the build's tests instead of a user's command.
    #[test]
    fn every_command_line_definition_is_valid() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_replica_assignment_parses_in_kafka_topics_form() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "strom",
            "topic",
            "create",
            "t",
            "--replica-assignment",
            "3:1,2:3",
        ])
        .unwrap();
        let super::Command::Topic(crate::cli::topic::TopicCommand::Create(args)) = cli.command
        else {
            panic!("not a topic create");
        };
        assert_eq!(
            args.replica_assignment.unwrap().0,
            vec![vec![3, 1], vec![2, 3]]
        );
    }
}
