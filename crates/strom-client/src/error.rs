//! The one error type of the client, [`ClientError`].
//!
//! Kafka error codes keep their protocol names (`UnknownTopicOrPartition`, ...) through
//! [`kafka_protocol::error::ResponseError`], and every error says what the client was doing, so
//! a person reading `error: ...` in a terminal knows what went wrong without a backtrace.

use std::io;

pub use kafka_protocol::error::ResponseError;

/// Everything that can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot reach broker at {addr}: {reason}")]
    Connect {
        /// The address as the caller gave it, e.g. `127.0.0.1:9092`.
        addr: String,
        /// A short, lower-case reason such as `connection refused`.
        reason: String,
    },

    /// The TLS handshake failed: an untrusted certificate, a certificate for another host, a
    /// port that does not speak TLS. Not retried: the next attempt would fail the same way.
    #[error("TLS handshake with broker at {addr} failed: {reason}")]
    Tls {
        /// The broker address.
        addr: String,
        /// rustls's reason, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },

    /// An established connection failed or was closed by the broker.
    #[error("connection to broker at {addr} failed: {source}")]
    Io {
        /// The broker address.
        addr: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The broker answered with a Kafka error code.
    #[error("{context}: {code} ({})", message.clone().unwrap_or_else(|| describe(code)))]
    Kafka {
        /// The error code, which displays as its protocol name.
        code: ResponseError,
        /// What the request was about, e.g. `topic demo partition 3`.
        context: String,
        /// The broker's own explanation, when it sent one.
        message: Option<String>,
    },

    /// A request or response could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The broker does not support a version of an API this client can speak.
    #[error("broker does not support {api} in any version this client speaks ({client_min}..={client_max})")]
    UnsupportedApi {
        /// The API name, e.g. `Fetch`.
        api: String,
        /// The lowest version the client speaks.
        client_min: i16,
        /// The highest version the client speaks.
        client_max: i16,
    },

    /// No answer came in time.
    #[error("timed out after {timeout_ms} ms waiting for {what}")]
    Timeout {
        /// What the client was waiting for.
        what: String,
        /// How long it waited.
        timeout_ms: u64,
    },

    /// The caller asked for something that cannot work, e.g. an unknown partition.
    #[error("{0}")]
    Invalid(String),

    /// The producer or consumer was closed, or its background task stopped.
    #[error("client is closed")]
    Closed,
}

/// The result type of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

impl ClientError {
    /// Builds a [`ClientError::Kafka`] from a non-zero error code.
    pub fn kafka(code: i16, context: impl Into<String>) -> Self {
        ClientError::Kafka {
            code: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            context: context.into(),
            message: None,
        }
    }

    /// Builds a [`ClientError::Kafka`] with the broker's error message, if it sent one.
    pub fn kafka_with_message(
        code: i16,
        context: impl Into<String>,
        message: Option<&str>,
    ) -> Self {
        match Self::kafka(code, context) {
            ClientError::Kafka { code, context, .. } => ClientError::Kafka {
                code,
                context,
                message: message
                    .filter(|m| !m.is_empty())
                    .map(|m| m.trim_end_matches('.').to_string()),
            },
            _ => unreachable!("kafka() builds the Kafka variant"),
        }
    }

    /// Returns `Ok(())` for error code 0, the named error otherwise.
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(Self::kafka(code, context()))
        }
    }

    /// The Kafka error code, when the broker sent one.
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying the same request may succeed: a retriable Kafka error, or a lost
    /// connection (the client reconnects on the next attempt).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => code.is_retriable(),
            ClientError::Io { .. } | ClientError::Connect { .. } | ClientError::Timeout { .. } => {
                true
            }
            _ => false,
        }
    }

    /// An equal error for another waiter: `ClientError` holds an `io::Error`, which is not
    /// `Clone`.
    pub(crate) fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Connect { addr, reason } => ClientError::Connect {
                addr: addr.clone(),
                reason: reason.clone(),
            },
            ClientError::Tls { addr, reason } => ClientError::Tls {
                addr: addr.clone(),
                reason: reason.clone(),
            },
            ClientError::Io { addr, source } => ClientError::Io {
                addr: addr.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::Kafka {
                code,
                context,
                message,
            } => ClientError::Kafka {
                code: *code,
                context: context.clone(),
                message: message.clone(),
            },
            ClientError::Protocol(m) => ClientError::Protocol(m.clone()),
            ClientError::UnsupportedApi {
                api,
                client_min,
                client_max,
            } => ClientError::UnsupportedApi {
                api: api.clone(),
                client_min: *client_min,
                client_max: *client_max,
            },
            ClientError::Timeout { what, timeout_ms } => ClientError::Timeout {
                what: what.clone(),
                timeout_ms: *timeout_ms,
            },
            ClientError::Invalid(m) => ClientError::Invalid(m.clone()),
            ClientError::Closed => ClientError::Closed,
        }
    }

    pub(crate) fn connect(addr: &str, err: &io::Error) -> Self {
        ClientError::Connect {
            addr: addr.to_string(),
            reason: io_reason(err),
        }
    }

    pub(crate) fn protocol(what: impl std::fmt::Display) -> Self {
        ClientError::Protocol(what.to_string())
    }
}

/// A lower-case, human reason for a connect failure (`connection refused`), without the
/// `(os error 111)` suffix that std adds.
fn io_reason(err: &io::Error) -> String {
    let text = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::TimedOut => "connection timed out".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = err.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// The protocol's own sentence for an error code, lower-cased and without the final period.
fn describe(code: &ResponseError) -> String {
    match code {
        ResponseError::UnknownTopicOrPartition => {
            "the broker does not host this topic-partition".into()
        }
        ResponseError::TopicAlreadyExists => "the topic already exists".into(),
        ResponseError::InvalidPartitions => "invalid number of partitions".into(),
        ResponseError::InvalidReplicationFactor => "invalid replication factor".into(),
        ResponseError::OffsetOutOfRange => "the offset is outside the partition's log".into(),
        ResponseError::GroupIdNotFound => "no such group".into(),
        ResponseError::CoordinatorNotAvailable => "the group coordinator is not available".into(),
        ResponseError::NotCoordinator => "this broker is not the group coordinator".into(),
        ResponseError::RebalanceInProgress => "the group is rebalancing".into(),
        ResponseError::UnknownMemberId => "the group does not know this member".into(),
        ResponseError::IllegalGeneration => "the group generation has moved on".into(),
        ResponseError::InvalidTopicException => "invalid topic name".into(),
        ResponseError::InvalidConfig => "invalid configuration".into(),
        ResponseError::MessageTooLarge => "the message is larger than the broker accepts".into(),
        ResponseError::NotLeaderOrFollower => "this broker is not the partition leader".into(),
        ResponseError::UnsupportedVersion => "the broker does not support this version".into(),
        ResponseError::NonEmptyGroup => "the group still has members".into(),
        ResponseError::SaslAuthenticationFailed => "authentication failed".into(),
        ResponseError::UnsupportedSaslMechanism => {
            "the broker does not enable this SASL mechanism".into()
        }
        ResponseError::Unknown(c) => format!("unknown error code {c}"),
        _ => "see the Kafka protocol error codes".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_error_reads_like_a_sentence() {
        let err = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let e = ClientError::connect("127.0.0.1:9092", &err);
        assert_eq!(
            e.to_string(),
            "cannot reach broker at 127.0.0.1:9092: connection refused"
        );
    }

    #[test]
    fn kafka_codes_keep_their_protocol_names() {
        let e = ClientError::kafka(3, "topic nope partition 0");
        assert_eq!(
            e.to_string(),
            "topic nope partition 0: UnknownTopicOrPartition \
             (the broker does not host this topic-partition)"
        );
        let e = ClientError::kafka_with_message(
            36,
            "creating topic t",
            Some("Topic 't' already exists."),
        );
        assert_eq!(
            e.to_string(),
            "creating topic t: TopicAlreadyExists (Topic 't' already exists)"
        );
        assert_eq!(e.code(), Some(ResponseError::TopicAlreadyExists));
        assert!(ClientError::check(0, || unreachable!()).is_ok());
    }
}
