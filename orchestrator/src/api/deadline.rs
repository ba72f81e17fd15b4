//! The time a request may take (`--request-timeout-s`): a client that trickles its body,
//! a query stuck behind a lock, or an engine busy with a huge run cannot hold a
//! connection and its memory for ever. The WebSocket route is long-lived by design and
//! is never under it (see [`super::app`]).
//!
//! This is a middleware rather than tower-http's `TimeoutLayer`, whose answer has no body:
//! here the timeout is an [`ApiError`], answered like every other error.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Answers `503 timeout` when the handler has not answered within `limit`. The handler
/// is dropped then; what it already handed to the engine (a submitted run, a cancel)
/// still takes effect, as the error message says.
pub async fn bound(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::Router;
    use tower::ServiceExt;

    /// A router answering every path with `handler`, under a deadline of 200 ms.
    fn under_deadline<H, T>(handler: H) -> Router
    where
        H: axum::handler::Handler<T, ()>,
        T: 'static,
    {
        // A fallback rather than a `.route(...)`: the OpenAPI test lists the API's routes
        // from `.route(` calls, and this one is not part of the API.
        Router::new()
            .fallback(handler)
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(200),
                bound,
            ))
    }

    #[tokio::test]
    async fn a_slow_handler_is_answered_503_with_the_json_error() {
        let slow = under_deadline(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "late"
        })
        .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
        .await
        .unwrap();
        assert_eq!(slow.status(), 503);
        let body = axum::body::to_bytes(slow.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "timeout", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("within 0.2 s"),
            "{body}"
        );
        let quick = under_deadline(|| async { "ok" })
            .oneshot(Request::get("/quick").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(quick.status(), 200);
    }
}
