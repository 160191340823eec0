//! [`Admin`]: topics (create, delete, list, describe with configs) and consumer groups (list,
//! describe with members, assignments, committed offsets and lag).

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    BrokerId, ConsumerGroupDescribeRequest, ConsumerProtocolAssignment, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, ListGroupsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{Client, ClientConfig, TopicInfo};
use crate::consumer::assignor::decode_assignment;
use crate::error::{ClientError, Result};
use crate::offsets::{self, group_id, topic_name, OffsetSpec, TopicPartition};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic name.
    pub name: String,
    /// How many partitions.
    pub partitions: i32,
    /// How many replicas of each partition (1 on a single broker).
    pub replication_factor: i16,
    /// Topic configs such as `retention.ms`.
    pub configs: Vec<(String, String)>,
    /// Replicas chosen per partition (broker ids, the first the preferred leader); when not
    /// empty, `partitions` and `replication_factor` follow from it.
    pub assignments: Vec<Vec<i32>>,
}

impl NewTopic {
    /// A topic with `partitions` partitions, replication factor 1 and no configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: Vec::new(),
            assignments: Vec::new(),
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// One config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config name, e.g. `retention.ms`.
    pub name: String,
    /// Its value (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// Whether the value is the default rather than set on the topic.
    pub is_default: bool,
    /// Whether the value cannot be changed.
    pub read_only: bool,
}

/// A topic with its partitions and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name, id and partitions as Metadata reports them.
    pub info: TopicInfo,
    /// Configs from DescribeConfigs, empty when the broker does not support it.
    pub configs: Vec<ConfigEntry>,
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The state (`Stable`, `Empty`, ...), empty if the broker does not report it.
    pub state: String,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The id the coordinator gave the member.
    pub member_id: String,
    /// The member's client id.
    pub client_id: String,
    /// Where the member connects from.
    pub client_host: String,
    /// The partitions assigned to it, by topic.
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// Committed offset, end offset and lag of one partition for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset, `None` if it never committed.
    pub committed: Option<i64>,
    /// The partition's log end offset (high watermark).
    pub end_offset: i64,
    /// `end_offset - committed`; `None` when the group never committed this partition.
    pub lag: Option<i64>,
}

/// A group with its members, committed offsets and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, `CompletingRebalance` or `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor the group chose, e.g. `range`.
    pub protocol: String,
    /// Members and their assignments.
    pub members: Vec<MemberDescription>,
    /// Every partition the group committed or is assigned, sorted by topic and partition.
    pub offsets: Vec<PartitionLag>,
}

/// Administrative operations on topics and groups.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// Connects to the cluster at `bootstrap`.
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Ok(Admin {
            client: Client::connect(bootstrap).await?,
        })
    }

    /// Connects with the given client settings.
    pub async fn connect_with(bootstrap: &str, config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            client: Client::connect_with(bootstrap, config).await?,
        })
    }

    /// An admin sharing an existing client's connections.
    pub fn from_client(client: Client) -> Admin {
        Admin { client }
    }

    /// The underlying cluster handle.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a topic with `partitions` partitions and replication factor 1.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.create_topics(vec![NewTopic::new(name, partitions)])
            .await
    }

    /// Creates topics; fails with the first topic's error (e.g. `TopicAlreadyExists`).
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        let manual = !t.assignments.is_empty();
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            // Kafka wants -1 for both with a manual assignment.
                            .with_num_partitions(if manual { -1 } else { t.partitions })
                            .with_replication_factor(if manual { -1 } else { t.replication_factor })
                            .with_assignments(
                                t.assignments
                                    .iter()
                                    .enumerate()
                                    .map(|(i, replicas)| {
                                        CreatableReplicaAssignment::default()
                                            .with_partition_index(i as i32)
                                            .with_broker_ids(
                                                replicas.iter().map(|&b| BrokerId(b)).collect(),
                                            )
                                    })
                                    .collect(),
                            )
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let conn = self.client.any_connection().await?;
        let response = conn.send(&request).await?;
        for t in &response.topics {
            let name = t.name.0.to_string();
            self.client.invalidate_topic(&name);
            if t.error_code != 0 {
                return Err(ClientError::kafka_with_message(
                    t.error_code,
                    format!("creating topic {name}"),
                    t.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<()> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(total)
                // Null, not the generated default of an empty list: Kafka reads an empty list
                // as "0 assignments for N new partitions" and refuses it.
                .with_assignments(None)]);
        let conn = self.client.any_connection().await?;
        let response = conn.send(&request).await?;
        self.client.invalidate_topic(name);
        for r in &response.results {
            if r.error_code != 0 {
                return Err(ClientError::kafka_with_message(
                    r.error_code,
                    format!("adding partitions to topic {name}"),
                    r.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// Deletes a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let conn = self.client.any_connection().await?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms());
        // Version 6 names topics in `topics` (name or id); earlier versions in `topic_names`.
        if conn.version_for::<DeleteTopicsRequest>()? >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(name)))];
        } else {
            request.topic_names = vec![topic_name(name)];
        }
        let response = conn.send(&request).await?;
        self.client.invalidate_topic(name);
        for r in &response.responses {
            if r.error_code != 0 {
                return Err(ClientError::kafka_with_message(
                    r.error_code,
                    format!("deleting topic {name}"),
                    r.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// Every topic, sorted by name (internal topics included, flagged `internal`).
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let response = self.client.metadata(None).await?;
        let mut names: Vec<String> = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        names.sort();
        Ok(names
            .iter()
            .filter_map(|n| self.client.cached_topic(n))
            .collect())
    }

    /// A topic's partitions, leaders and configs.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let info = self.client.refresh_topic(name).await?;
        let conn = self.client.any_connection().await?;
        let api = <DescribeConfigsRequest as kafka_protocol::protocol::Request>::KEY;
        let configs = if conn.supports(api) {
            let request = DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2) // TOPIC
                    .with_resource_name(StrBytes::from_string(name.to_string()))
                    .with_configuration_keys(None),
            ]);
            let response = conn.send(&request).await?;
            let mut configs = Vec::new();
            for r in response.results {
                ClientError::check(r.error_code, || format!("configs of topic {name}"))?;
                for c in r.configs {
                    configs.push(ConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.map(|v| v.to_string()),
                        // Source 5 is DEFAULT_CONFIG; 4 is STATIC_BROKER_CONFIG, also a default
                        // from the topic's point of view.
                        is_default: matches!(c.config_source, 4 | 5),
                        read_only: c.read_only,
                    });
                }
            }
            configs.sort_by(|a, b| a.name.cmp(&b.name));
            configs
        } else {
            Vec::new()
        };
        Ok(TopicDescription { info, configs })
    }

    /// Every group of every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let mut groups = BTreeMap::new();
        let brokers = self.client.brokers();
        for broker in brokers {
            let conn = self.client.connection(&broker.addr).await?;
            let response = conn.send(&ListGroupsRequest::default()).await?;
            ClientError::check(response.error_code, || "listing groups".into())?;
            for g in response.groups {
                let id = g.group_id.0.to_string();
                groups.insert(
                    id.clone(),
                    GroupListing {
                        group_id: id,
                        protocol_type: g.protocol_type.to_string(),
                        state: g.group_state.to_string(),
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// A group's state, members, assignments, committed offsets and lag.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let coordinator_addr = self.client.find_coordinator(group).await?;
        let coordinator = self.client.connection(&coordinator_addr).await?;
        let response = coordinator
            .send(&DescribeGroupsRequest::default().with_groups(vec![group_id(group)]))
            .await?;
        let described = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::protocol("DescribeGroups answered no group"))?;
        ClientError::check(described.error_code, || format!("describing group {group}"))?;
        // DescribeGroups shows a KIP-848 group as Dead; ConsumerGroupDescribe knows it.
        if described.group_state.as_str() == "Dead" {
            if let Some(modern) = describe_consumer_group(&coordinator, group).await? {
                return self.with_offsets(&coordinator, group, modern).await;
            }
        }
        let mut members = Vec::new();
        for m in described.members {
            let assignment = if m.member_assignment.is_empty() {
                Vec::new()
            } else {
                decode_assignment(&m.member_assignment)
                    .map(|a: ConsumerProtocolAssignment| {
                        a.assigned_partitions
                            .into_iter()
                            .map(|tp| (tp.topic.0.to_string(), tp.partitions))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            members.push(MemberDescription {
                member_id: m.member_id.to_string(),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                assignment,
            });
        }
        let found = GroupDescription {
            group_id: group.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members,
            offsets: Vec::new(),
        };
        self.with_offsets(&coordinator, group, found).await
    }

    /// Fills in the committed offsets and lag of every partition the group committed or is
    /// assigned, and sorts the members.
    async fn with_offsets(
        &self,
        coordinator: &crate::connection::Connection,
        group: &str,
        mut d: GroupDescription,
    ) -> Result<GroupDescription> {
        d.members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let assigned = d.members.iter().flat_map(|m| {
            m.assignment
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        });
        let assigned: Vec<TopicPartition> = assigned.collect();
        let committed = offsets::committed_offsets(coordinator, group, None).await?;
        let mut partitions: Vec<TopicPartition> = committed.keys().cloned().collect();
        partitions.extend(assigned);
        partitions.sort();
        partitions.dedup();
        // A committed topic may have been deleted since; describe what still exists.
        let mut live = Vec::new();
        for tp in partitions {
            if self.client.leader(&tp.0, tp.1).await.is_ok() {
                live.push(tp);
            }
        }
        let ends = offsets::list_offsets(&self.client, &live, OffsetSpec::Latest).await?;
        let offsets = live
            .into_iter()
            .map(|tp| {
                let end_offset = ends.get(&tp).copied().unwrap_or(0);
                let committed = committed.get(&tp).copied();
                PartitionLag {
                    lag: committed.map(|c| (end_offset - c).max(0)),
                    topic: tp.0,
                    partition: tp.1,
                    committed,
                    end_offset,
                }
            })
            .collect();
        d.offsets = offsets;
        Ok(d)
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let coordinator_addr = self.client.find_coordinator(group).await?;
        let coordinator = self.client.connection(&coordinator_addr).await?;
        let response = coordinator
            .send(&DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]))
            .await?;
        for r in response.results {
            ClientError::check(r.error_code, || format!("deleting group {group}"))?;
        }
        Ok(())
    }

    /// The offsets `spec` names for these partitions.
    pub async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<std::collections::HashMap<TopicPartition, i64>> {
        offsets::list_offsets(&self.client, partitions, spec).await
    }

    fn timeout_ms(&self) -> i32 {
        self.client.config().request_timeout.as_millis() as i32
    }
}

/// A KIP-848 group as ConsumerGroupDescribe reports it (members without offsets), or `None`
/// when the broker does not serve the API or the group is not such a group.
async fn describe_consumer_group(
    coordinator: &crate::connection::Connection,
    group: &str,
) -> Result<Option<GroupDescription>> {
    if coordinator
        .version_for::<ConsumerGroupDescribeRequest>()
        .is_err()
    {
        return Ok(None);
    }
    let response = coordinator
        .send(&ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(group)]))
        .await?;
    let Some(g) = response.groups.into_iter().next() else {
        return Ok(None);
    };
    if g.error_code != 0 {
        return Ok(None);
    }
    let members = g
        .members
        .into_iter()
        .map(|m| MemberDescription {
            member_id: m.member_id.to_string(),
            client_id: m.client_id.to_string(),
            client_host: m.client_host.to_string(),
            assignment: m
                .assignment
                .topic_partitions
                .into_iter()
                .map(|t| (t.topic_name.0.to_string(), t.partitions))
                .collect(),
        })
        .collect();
    Ok(Some(GroupDescription {
        group_id: group.to_string(),
        state: g.group_state.to_string(),
        protocol_type: "consumer".to_string(),
        protocol: g.assignor_name.to_string(),
        members,
        offsets: Vec::new(),
    }))
}
