//! One Fetch round to one leader: build the request from the positions, read the answer
//! into messages and per-partition outcomes.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};

use super::aborted::AbortedTransactions;
use super::ConsumerConfig;
use crate::batch::decode_messages;
use crate::connection::Connection;
use crate::error::{ClientError, Result};
use crate::offsets::{topic_name, IsolationLevel, TopicPartition};
use crate::records::Message;

/// What happened to one partition in a fetch.
pub(crate) enum Outcome {
    /// Records (possibly none) and the position after them.
    Data {
        messages: Vec<Message>,
        next_offset: Option<i64>,
    },
    /// The broker refused this partition with an error code.
    Error(i16),
}

/// Fetches from `leader` for these (partition, position) pairs.
pub(crate) async fn fetch(
    conn: &Connection,
    config: &ConsumerConfig,
    positions: &[(TopicPartition, i64)],
    max_wait_ms: i32,
) -> Result<Vec<(TopicPartition, Outcome)>> {
    // In the order given: the first partition is the one whose oversized batch the broker
    // returns (KIP-74).
    let mut topics: Vec<(&str, Vec<FetchPartition>)> = Vec::new();
    for ((topic, partition), offset) in positions {
        let at = match topics.iter().position(|(t, _)| *t == topic.as_str()) {
            Some(at) => at,
            None => {
                topics.push((topic.as_str(), Vec::new()));
                topics.len() - 1
            }
        };
        topics[at].1.push(
            FetchPartition::default()
                .with_partition(*partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(*offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(config.partition_max_bytes),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(config.isolation_level.as_i8())
        .with_session_id(0)
        .with_session_epoch(-1) // no fetch session: every fetch names all its partitions
        .with_topics(
            topics
                .into_iter()
                .map(|(t, parts)| {
                    FetchTopic::default()
                        .with_topic(topic_name(t))
                        .with_partitions(parts)
                })
                .collect(),
        );
    let response = conn.send(&request).await?;
    ClientError::check(response.error_code, || "fetch".into())?;
    let mut out = Vec::new();
    for topic in response.responses {
        let name = topic.topic.0.to_string();
        for p in topic.partitions {
            let key = (name.clone(), p.partition_index);
            if p.error_code != 0 {
                out.push((key, Outcome::Error(p.error_code)));
                continue;
            }
            let from = positions
                .iter()
                .find(|(tp, _)| *tp == key)
                .map(|(_, o)| *o)
                .unwrap_or(0);
            // read_committed: drop what the response lists as aborted.
            let mut aborted =
                (config.isolation_level == IsolationLevel::ReadCommitted).then(|| {
                    AbortedTransactions::new(
                        p.aborted_transactions
                            .iter()
                            .flatten()
                            .map(|a| (a.producer_id.0, a.first_offset)),
                    )
                });
            let decoded = match p.records {
                Some(records) if !records.is_empty() => decode_messages(
                    &name,
                    p.partition_index,
                    records,
                    from,
                    config.decompressed_max_bytes,
                    aborted.as_mut(),
                )?,
                _ => Default::default(),
            };
            out.push((
                key,
                Outcome::Data {
                    messages: decoded.messages,
                    next_offset: decoded.next_offset,
                },
            ));
        }
    }
    Ok(out)
}
