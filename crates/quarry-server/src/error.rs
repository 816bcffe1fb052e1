//! The server's errors, and the one place they become HTTP statuses.
//!
//! Bodies have the OpenAI shape (`{"error": {"message", "type", "code"}}`) on every route, so OpenAI
//! clients show the message and everyone else parses one format.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API key (send `Authorization: Bearer qk_...`)")]
    Unauthorized,
    #[error("this key lacks the `{0}` scope")]
    Forbidden(&'static str),
    /// Also what a caller gets for something that exists but is not theirs, so ids of other tenants'
    /// documents and jobs cannot be probed.
    #[error("{0} not found")]
    NotFound(String),
    /// The thing exists but is not in a state to do this yet (an evaluation report of a running run).
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("too many requests for this key; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A bounded queue is full: the server sheds load rather than queueing without end.
    #[error("server busy ({0}); retry shortly")]
    Busy(&'static str),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Core(#[from] quarry_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("lock poisoned by a panic in another request")]
    Poisoned,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Busy(_) | Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            // A filter that does not parse, or input the library rejects, is the caller's to fix.
            Error::Core(quarry_core::Error::Filter { .. } | quarry_core::Error::InvalidInput { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Error::Core(quarry_core::Error::Service { .. }) => StatusCode::BAD_GATEWAY,
            Error::Core(_) | Error::Internal(_) | Error::Poisoned => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The body sent for this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": {
            "message": self.to_string(),
            "type": self.kind(),
            "code": self.status().as_u16(),
        }})
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = (status, axum::Json(self.body())).into_response();
        let h = resp.headers_mut();
        match &self {
            Error::Unauthorized => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::RateLimited { retry_after_secs } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    h.insert(header::RETRY_AFTER, v);
                }
            }
            Error::Busy(_) | Error::ShuttingDown => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        resp
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("worker task failed: {e}"))
    }
}
