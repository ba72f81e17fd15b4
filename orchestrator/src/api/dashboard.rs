//! The dashboard at `/`: the built app compiled into the binary (so `apex up` serves it
//! from any directory), or a directory given with `--dashboard-dir` for development.
//! Every page carries a strict Content-Security-Policy and may not be framed.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use std::path::PathBuf;
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

/// `dashboard/dist` as it was when this binary was built; empty when it was not built.
#[derive(rust_embed::Embed)]
#[folder = "../dashboard/dist/"]
#[allow_missing = true]
struct Assets;

/// Scripts, styles and connections from this origin only; no framing, no plugins. Inline
/// styles stay allowed because the graph library positions nodes with style attributes.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; font-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// What `/` answers when the binary carries no dashboard and none was given.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Apex</title>\
<h1>Apex is running; its dashboard is not built into this binary</h1>\
<p>The API works: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p>\
<p>To get the dashboard, build it and then the binary again, from the checkout:</p>\
<pre>(cd dashboard &amp;&amp; npm ci &amp;&amp; npm run build)\ncargo build --bin apex</pre>\
<p>or serve a built copy with <code>--dashboard-dir PATH/TO/dashboard/dist</code>.</p>";

/// Whether this binary carries the dashboard.
pub fn embedded() -> bool {
    Assets::get("index.html").is_some()
}

/// The dashboard's routes: files from `dir` when given, else the embedded build.
pub fn router<S: Clone + Send + Sync + 'static>(dir: Option<PathBuf>) -> Router<S> {
    let router = match dir.filter(|d| d.join("index.html").exists()) {
        // Client-side routes (e.g. /runs/ID) fall back to the app's index.html.
        Some(dir) => Router::new()
            .fallback_service(ServeDir::new(&dir).fallback(ServeFile::new(dir.join("index.html")))),
        None => Router::new().fallback(serve_embedded),
    };
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ))
}

async fn serve_embedded(uri: Uri, req: Request) -> Response {
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = uri.path().trim_start_matches('/');
    // An unknown path is a client-side route of the app, unless it names an API.
    let (file, name) = match Assets::get(path).filter(|_| !path.is_empty()) {
        Some(file) => (file, path),
        None if path.starts_with("api/") => {
            return super::error::ApiError::NotFound(format!("no API endpoint at /{path}"))
                .into_response()
        }
        None => match Assets::get("index.html") {
            Some(file) => (file, "index.html"),
            None => return (StatusCode::OK, Html(NOT_BUILT)).into_response(),
        },
    };
    // Vite names assets by content hash: they never change under the same name.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = Response::new(Body::from(file.data.into_owned()));
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
