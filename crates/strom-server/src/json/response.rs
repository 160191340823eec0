//! Responses: one JSON object per line. Every response has `"ok"`; a failure has
//! `{"ok":false,"error":"<what is wrong>","code":"<machine-readable kind>"}`. The field order
//! is fixed by these structs, so a person reading `nc` output sees `ok` first.

use base64::Engine;
use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::Value;
use strom_broker::local::{LocalError, Message, PartitionOffsets, TopicSummary};
use strom_broker::topics::TopicError;
use strom_group::CoordinatorError;

/// The machine-readable kinds of error (the `code` field).
pub mod code {
    pub const BAD_JSON: &str = "bad_json";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const LINE_TOO_LONG: &str = "line_too_long";
    pub const UNKNOWN_TOPIC: &str = "unknown_topic";
    pub const UNKNOWN_PARTITION: &str = "unknown_partition";
    pub const OFFSET_OUT_OF_RANGE: &str = "offset_out_of_range";
    pub const TOPIC_EXISTS: &str = "topic_already_exists";
    pub const INVALID_TOPIC: &str = "invalid_topic";
    pub const REJECTED: &str = "rejected";
    pub const NOT_LEADER: &str = "not_leader";
    pub const NOT_COORDINATOR: &str = "not_coordinator";
    pub const STORAGE: &str = "storage_error";
    pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
    pub const UNKNOWN_MEMBER: &str = "unknown_member";
    pub const REBALANCE_IN_PROGRESS: &str = "rebalance_in_progress";
    pub const ILLEGAL_GENERATION: &str = "illegal_generation";
    pub const INVALID_SESSION_TIMEOUT: &str = "invalid_session_timeout";
    pub const INCONSISTENT_GROUP_PROTOCOL: &str = "inconsistent_group_protocol";
    pub const GROUP_FULL: &str = "group_full";
    pub const NOT_ASSIGNED: &str = "not_assigned";
    pub const GROUP_ERROR: &str = "group_error";
    pub const AUTHENTICATION_REQUIRED: &str = "authentication_required";
    pub const AUTHENTICATION_FAILED: &str = "sasl_authentication_failed";
    pub const UNSUPPORTED_SASL_MECHANISM: &str = "unsupported_sasl_mechanism";
    pub const ILLEGAL_SASL_STATE: &str = "illegal_sasl_state";
    pub const TOPIC_AUTHORIZATION_FAILED: &str = "topic_authorization_failed";
    pub const GROUP_AUTHORIZATION_FAILED: &str = "group_authorization_failed";
}

#[derive(Serialize)]
pub struct Envelope<'a> {
    pub ok: bool,
    #[serde(flatten)]
    pub body: Body,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Body {
    Error {
        error: String,
        code: &'static str,
        /// `not_leader` only: where the partition's leader is (JSON is spoken there too).
        #[serde(skip_serializing_if = "Option::is_none")]
        leader: Option<LeaderOut>,
        /// `not_coordinator` only: where the group's coordinator is.
        #[serde(skip_serializing_if = "Option::is_none")]
        coordinator: Option<Box<CoordinatorOut>>,
    },
    CreateTopic {
        topic: String,
        partitions: i32,
    },
    ListTopics {
        topics: Vec<TopicOut>,
    },
    DescribeTopic {
        topic: String,
        topic_id: String,
        partitions: Vec<PartitionOut>,
        configs: std::collections::BTreeMap<String, String>,
    },
    Produce {
        topic: String,
        partition: i32,
        offset: i64,
        timestamp: i64,
    },
    Consume {
        topic: String,
        partition: i32,
        consumer_id: String,
        messages: Vec<MessageOut>,
        /// Where this consumer's next consume starts.
        next_offset: i64,
    },
    Commit {
        topic: String,
        partition: i32,
        consumer_id: String,
        offset: i64,
    },
    Position {
        topic: String,
        partition: i32,
        consumer_id: String,
        /// `null` if the consumer never consumed or committed here.
        offset: Option<i64>,
    },
    /// `join_group` and `heartbeat`: the member and its current assignment.
    Member {
        group: String,
        member_id: String,
        generation: i32,
        assignment: Vec<TopicPartitionOut>,
    },
    GroupConsume {
        group: String,
        member_id: String,
        generation: i32,
        assignment: Vec<TopicPartitionOut>,
        messages: Vec<MessageOut>,
    },
    LeaveGroup {
        group: String,
        member_id: String,
    },
    Committed {
        group: String,
        topic: String,
        offsets: Vec<CommittedOut>,
    },
    /// `authenticate` succeeded: the principal ACLs are now checked against.
    Authenticate {
        principal: String,
    },
}

#[derive(Serialize)]
pub struct TopicPartitionOut {
    pub topic: String,
    pub partition: i32,
}

#[derive(Serialize)]
pub struct CommittedOut {
    pub partition: i32,
    pub offset: i64,
}

impl Body {
    pub fn error(code: &'static str, error: impl Into<String>) -> Body {
        Body::Error {
            error: error.into(),
            code,
            leader: None,
            coordinator: None,
        }
    }

    /// The response line, newline included.
    pub fn into_line(self, id: Option<&Value>) -> Vec<u8> {
        let envelope = Envelope {
            ok: !matches!(self, Body::Error { .. }),
            body: self,
            id,
        };
        let mut line = serde_json::to_vec(&envelope).unwrap_or_else(|e| {
            // Only non-string map keys can fail, and there are none.
            format!("{{\"ok\":false,\"error\":\"cannot encode the response: {e}\"}}").into_bytes()
        });
        line.push(b'\n');
        line
    }
}

/// The node that leads a partition another node was asked about.
#[derive(Serialize)]
pub struct LeaderOut {
    pub topic: String,
    pub partition: i32,
    /// `null` when the partition has no leader now (retry later).
    pub node_id: Option<i32>,
    /// `host:port` of its Kafka listener, which serves JSON too.
    pub address: Option<String>,
}

/// Where a group's coordinator is (`not_coordinator`).
#[derive(Serialize)]
pub struct CoordinatorOut {
    pub group: String,
    pub node_id: i32,
    /// `host:port` of its Kafka listener, which serves JSON too.
    pub address: String,
}

impl From<LocalError> for Body {
    fn from(e: LocalError) -> Body {
        if let LocalError::NotCoordinator { group, coordinator } = &e {
            return Body::Error {
                error: e.to_string(),
                code: code::NOT_COORDINATOR,
                leader: None,
                coordinator: coordinator.as_ref().map(|(id, addr)| {
                    Box::new(CoordinatorOut {
                        group: group.clone(),
                        node_id: *id,
                        address: addr.clone(),
                    })
                }),
            };
        }
        if let LocalError::NotLeader {
            topic,
            partition,
            leader,
        } = &e
        {
            return Body::Error {
                error: e.to_string(),
                code: code::NOT_LEADER,
                leader: Some(LeaderOut {
                    topic: topic.clone(),
                    partition: *partition,
                    node_id: leader.as_ref().map(|(id, _)| *id),
                    address: leader.as_ref().map(|(_, addr)| addr.clone()),
                }),
                coordinator: None,
            };
        }
        let kind = match &e {
            LocalError::UnknownTopic(_) => code::UNKNOWN_TOPIC,
            LocalError::UnknownPartition { .. } => code::UNKNOWN_PARTITION,
            LocalError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
            LocalError::Invalid(_) => code::BAD_REQUEST,
            LocalError::Topic(TopicError::AlreadyExists(_)) => code::TOPIC_EXISTS,
            LocalError::Topic(TopicError::UnknownTopic) => code::UNKNOWN_TOPIC,
            LocalError::Topic(TopicError::Storage(_)) => code::STORAGE,
            LocalError::Topic(TopicError::InvalidTopic(_)) => code::INVALID_TOPIC,
            LocalError::Topic(_) => code::BAD_REQUEST,
            LocalError::Rejected { .. } => code::REJECTED,
            LocalError::NotLeader { .. } => code::NOT_LEADER,
            LocalError::NotCoordinator { .. } => code::NOT_COORDINATOR,
            LocalError::Storage(_) => code::STORAGE,
            LocalError::UnknownMember { .. } => code::UNKNOWN_MEMBER,
            LocalError::NotAssigned { .. } => code::NOT_ASSIGNED,
            LocalError::Group(g) => match g {
                CoordinatorError::UnknownMemberId => code::UNKNOWN_MEMBER,
                CoordinatorError::RebalanceInProgress => code::REBALANCE_IN_PROGRESS,
                CoordinatorError::IllegalGeneration => code::ILLEGAL_GENERATION,
                CoordinatorError::InvalidSessionTimeout => code::INVALID_SESSION_TIMEOUT,
                CoordinatorError::InconsistentGroupProtocol => code::INCONSISTENT_GROUP_PROTOCOL,
                CoordinatorError::GroupMaxSizeReached => code::GROUP_FULL,
                CoordinatorError::UnknownTopicOrPartition => code::UNKNOWN_PARTITION,
                CoordinatorError::InvalidGroupId => code::BAD_REQUEST,
                CoordinatorError::Storage => code::STORAGE,
                _ => code::GROUP_ERROR,
            },
        };
        Body::error(kind, e.to_string())
    }
}

#[derive(Serialize)]
pub struct TopicOut {
    pub topic: String,
    pub partitions: i32,
}

impl From<TopicSummary> for TopicOut {
    fn from(t: TopicSummary) -> TopicOut {
        TopicOut {
            topic: t.name,
            partitions: t.partitions,
        }
    }
}

#[derive(Serialize)]
pub struct PartitionOut {
    pub partition: i32,
    pub start_offset: i64,
    pub end_offset: i64,
}

impl From<PartitionOffsets> for PartitionOut {
    fn from(p: PartitionOffsets) -> PartitionOut {
        PartitionOut {
            partition: p.partition,
            start_offset: p.start_offset,
            end_offset: p.end_offset,
        }
    }
}

/// A message: `value`/`key` as text when they are UTF-8 (or `null`), otherwise
/// `value_b64`/`key_b64`; headers likewise split into `headers` and `headers_b64`.
#[derive(Serialize)]
pub struct MessageOut {
    /// Only in group consumes, which read several partitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    pub offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    pub timestamp: i64,
    #[serde(serialize_with = "as_map")]
    pub headers: Vec<(String, Option<String>)>,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "as_map")]
    pub headers_b64: Vec<(String, Option<String>)>,
}

/// Text if UTF-8, else base64: (text field, b64 field).
fn split_payload(bytes: Option<Bytes>) -> (Option<Option<String>>, Option<String>) {
    match bytes {
        None => (Some(None), None),
        Some(b) => match String::from_utf8(b.to_vec()) {
            Ok(s) => (Some(Some(s)), None),
            Err(_) => (None, Some(b64(&b))),
        },
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl From<Message> for MessageOut {
    fn from(m: Message) -> MessageOut {
        let (value, value_b64) = split_payload(m.value);
        let (key, key_b64) = split_payload(m.key);
        let mut headers = Vec::new();
        let mut headers_b64 = Vec::new();
        for (name, v) in m.headers {
            match v {
                None => headers.push((name, None)),
                Some(b) => match String::from_utf8(b.to_vec()) {
                    Ok(s) => headers.push((name, Some(s))),
                    Err(_) => headers_b64.push((name, Some(b64(&b)))),
                },
            }
        }
        MessageOut {
            topic: None,
            partition: None,
            offset: m.offset,
            value,
            value_b64,
            key,
            key_b64,
            timestamp: m.timestamp_ms,
            headers,
            headers_b64,
        }
    }
}

/// Headers in the order they were written, as a JSON object.
fn as_map<S: Serializer>(v: &[(String, Option<String>)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(k, v)| (k, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(body: Body) -> String {
        String::from_utf8(body.into_line(None)).unwrap()
    }

    #[test]
    fn ok_comes_first_and_errors_carry_a_code() {
        assert_eq!(
            line(Body::Produce {
                topic: "t".into(),
                partition: 0,
                offset: 5,
                timestamp: 9
            }),
            "{\"ok\":true,\"topic\":\"t\",\"partition\":0,\"offset\":5,\"timestamp\":9}\n"
        );
        assert_eq!(
            String::from_utf8(
                Body::error(code::BAD_JSON, "malformed JSON").into_line(Some(&Value::from("r1")))
            )
            .unwrap(),
            "{\"ok\":false,\"error\":\"malformed JSON\",\"code\":\"bad_json\",\"id\":\"r1\"}\n"
        );
    }

    #[test]
    fn binary_values_come_back_as_base64() {
        let m = MessageOut::from(Message {
            offset: 3,
            key: None,
            value: Some(Bytes::from_static(&[0, 255])),
            headers: vec![
                ("t".into(), Some(Bytes::from("x"))),
                ("b".into(), Some(Bytes::from_static(&[255]))),
            ],
            timestamp_ms: 1,
        });
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"offset":3,"value_b64":"AP8=","key":null,"timestamp":1,"headers":{"t":"x"},"headers_b64":{"b":"/w=="}}"#
        );
    }
}
