//! The API's one error form: an HTTP status and `{"error": "<readable message>"}`. Domain
//! errors become statuses here and nowhere else.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use strom_broker::local::LocalError;
use strom_broker::topics::TopicError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            message: message.into(),
        }
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, Json(body)).into_response()
    }
}

impl From<TopicError> for ApiError {
    fn from(e: TopicError) -> ApiError {
        let message = e.to_string();
        match e {
            TopicError::AlreadyExists(_) => ApiError::conflict(message),
            TopicError::UnknownTopic => ApiError::not_found(message),
            TopicError::InvalidTopic(_)
            | TopicError::InvalidPartitions(_)
            | TopicError::InvalidConfig(_)
            | TopicError::InvalidReplicationFactor(_) => ApiError::bad_request(message),
            TopicError::QuorumUnavailable(_) => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message,
            },
            _ => ApiError::internal(message),
        }
    }
}

impl From<LocalError> for ApiError {
    fn from(e: LocalError) -> ApiError {
        let message = e.to_string();
        match e {
            LocalError::UnknownTopic(_) | LocalError::UnknownPartition { .. } => {
                ApiError::not_found(message)
            }
            LocalError::OffsetOutOfRange { .. } | LocalError::Invalid(_) => {
                ApiError::bad_request(message)
            }
            LocalError::Topic(t) => t.into(),
            LocalError::Rejected { .. } => ApiError::bad_request(message),
            // Cluster mode: the message names the node to ask.
            LocalError::NotLeader { .. } => ApiError {
                status: StatusCode::MISDIRECTED_REQUEST,
                message,
            },
            // A group that gained members, a bad group id: the group's state refuses it.
            LocalError::Group(_) => ApiError::conflict(message),
            _ => ApiError::internal(message),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        ApiError {
            status: if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            },
            message: format!("malformed JSON body: {}", e.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("bad query parameters: {}", e.body_text()))
    }
}
