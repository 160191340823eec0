//! `strom acl add|list|remove`: the ACL store in a data directory, written directly (the
//! way to grant the first rights before any client is allowed anything). A running broker
//! re-reads the file on its next check. Kafka's AdminClient / `kafka-acls.sh` work too, over
//! CreateAcls, DescribeAcls and DeleteAcls.

use std::path::PathBuf;

use anyhow::{bail, Result};
use strom_broker::security::acl::{
    operation_name, parse_operation, pattern, permission, resource, resource_type_name, AclBinding,
    AclFilter, CLUSTER_NAME, WILDCARD,
};
use strom_broker::security::authorizer::Authorizer;
use strom_broker::security::settings::SecuritySettings;
use strom_broker::topics::META_DIR;

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Add bindings: one per operation given.
    Add(BindingArgs),
    /// List every binding.
    List(DirArgs),
    /// Remove the bindings these arguments name exactly.
    Remove(BindingArgs),
}

#[derive(clap::Args, Debug)]
pub struct DirArgs {
    /// The broker's data directory.
    #[arg(long, default_value = "./kafka_data")]
    pub data_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct BindingArgs {
    /// The principal, `User:alice` (`User:*` for everyone).
    #[arg(long)]
    pub principal: String,
    /// Deny instead of allow (a deny wins over any allow).
    #[arg(long)]
    pub deny: bool,
    /// Operations, comma-separated: read, write, create, delete, alter, describe,
    /// describe-configs, alter-configs, idempotent-write, cluster-action, all.
    #[arg(long, value_delimiter = ',', required = true)]
    pub operation: Vec<String>,
    #[arg(long, group = "resource")]
    pub topic: Option<String>,
    #[arg(long, group = "resource")]
    pub group: Option<String>,
    #[arg(long, group = "resource")]
    pub transactional_id: Option<String>,
    #[arg(long, group = "resource")]
    pub cluster: bool,
    /// The name is a prefix (PREFIXED) rather than a literal name (`*` is every name).
    #[arg(long)]
    pub prefixed: bool,
    /// The client address the binding applies to.
    #[arg(long, default_value = WILDCARD)]
    pub host: String,
    #[command(flatten)]
    pub dir: DirArgs,
}

fn open(dir: &DirArgs) -> Result<Authorizer> {
    let meta = dir.data_dir.join(META_DIR);
    std::fs::create_dir_all(&meta)?;
    Ok(Authorizer::open(&meta, &SecuritySettings::default())?)
}

fn bindings(args: &BindingArgs) -> Result<Vec<AclBinding>> {
    let (resource_type, name) = match (&args.topic, &args.group, &args.transactional_id) {
        (Some(t), _, _) => (resource::TOPIC, t.clone()),
        (_, Some(g), _) => (resource::GROUP, g.clone()),
        (_, _, Some(id)) => (resource::TRANSACTIONAL_ID, id.clone()),
        _ if args.cluster => (resource::CLUSTER, CLUSTER_NAME.to_string()),
        _ => bail!("name a resource: --topic, --group, --transactional-id or --cluster"),
    };
    let mut out = Vec::new();
    for o in &args.operation {
        let Some(operation) = parse_operation(o) else {
            bail!("unknown operation {o:?}");
        };
        let b = AclBinding {
            resource_type,
            resource_name: name.clone(),
            pattern_type: if args.prefixed {
                pattern::PREFIXED
            } else {
                pattern::LITERAL
            },
            principal: args.principal.clone(),
            host: args.host.clone(),
            operation,
            permission_type: if args.deny {
                permission::DENY
            } else {
                permission::ALLOW
            },
        };
        if let Some(reason) = b.invalid_reason() {
            bail!("{reason}");
        }
        out.push(b);
    }
    Ok(out)
}

fn show(b: &AclBinding) -> String {
    format!(
        "{}\t{}:{}{}\t{}\t{}\thost={}",
        if b.permission_type == permission::DENY {
            "DENY"
        } else {
            "ALLOW"
        },
        resource_type_name(b.resource_type),
        b.resource_name,
        if b.pattern_type == pattern::PREFIXED {
            " (prefixed)"
        } else {
            ""
        },
        b.principal,
        operation_name(b.operation),
        b.host
    )
}

fn exact(b: &AclBinding) -> AclFilter {
    AclFilter {
        resource_type: b.resource_type,
        resource_name: Some(b.resource_name.clone()),
        pattern_type: b.pattern_type,
        principal: Some(b.principal.clone()),
        host: Some(b.host.clone()),
        operation: b.operation,
        permission_type: b.permission_type,
    }
}

pub async fn run(cmd: AclCommand) -> Result<()> {
    match cmd {
        AclCommand::Add(args) => {
            let new = bindings(&args)?;
            open(&args.dir)?.create(&new)?;
            for b in &new {
                println!("added\t{}", show(b));
            }
        }
        AclCommand::List(dir) => {
            let all = AclFilter {
                resource_type: resource::ANY,
                resource_name: None,
                pattern_type: pattern::ANY,
                principal: None,
                host: None,
                operation: strom_broker::security::acl::op::ANY,
                permission_type: permission::ANY,
            };
            for b in open(&dir)?.describe(&all) {
                println!("{}", show(&b));
            }
        }
        AclCommand::Remove(args) => {
            let filters: Vec<AclFilter> = bindings(&args)?.iter().map(exact).collect();
            let removed: Vec<AclBinding> = open(&args.dir)?
                .delete(&filters)?
                .into_iter()
                .flatten()
                .collect();
            if removed.is_empty() {
                bail!("no such binding");
            }
            for b in &removed {
                println!("removed\t{}", show(b));
            }
        }
    }
    Ok(())
}
