//! `strom consume TOPIC`: prints messages, one per line by default.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use strom_client::{
    Consumer, ConsumerConfig, GroupProtocol, IsolationLevel, Message, OffsetReset, OffsetSpec,
    ResponseError,
};

use super::common::{client_config_from, flag_or_property, is_broken_pipe, Bootstrap};

/// How long one poll waits before checking for Ctrl-C and the end of the log again.
const POLL_INTERVAL_MS: u64 = 500;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Format placeholders: %s value, %k key, %o offset, %p partition, \
    %t timestamp (ms), %T topic, %% a percent sign; escapes \\n, \\t, \\\\.\n\n\
    Examples:\n  \
    strom consume demo-topic --from-beginning --exit-at-end\n  \
    strom consume demo-topic --partition 0 --offset 5 --count 1 --format '%o: %s'\n  \
    strom consume demo-topic --group readers\n  \
    strom consume demo-topic --group readers -X group.protocol=consumer\n  \
    strom consume demo-topic --from-beginning --isolation-level read_committed"
)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Read only this partition (default: all partitions, or the group's share).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start at the oldest message (default: only new messages, or the group's committed
    /// offset).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset; negative counts back from the end (-1: the last message).
    #[arg(long, allow_hyphen_values = true)]
    pub offset: Option<i64>,
    /// Consume as a member of this consumer group and commit what was printed.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// Output format per message (default: the value, `%s`).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Stop at the end of the partitions as they were when consuming started.
    #[arg(long, short = 'e')]
    pub exit_at_end: bool,
    /// Which records to read: read_uncommitted (every record, Kafka's default) or
    /// read_committed (only those of committed transactions, up to the last stable offset).
    /// Same as `-X isolation.level=LEVEL`.
    #[arg(long, value_name = "LEVEL", value_parser = parse_isolation_level)]
    pub isolation_level: Option<IsolationLevel>,
    #[command(flatten)]
    pub bootstrap: Bootstrap,
}

fn parse_isolation_level(s: &str) -> Result<IsolationLevel, String> {
    s.parse()
}

pub async fn run(args: ConsumeArgs) -> Result<()> {
    let format = Format::parse(args.format.as_deref().unwrap_or("%s"));
    let mut properties = args.bootstrap.properties()?;
    let isolation_level = flag_or_property(
        args.isolation_level,
        "--isolation-level",
        &mut properties,
        "isolation.level",
    )?;
    let group_protocol = match properties.take("group.protocol") {
        Some(text) => text
            .parse::<GroupProtocol>()
            .map_err(|e| anyhow::anyhow!("property group.protocol: {e}"))?,
        None => GroupProtocol::Classic,
    };
    let group_remote_assignor = properties.take("group.remote.assignor");
    let config = ConsumerConfig {
        client: client_config_from(&properties)?,
        isolation_level: isolation_level.unwrap_or_default(),
        group_id: args.group.clone(),
        group_protocol,
        group_remote_assignor,
        auto_offset_reset: if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect_with(&args.bootstrap.bootstrap, config).await?;
    let grouped = args.group.is_some() && args.partition.is_none();
    if grouped {
        consumer.subscribe(&[args.topic.as_str()]).await?;
    } else {
        match args.partition {
            Some(p) => consumer.assign(&args.topic, p).await?,
            None => consumer.assign_topic(&args.topic).await?,
        }
        if args.from_beginning {
            consumer.seek_to(OffsetSpec::Earliest).await?;
        } else if args.group.is_none() && args.offset.is_none() {
            consumer.seek_to(OffsetSpec::Latest).await?;
        }
    }
    if let Some(offset) = args.offset {
        if grouped {
            // The group's assignment is known after the first poll; join now.
            consumer.poll(Duration::ZERO).await?;
        }
        seek_all(&mut consumer, offset).await?;
    }

    let result = consume_loop(&mut consumer, &args, &format).await;
    let closed = consumer.close().await;
    result?;
    closed?;
    Ok(())
}

async fn seek_all(consumer: &mut Consumer, offset: i64) -> Result<()> {
    let assignment = consumer.assignment();
    let ends = if offset < 0 {
        consumer.end_offsets().await?
    } else {
        HashMap::new()
    };
    for (topic, partition) in assignment {
        let target = if offset < 0 {
            let end = ends.get(&(topic.clone(), partition)).copied().unwrap_or(0);
            (end + offset).max(0)
        } else {
            offset
        };
        consumer.seek(&topic, partition, target)?;
    }
    Ok(())
}

async fn consume_loop(consumer: &mut Consumer, args: &ConsumeArgs, format: &Format) -> Result<()> {
    let mut printed = 0u64;
    // Per partition, the offset after the last printed message, not yet committed.
    let mut committable: HashMap<(String, i32), i64> = HashMap::new();
    // Partitions with messages read but not printed (--count reached); their position is
    // past what the user saw.
    let mut unprinted: HashSet<(String, i32)> = HashSet::new();
    let mut ends: Option<HashMap<(String, i32), i64>> = None;
    let stdout = std::io::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        let messages = tokio::select! {
            m = consumer.poll(Duration::from_millis(POLL_INTERVAL_MS)) => m?,
            _ = &mut ctrl_c => break,
        };
        if args.exit_at_end && ends.is_none() && !consumer.assignment().is_empty() {
            ends = Some(consumer.end_offsets().await?);
        }
        let mut out = stdout.lock();
        let mut printed_now = 0usize;
        for msg in &messages {
            if args.count.is_some_and(|c| printed >= c) {
                break;
            }
            let line = format.render(msg);
            if let Err(e) = out.write_all(line.as_bytes()) {
                if is_broken_pipe(&e) {
                    return Ok(());
                }
                return Err(e.into());
            }
            printed += 1;
            printed_now += 1;
        }
        if let Err(e) = out.flush() {
            if is_broken_pipe(&e) {
                return Ok(());
            }
            return Err(e.into());
        }
        drop(out);
        if let Some(group) = &args.group {
            // Commit only what was printed: with --count, the rest of the poll stays unread.
            for msg in &messages[..printed_now] {
                committable.insert((msg.topic.clone(), msg.partition), msg.offset + 1);
            }
            for msg in &messages[printed_now..] {
                unprinted.insert((msg.topic.clone(), msg.partition));
            }
            if printed_now > 0 {
                commit_printed(consumer, group, &mut committable).await?;
            }
        }
        if let Some(ends) = &ends {
            let done = ends.iter().all(|((t, p), end)| {
                consumer
                    .position(t, *p)
                    .map_or(*end == 0, |pos| pos >= *end)
            });
            if done {
                break;
            }
        }
    }
    if let Some(group) = &args.group {
        // As Kafka's auto-commit would: every owned partition's position, so lag is known
        // for partitions where nothing arrived too.
        for tp in consumer.assignment() {
            if unprinted.contains(&tp) || committable.contains_key(&tp) {
                continue;
            }
            if let Some(pos) = consumer.position(&tp.0, tp.1) {
                committable.insert(tp, pos);
            }
        }
        commit_printed(consumer, group, &mut committable).await?;
    }
    Ok(())
}

/// Commits, per partition, the offset after the last printed message. Only partitions this
/// member still owns are committed (another member may have moved on since); a commit refused
/// because the group is rebalancing is retried after the next poll.
async fn commit_printed(
    consumer: &mut Consumer,
    group: &str,
    committable: &mut HashMap<(String, i32), i64>,
) -> Result<()> {
    let owned: std::collections::HashSet<(String, i32)> =
        consumer.assignment().into_iter().collect();
    committable.retain(|tp, _| owned.contains(tp));
    if committable.is_empty() {
        return Ok(());
    }
    let offsets: Vec<_> = committable.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
    match consumer.commit_offsets(&offsets).await {
        Ok(()) => {
            committable.clear();
            Ok(())
        }
        Err(e)
            if matches!(
                e.code(),
                Some(
                    ResponseError::RebalanceInProgress
                        | ResponseError::IllegalGeneration
                        | ResponseError::UnknownMemberId
                        | ResponseError::StaleMemberEpoch
                )
            ) =>
        {
            tracing::info!(group, error = %e, "group is rebalancing; committing after rejoin");
            Ok(())
        }
        Err(e) => bail!("cannot commit offsets of group {group}: {e}"),
    }
}

/// A parsed `--format`.
#[derive(Debug, PartialEq, Eq)]
struct Format(Vec<Piece>);

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Key,
    Value,
    Offset,
    Partition,
    Timestamp,
    Topic,
}

impl Format {
    fn parse(s: &str) -> Format {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            let field = match (c, chars.peek().copied()) {
                ('%', Some('k')) => Some(Piece::Key),
                ('%', Some('s')) => Some(Piece::Value),
                ('%', Some('o')) => Some(Piece::Offset),
                ('%', Some('p')) => Some(Piece::Partition),
                ('%', Some('t')) => Some(Piece::Timestamp),
                ('%', Some('T')) => Some(Piece::Topic),
                ('%', Some('%')) => {
                    chars.next();
                    text.push('%');
                    None
                }
                ('\\', Some('n')) => {
                    chars.next();
                    text.push('\n');
                    None
                }
                ('\\', Some('t')) => {
                    chars.next();
                    text.push('\t');
                    None
                }
                ('\\', Some('\\')) => {
                    chars.next();
                    text.push('\\');
                    None
                }
                _ => {
                    text.push(c);
                    None
                }
            };
            if let Some(field) = field {
                chars.next();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(field);
            }
        }
        // Every message ends its line unless the format already ends with a newline.
        if !text.ends_with('\n') {
            text.push('\n');
        }
        pieces.push(Piece::Text(text));
        Format(pieces)
    }

    fn render(&self, msg: &Message) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Key => out.push_str(&msg.key_str().unwrap_or_default()),
                Piece::Value => out.push_str(&msg.value_str()),
                Piece::Offset => out.push_str(&msg.offset.to_string()),
                Piece::Partition => out.push_str(&msg.partition.to_string()),
                Piece::Timestamp => out.push_str(&msg.timestamp.to_string()),
                Piece::Topic => out.push_str(&msg.topic),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            key: Some("k".into()),
            value: Some("v".into()),
            headers: vec![],
            timestamp: 1000,
        }
    }

    #[test]
    fn format_placeholders_and_escapes() {
        let f = Format::parse("%k %s %o %p %t %T 100%%\\t|");
        assert_eq!(f.render(&msg()), "k v 7 2 1000 t 100%\t|\n");
        assert_eq!(Format::parse("%s").render(&msg()), "v\n");
        assert_eq!(Format::parse("%s\\n").render(&msg()), "v\n");
        assert_eq!(Format::parse("%x").render(&msg()), "%x\n");
    }
}
