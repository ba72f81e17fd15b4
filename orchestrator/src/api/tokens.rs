//! `/api/v1/tokens`: scoped API tokens, created and revoked by admins. A token's secret
//! is in the answer that creates it and nowhere else: only its SHA-256 is stored.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::access::{self, Scope, ADMIN_TOKEN_NAME};
use crate::store::TokenRow;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// The token routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
}

/// The body of `POST /api/v1/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    scope: Scope,
}

/// A token as the API lists it: never its secret.
fn view(t: &TokenRow) -> Value {
    json!({
        "name": t.name,
        "scope": t.scope,
        "created_at_ms": t.created_at_ms,
        "created_by": t.created_by,
        "last_used_at_ms": t.last_used_at_ms,
    })
}

async fn create_token(
    allowed: Allowed<needs::Admin>,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let new: NewToken =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if let Some(why) = access::name_problem(&new.name) {
        return Err(ApiError::InvalidToken(why));
    }
    let secret = access::generate_secret();
    let row = TokenRow {
        secret_sha256: access::hex(&access::digest(&secret)),
        name: new.name,
        scope: new.scope,
        created_at_ms: crate::engine::now_ms(),
        created_by: allowed.name().to_owned(),
        last_used_at_ms: None,
    };
    if !state.store.create_token(&row).await? {
        return Err(ApiError::Conflict(format!(
            "a token named {:?} already exists; revoke it first or choose another name",
            row.name
        )));
    }
    let mut body = view(&row);
    body["token"] = json!(secret);
    // The one answer that carries a secret: no cache may keep it.
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Ok((StatusCode::CREATED, no_store, Json(body)).into_response())
}

async fn list_tokens(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let tokens = state.store.list_tokens().await?;
    Ok(Json(
        json!({"tokens": tokens.iter().map(view).collect::<Vec<_>>()}),
    ))
}

async fn revoke_token(
    allowed: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if name == ADMIN_TOKEN_NAME {
        return Err(ApiError::Conflict(
            "the admin token is the server's APEX_API_TOKEN; change it there and restart the server"
                .into(),
        ));
    }
    let revoked = state
        .store
        .revoke_token(&name, allowed.name(), crate::engine::now_ms())
        .await?;
    if !revoked {
        return Err(ApiError::NotFound(format!("token {name} not found")));
    }
    if let Some(auth) = &state.auth {
        auth.forget(&name);
    }
    Ok(StatusCode::NO_CONTENT)
}
