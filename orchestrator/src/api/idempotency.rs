//! `Idempotency-Key` on submissions: a repeat of a request (same token, same key, same
//! body) answers the run the first one created, even while that one is still being
//! committed; the same key with another body is refused. Where a run came from is
//! stored in the run's own row, in the same transaction, so a run can never exist
//! without its key (or the reverse) after a crash.

use super::error::ApiError;
use crate::dag::origin::RunOrigin;
use crate::store::{RunRow, Store};
use axum::http::HeaderMap;
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Keys in use right now, so concurrent repeats wait for the first one.
pub struct Idempotency {
    inflight: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    keep: Duration,
}

/// What a keyed submission did.
pub enum Outcome {
    /// The first request with the key: a new run (201).
    Created(RunRow),
    /// A repeat: the run the first one created (200).
    Repeated(RunRow),
}

/// SHA-256 of the parts, each followed by a NUL (so no two splits collide), in hex.
pub fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The request's key, if it sent one; a malformed one is refused.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .ok()
        .filter(|k| (1..=MAX_KEY_LEN).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            ))
        })?;
    Ok(Some(k.to_owned()))
}

impl Idempotency {
    /// Keys are remembered for `keep`.
    pub fn new(keep: Duration) -> Self {
        Self {
            inflight: DashMap::new(),
            keep,
        }
    }

    /// Runs `submit` once per `(token, key)`: a repeat with the same `request` digest
    /// gets the stored run, one with another is a conflict. `submit` is handed the
    /// origin to store with the run.
    pub async fn once<F, Fut>(
        &self,
        store: &dyn Store,
        token: &str,
        key: &str,
        request: String,
        submit: F,
    ) -> Result<Outcome, ApiError>
    where
        F: FnOnce(RunOrigin) -> Fut,
        Fut: std::future::Future<Output = Result<RunRow, ApiError>>,
    {
        let id = digest(&[token.as_bytes(), key.as_bytes()]);
        let lock = Arc::clone(self.inflight.entry(id.clone()).or_default().value());
        let outcome = {
            let _turn = lock.lock().await;
            self.decide(store, &id, request, submit).await
        };
        drop(lock);
        self.inflight
            .remove_if(&id, |_, l| Arc::strong_count(l) == 1);
        outcome
    }

    async fn decide<F, Fut>(
        &self,
        store: &dyn Store,
        id: &str,
        request: String,
        submit: F,
    ) -> Result<Outcome, ApiError>
    where
        F: FnOnce(RunOrigin) -> Fut,
        Fut: std::future::Future<Output = Result<RunRow, ApiError>>,
    {
        let since = crate::engine::now_ms() - self.keep.as_millis() as i64;
        if let Some(run) = store.daily().run_by_idempotency(id, since).await? {
            let same = run
                .options
                .origin
                .as_ref()
                .and_then(|o| o.request_sha256.as_deref())
                == Some(request.as_str());
            if !same {
                return Err(ApiError::IdempotencyConflict(run.id));
            }
            return Ok(Outcome::Repeated(run));
        }
        let origin = RunOrigin {
            idempotency: Some(id.to_owned()),
            request_sha256: Some(request),
            ..RunOrigin::default()
        };
        submit(origin).await.map(Outcome::Created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_short_visible_ascii() {
        let mut h = HeaderMap::new();
        assert!(key(&h).unwrap().is_none());
        h.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(key(&h).unwrap().as_deref(), Some("abc-123"));
        h.insert(HEADER, "has space".parse().unwrap());
        assert!(key(&h).is_err());
        h.insert(HEADER, "x".repeat(256).parse().unwrap());
        assert!(key(&h).is_err());
    }

    #[test]
    fn digests_keep_their_parts_apart() {
        assert_ne!(digest(&[b"ab", b"c"]), digest(&[b"a", b"bc"]));
        assert_eq!(digest(&[b"a"]).len(), 64);
    }
}
