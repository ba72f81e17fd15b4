//! The one mapping from failures to HTTP answers. Every error body is
//! `{"error": {"code", "message", "details"?}}`; internal errors are logged once, here,
//! and their details never leave the server.

use super::params::BadParam;
use crate::access::Scope;
use crate::api_types::{ErrorBody, ErrorResponse};
use crate::dag::ValidationErrors;
use crate::engine::EngineError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

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
    /// An `Idempotency-Key` reused with a different request; holds the first one's run.
    #[error("this Idempotency-Key was first used with a different request (run {0}); send a new key with a new request")]
    IdempotencyConflict(String),
    /// A webhook request whose signature or timestamp does not check out.
    #[error("{0}")]
    BadSignature(String),
    /// A re-run that names tasks or agents the run does not have (`api/rerun.rs`).
    #[error("{0}")]
    InvalidRerun(String),
    /// A decision that does not fit what the task waits for (422).
    #[error("{0}")]
    InvalidDecision(String),
    /// A schedule's timing that no schema can rule out: both or neither of `cron` and
    /// `every_s`, a cron that does not parse, an unknown time zone (422).
    #[error("{0}")]
    InvalidSchedule(String),
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

/// The stable `code` of an error answer: what a client branches on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON of the expected shape (syntax, types, unknown or missing fields).
    InvalidJson,
    /// 422: the DAG parses but breaks a rule or limit; `details` lists every problem.
    InvalidDag,
    /// 422: the agent parses but breaks a rule; `details` lists every problem.
    InvalidAgent,
    /// 400: an invalid path or query parameter.
    BadRequest,
    /// 414: the request URI is longer than the server reads.
    UriTooLong,
    /// 413: the body is larger than `--max-body-bytes`.
    PayloadTooLarge,
    /// 404: no such run, task, agent or token.
    NotFound,
    /// 401: the server has a token and the request did not present a valid one.
    Unauthorized,
    /// 403: the token's scope does not cover the request (`required_scope` says which does).
    Forbidden,
    /// 429: too many wrong tokens from this address lately; see `Retry-After`.
    RateLimited,
    /// 422: a token name breaks the naming rule.
    InvalidToken,
    /// 409: the request contradicts the current state (a finished run, an existing name).
    Conflict,
    /// 409: an `Idempotency-Key` reused with a different request; `run_id` names the first one's run.
    IdempotencyConflict,
    /// 401: a webhook request whose signature or timestamp does not check out.
    InvalidSignature,
    /// 422: a re-run names tasks or agents the run does not have, or overrides a reused task.
    InvalidRerun,
    /// 422: a decision that does not fit what the task waits for (a raise for an approval, none for a budget).
    InvalidDecision,
    /// 422: a schedule's timing is invalid (both or neither of `cron` and `every_s`, a bad cron, an unknown time zone).
    InvalidSchedule,
    /// 421: the `Host` header names a host this server does not answer to.
    MisdirectedHost,
    /// 403: a page of another origin made the request.
    ForeignOrigin,
    /// 415: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 503: a standby, a store outage, shutdown, or the WebSocket limit: try again later.
    Unavailable,
    /// 503: the request took longer than `--request-timeout-s`.
    Timeout,
    /// 500: a bug or an unexpected failure; details are in the server's log only.
    Internal,
}

impl ErrorCode {
    /// The code as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidDag => "invalid_dag",
            ErrorCode::InvalidAgent => "invalid_agent",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Conflict => "conflict",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::InvalidRerun => "invalid_rerun",
            ErrorCode::InvalidDecision => "invalid_decision",
            ErrorCode::InvalidSchedule => "invalid_schedule",
            ErrorCode::MisdirectedHost => "misdirected_host",
            ErrorCode::ForeignOrigin => "foreign_origin",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ApiError {
    /// The HTTP status and the stable code of this failure.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, C::InvalidJson),
            ApiError::InvalidDag(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidDag),
            ApiError::InvalidAgent(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidAgent),
            ApiError::BadRequest(_) | ApiError::BadParameter(_) => {
                (StatusCode::BAD_REQUEST, C::BadRequest)
            }
            ApiError::UriTooLong(..) => (StatusCode::URI_TOO_LONG, C::UriTooLong),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, C::PayloadTooLarge),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, C::Unauthorized),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, C::Forbidden),
            ApiError::TooManyFailures { .. } => (StatusCode::TOO_MANY_REQUESTS, C::RateLimited),
            ApiError::InvalidToken(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidToken),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, C::Conflict),
            ApiError::IdempotencyConflict(_) => (StatusCode::CONFLICT, C::IdempotencyConflict),
            ApiError::BadSignature(_) => (StatusCode::UNAUTHORIZED, C::InvalidSignature),
            ApiError::InvalidRerun(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidRerun),
            ApiError::InvalidDecision(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidDecision),
            ApiError::InvalidSchedule(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidSchedule),
            ApiError::MisdirectedHost(_) => (StatusCode::MISDIRECTED_REQUEST, C::MisdirectedHost),
            ApiError::ForeignOrigin(_) => (StatusCode::FORBIDDEN, C::ForeignOrigin),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, C::UnsupportedMediaType)
            }
            ApiError::Unavailable(_) | ApiError::WebSocketLimit(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, C::Unavailable)
            }
            ApiError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, C::Timeout),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, C::Internal),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering a request");
        }
        let details = match &self {
            ApiError::InvalidDag(errors) | ApiError::InvalidAgent(errors) => errors.0.clone(),
            _ => Vec::new(),
        };
        let required_scope = match &self {
            ApiError::Forbidden { required, .. } => Some(*required),
            _ => None,
        };
        let run_id = match &self {
            ApiError::IdempotencyConflict(run) => Some(run.clone()),
            _ => None,
        };
        let body = ErrorResponse {
            error: ErrorBody {
                code,
                message: self.to_string(),
                details,
                required_scope,
                run_id,
            },
        };
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
