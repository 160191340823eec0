//! Runs one parsed request against the broker through [`strom_broker::local`] and shapes the
//! response. The only place where wire types and the local API meet.

use std::time::Duration;

use strom_broker::local::{ConsumeRequest, Local, NewRecord};

use super::request::Request;
use super::response::{Body, MessageOut};

pub async fn handle(local: &Local, request: Request) -> Body {
    match run(local, request).await {
        Ok(body) => body,
        Err(e) => e.into(),
    }
}

async fn run(local: &Local, request: Request) -> Result<Body, strom_broker::local::LocalError> {
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
            topics: local.list_topics().into_iter().map(Into::into).collect(),
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
            let offset = local.position(&consumer_id, &topic, partition);
            Body::Position {
                topic,
                partition,
                consumer_id,
                offset,
            }
        }
    })
}
