//! Other web pages cannot use a local Apex: foreign origins, rebinding hosts and
//! non-JSON bodies are refused before authentication (issue #12).

mod common;

use common::TestSystem;
use serde_json::{json, Value};

const EVIL: &str = "http://evil.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_gets_no_cors_no_preflight_and_no_websocket() {
    let sys = TestSystem::start().await;
    let runs = sys.url("/api/v1/runs");

    let r = sys
        .http
        .get(&runs)
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "foreign_origin");

    let preflight = sys
        .http
        .request(reqwest::Method::OPTIONS, &runs)
        .header("origin", EVIL)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success(), "{}", preflight.status());
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // A page can POST text/plain without a preflight; nothing may come of it.
    let r = sys
        .http
        .post(&runs)
        .header("origin", EVIL)
        .header("content-type", "text/plain")
        .body(r#"{"tasks": [{"id": "a", "handler": "noop"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let ws = sys.base.replace("http://", "ws://") + "/api/v1/ws";
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws.as_str())
            .unwrap();
    request
        .headers_mut()
        .insert("origin", EVIL.parse().unwrap());
    let err = tokio_tungstenite::connect_async(request)
        .await
        .expect_err("a foreign page's WebSocket is refused");
    assert!(err.to_string().contains("403"), "{err}");

    // The dashboard's own origin works, socket included.
    let own = sys.base.clone();
    let r = sys
        .http
        .get(&runs)
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws.as_str())
            .unwrap();
    request.headers_mut().insert("origin", own.parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .expect("the dashboard's own socket");

    let (_, listed) = sys.get("/api/v1/runs").await;
    assert_eq!(listed["runs"], json!([]), "nothing was submitted");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_and_a_text_plain_body_are_refused() {
    let sys = TestSystem::start().await;
    let runs = sys.url("/api/v1/runs");
    let r = sys
        .http
        .get(&runs)
        .header("host", "evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "misdirected_host");
    let r = sys
        .http
        .get(sys.url("/"))
        .header("host", "evil.test:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421, "the dashboard too");

    let r = sys
        .http
        .post(&runs)
        .header("content-type", "text/plain")
        .body(r#"{"tasks": [{"id": "a", "handler": "noop"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    let r = sys
        .http
        .post(&runs)
        .body(r#"{"tasks": [{"id": "a", "handler": "noop"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "no content type at all");

    // localhost is the same server on a loopback bind.
    let port = sys.base.rsplit(':').next().unwrap().to_owned();
    let r = sys
        .http
        .get(format!("http://localhost:{port}/api/v1/runs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, listed) = sys.get("/api/v1/runs").await;
    assert_eq!(listed["runs"], json!([]));
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_listed_origin_gets_cors() {
    let sys =
        TestSystem::start_with(|c| c.cors_origins = vec!["https://ops.example.com".into()]).await;
    let r = sys
        .http
        .request(reqwest::Method::OPTIONS, sys.url("/api/v1/runs"))
        .header("origin", "https://ops.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://ops.example.com"
    );
    sys.shutdown().await;
}
