//! The one mapping from failures to HTTP answers. Every error body is
//! `{"error": {"code", "message", "details"?}}`; internal errors are logged once, here,
//! and their details never leave the server.

use super::params::BadParam;
use crate::access::Scope;
use crate::dag::{Problem, ValidationErrors};
use crate::engine::EngineError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON for this endpoint: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidDag(ValidationErrors),
    #[error("{}", agent_message(.0))]
    InvalidAgent(ValidationErrors),

    #[error("{0}")]
    BadRequest(String),
    /// A path or query parameter no handler should see (`api/params.rs`).
    #[error("{0}")]
    BadParameter(#[from] BadParam),
    #[error("the request URI is {0} bytes long; the limit is {1} bytes")]
    UriTooLong(usize, usize),
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    #[error("missing or invalid API token: send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// A valid token whose scope does not cover the request.
    #[error("this token ({token:?}, scope {scope}) lacks the {required} scope")]
    Forbidden {
        token: String,
        scope: Scope,
        required: Scope,
    },
    /// Too many requests with a wrong token came from the caller's address lately.
    #[error("too many requests with a wrong API token from this address; try again in {retry_after_s} s")]
    TooManyFailures { retry_after_s: u64 },
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    Conflict(String),
    /// A decision that does not fit what the task waits for (422).
    #[error("{0}")]
    InvalidDecision(String),
    #[error("this server does not answer to Host {0:?}: use the address it serves at, or have the operator add it with --allowed-hosts (APEX_ALLOWED_HOSTS)")]
    MisdirectedHost(String),
    #[error("requests from pages of {0:?} are refused: the API answers its own dashboard's origin and the operator's --cors-origins (APEX_CORS_ORIGINS) only")]
    ForeignOrigin(String),
    #[error("a request body must be JSON: send `Content-Type: application/json`")]
    UnsupportedMediaType,
    #[error("{0}")]
    Unavailable(String),
    #[error("this server is at its limit of {0} WebSocket connections (--max-websockets, APEX_MAX_WEBSOCKETS); try again later")]
    WebSocketLimit(usize),
    #[error("the server did not answer within {} s (--request-timeout-s, APEX_REQUEST_TIMEOUT_S); what the request asked for may still have been done: check before repeating it", .0.as_secs_f64())]
    Timeout(std::time::Duration),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidDag(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_dag"),
            ApiError::InvalidAgent(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent"),
            ApiError::BadRequest(_) | ApiError::BadParameter(_) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            ApiError::UriTooLong(..) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TooManyFailures { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::InvalidToken(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_token"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::InvalidDecision(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_decision"),
            ApiError::MisdirectedHost(_) => (StatusCode::MISDIRECTED_REQUEST, "misdirected_host"),
            ApiError::ForeignOrigin(_) => (StatusCode::FORBIDDEN, "foreign_origin"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unavailable(_) | ApiError::WebSocketLimit(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let mut body = json!({"error": {"code": code, "message": self.to_string()}});
        if let ApiError::InvalidDag(errors) | ApiError::InvalidAgent(errors) = &self {
            let details: Vec<&Problem> = errors.0.iter().collect();
            body["error"]["details"] = json!(details);
        }
        if let ApiError::Forbidden { required, .. } = &self {
            body["error"]["required_scope"] = json!(required);
        }
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyFailures { retry_after_s } = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_transient() {
            ApiError::Unavailable("the store is unavailable; try again shortly".into())
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::RunNotFound(id) => ApiError::NotFound(format!("run {id} not found")),
            EngineError::TaskNotFound(run, task) => {
                ApiError::NotFound(format!("run {run} has no task {task:?}"))
            }
            EngineError::Conflict(why) => ApiError::Conflict(why),
            EngineError::InvalidDecision(why) => ApiError::InvalidDecision(why),
            EngineError::Invalid(problems) => ApiError::InvalidDag(problems),
            EngineError::Store(s) => s.into(),
            EngineError::Stopped => {
                ApiError::Unavailable("the orchestrator is shutting down".into())
            }
            EngineError::QueueStartup { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// The message of a rejected agent: its one problem, or how many it has.
fn agent_message(errors: &ValidationErrors) -> String {
    match errors.0.as_slice() {
        [one] => one.message.clone(),
        many => format!("{} problems in the agent", many.len()),
    }
}
