//! `/api/v1/tokens`: scoped API tokens, created and revoked by admins. A token's secret
//! is in the answer that creates it and nowhere else: only its SHA-256 is stored.

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::AppState;
use crate::access::{self, ADMIN_TOKEN_NAME};
use crate::api_types as t;
use crate::store::TokenRow;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};

/// The token routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tokens", post(create_token).get(list_tokens))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
}

/// A token as the API lists it: never its secret.
fn view(r: &TokenRow) -> t::Token {
    t::Token {
        name: r.name.clone(),
        scope: r.scope,
        created_at_ms: r.created_at_ms,
        created_by: r.created_by.clone(),
        last_used_at_ms: r.last_used_at_ms,
    }
}

/// Create a scoped API token. Its secret is in this answer and nowhere else. Needs
/// scope `admin`.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", operation_id = "createToken",
    request_body = t::NewToken,
    responses(
        (status = 201, description = "Created: the token with its secret.", body = t::CreatedToken),
        (status = 409, description = "`conflict`: a token of that name exists.", body = t::ErrorResponse),
        (status = 422, description = "`invalid_token`: the name breaks the naming rule.", body = t::ErrorResponse),
    ))]
pub(super) async fn create_token(
    allowed: Allowed<needs::Admin>,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let new: t::NewToken = super::body::parse(&body)?;
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
    let body = t::CreatedToken {
        token: view(&row),
        secret,
    };
    // The one answer that carries a secret: no cache may keep it.
    let no_store = [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
    Ok((StatusCode::CREATED, no_store, Json(body)).into_response())
}

/// Every API token (never their secrets). Needs scope `admin`.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", operation_id = "listTokens",
    responses((status = 200, description = "The tokens.", body = t::TokenList)))]
pub(super) async fn list_tokens(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
) -> Result<Json<t::TokenList>, ApiError> {
    let tokens = state.store.list_tokens().await?;
    Ok(Json(t::TokenList {
        tokens: tokens.iter().map(view).collect(),
    }))
}

/// Revoke a token: it stops working at once, and streams opened with it close. Needs
/// scope `admin`.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", operation_id = "revokeToken",
    params(("name" = String, Path, description = "Token name.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "`not_found`: no such token.", body = t::ErrorResponse),
        (status = 409, description = "`conflict`: the admin token cannot be revoked here.", body = t::ErrorResponse),
    ))]
pub(super) async fn revoke_token(
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
