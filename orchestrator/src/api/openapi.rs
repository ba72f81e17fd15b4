//! Serves the OpenAPI document that describes this API.

use super::auth::{needs, Allowed};
use super::AppState;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The document, kept beside the code it describes.
const OPENAPI: &str = include_str!("../../openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

async fn openapi(_: Allowed<needs::Read>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
