//! Runs one parsed request against the broker through [`strom_broker::local`] and shapes the
//! response. The only place where wire types and the local API meet.

use std::sync::Arc;
use std::time::Duration;

use strom_broker::local::{ConsumeRequest, Local, NewRecord};
use strom_broker::local_group::Assignment;

use super::access::Access;
use super::request::Request;
use super::response::{Body, CommittedOut, MessageOut, TopicPartitionOut};

/// Runs an authorized request (see [`super::access`]); `access` also filters `list_topics`.
/// `client_host` is the peer's address, shown for group members in DescribeGroups.
pub async fn handle(
    local: &Arc<Local>,
    request: Request,
    client_host: &str,
    access: &Access<'_>,
) -> Body {
    match run(local, request, client_host, access).await {
        Ok(body) => body,
        Err(e) => e.into(),
    }
}

fn assignment_out(a: Assignment) -> Vec<TopicPartitionOut> {
    a.partitions
        .into_iter()
        .map(|(topic, partition)| TopicPartitionOut { topic, partition })
        .collect()
}

async fn run(
    local: &Arc<Local>,
    request: Request,
    client_host: &str,
    access: &Access<'_>,
) -> Result<Body, strom_broker::local::LocalError> {
    Ok(match request {
        Request::CreateTopic {
            topic,
            partitions,
            configs,
        } => {
            let t = local.create_topic(&topic, partitions, configs).await?;
            Body::CreateTopic {
                topic: t.name,
                partitions: t.partitions,
            }
        }
        Request::ListTopics => Body::ListTopics {
            topics: local
                .list_topics()
                .into_iter()
                .filter(|t| access.may_describe_topic(&t.name))
                .map(Into::into)
                .collect(),
        },
        Request::DescribeTopic { topic } => {
            let d = local.describe_topic(&topic)?;
            Body::DescribeTopic {
                topic: d.name,
                topic_id: d.topic_id,
                partitions: d.partitions.into_iter().map(Into::into).collect(),
                configs: d.configs,
            }
        }
        Request::Produce {
            topic,
            partition,
            key,
            value,
            headers,
            timestamp,
        } => {
            let a = local
                .produce(
                    &topic,
                    NewRecord {
                        partition,
                        key,
                        value,
                        headers,
                        timestamp_ms: timestamp,
                    },
                )
                .await?;
            Body::Produce {
                topic,
                partition: a.partition,
                offset: a.offset,
                timestamp: a.timestamp_ms,
            }
        }
        Request::Consume {
            topic,
            partition,
            consumer_id,
            offset,
            max_messages,
            wait_ms,
            auto_commit,
        } => {
            let read = local
                .consume(ConsumeRequest {
                    consumer_id: &consumer_id,
                    topic: &topic,
                    partition,
                    offset,
                    max_messages,
                    wait: Duration::from_millis(wait_ms),
                    auto_commit,
                })
                .await?;
            Body::Consume {
                topic,
                partition,
                consumer_id,
                messages: read.messages.into_iter().map(MessageOut::from).collect(),
                next_offset: read.next_offset,
            }
        }
        Request::Commit {
            topic,
            partition,
            consumer_id,
            offset,
        } => {
            local
                .commit(&consumer_id, &topic, partition, offset)
                .await?;
            Body::Commit {
                topic,
                partition,
                consumer_id,
                offset,
            }
        }
        Request::Position {
            topic,
            partition,
            consumer_id,
        } => {
            local.describe_topic(&topic)?;
            let offset = local.position(&consumer_id, &topic, partition).await?;
            Body::Position {
                topic,
                partition,
                consumer_id,
                offset,
            }
        }
        Request::JoinGroup {
            group,
            topics,
            member_id,
            session_timeout_ms,
        } => {
            let m = local
                .join_group(
                    &group,
                    &topics,
                    member_id.as_deref(),
                    session_timeout_ms,
                    client_host,
                )
                .await?;
            Body::Member {
                group: m.group,
                member_id: m.member_id,
                generation: m.assignment.generation_id,
                assignment: assignment_out(m.assignment),
            }
        }
        Request::Heartbeat { group, member_id } => {
            let a = local.group_heartbeat(&group, &member_id).await?;
            Body::Member {
                group,
                member_id,
                generation: a.generation_id,
                assignment: assignment_out(a),
            }
        }
        Request::GroupConsume {
            group,
            member_id,
            only,
            max_messages,
            wait_ms,
        } => {
            let read = local
                .group_consume(
                    &group,
                    &member_id,
                    only.as_ref().map(|(t, p)| (t.as_str(), *p)),
                    max_messages,
                    Duration::from_millis(wait_ms),
                )
                .await?;
            Body::GroupConsume {
                group,
                member_id: read.member_id,
                generation: read.assignment.generation_id,
                assignment: assignment_out(read.assignment),
                messages: read
                    .messages
                    .into_iter()
                    .map(|(topic, partition, m)| {
                        let mut out = MessageOut::from(m);
                        out.topic = Some(topic);
                        out.partition = Some(partition);
                        out
                    })
                    .collect(),
            }
        }
        Request::LeaveGroup { group, member_id } => {
            local.leave_group(&group, &member_id)?;
            Body::LeaveGroup { group, member_id }
        }
        Request::Committed { group, topic } => {
            let offsets = local
                .committed(&group, &topic)
                .await?
                .into_iter()
                .map(|(partition, offset)| CommittedOut { partition, offset })
                .collect();
            Body::Committed {
                group,
                topic,
                offsets,
            }
        }
        Request::Authenticate { .. } => {
            return Err(strom_broker::local::LocalError::Invalid(
                "authenticate is answered by the connection".into(),
            ))
        }
    })
}
