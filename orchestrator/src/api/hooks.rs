//! `/api/v1/hooks`: webhooks in. A hook names a template and holds a shared secret; a
//! `POST /api/v1/hooks/{name}` signed with it starts the template with the request's
//! JSON body as `params.payload`. The signature is HMAC-SHA256 over
//! `"{timestamp}.{body}"` (`X-Apex-Timestamp`: Unix seconds; `X-Apex-Signature:
//! sha256=<hex>`), so neither the body nor the time can be changed; a timestamp more
//! than five minutes off, or a signature already used, is refused with 401. The POST
//! carries no API token: the signature is its credential (see `auth.rs`).

use super::auth::{needs, Allowed};
use super::error::ApiError;
use super::idempotency::Outcome;
use super::templates::{check_name, start_run};
use super::AppState;
use crate::api_types::{Hook, HookList, HookSpec, RunSummary};
use crate::dag::origin::RunOrigin;
use crate::store::daily::HookRow;
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Header with the request's Unix time in seconds, covered by the signature.
pub const TIMESTAMP_HEADER: &str = "x-apex-timestamp";
/// Header with `sha256=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "x-apex-signature";
/// How far a request's timestamp may be from the server's clock.
pub const REPLAY_WINDOW_S: i64 = 300;
/// Shortest secret accepted: guessing one must be hopeless.
pub const MIN_SECRET: usize = 16;

/// The routes; a hook request's body is capped at `max_body` bytes.
pub fn router(max_body: usize) -> Router<AppState> {
    Router::new().route("/api/v1/hooks", get(list_hooks)).route(
        "/api/v1/hooks/{name}",
        put(put_hook)
            .get(get_hook)
            .post(receive)
            .layer(DefaultBodyLimit::max(max_body)),
    )
}

/// True for the one request the API takes without a token: a hook's POST.
pub fn is_hook_delivery(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::POST
        && path
            .strip_prefix("/api/v1/hooks/")
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

fn view(h: &HookRow) -> Hook {
    // Never the secret.
    Hook {
        name: h.name.clone(),
        template: h.template.clone(),
        created_at_ms: h.created_at_ms,
        updated_at_ms: h.updated_at_ms,
    }
}

/// Creates or replaces a hook.
#[utoipa::path(put, path = "/api/v1/hooks/{name}", tag = "hooks", operation_id = "putHook",
    params(("name" = String, Path, description = "Hook name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    request_body = HookSpec,
    responses((status = 201, description = "Created", body = Hook), (status = 200, description = "Replaced", body = Hook),
              (status = 404, description = "No such template")))]
async fn put_hook(
    _: Allowed<needs::Admin>,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Hook>), ApiError> {
    check_name("hook", &name)?;
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let spec: HookSpec = super::body::parse(&body)?;
    if spec.secret.chars().count() < MIN_SECRET || spec.secret.contains('\0') {
        return Err(ApiError::BadRequest(format!(
            "secret must be at least {MIN_SECRET} characters (and no NUL)"
        )));
    }
    if state
        .store
        .daily()
        .get_template(&spec.template, None)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "template {} not found",
            spec.template
        )));
    }
    let now = crate::engine::now_ms();
    let row = HookRow {
        name,
        template: spec.template,
        secret: spec.secret,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let created = state.store.daily().put_hook(&row).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&row))))
}

/// Every hook (without secrets).
#[utoipa::path(get, path = "/api/v1/hooks", tag = "hooks", operation_id = "listHooks",
    responses((status = 200, description = "Hooks, by name", body = HookList)))]
async fn list_hooks(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
) -> Result<Json<HookList>, ApiError> {
    let hooks = state.store.daily().list_hooks().await?;
    Ok(Json(HookList {
        hooks: hooks.iter().map(view).collect(),
    }))
}

/// One hook (without its secret).
#[utoipa::path(get, path = "/api/v1/hooks/{name}", tag = "hooks", operation_id = "getHook",
    params(("name" = String, Path, description = "Hook name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    responses((status = 200, description = "The hook", body = Hook), (status = 404, description = "No such hook")))]
async fn get_hook(
    _: Allowed<needs::Read>,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Hook>, ApiError> {
    let hook = state
        .store
        .daily()
        .get_hook(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("hook {name} not found")))?;
    Ok(Json(view(&hook)))
}

/// The hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a delivery's timestamp and signature; returns the signature's hex.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8], now_s: i64) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::BadSignature(format!("webhook refused: {why}"));
    let ts = headers
        .get(TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| bad("missing X-Apex-Timestamp (Unix seconds)"))?;
    let at: i64 = ts
        .parse()
        .map_err(|_| bad("X-Apex-Timestamp is not Unix seconds"))?;
    if (now_s - at).abs() > REPLAY_WINDOW_S {
        return Err(bad(
            "the timestamp is more than 5 minutes from the server's clock",
        ));
    }
    let given = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| bad("missing or malformed X-Apex-Signature (sha256=<hex>)"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant time: the comparison must not tell a forger how close it came.
    mac.verify_slice(&given)
        .map_err(|_| bad("the signature does not match"))?;
    Ok(hex::encode(given))
}

/// A signed delivery: starts the hook's template with the body as `params.payload`.
#[utoipa::path(post, path = "/api/v1/hooks/{name}", tag = "hooks", operation_id = "receiveHook",
    params(("name" = String, Path, description = "Hook name: 1–128 of `A-Za-z0-9_-.:`", max_length = 128, pattern = r"^[A-Za-z0-9_.:-]+$")),
    request_body(content = Object, description = "Any JSON; becomes params.payload"),
    responses((status = 201, description = "The run started", body = RunSummary),
              (status = 401, description = "Bad or missing signature, stale timestamp, or a replay"),
              (status = 413, description = "Body over the hook body limit")))]
async fn receive(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RunSummary>), ApiError> {
    let body = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => {
            ApiError::PayloadTooLarge(state.daily.hook_max_body_bytes)
        }
        other => ApiError::BadRequest(other.body_text()),
    })?;
    // An unknown hook answers as a bad signature does: no probing for names.
    let hook = state.store.daily().get_hook(&name).await?.ok_or_else(|| {
        ApiError::BadSignature("webhook refused: the signature does not match".into())
    })?;
    let now_s = crate::engine::now_ms() / 1000;
    let signature = verify(&hook.secret, &headers, &body, now_s)?;
    let payload: Value = super::body::parse(&body)?;
    let mut params = Map::new();
    params.insert("payload".into(), payload);
    let by = format!("hook:{name}");
    // The signature is the delivery's idempotency key: a replay finds its run.
    let outcome = state
        .daily
        .idempotency
        .once(
            state.store.as_ref(),
            &by,
            &signature,
            signature.clone(),
            |origin| {
                let origin = RunOrigin {
                    hook: Some(name.clone()),
                    ..origin
                };
                start_run(&state, &hook.template, None, &params, origin, &by)
            },
        )
        .await?;
    match outcome {
        Outcome::Created(run) => Ok((StatusCode::CREATED, Json(views::summary(&run)))),
        Outcome::Repeated(_) => Err(ApiError::BadSignature(
            "webhook refused: this delivery was already received (replay)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TIMESTAMP_HEADER, ts.parse().unwrap());
        h.insert(SIGNATURE_HEADER, sig.parse().unwrap());
        h
    }

    #[test]
    fn a_signature_covers_the_body_and_the_timestamp() {
        let secret = "0123456789abcdef";
        let sig = format!("sha256={}", sign(secret, "1000", b"{\"a\":1}"));
        assert!(verify(secret, &headers("1000", &sig), b"{\"a\":1}", 1000).is_ok());
        assert!(verify(secret, &headers("1000", &sig), b"{\"a\":2}", 1000).is_err());
        assert!(verify(secret, &headers("1001", &sig), b"{\"a\":1}", 1001).is_err());
        assert!(verify(
            "another-secret-16",
            &headers("1000", &sig),
            b"{\"a\":1}",
            1000
        )
        .is_err());
        // Five minutes off either way is the most tolerated.
        assert!(verify(secret, &headers("1000", &sig), b"{\"a\":1}", 1300).is_ok());
        assert!(verify(secret, &headers("1000", &sig), b"{\"a\":1}", 1301).is_err());
        assert!(verify(secret, &headers("1000", "sha1=00"), b"{\"a\":1}", 1000).is_err());
    }

    #[test]
    fn only_a_hook_post_goes_without_a_token() {
        use axum::http::Method;
        assert!(is_hook_delivery(&Method::POST, "/api/v1/hooks/github"));
        assert!(!is_hook_delivery(&Method::PUT, "/api/v1/hooks/github"));
        assert!(!is_hook_delivery(&Method::POST, "/api/v1/hooks/"));
        assert!(!is_hook_delivery(&Method::POST, "/api/v1/hooks/a/b"));
        assert!(!is_hook_delivery(&Method::POST, "/api/v1/runs"));
    }
}
