//! `strom group list|describe`.

use std::io::Write;

use anyhow::{bail, Result};
use strom_client::Admin;

use super::common::{client_config, Bootstrap};

#[derive(clap::Subcommand, Debug)]
pub enum GroupCommand {
    /// List consumer group ids, one per line.
    List(ListArgs),
    /// Show a group's state, members, assignments, committed offsets and lag.
    Describe(DescribeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// Group id.
    pub group: String,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

pub async fn run(cmd: GroupCommand) -> Result<()> {
    match cmd {
        GroupCommand::List(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let groups = admin.list_groups().await?;
            let mut out = std::io::stdout().lock();
            for g in groups {
                writeln!(out, "{}", g.group_id)?;
            }
        }
        GroupCommand::Describe(args) => {
            let admin =
                Admin::connect_with(&args.bootstrap.bootstrap, client_config(&args.bootstrap)?)
                    .await?;
            let d = admin.describe_group(&args.group).await?;
            if d.members.is_empty()
                && d.offsets.is_empty()
                && matches!(d.state.as_str(), "Dead" | "")
            {
                bail!("group {} does not exist", args.group);
            }
            let mut out = std::io::stdout().lock();
            let protocol = match (d.protocol_type.as_str(), d.protocol.as_str()) {
                ("", _) => "-".to_string(),
                (t, "") => t.to_string(),
                (t, p) => format!("{t}/{p}"),
            };
            writeln!(
                out,
                "Group: {}\tState: {}\tProtocol: {}\tMembers: {}",
                d.group_id,
                d.state,
                protocol,
                d.members.len()
            )?;
            if !d.members.is_empty() {
                writeln!(out)?;
                let rows: Vec<Vec<String>> = d
                    .members
                    .iter()
                    .map(|m| {
                        let assignment = m
                            .assignment
                            .iter()
                            .map(|(t, ps)| {
                                let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
                                format!("{t}:{}", ps.join(","))
                            })
                            .collect::<Vec<_>>()
                            .join(" ");
                        vec![
                            m.member_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            if assignment.is_empty() {
                                "-".into()
                            } else {
                                assignment
                            },
                        ]
                    })
                    .collect();
                table(
                    &mut out,
                    &["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"],
                    &rows,
                )?;
            }
            if !d.offsets.is_empty() {
                writeln!(out)?;
                let rows: Vec<Vec<String>> = d
                    .offsets
                    .iter()
                    .map(|o| {
                        let owner = d
                            .members
                            .iter()
                            .find(|m| {
                                m.assignment
                                    .iter()
                                    .any(|(t, ps)| *t == o.topic && ps.contains(&o.partition))
                            })
                            .map_or("-".to_string(), |m| m.member_id.clone());
                        vec![
                            o.topic.clone(),
                            o.partition.to_string(),
                            o.committed.map_or("-".to_string(), |c| c.to_string()),
                            o.end_offset.to_string(),
                            o.lag.map_or("-".to_string(), |l| l.to_string()),
                            owner,
                        ]
                    })
                    .collect();
                table(
                    &mut out,
                    &[
                        "TOPIC",
                        "PARTITION",
                        "COMMITTED",
                        "END-OFFSET",
                        "LAG",
                        "MEMBER-ID",
                    ],
                    &rows,
                )?;
            }
        }
    }
    Ok(())
}

/// Prints rows under a header, columns padded to their widest cell.
pub(crate) fn table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(|c| c.as_str()).collect()))?;
    }
    Ok(())
}
