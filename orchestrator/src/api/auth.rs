//! Who a request acts as, and whether it may.
//!
//! [`authenticate`] (a middleware on every route) resolves the token an `/api/` request
//! presents to a [`Principal`]: the admin token from the environment, or a stored scoped
//! token. It puts the principal in the request's extensions, or answers 401 (and 429 to
//! a client that presented too many wrong tokens lately). Each handler then declares the
//! scope it needs by taking an [`Allowed<S>`] argument, which answers 403 when the
//! principal's scope falls short. Requests outside `/api/` (dashboard, probes, metrics)
//! are not checked; with `--no-auth` every request acts as `anonymous`, allowed all.

use super::error::ApiError;
use super::failures::FailedAttempts;
use super::AppState;
use crate::access::{self, Principal};
use crate::store::{Store, StoreError};
use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use serde::Deserialize;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;

/// A stored token found valid is trusted this long before the store is asked again
/// (revocation through this server takes effect at once regardless).
const RECHECK_AFTER: Duration = Duration::from_secs(60);

/// The one route that reads `?token=`: browsers cannot set headers on a WebSocket.
/// Elsewhere a token in the URL would end up in logs and browser history, so it is not
/// read at all.
const QUERY_TOKEN_ROUTE: &str = "/api/v1/ws";

/// Resolves presented tokens to principals.
pub struct Authenticator {
    store: Arc<dyn Store>,
    /// SHA-256 of the token from the environment. Digests are compared, in constant
    /// time, so neither the token's content nor its length shows in response times.
    admin: [u8; 32],
    /// Stored tokens presented lately, by the SHA-256 of their secret, with when the
    /// store last confirmed them. Only valid tokens enter, so it holds at most one entry
    /// per token whatever clients present. A `DashMap`: every request reads it.
    known: DashMap<[u8; 32], Known>,
    /// Bumped by every revocation, so a lookup that raced one drops what it cached.
    revocations: AtomicU64,
    /// Clients that presented wrong tokens lately.
    failures: FailedAttempts,
    /// Names of tokens as they are revoked, so streams opened with one close too.
    revoked: broadcast::Sender<Arc<str>>,
}

/// A stored token as cached.
struct Known {
    principal: Principal,
    confirmed: Instant,
}

impl Authenticator {
    /// Checks the admin token `admin_token`, and scoped tokens in `store`.
    pub fn new(store: Arc<dyn Store>, admin_token: &str) -> Self {
        Self {
            store,
            admin: access::digest(admin_token),
            known: DashMap::new(),
            revocations: AtomicU64::new(0),
            failures: FailedAttempts::default(),
            revoked: broadcast::channel(REVOCATIONS_KEPT).0,
        }
    }

    /// Who `secret` belongs to, if anyone.
    pub async fn resolve(&self, secret: &str) -> Result<Option<Principal>, StoreError> {
        let digest = access::digest(secret);
        if bool::from(digest.ct_eq(&self.admin)) {
            return Ok(Some(Principal::admin()));
        }
        // Anything else that is not shaped like a generated secret is no stored token:
        // no need to ask the store.
        if !access::looks_like_secret(secret) {
            return Ok(None);
        }
        if let Some(k) = self.known.get(&digest) {
            if k.confirmed.elapsed() < RECHECK_AFTER {
                return Ok(Some(k.principal.clone()));
            }
        }
        let revocations = self.revocations.load(Ordering::SeqCst);
        let Some(row) = self.store.find_token(&access::hex(&digest)).await? else {
            self.known.remove(&digest);
            return Ok(None);
        };
        let principal = Principal {
            name: Arc::from(row.name.as_str()),
            scope: row.scope,
        };
        self.known.insert(
            digest,
            Known {
                principal: principal.clone(),
                confirmed: Instant::now(),
            },
        );
        // Cached first, checked after: a revocation either ran `forget` after the insert
        // (and removed it) or bumped the count before this load.
        if self.revocations.load(Ordering::SeqCst) != revocations {
            self.known.remove(&digest);
        }
        // Last use is noted once per confirmation (about a minute), not per request.
        let store = Arc::clone(&self.store);
        let name = row.name;
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(&name, crate::engine::now_ms()).await {
                tracing::debug!(token = %name, error = %e, "cannot note the token's last use");
            }
        });
        Ok(Some(principal))
    }

    /// Stops accepting a revoked token at once, and closes streams opened with it.
    pub fn forget(&self, name: &str) {
        self.revocations.fetch_add(1, Ordering::SeqCst);
        self.known.retain(|_, k| &*k.principal.name != name);
        // No stream open is fine.
        let _ = self.revoked.send(Arc::from(name));
    }

    /// Resolves once token `name` is revoked here. Subscribe before serving a stream.
    pub fn revoked(
        &self,
        name: Arc<str>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.revoked.subscribe();
        async move {
            loop {
                match rx.recv().await {
                    Ok(n) if n == name => return,
                    Ok(_) => {}
                    // Missed some: it may have been this one; the client reconnects and
                    // is checked afresh.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        }
    }
}

/// Revocations a stream may fall behind by before it is closed to be safe.
const REVOCATIONS_KEPT: usize = 64;

/// The token a request presents: `Authorization: Bearer T`, or on the WebSocket route
/// only, `?token=T` (percent-decoded).
fn presented(req: &Request) -> Option<String> {
    if let Some(h) = req.headers().get(AUTHORIZATION) {
        let h = h.to_str().ok()?;
        let (scheme, token) = h.split_once(' ')?;
        return (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
            .then(|| token.trim().to_owned());
    }
    if req.uri().path() != QUERY_TOKEN_ROUTE {
        return None;
    }
    #[derive(Deserialize)]
    struct TokenParam {
        token: Option<String>,
    }
    Query::<TokenParam>::try_from_uri(req.uri())
        .ok()?
        .0
        .token
        .filter(|t| !t.is_empty())
}

/// Lets `/api/*` requests through as the principal their token names; 401 without a
/// valid token, 429 for a client refused for presenting wrong ones.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    // A webhook delivery carries its own credential, a signature (`hooks.rs`).
    if super::hooks::is_hook_delivery(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let Some(auth) = state.auth.clone() else {
        req.extensions_mut().insert(Principal::anonymous());
        return next.run(req).await;
    };
    // Absent when the router is called in-process rather than served (tests).
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(wait) = client.and_then(|ip| auth.failures.refused_for(ip, now)) {
        let retry_after_s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return ApiError::TooManyFailures { retry_after_s }.into_response();
    }
    // A request without a token gives a guesser nothing, so only wrong tokens count
    // (and a dashboard opened before its token is entered is not locked out).
    let Some(secret) = presented(&req) else {
        return ApiError::Unauthorized.into_response();
    };
    match auth.resolve(&secret).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => {
            if let Some(ip) = client {
                auth.failures.record(ip, now);
            }
            ApiError::Unauthorized.into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The scopes a handler may need, as types: `Allowed<needs::Submit>`.
pub mod needs {
    use crate::access::Scope;

    /// A scope a handler needs.
    pub trait Need {
        const SCOPE: Scope;
    }

    /// Every `GET` and the WebSocket.
    pub struct Read;
    /// Submitting and validating runs.
    pub struct Submit;
    /// Cancelling and retrying runs.
    pub struct Operate;
    /// The agent registry, API tokens and the audit log.
    pub struct Admin;

    impl Need for Read {
        const SCOPE: Scope = Scope::Read;
    }
    impl Need for Submit {
        const SCOPE: Scope = Scope::Submit;
    }
    impl Need for Operate {
        const SCOPE: Scope = Scope::Operate;
    }
    impl Need for Admin {
        const SCOPE: Scope = Scope::Admin;
    }
}

/// The request's principal, who holds scope `S`. A handler taking it (as its first
/// argument, so the check comes before the body is read) needs `S`; 403 otherwise.
pub struct Allowed<S> {
    /// Who the request acts as.
    pub principal: Principal,
    need: PhantomData<fn() -> S>,
}

impl<S> Allowed<S> {
    /// The name to record as `by` on what the request changes.
    pub fn name(&self) -> &str {
        &self.principal.name
    }
}

impl<S: needs::Need, St: Send + Sync> FromRequestParts<St> for Allowed<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| {
                ApiError::Internal(
                    "no principal: the route is outside /api/, the auth layer's".into(),
                )
            })?;
        if !principal.scope.includes(S::SCOPE) {
            return Err(ApiError::Forbidden {
                token: principal.name.to_string(),
                scope: principal.scope,
                required: S::SCOPE,
            });
        }
        Ok(Self {
            principal,
            need: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(uri: &str, auth: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn the_bearer_header_is_read_everywhere_and_the_query_only_on_the_websocket() {
        assert_eq!(
            presented(&request("/api/v1/runs", Some("Bearer abc "))).as_deref(),
            Some("abc")
        );
        assert_eq!(
            presented(&request("/api/v1/runs", Some("bearer abc"))).as_deref(),
            Some("abc")
        );
        assert_eq!(presented(&request("/api/v1/runs", Some("Basic abc"))), None);
        assert_eq!(presented(&request("/api/v1/runs", Some("Bearer "))), None);
        assert_eq!(presented(&request("/api/v1/runs?token=abc", None)), None);
        assert_eq!(
            presented(&request("/api/v1/ws?run=r&token=a%2Bb%20c%26d", None)).as_deref(),
            Some("a+b c&d"),
            "percent-decoded"
        );
        assert_eq!(presented(&request("/api/v1/ws?token=", None)), None);
        assert_eq!(
            presented(&request("/api/v1/ws?token=q", Some("Bearer h"))).as_deref(),
            Some("h"),
            "the header wins"
        );
    }
}
