//! Authorization of JSON requests: each request is checked against the ACLs exactly as the
//! Kafka API that does the same thing, as the connection's principal (`User:<name>` after
//! `authenticate`, the client certificate's subject, or `User:ANONYMOUS`), so the JSON
//! protocol is no way around the ACLs.
//!
//! | request            | Kafka API it mirrors      | checks                                   |
//! |--------------------|---------------------------|------------------------------------------|
//! | `create_topic`     | CreateTopics              | CREATE on the cluster or the topic       |
//! | `list_topics`      | Metadata                  | lists only topics with DESCRIBE          |
//! | `describe_topic`   | Metadata                  | DESCRIBE topic                           |
//! | `produce`          | Produce                   | WRITE topic                              |
//! | `consume` (id)     | OffsetFetch + Fetch       | READ group `json:<id>`, READ topic       |
//! | `commit`           | OffsetCommit              | READ group `json:<id>`, READ topic       |
//! | `position`         | OffsetFetch               | DESCRIBE group `json:<id>`, DESCRIBE topic |
//! | `join_group`       | JoinGroup + Fetch         | READ group, READ each topic              |
//! | `consume` (group)  | Fetch + OffsetCommit      | READ group, READ each subscribed topic   |
//! | `heartbeat`, `leave_group` | Heartbeat, LeaveGroup | READ group                           |
//! | `committed`        | OffsetFetch               | DESCRIBE group, DESCRIBE topic           |
//!
//! A denial reads like Kafka's exceptions: `Not authorized to access topics: [orders]`.

use strom_broker::local::{consumer_group, Local};
use strom_broker::security::acl::{op, resource, CLUSTER_NAME};
use strom_broker::Broker;

use super::request::Request;
use super::response::{code, Body};

/// Who is asking, from where.
pub struct Access<'a> {
    broker: &'a Broker,
    pub principal: &'a str,
    host: &'a str,
}

impl<'a> Access<'a> {
    pub fn new(broker: &'a Broker, principal: &'a str, host: &'a str) -> Access<'a> {
        Access {
            broker,
            principal,
            host,
        }
    }

    fn allowed(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        let ok = self.broker.authorizer.allowed(
            self.principal,
            self.host,
            operation,
            resource_type,
            name,
        );
        if !ok {
            tracing::debug!(
                principal = %self.principal,
                host = %self.host,
                operation = strom_broker::security::acl::operation_name(operation),
                resource = %format!("{}:{name}", strom_broker::security::acl::resource_type_name(resource_type)),
                "JSON request denied"
            );
        }
        ok
    }

    pub fn may_describe_topic(&self, topic: &str) -> bool {
        self.allowed(op::DESCRIBE, resource::TOPIC, topic)
    }

    fn topic(&self, operation: i8, topic: &str) -> Result<(), Body> {
        if self.allowed(operation, resource::TOPIC, topic) {
            Ok(())
        } else {
            Err(Body::error(
                code::TOPIC_AUTHORIZATION_FAILED,
                format!("Not authorized to access topics: [{topic}]"),
            ))
        }
    }

    fn group(&self, operation: i8, group: &str) -> Result<(), Body> {
        if self.allowed(operation, resource::GROUP, group) {
            Ok(())
        } else {
            Err(Body::error(
                code::GROUP_AUTHORIZATION_FAILED,
                format!("Not authorized to access group: {group}"),
            ))
        }
    }

    /// Whether the request may run; the error response if not.
    pub fn check(&self, local: &Local, request: &Request) -> Result<(), Body> {
        if !self.broker.authorizer.enabled() {
            return Ok(());
        }
        match request {
            Request::CreateTopic { topic, .. } => {
                if self.allowed(op::CREATE, resource::CLUSTER, CLUSTER_NAME) {
                    Ok(())
                } else {
                    self.topic(op::CREATE, topic)
                }
            }
            // Filtered by `may_describe_topic` instead, as Metadata does.
            Request::ListTopics | Request::Authenticate { .. } => Ok(()),
            Request::DescribeTopic { topic } => self.topic(op::DESCRIBE, topic),
            Request::Produce { topic, .. } => self.topic(op::WRITE, topic),
            Request::Consume {
                topic, consumer_id, ..
            }
            | Request::Commit {
                topic, consumer_id, ..
            } => {
                self.group(op::READ, &consumer_group(consumer_id))?;
                self.topic(op::READ, topic)
            }
            Request::Position {
                topic, consumer_id, ..
            } => {
                self.group(op::DESCRIBE, &consumer_group(consumer_id))?;
                self.topic(op::DESCRIBE, topic)
            }
            Request::JoinGroup { group, topics, .. } => {
                self.group(op::READ, group)?;
                topics.iter().try_for_each(|t| self.topic(op::READ, t))
            }
            Request::GroupConsume {
                group,
                member_id,
                only,
                ..
            } => {
                self.group(op::READ, group)?;
                match only {
                    Some((topic, _)) => self.topic(op::READ, topic),
                    // An unknown member is the handler's error to report.
                    None => local
                        .member_topics(group, member_id)
                        .unwrap_or_default()
                        .iter()
                        .try_for_each(|t| self.topic(op::READ, t)),
                }
            }
            Request::Heartbeat { group, .. } | Request::LeaveGroup { group, .. } => {
                self.group(op::READ, group)
            }
            Request::Committed { group, topic } => {
                self.group(op::DESCRIBE, group)?;
                self.topic(op::DESCRIBE, topic)
            }
        }
    }
}
