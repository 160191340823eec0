//! KIP-951: a Produce or Fetch refused because this node does not lead the partition carries
//! the leader the metadata names (`current_leader`) and that leader's address
//! (`node_endpoints`), so the client can go there without a Metadata round trip first.
//! Kafka fills them for NOT_LEADER_OR_FOLLOWER on Produce (v10+) and for
//! NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH on Fetch (`current_leader` v12+,
//! `node_endpoints` v16+); older versions have no such fields.

use std::collections::BTreeMap;

use kafka_protocol::messages::{fetch_response, produce_response, BrokerId};
use kafka_protocol::messages::{FetchResponse, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use strom_protocol::ResponseError as E;

use crate::broker::Broker;

const PRODUCE_HINTS_VERSION: i16 = 10;
const FETCH_LEADER_VERSION: i16 = 12;
const FETCH_ENDPOINTS_VERSION: i16 = 16;

/// The leader, its epoch and its address as this node's metadata has them; (-1, -1, None)
/// when the partition has no leader (Kafka's answer then).
fn leader_of(broker: &Broker, topic: &str, partition: i32) -> (i32, i32, Option<(String, i32)>) {
    let Some(cluster) = broker.cluster.get() else {
        return (-1, -1, None);
    };
    let image = cluster.image();
    let Some(p) = image.partition(topic, partition) else {
        return (-1, -1, None);
    };
    let endpoint = image
        .brokers
        .get(&p.leader)
        .filter(|b| !b.fenced)
        .map(|b| (b.host.clone(), b.port));
    (p.leader, p.leader_epoch, endpoint)
}

/// The topic's name: the request's, or the one its id names (v13+ requests carry ids only).
fn topic_name(broker: &Broker, name: &str, id: uuid::Uuid) -> Option<String> {
    if !name.is_empty() {
        return Some(name.to_string());
    }
    broker.topics.get_by_id(id).map(|t| t.name())
}

pub fn fill_produce(broker: &Broker, response: &mut ProduceResponse, version: i16) {
    if version < PRODUCE_HINTS_VERSION || broker.cluster.get().is_none() {
        return;
    }
    let mut endpoints = BTreeMap::new();
    for t in &mut response.responses {
        for p in &mut t.partition_responses {
            if p.error_code != E::NotLeaderOrFollower.code() {
                continue;
            }
            let Some(name) = topic_name(broker, t.name.0.as_str(), t.topic_id) else {
                continue;
            };
            let (leader, epoch, endpoint) = leader_of(broker, &name, p.index);
            p.current_leader = produce_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
            if let Some(e) = endpoint {
                endpoints.insert(leader, e);
            }
        }
    }
    response.node_endpoints = endpoints
        .into_iter()
        .map(|(id, (host, port))| {
            produce_response::NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect();
}

pub fn fill_fetch(broker: &Broker, response: &mut FetchResponse, version: i16) {
    if version < FETCH_LEADER_VERSION || broker.cluster.get().is_none() {
        return;
    }
    let refused = [E::NotLeaderOrFollower.code(), E::FencedLeaderEpoch.code()];
    let mut endpoints = BTreeMap::new();
    for t in &mut response.responses {
        for p in &mut t.partitions {
            if !refused.contains(&p.error_code) {
                continue;
            }
            let Some(name) = topic_name(broker, t.topic.0.as_str(), t.topic_id) else {
                continue;
            };
            let (leader, epoch, endpoint) = leader_of(broker, &name, p.partition_index);
            p.current_leader = fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
            if let Some(e) = endpoint {
                endpoints.insert(leader, e);
            }
        }
    }
    if version >= FETCH_ENDPOINTS_VERSION {
        response.node_endpoints = endpoints
            .into_iter()
            .map(|(id, (host, port))| {
                fetch_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)
            })
            .collect();
    }
}
