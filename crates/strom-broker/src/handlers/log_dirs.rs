//! DescribeLogDirs: the data dir and the size of every partition in it.

use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{sb, topic_name};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    req: DescribeLogDirsRequest,
    _version: i16,
) -> DescribeLogDirsResponse {
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let topics = broker
        .topics
        .all()
        .into_iter()
        .filter_map(|topic| {
            let name = topic.name();
            let only: Option<Vec<i32>> = match &wanted {
                None => None,
                Some(list) => Some(list.iter().find(|(n, _)| *n == name)?.1.clone()),
            };
            let partitions: Vec<_> = topic
                .partitions
                .read()
                .iter()
                .filter(|p| only.as_ref().is_none_or(|o| o.contains(&p.index)))
                .map(|p| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(p.with_log(|log| log.size_bytes() as i64).unwrap_or(0))
                })
                .collect();
            Some(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(name))
                    .with_partitions(partitions),
            )
        })
        .collect();
    let dir = std::fs::canonicalize(&broker.config.data_dir)
        .unwrap_or_else(|_| broker.config.data_dir.clone());
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(sb(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1)])
}
