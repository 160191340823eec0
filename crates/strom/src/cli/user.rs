//! `strom user create|list|delete`: the SCRAM user store in a data directory, written
//! directly (as Kafka's `kafka-storage format --add-scram` does), so the first user exists
//! before any client can log in. A running broker re-reads the file on its next look-up.
//! Only salted keys are stored, never the password.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use strom_broker::security::scram::{ScramCredential, DEFAULT_ITERATIONS, MIN_ITERATIONS};
use strom_broker::security::settings::{parse_mechanisms, Mechanism};
use strom_broker::security::users::UserStore;
use strom_broker::topics::META_DIR;

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user, or set a new password (one credential per SCRAM mechanism).
    Create(CreateArgs),
    /// List users with their mechanisms and iteration counts.
    List(DirArgs),
    /// Delete a user's credentials.
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
pub struct DirArgs {
    /// The broker's data directory.
    #[arg(long, default_value = "./kafka_data")]
    pub data_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// The password; without it, the first line of stdin (keeps it out of the process list).
    #[arg(long)]
    pub password: Option<String>,
    /// SCRAM mechanisms to store a credential for (PLAIN logins check against these too).
    #[arg(long, default_value = "SCRAM-SHA-256,SCRAM-SHA-512")]
    pub mechanisms: String,
    #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
    pub iterations: u32,
    #[command(flatten)]
    pub dir: DirArgs,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    pub name: String,
    #[command(flatten)]
    pub dir: DirArgs,
}

fn open(dir: &DirArgs) -> Result<UserStore> {
    let meta = dir.data_dir.join(META_DIR);
    std::fs::create_dir_all(&meta).with_context(|| format!("cannot create {}", meta.display()))?;
    Ok(UserStore::open(&meta)?)
}

pub async fn run(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create(args) => {
            let mechanisms = parse_mechanisms(&args.mechanisms).map_err(anyhow::Error::msg)?;
            if mechanisms.is_empty() || mechanisms.contains(&Mechanism::Plain) {
                bail!("give SCRAM-SHA-256 and/or SCRAM-SHA-512");
            }
            if args.iterations < MIN_ITERATIONS {
                bail!("at least {MIN_ITERATIONS} iterations, as Kafka requires");
            }
            let password = match args.password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if args.name.is_empty() || password.is_empty() {
                bail!("the user name and the password must not be empty");
            }
            let upserts = mechanisms
                .into_iter()
                .map(|m| {
                    let c = ScramCredential::from_password(m, &password, args.iterations);
                    (args.name.clone(), m, c)
                })
                .collect();
            open(&args.dir)?.apply(upserts, &[])?;
            println!("user {} stored", args.name);
        }
        UserCommand::List(dir) => {
            for (user, mechs) in open(&dir)?.list() {
                let mechs: Vec<String> = mechs
                    .iter()
                    .map(|(m, i)| format!("{}({i})", m.name()))
                    .collect();
                println!("{user}\t{}", mechs.join(","));
            }
        }
        UserCommand::Delete(args) => {
            let deletions: Vec<_> = Mechanism::SCRAM
                .into_iter()
                .map(|m| (args.name.clone(), m))
                .collect();
            let existed = open(&args.dir)?.apply(vec![], &deletions)?;
            if !existed.contains(&true) {
                bail!("no user {}", args.name);
            }
            println!("user {} deleted", args.name);
        }
    }
    Ok(())
}
