//! Scoped API tokens and the audit trail, against a real server on the suite's store
//! (`APEX_TEST_STORE`): what each scope may do, the 403 that names the missing scope,
//! revocation, `?token=` on the WebSocket only, throttling of wrong tokens, hashed
//! storage, and the `by` recorded on what each token changed.

mod common;

use common::TestSystem;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The server's own token (`APEX_API_TOKEN`), whose principal is `admin`.
const ADMIN: &str = "s3cret-admin-token-0123456789";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn system_with_auth(admin: &str) -> TestSystem {
    let admin = admin.to_owned();
    TestSystem::start_with(move |c| {
        c.api_token = Some(admin);
        c.no_auth = false;
    })
    .await
}

/// `METHOD path` with `token` as a bearer token and an optional JSON body: the status
/// and the JSON answer (`null` when there is none).
async fn call(
    sys: &TestSystem,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = sys.http.request(method, sys.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Creates a token as the admin; answers its secret.
async fn make_token(sys: &TestSystem, name: &str, scope: &str) -> String {
    let (status, body) = call(
        sys,
        Method::POST,
        "/api/v1/tokens",
        ADMIN,
        Some(&json!({"name": name, "scope": scope})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// A run that stays running (no worker takes its task), submitted with `token`.
async fn submit_idle_run(sys: &TestSystem, token: &str) -> String {
    let (status, body) = call(
        sys,
        Method::POST,
        "/api/v1/runs",
        token,
        Some(&json!({"tasks": [{"id": "nap", "handler": "sleep", "input": {"seconds": 30}}]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Opens the WebSocket at `query` (`?run=…`), with `token` as a bearer header if given.
async fn websocket(
    sys: &TestSystem,
    query: &str,
    token: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{}/api/v1/ws{query}", sys.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

async fn next_frame(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// The 403 answer for token `name` of `scope` on a request that needs `required`.
fn forbidden(name: &str, scope: &str, required: &str) -> Value {
    json!({"error": {
        "code": "forbidden",
        "message": format!("this token (\"{name}\", scope {scope}) lacks the {required} scope"),
        "required_scope": required,
    }})
}

/// Every documented `/api/` route with its path parameters filled in.
fn api_routes() -> Vec<(Method, String)> {
    let doc: Value = serde_json::from_str(include_str!("../openapi.json")).unwrap();
    let mut routes = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            // An operation documented as needing no token (a signed webhook delivery).
            if op["security"] == serde_json::json!([]) {
                continue;
            }
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let filled = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            routes.push((method, filled));
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_reads_and_is_refused_the_rest_with_the_scope_it_lacks() {
    let sys = system_with_auth(ADMIN).await;
    let read = make_token(&sys, "ci", "read").await;
    let (status, list) = call(&sys, Method::GET, "/api/v1/runs", &read, None).await;
    assert_eq!((status, &list["runs"]), (200, &json!([])));
    let mut ws = websocket(&sys, "", Some(&read))
        .await
        .expect("read opens the stream");
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");

    let dag = json!({"tasks": [{"id": "a", "handler": "noop"}]});
    let (status, body) = call(&sys, Method::POST, "/api/v1/runs", &read, Some(&dag)).await;
    assert_eq!((status, body), (403, forbidden("ci", "read", "submit")));
    let (_, list) = call(&sys, Method::GET, "/api/v1/runs", ADMIN, None).await;
    assert_eq!(list["runs"], json!([]), "nothing was submitted");

    let id = submit_idle_run(&sys, ADMIN).await;
    let cancel = format!("/api/v1/runs/{id}/cancel");
    let (status, body) = call(&sys, Method::POST, &cancel, &read, None).await;
    assert_eq!((status, body), (403, forbidden("ci", "read", "operate")));
    let (_, run) = call(
        &sys,
        Method::GET,
        &format!("/api/v1/runs/{id}"),
        &read,
        None,
    )
    .await;
    assert_eq!(run["state"], "running", "the run was not cancelled");

    let agent = json!({"provider": "mock", "model": "m"});
    let (status, body) = call(&sys, Method::PUT, "/api/v1/agents/w", &read, Some(&agent)).await;
    assert_eq!((status, body), (403, forbidden("ci", "read", "admin")));
    let (status, _) = call(&sys, Method::GET, "/api/v1/agents", &read, None).await;
    assert_eq!(status, 200);

    // Every route declares its scope: a read token passes every GET and no other method.
    for (method, path) in api_routes() {
        let (status, body) = call(&sys, method.clone(), &path, &read, None).await;
        if method == Method::GET && !path.starts_with("/api/v1/tokens") && path != "/api/v1/audit" {
            assert!(
                status != 401 && status != 403,
                "{method} {path}: {status} {body}"
            );
        } else {
            assert_eq!(status, 403, "{method} {path}: {body}");
            assert!(body["error"]["required_scope"].is_string(), "{body}");
        }
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_token_submits_and_validates_but_cannot_cancel_or_retry() {
    let sys = system_with_auth(ADMIN).await;
    let submit = make_token(&sys, "builder", "submit").await;
    let id = submit_idle_run(&sys, &submit).await;
    let dag = json!({"tasks": [{"id": "a", "handler": "noop"}]});
    let (status, _) = call(&sys, Method::POST, "/api/v1/validate", &submit, Some(&dag)).await;
    assert_eq!(status, 200);
    for action in ["cancel", "retry"] {
        let path = format!("/api/v1/runs/{id}/{action}");
        let (status, body) = call(&sys, Method::POST, &path, &submit, None).await;
        assert_eq!(
            (status, body),
            (403, forbidden("builder", "submit", "operate"))
        );
    }
    let (_, run) = call(
        &sys,
        Method::GET,
        &format!("/api/v1/runs/{id}"),
        &submit,
        None,
    )
    .await;
    assert_eq!(
        (&run["state"], &run["created_by"]),
        (&json!("running"), &json!("builder"))
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operate_token_cancels_and_the_events_name_it() {
    let sys = system_with_auth(ADMIN).await;
    let submit = make_token(&sys, "ci", "submit").await;
    let ops = make_token(&sys, "ops", "operate").await;
    let id = submit_idle_run(&sys, &submit).await;
    let mut ws = websocket(&sys, &format!("?run={id}"), Some(&submit))
        .await
        .unwrap();
    let snapshot = next_frame(&mut ws).await;
    assert_eq!(snapshot["run"]["created_by"], "ci");
    assert_eq!(snapshot["run"]["history"][0]["by"], "ci");

    let (status, body) = call(
        &sys,
        Method::POST,
        &format!("/api/v1/runs/{id}/cancel"),
        &ops,
        None,
    )
    .await;
    assert_eq!(
        (status, &body["state"]),
        (202, &json!("cancelled")),
        "{body}"
    );

    // Live: the cancellation's events name the token.
    let mut live = vec![];
    while !live
        .iter()
        .any(|e: &Value| e["kind"] == "run" && e["state"] == "cancelled")
    {
        let frame = next_frame(&mut ws).await;
        live.extend(frame["events"].as_array().cloned().unwrap_or_default());
    }
    for e in live.iter().filter(|e| e["state"] == "cancelled") {
        assert_eq!(e["by"], "ops", "{e}");
    }
    // Stored: the same, on the events endpoint and in the run's history.
    let (_, events) = call(
        &sys,
        Method::GET,
        &format!("/api/v1/runs/{id}/events"),
        &submit,
        None,
    )
    .await;
    let by: Vec<(Value, Value, Value)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].clone(), e["state"].clone(), e["by"].clone()))
        .collect();
    assert_eq!(
        by,
        [
            (json!("run"), json!("running"), json!("ci")),
            (json!("task"), json!("queued"), json!("ci")),
            (json!("task"), json!("cancelled"), json!("ops")),
            (json!("run"), json!("cancelled"), json!("ops")),
        ]
    );
    let (_, run) = call(
        &sys,
        Method::GET,
        &format!("/api/v1/runs/{id}"),
        &submit,
        None,
    )
    .await;
    assert_eq!(run["created_by"], "ci");
    let history: Vec<(Value, Value)> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["state"].clone(), e["by"].clone()))
        .collect();
    assert_eq!(
        history,
        [
            (json!("running"), json!("ci")),
            (json!("cancelled"), json!("ops"))
        ]
    );

    // Operate does not reach the registry.
    let agent = json!({"provider": "mock", "model": "m"});
    let (status, body) = call(&sys, Method::PUT, "/api/v1/agents/w", &ops, Some(&agent)).await;
    assert_eq!((status, body), (403, forbidden("ops", "operate", "admin")));
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_at_once() {
    let sys = system_with_auth(ADMIN).await;
    let temp = make_token(&sys, "temp", "operate").await;
    // Used first, so this server knows it; a stream is open with it.
    let (status, _) = call(&sys, Method::GET, "/api/v1/runs", &temp, None).await;
    assert_eq!(status, 200);
    let mut open = websocket(&sys, "", Some(&temp)).await.unwrap();
    assert_eq!(next_frame(&mut open).await["type"], "snapshot");
    let (status, body) = call(
        &sys,
        Method::POST,
        "/api/v1/tokens",
        ADMIN,
        Some(&json!({"name": "temp", "scope": "read"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("conflict")),
        "{body}"
    );

    let (status, _) = call(&sys, Method::DELETE, "/api/v1/tokens/temp", ADMIN, None).await;
    assert_eq!(status, 204);
    let (status, body) = call(&sys, Method::GET, "/api/v1/runs", &temp, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized"))
    );
    assert!(
        websocket(&sys, "", Some(&temp)).await.is_err(),
        "nor the WebSocket"
    );
    // The stream opened before is closed, saying why.
    let closed = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), open.next())
            .await
            .expect("closed in time");
        match msg {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let closed = closed.expect("a close frame with a reason");
    assert_eq!(u16::from(closed.code), 1008);
    assert_eq!(closed.reason.as_str(), "the API token was revoked");

    let (status, _) = call(&sys, Method::DELETE, "/api/v1/tokens/temp", ADMIN, None).await;
    assert_eq!(status, 404);
    let (status, body) = call(&sys, Method::DELETE, "/api/v1/tokens/admin", ADMIN, None).await;
    assert_eq!(
        status, 409,
        "the environment's token is not revoked here: {body}"
    );
    let (_, list) = call(&sys, Method::GET, "/api/v1/tokens", ADMIN, None).await;
    assert_eq!(list["tokens"], json!([]));
    // The name is free again.
    make_token(&sys, "temp", "read").await;
    sys.shutdown().await;
}

/// Percent-encodes every byte, as the most careful client would.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_token_is_read_on_the_websocket_only_and_percent_decoded() {
    let admin = "p@ss w0rd+&=/tok3n%!";
    let sys = system_with_auth(admin).await;
    let encoded = encode_all(admin);
    let r = sys
        .http
        .get(sys.url(&format!("/api/v1/runs?token={encoded}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no token in REST URLs");
    let mut ws = websocket(&sys, &format!("?token={encoded}"), None)
        .await
        .expect("accepted");
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");
    let wrong = encode_all(&admin[..admin.len() - 1]);
    let err = websocket(&sys, &format!("?token={wrong}"), None)
        .await
        .expect_err("a wrong token is refused");
    assert!(err.to_string().contains("401"), "{err}");

    let (status, body) = call(
        &sys,
        Method::POST,
        "/api/v1/tokens",
        admin,
        Some(&json!({"name": "dash", "scope": "read"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let scoped = body["token"].as_str().unwrap();
    let mut ws = websocket(&sys, &format!("?token={}", encode_all(scoped)), None)
        .await
        .expect("a scoped token too");
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_presenting_wrong_tokens_is_throttled() {
    let sys = system_with_auth(ADMIN).await;
    let runs = sys.url("/api/v1/runs");
    // No token at all tells a guesser nothing, and is not counted.
    for _ in 0..5 {
        assert_eq!(sys.http.get(&runs).send().await.unwrap().status(), 401);
    }
    for i in 0..10 {
        let r = sys
            .http
            .get(&runs)
            .bearer_auth(format!("guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = sys
        .http
        .get(&runs)
        .bearer_auth("guess-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // For the rest of the window even the right token is refused: a guesser learns
    // nothing from the answers.
    let r = sys.http.get(&runs).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 429);
    // Probes outside the API are not affected.
    assert_eq!(
        sys.http
            .get(sys.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_hashed_and_listed_without_secrets() {
    let sys = system_with_auth(ADMIN).await;
    let secret = make_token(&sys, "ci", "read").await;
    assert!(
        secret.starts_with("apex_") && secret.len() == 69,
        "{secret}"
    );
    let sql =
        "select name || ' ' || scope || ' ' || secret_sha256 || ' ' || created_by from api_tokens";
    let rows: Vec<String> = if sys.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&format!("{}?mode=ro", sys.db_url))
            .await
            .unwrap();
        let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(&sys.db_url).await.unwrap();
        let rows = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    assert_eq!(rows.len(), 1);
    let hash = apex::access::hex(&apex::access::digest(&secret));
    assert_eq!(rows[0], format!("ci read {hash} admin"));
    assert!(!rows[0].contains(&secret[5..]), "the secret is not stored");

    let (_, list) = call(&sys, Method::GET, "/api/v1/tokens", ADMIN, None).await;
    assert!(!list.to_string().contains(&secret[5..]), "{list}");
    assert_eq!(list["tokens"][0]["name"], "ci");
    assert_eq!(list["tokens"][0]["scope"], "read");
    assert_eq!(list["tokens"][0]["created_by"], "admin");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_and_token_changes_are_audited_with_who_made_them() {
    let sys = system_with_auth(ADMIN).await;
    let root = make_token(&sys, "root", "admin").await;
    let agent = json!({"provider": "mock", "model": "m"});
    let (status, _) = call(
        &sys,
        Method::PUT,
        "/api/v1/agents/writer",
        &root,
        Some(&agent),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(&sys, Method::DELETE, "/api/v1/agents/writer", &root, None).await;
    assert_eq!(status, 204);
    let (status, body) = call(
        &sys,
        Method::POST,
        "/api/v1/tokens",
        &root,
        Some(&json!({"name": "bad name", "scope": "read"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_token")),
        "{body}"
    );
    let (status, body) = call(
        &sys,
        Method::POST,
        "/api/v1/tokens",
        &root,
        Some(&json!({"name": "x", "scope": "root"})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_json")),
        "{body}"
    );
    let (status, _) = call(&sys, Method::DELETE, "/api/v1/tokens/root", ADMIN, None).await;
    assert_eq!(status, 204);

    let (status, audit) = call(&sys, Method::GET, "/api/v1/audit", ADMIN, None).await;
    assert_eq!(status, 200, "{audit}");
    let entries: Vec<(Value, Value, Value)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].clone(), e["by"].clone(), e["target"].clone()))
        .collect();
    assert_eq!(
        entries,
        [
            (json!("token.revoke"), json!("admin"), json!("root")),
            (json!("agent.delete"), json!("root"), json!("writer")),
            (json!("agent.put"), json!("root"), json!("writer")),
            (json!("token.create"), json!("admin"), json!("root")),
        ]
    );
    assert_eq!(audit["entries"][3]["detail"], json!({"scope": "admin"}));
    let (status, page) = call(&sys, Method::GET, "/api/v1/audit?limit=3", ADMIN, None).await;
    assert_eq!(
        (status, page["entries"].as_array().unwrap().len()),
        (200, 3)
    );
    let next = page["next"].as_i64().unwrap();
    let (_, rest) = call(
        &sys,
        Method::GET,
        &format!("/api/v1/audit?before={next}"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(rest["entries"][0]["action"], "token.create");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_every_change_is_made_by_anonymous() {
    let sys = TestSystem::start().await;
    let id = sys
        .submit(&json!({"tasks": [{"id": "nap", "handler": "sleep", "input": {"seconds": 30}}]}))
        .await;
    let (status, _) = sys
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!(null))
        .await;
    assert_eq!(status, 202);
    let (_, run) = sys.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["created_by"], "anonymous");
    assert_eq!(run["history"][1]["by"], "anonymous");
    let (status, token) = sys
        .post("/api/v1/tokens", &json!({"name": "ci", "scope": "read"}))
        .await;
    assert_eq!((status, &token["created_by"]), (201, &json!("anonymous")));
    sys.shutdown().await;
}
