//! What keeps other web pages out of the API. A page the user visits can make their
//! browser send requests to a local Apex (cross-site requests, DNS rebinding); these
//! rules refuse every such request before authentication even looks at it:
//!
//! - **Host.** A request must name this server: on a loopback bind `localhost`,
//!   `127.0.0.1` or `[::1]` with the port; on another specific address that address;
//!   plus the operator's `--allowed-hosts`. A rebinding page's requests name the
//!   attacker's host instead. Bound to all interfaces with no list, any Host passes
//!   (there, the token is the defence; the server warns at start).
//! - **Origin.** A browser names the page's origin on every cross-origin request and on
//!   every WebSocket: it must be this server's own origin (the Host it was reached by)
//!   or one the operator listed (`--cors-origins`). CORS headers are sent for the listed
//!   origins only.
//! - **Content type.** A request with a body must say `application/json`, so a form or
//!   a `text/plain` fetch (which a browser sends without asking first) never lands.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The hosts and origins a server accepts requests from.
#[derive(Debug, Clone)]
pub struct BrowserPolicy {
    /// Lowercase `host[:port]` values the Host header may take; `None` accepts any.
    hosts: Option<Arc<HashSet<String>>>,
    /// Lowercase origins (`scheme://host[:port]`) allowed besides the server's own.
    origins: Arc<HashSet<String>>,
}

impl BrowserPolicy {
    /// The policy of a server bound to `bind`, with the operator's extra hosts and
    /// origins.
    pub fn new(bind: SocketAddr, allowed_hosts: &[String], cors_origins: &[String]) -> Self {
        let port = bind.port();
        let mut hosts: HashSet<String> = allowed_hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let ip = bind.ip();
        let enforce = if ip.is_loopback() {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                hosts.insert(format!("{name}:{port}"));
                if port == 80 {
                    hosts.insert(name.to_owned());
                }
            }
            true
        } else if ip.is_unspecified() {
            !hosts.is_empty()
        } else {
            hosts.insert(SocketAddr::new(ip, port).to_string().to_ascii_lowercase());
            true
        };
        Self {
            hosts: enforce.then(|| Arc::new(hosts)),
            origins: Arc::new(
                cors_origins
                    .iter()
                    .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        }
    }

    /// Whether Host is checked (false: bound to all interfaces with no list).
    pub fn checks_host(&self) -> bool {
        self.hosts.is_some()
    }

    /// CORS for the operator's listed origins; none at all when there are none, so a
    /// browser refuses every cross-origin read.
    pub fn cors(&self) -> Option<CorsLayer> {
        if self.origins.is_empty() {
            return None;
        }
        let origins: Vec<HeaderValue> = self
            .origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }

    fn host_allowed(&self, host: Option<&str>) -> bool {
        match (&self.hosts, host) {
            (None, _) => true,
            (Some(hosts), Some(h)) => hosts.contains(&h.to_ascii_lowercase()),
            (Some(_), None) => false,
        }
    }

    /// The page's origin is this server's own (reached by `host`) or a listed one.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        let Some(host) = host else { return false };
        let own = |scheme: &str| format!("{scheme}://{}", host.to_ascii_lowercase());
        origin == own("http") || origin == own("https")
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A request carries a body when it says so by length or by chunked encoding.
fn has_body(headers: &HeaderMap) -> bool {
    let length = text(headers, header::CONTENT_LENGTH)
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(0);
    length > 0 || headers.contains_key(header::TRANSFER_ENCODING)
}

fn is_json(headers: &HeaderMap) -> bool {
    text(headers, header::CONTENT_TYPE).is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
    })
}

/// Applies the policy to every request; the dashboard's pages are checked for Host only
/// (a page load has no Origin to check, and it carries no authority).
pub async fn guard(State(policy): State<BrowserPolicy>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = text(headers, header::HOST);
    if !policy.host_allowed(host) {
        return ApiError::MisdirectedHost(host.unwrap_or("").chars().take(200).collect())
            .into_response();
    }
    let api = req.uri().path().starts_with("/api/");
    if let Some(origin) = text(headers, header::ORIGIN) {
        if api && !policy.origin_allowed(origin, host) {
            return ApiError::ForeignOrigin(origin.chars().take(200).collect()).into_response();
        }
    }
    if api && has_body(headers) && !is_json(headers) {
        return ApiError::UnsupportedMediaType.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> BrowserPolicy {
        BrowserPolicy::new("127.0.0.1:8080".parse().unwrap(), &[], &[])
    }

    #[test]
    fn a_loopback_server_answers_to_its_own_names_only() {
        let p = loopback();
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
        ] {
            assert!(p.host_allowed(Some(ok)), "{ok}");
        }
        for bad in ["evil.test", "evil.test:8080", "localhost:9090", "127.0.0.1"] {
            assert!(!p.host_allowed(Some(bad)), "{bad}");
        }
        assert!(!p.host_allowed(None));
    }

    #[test]
    fn listed_hosts_are_added_and_an_open_bind_without_a_list_checks_no_host() {
        let p = BrowserPolicy::new(
            "0.0.0.0:8080".parse().unwrap(),
            &["apex.example.com".into()],
            &[],
        );
        assert!(p.host_allowed(Some("apex.example.com")));
        assert!(!p.host_allowed(Some("evil.test")));
        let open = BrowserPolicy::new("0.0.0.0:8080".parse().unwrap(), &[], &[]);
        assert!(!open.checks_host());
        assert!(open.host_allowed(Some("10.1.2.3:8080")));
    }

    #[test]
    fn only_the_servers_own_origin_or_a_listed_one_passes() {
        let p = BrowserPolicy::new(
            "127.0.0.1:8080".parse().unwrap(),
            &[],
            &["https://ops.example.com/".into()],
        );
        let host = Some("127.0.0.1:8080");
        assert!(p.origin_allowed("http://127.0.0.1:8080", host));
        assert!(p.origin_allowed("https://ops.example.com", host));
        assert!(!p.origin_allowed("http://evil.test", host));
        assert!(
            !p.origin_allowed("http://localhost:8080", host),
            "not the host it used"
        );
        assert!(!p.origin_allowed("null", host));
    }

    #[test]
    fn json_is_recognised_with_parameters_and_in_any_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
        h.insert(header::CONTENT_TYPE, "application/jsonp".parse().unwrap());
        assert!(!is_json(&h));
    }
}
