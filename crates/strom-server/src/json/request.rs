//! Requests: one JSON object per line, parsed into [`Request`] with exact error messages
//! ("missing field \"topic\"", "field \"partition\" must be an integer"). No I/O here.
//!
//! Payloads are UTF-8 strings in `value` / `key` / `headers`, or base64 (standard alphabet,
//! with padding) in `value_b64` / `key_b64` / `headers_b64` for bytes that are not UTF-8.
//! Unknown fields are refused, so a misspelt optional field is an error rather than silently
//! ignored. An `id` of any JSON type may be sent and is echoed in the response.

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};

/// Messages a consume returns unless `max_messages` says otherwise.
pub const CONSUME_MESSAGES_DEFAULT: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    CreateTopic {
        topic: String,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    ListTopics,
    DescribeTopic {
        topic: String,
    },
    Produce {
        topic: String,
        partition: Option<i32>,
        key: Option<Bytes>,
        /// `None` is a tombstone (`"value": null`).
        value: Option<Bytes>,
        headers: Vec<(String, Option<Bytes>)>,
        timestamp: Option<i64>,
    },
    Consume {
        topic: String,
        partition: i32,
        consumer_id: String,
        offset: Option<i64>,
        max_messages: usize,
        wait_ms: u64,
        auto_commit: bool,
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
    },
    JoinGroup {
        group: String,
        topics: Vec<String>,
        /// A member id to rejoin as (e.g. after a broker restart).
        member_id: Option<String>,
        session_timeout_ms: Option<i32>,
    },
    /// A `consume` with `group` and `member_id` instead of `topic`/`partition`/`consumer_id`.
    GroupConsume {
        group: String,
        member_id: String,
        /// Read only this one of the member's partitions.
        only: Option<(String, i32)>,
        max_messages: usize,
        wait_ms: u64,
    },
    Heartbeat {
        group: String,
        member_id: String,
    },
    LeaveGroup {
        group: String,
        member_id: String,
    },
    Committed {
        group: String,
        topic: String,
    },
    /// The first request on a listener with `json.listener.security.protocol` SASL_*.
    Authenticate {
        mechanism: String,
        username: String,
        password: Secret,
    },
}

/// A password: `Debug` never shows it, so a logged request cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a line is not a request. `BadJson` and `BadRequest` are the client's fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    BadJson(String),
    BadRequest(String),
}

#[cfg(test)]
impl ParseError {
    pub fn message(&self) -> &str {
        match self {
            ParseError::BadJson(m) | ParseError::BadRequest(m) => m,
        }
    }
}

/// A parsed line: the request (or why it is not one) and the `id` to echo.
#[derive(Debug)]
pub struct Parsed {
    pub id: Option<Value>,
    pub request: Result<Request, ParseError>,
}

pub const TYPES: &str = "create_topic, list_topics, describe_topic, produce, consume, commit, \
     position, join_group, heartbeat, leave_group, committed, authenticate";

pub fn parse(line: &[u8]) -> Parsed {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Parsed {
                id: None,
                request: Err(ParseError::BadJson(format!("malformed JSON: {e}"))),
            }
        }
    };
    let Value::Object(mut map) = value else {
        return Parsed {
            id: None,
            request: Err(ParseError::BadRequest(
                "a request must be a JSON object".into(),
            )),
        };
    };
    let id = map.remove("id");
    let request = parse_object(map).map_err(ParseError::BadRequest);
    Parsed { id, request }
}

fn parse_object(map: Map<String, Value>) -> Result<Request, String> {
    let mut f = Fields(map);
    let kind = match f.0.remove("type") {
        None => return Err(format!("missing field \"type\" (one of {TYPES})")),
        Some(Value::String(s)) => s,
        Some(_) => return Err("field \"type\" must be a string".into()),
    };
    let request = match kind.as_str() {
        "create_topic" => Request::CreateTopic {
            topic: f.string("topic")?,
            // -1: the broker's `num.partitions`, as in a Kafka CreateTopics request.
            partitions: f.opt_i32("partitions")?.unwrap_or(-1),
            configs: f.string_map("configs")?,
        },
        "list_topics" => Request::ListTopics,
        "describe_topic" => Request::DescribeTopic {
            topic: f.string("topic")?,
        },
        "produce" => Request::Produce {
            topic: f.string("topic")?,
            partition: f.opt_i32("partition")?,
            key: f.payload("key")?.flatten(),
            value: f
                .payload("value")?
                .ok_or("missing field \"value\" (or \"value_b64\")")?,
            headers: f.headers()?,
            timestamp: f.opt_i64("timestamp")?,
        },
        "consume" if f.0.contains_key("group") => Request::GroupConsume {
            group: f.string("group")?,
            member_id: f.string("member_id")?,
            only: match (f.opt_string("topic")?, f.opt_i32("partition")?) {
                (Some(t), Some(p)) => Some((t, p)),
                (None, None) => None,
                _ => return Err("give both \"topic\" and \"partition\", or neither".into()),
            },
            max_messages: f.max_messages()?,
            wait_ms: f.wait_ms()?,
        },
        "consume" => Request::Consume {
            topic: f.string("topic")?,
            partition: f.i32("partition")?,
            consumer_id: f.string("consumer_id")?,
            offset: f.opt_i64("offset")?,
            max_messages: f.max_messages()?,
            wait_ms: f.wait_ms()?,
            auto_commit: f.opt_bool("auto_commit")?.unwrap_or(true),
        },
        "join_group" => Request::JoinGroup {
            group: f.string("group")?,
            topics: f.topics()?,
            member_id: f.opt_string("member_id")?,
            session_timeout_ms: f.opt_i32("session_timeout_ms")?,
        },
        "heartbeat" => Request::Heartbeat {
            group: f.string("group")?,
            member_id: f.string("member_id")?,
        },
        "leave_group" => Request::LeaveGroup {
            group: f.string("group")?,
            member_id: f.string("member_id")?,
        },
        "committed" => Request::Committed {
            group: f.string("group")?,
            topic: f.string("topic")?,
        },
        "commit" => Request::Commit {
            topic: f.string("topic")?,
            partition: f.i32("partition")?,
            consumer_id: f.string("consumer_id")?,
            offset: f.i64("offset")?,
        },
        "position" => Request::Position {
            topic: f.string("topic")?,
            partition: f.i32("partition")?,
            consumer_id: f.string("consumer_id")?,
        },
        "authenticate" => Request::Authenticate {
            mechanism: f.string("mechanism")?,
            username: f.string("username")?,
            password: Secret(f.string("password")?),
        },
        other => {
            return Err(format!(
                "unknown type \"{other}\" (expected one of {TYPES})"
            ))
        }
    };
    if let Some(extra) = f.0.keys().next() {
        return Err(format!("unknown field \"{extra}\" for type \"{kind}\""));
    }
    Ok(request)
}

/// The fields of one request; each getter removes what it reads, so what is left at the end
/// is unknown.
struct Fields(Map<String, Value>);

impl Fields {
    fn max_messages(&mut self) -> Result<usize, String> {
        let max = strom_broker::local::READ_MESSAGES_MAX;
        match self.opt_i64("max_messages")? {
            None => Ok(CONSUME_MESSAGES_DEFAULT),
            Some(n) if n >= 1 && n <= max as i64 => Ok(n as usize),
            Some(n) => Err(format!("max_messages must be 1 to {max}, not {n}")),
        }
    }

    fn wait_ms(&mut self) -> Result<u64, String> {
        let max = strom_broker::local::READ_WAIT_MS_MAX;
        match self.opt_i64("wait_ms")? {
            None => Ok(0),
            Some(n) if (0..=max as i64).contains(&n) => Ok(n as u64),
            Some(n) => Err(format!("wait_ms must be 0 to {max}, not {n}")),
        }
    }

    fn opt_string(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.0.contains_key(name) {
            false => Ok(None),
            true => match self.0.get(name) {
                Some(Value::Null) => {
                    self.0.remove(name);
                    Ok(None)
                }
                _ => self.string(name).map(Some),
            },
        }
    }

    /// `topics` (an array of names) or `topic` (one name).
    fn topics(&mut self) -> Result<Vec<String>, String> {
        let one = self.opt_string("topic")?;
        let many = match self.0.remove("topics") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        _ => Err("field \"topics\" must be an array of strings".to_string()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err("field \"topics\" must be an array of strings".into()),
        };
        match (one, many) {
            (Some(_), Some(_)) => Err("give \"topic\" or \"topics\", not both".into()),
            (Some(t), None) => Ok(vec![t]),
            (None, Some(ts)) if !ts.is_empty() => Ok(ts),
            _ => Err("missing field \"topics\" (or \"topic\")".into()),
        }
    }

    fn string(&mut self, name: &str) -> Result<String, String> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Err(format!("missing field \"{name}\"")),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(format!("field \"{name}\" must be a string")),
        }
    }

    fn opt_i64(&mut self, name: &str) -> Result<Option<i64>, String> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| format!("field \"{name}\" must be an integer")),
            Some(_) => Err(format!("field \"{name}\" must be an integer")),
        }
    }

    fn opt_bool(&mut self, name: &str) -> Result<Option<bool>, String> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(format!("field \"{name}\" must be true or false")),
        }
    }

    fn i64(&mut self, name: &str) -> Result<i64, String> {
        self.opt_i64(name)?
            .ok_or_else(|| format!("missing field \"{name}\""))
    }

    fn opt_i32(&mut self, name: &str) -> Result<Option<i32>, String> {
        self.opt_i64(name)?
            .map(|n| i32::try_from(n).map_err(|_| format!("field \"{name}\" is out of range: {n}")))
            .transpose()
    }

    fn i32(&mut self, name: &str) -> Result<i32, String> {
        self.opt_i32(name)?
            .ok_or_else(|| format!("missing field \"{name}\""))
    }

    /// `name` as UTF-8 text or `name_b64` as base64. `None`: neither given; `Some(None)`: an
    /// explicit `null`.
    fn payload(&mut self, name: &str) -> Result<Option<Option<Bytes>>, String> {
        let b64_name = format!("{name}_b64");
        let text = self.0.remove(name);
        let b64 = self.0.remove(&b64_name);
        match (text, b64) {
            (Some(_), Some(_)) => Err(format!("give \"{name}\" or \"{b64_name}\", not both")),
            (Some(Value::Null), None) | (None, Some(Value::Null)) => Ok(Some(None)),
            (Some(Value::String(s)), None) => Ok(Some(Some(Bytes::from(s)))),
            (Some(_), None) => Err(format!("field \"{name}\" must be a string or null")),
            (None, Some(Value::String(s))) => decode_b64(&b64_name, &s).map(|b| Some(Some(b))),
            (None, Some(_)) => Err(format!("field \"{b64_name}\" must be a base64 string")),
            (None, None) => Ok(None),
        }
    }

    fn string_map(&mut self, name: &str) -> Result<BTreeMap<String, String>, String> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    Value::Number(n) => Ok((k, n.to_string())),
                    Value::Bool(b) => Ok((k, b.to_string())),
                    _ => Err(format!("\"{name}\".\"{k}\" must be a string")),
                })
                .collect(),
            Some(_) => Err(format!("field \"{name}\" must be an object")),
        }
    }

    /// `headers` (`{"name": "text" | null}`) and `headers_b64` (`{"name": "base64"}`).
    fn headers(&mut self) -> Result<Vec<(String, Option<Bytes>)>, String> {
        let mut out = Vec::new();
        for (field, b64) in [("headers", false), ("headers_b64", true)] {
            match self.0.remove(field) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        let value = match v {
                            Value::Null => None,
                            Value::String(s) if b64 => {
                                Some(decode_b64(&format!("{field}.{k}"), &s)?)
                            }
                            Value::String(s) => Some(Bytes::from(s)),
                            _ => {
                                return Err(format!("\"{field}\".\"{k}\" must be a string or null"))
                            }
                        };
                        if out.iter().any(|(name, _)| *name == k) {
                            return Err(format!("header \"{k}\" is given twice"));
                        }
                        out.push((k, value));
                    }
                }
                Some(_) => return Err(format!("field \"{field}\" must be an object")),
            }
        }
        Ok(out)
    }
}

fn decode_b64(field: &str, s: &str) -> Result<Bytes, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(Bytes::from)
        .map_err(|e| format!("field \"{field}\" is not valid base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Request, ParseError> {
        parse(line.as_bytes()).request
    }

    fn bad(line: &str) -> String {
        match req(line) {
            Err(e) => e.message().to_string(),
            Ok(r) => panic!("{line} parsed as {r:?}"),
        }
    }

    #[test]
    fn the_seed_requests_parse() {
        assert_eq!(
            req(r#"{"type":"create_topic","topic":"demo-topic","partitions":3}"#).unwrap(),
            Request::CreateTopic {
                topic: "demo-topic".into(),
                partitions: 3,
                configs: BTreeMap::new()
            }
        );
        assert_eq!(
            req(
                r#"{"type":"produce","topic":"t","partition":0,"value":"Hello, Kafka!","key":"k1"}"#
            )
            .unwrap(),
            Request::Produce {
                topic: "t".into(),
                partition: Some(0),
                key: Some(Bytes::from("k1")),
                value: Some(Bytes::from("Hello, Kafka!")),
                headers: vec![],
                timestamp: None,
            }
        );
        assert_eq!(
            req(r#"{"type":"consume","topic":"t","partition":0,"consumer_id":"c1"}"#).unwrap(),
            Request::Consume {
                topic: "t".into(),
                partition: 0,
                consumer_id: "c1".into(),
                offset: None,
                max_messages: CONSUME_MESSAGES_DEFAULT,
                wait_ms: 0,
                auto_commit: true,
            }
        );
    }

    #[test]
    fn binary_payloads_and_tombstones() {
        let r = req(r#"{"type":"produce","topic":"t","value_b64":"AP8=","key_b64":"AQ==","headers":{"a":"x","n":null},"headers_b64":{"b":"Ag=="}}"#)
            .unwrap();
        let Request::Produce {
            key,
            value,
            headers,
            ..
        } = r
        else {
            panic!()
        };
        assert_eq!(value.as_deref(), Some(&[0u8, 255][..]));
        assert_eq!(key.as_deref(), Some(&[1u8][..]));
        assert_eq!(
            headers,
            vec![
                ("a".into(), Some(Bytes::from("x"))),
                ("n".into(), None),
                ("b".into(), Some(Bytes::from_static(&[2])))
            ]
        );
        let r = req(r#"{"type":"produce","topic":"t","value":null}"#).unwrap();
        assert!(matches!(
            r,
            Request::Produce {
                value: None,
                key: None,
                ..
            }
        ));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(bad("{not json").starts_with("malformed JSON"));
        assert_eq!(bad("[1]"), "a request must be a JSON object");
        assert!(bad(r#"{"topic":"t"}"#).starts_with("missing field \"type\""));
        assert!(bad(r#"{"type":"frobnicate"}"#).starts_with("unknown type \"frobnicate\""));
        assert_eq!(
            bad(r#"{"type":"produce","value":"v"}"#),
            "missing field \"topic\""
        );
        assert_eq!(
            bad(r#"{"type":"produce","topic":"t"}"#),
            "missing field \"value\" (or \"value_b64\")"
        );
        assert_eq!(
            bad(r#"{"type":"consume","topic":"t","partition":"0","consumer_id":"c"}"#),
            "field \"partition\" must be an integer"
        );
        assert_eq!(
            bad(r#"{"type":"produce","topic":"t","value":"v","partiton":1}"#),
            "unknown field \"partiton\" for type \"produce\""
        );
        assert_eq!(
            bad(r#"{"type":"produce","topic":"t","value":"v","value_b64":"AA=="}"#),
            "give \"value\" or \"value_b64\", not both"
        );
        assert!(bad(r#"{"type":"produce","topic":"t","value_b64":"!!"}"#).contains("base64"));
        assert!(bad(
            r#"{"type":"consume","topic":"t","partition":0,"consumer_id":"c","max_messages":0}"#
        )
        .starts_with("max_messages must be"));
        assert_eq!(
            bad(r#"{"type":"produce","topic":"t","value":"v","partition":4294967296}"#),
            "field \"partition\" is out of range: 4294967296"
        );
    }

    #[test]
    fn group_requests_parse() {
        assert_eq!(
            req(r#"{"type":"join_group","group":"g","topic":"t"}"#).unwrap(),
            Request::JoinGroup {
                group: "g".into(),
                topics: vec!["t".into()],
                member_id: None,
                session_timeout_ms: None
            }
        );
        assert_eq!(
            req(r#"{"type":"consume","group":"g","member_id":"m","wait_ms":5}"#).unwrap(),
            Request::GroupConsume {
                group: "g".into(),
                member_id: "m".into(),
                only: None,
                max_messages: CONSUME_MESSAGES_DEFAULT,
                wait_ms: 5
            }
        );
        assert_eq!(
            bad(r#"{"type":"join_group","group":"g"}"#),
            "missing field \"topics\" (or \"topic\")"
        );
        assert_eq!(
            bad(r#"{"type":"consume","group":"g","member_id":"m","partition":0}"#),
            "give both \"topic\" and \"partition\", or neither"
        );
    }

    #[test]
    fn the_id_is_kept_even_for_bad_requests() {
        let p = parse(br#"{"id":7,"type":"nope"}"#);
        assert_eq!(p.id, Some(Value::from(7)));
        assert!(p.request.is_err());
    }
}
