//! The document is the truth: real answers of every endpoint, success and error, are
//! validated against the OpenAPI document the server generates and serves. A handler
//! that answers a shape its annotation does not describe fails here.

mod common;

use common::TestSystem;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const ADMIN: &str = "contract-admin-token";

/// The served document, and which `(method, path, status)` answers were checked.
struct Contract {
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

impl Contract {
    /// The documented schema of `method path` answering `status`: `None` when the
    /// answer has no JSON body; a failure when the status is not documented at all.
    fn schema(&self, method: &str, path: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not documented");
        let mut response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which the document does not list"
        );
        if let Some(r) = response["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            response = &self.doc["components"]["responses"][name];
        }
        let schema = response["content"]["application/json"]["schema"].clone();
        (!schema.is_null()).then_some(schema)
    }

    /// Checks one real answer against the document.
    fn check(&mut self, method: &str, path: &str, status: u16, body: &Value) {
        self.checked
            .insert((method.to_owned(), path.to_owned(), status));
        let Some(schema) = self.schema(method, path, status) else {
            // A body the document does not describe would go unchecked: that is a gap
            // in the document, not a pass.
            assert!(
                body.is_null(),
                "{method} {path} {status} answered a JSON body the document gives no schema for: {body}"
            );
            return;
        };
        let mut root = schema;
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root).expect("the schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match the document:\n{}\nbody: {body}",
            errors.join("\n")
        );
    }
}

/// A request expected to fail: method, documented path, URL, token, body, status.
type ErrorCase<'a> = (
    &'a str,
    &'a str,
    String,
    Option<&'a str>,
    Option<Value>,
    u16,
);

/// `METHOD url` as `token` with an optional JSON body: status and JSON body (`null`
/// when there is none).
async fn call(
    sys: &TestSystem,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = sys
        .http
        .request(method.parse::<Method>().unwrap(), sys.url(url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_what_the_document_says() {
    let mut sys = TestSystem::start_with(|c| {
        c.api_token = Some(ADMIN.to_owned());
        c.no_auth = false;
    })
    .await;
    sys.spawn_worker("default", 4);
    let admin = Some(ADMIN);

    let (status, doc) = call(&sys, "GET", "/api/v1/openapi.json", admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(apex::api::openapi_document()).unwrap(),
        "the served document is the generated one"
    );
    let mut c = Contract {
        doc: doc.clone(),
        checked: BTreeSet::new(),
    };
    c.check("GET", "/api/v1/openapi.json", status, &doc);

    // A run with a success, a failure after a retry and a skipped task.
    let spec = json!({
        "name": "contract",
        "budget": {"max_tokens": 1000},
        "tasks": [
            {"id": "a", "handler": "echo", "input": {"x": 1}},
            {"id": "b", "handler": "fail", "input": {"message": "no"}, "retries": 1, "retry_backoff_s": 0.01, "depends_on": ["a"]},
            {"id": "c", "handler": "noop", "depends_on": ["b"]},
        ]
    });
    let (s, b) = call(&sys, "POST", "/api/v1/validate", admin, Some(spec.clone())).await;
    c.check("POST", "/api/v1/validate", s, &b);
    let (s, run) = call(&sys, "POST", "/api/v1/runs", admin, Some(spec)).await;
    assert_eq!(s, 201, "{run}");
    c.check("POST", "/api/v1/runs", s, &run);
    let id = run["id"].as_str().unwrap().to_owned();
    // Answers while the run is in flight, then once it is over.
    let (s, b) = call(&sys, "GET", &format!("/api/v1/runs/{id}"), admin, None).await;
    c.check("GET", "/api/v1/runs/{id}", s, &b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, b) = call(
            &sys,
            "GET",
            &format!("/api/v1/runs/{id}?tasks=false"),
            admin,
            None,
        )
        .await;
        if b["state"] != "running" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not finish: {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let gets = [
        ("/api/v1/runs", "/api/v1/runs".to_owned()),
        (
            "/api/v1/runs",
            "/api/v1/runs?limit=1&state=failed".to_owned(),
        ),
        ("/api/v1/runs/{id}", format!("/api/v1/runs/{id}")),
        (
            "/api/v1/runs/{id}",
            format!("/api/v1/runs/{id}?tasks=false"),
        ),
        (
            "/api/v1/runs/{id}/tasks",
            format!("/api/v1/runs/{id}/tasks?limit=1"),
        ),
        (
            "/api/v1/runs/{id}/tasks",
            format!("/api/v1/runs/{id}/tasks?state=failed,skipped"),
        ),
        (
            "/api/v1/runs/{id}/tasks/{task_id}",
            format!("/api/v1/runs/{id}/tasks/a"),
        ),
        (
            "/api/v1/runs/{id}/tasks/{task_id}",
            format!("/api/v1/runs/{id}/tasks/b"),
        ),
        (
            "/api/v1/runs/{id}/events",
            format!("/api/v1/runs/{id}/events"),
        ),
        ("/api/v1/workers", "/api/v1/workers".to_owned()),
        ("/api/v1/queues", "/api/v1/queues".to_owned()),
        ("/api/v1/health", "/api/v1/health".to_owned()),
        ("/healthz", "/healthz".to_owned()),
        ("/readyz", "/readyz".to_owned()),
    ];
    for (path, url) in &gets {
        let (s, b) = call(&sys, "GET", url, admin, None).await;
        assert!(s < 300, "GET {url}: {s} {b}");
        c.check("GET", path, s, &b);
    }
    let (_, workers) = call(&sys, "GET", "/api/v1/workers", admin, None).await;
    assert!(
        !workers["workers"].as_array().unwrap().is_empty(),
        "the worker is listed, so its shape was checked"
    );
    let (s, b) = call(
        &sys,
        "POST",
        &format!("/api/v1/runs/{id}/retry"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    c.check("POST", "/api/v1/runs/{id}/retry", s, &b);
    let (s, b) = call(
        &sys,
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        admin,
        None,
    )
    .await;
    c.check("POST", "/api/v1/runs/{id}/cancel", s, &b);
    // Cancelled or finished by now: cancelling again conflicts.
    let (s, b) = call(
        &sys,
        "POST",
        &format!("/api/v1/runs/{id}/cancel"),
        admin,
        None,
    )
    .await;
    assert_eq!(s, 409, "{b}");
    c.check("POST", "/api/v1/runs/{id}/cancel", s, &b);

    // Agents.
    let agent = json!({"provider": "mock", "model": "m", "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}});
    for expected in [201, 200] {
        let (s, b) = call(
            &sys,
            "PUT",
            "/api/v1/agents/writer",
            admin,
            Some(agent.clone()),
        )
        .await;
        assert_eq!(s, expected, "{b}");
        c.check("PUT", "/api/v1/agents/{name}", s, &b);
    }
    let (s, b) = call(&sys, "GET", "/api/v1/agents", admin, None).await;
    c.check("GET", "/api/v1/agents", s, &b);
    let (s, b) = call(&sys, "GET", "/api/v1/agents/writer", admin, None).await;
    c.check("GET", "/api/v1/agents/{name}", s, &b);
    let (s, b) = call(&sys, "DELETE", "/api/v1/agents/writer", admin, None).await;
    assert_eq!(s, 204);
    c.check("DELETE", "/api/v1/agents/{name}", s, &b);

    // Tokens and the audit log.
    let (s, created) = call(
        &sys,
        "POST",
        "/api/v1/tokens",
        admin,
        Some(json!({"name": "reader", "scope": "read"})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    c.check("POST", "/api/v1/tokens", s, &created);
    let reader = created["token"].as_str().unwrap().to_owned();
    let (s, b) = call(&sys, "GET", "/api/v1/tokens", admin, None).await;
    c.check("GET", "/api/v1/tokens", s, &b);
    let (s, b) = call(&sys, "GET", "/api/v1/audit?limit=2", admin, None).await;
    c.check("GET", "/api/v1/audit", s, &b);

    // Error answers, each of its documented shape.
    let errors: Vec<ErrorCase> = vec![
        (
            "GET",
            "/api/v1/agents",
            "/api/v1/agents".into(),
            None,
            None,
            401,
        ),
        (
            "POST",
            "/api/v1/runs",
            "/api/v1/runs".into(),
            admin,
            Some(json!({"tasks": "no"})),
            400,
        ),
        (
            "POST",
            "/api/v1/runs",
            "/api/v1/runs".into(),
            admin,
            Some(json!({"tasks": [{"id": "a", "handler": "echo", "depends_on": ["a"]}]})),
            422,
        ),
        (
            "POST",
            "/api/v1/validate",
            "/api/v1/validate".into(),
            admin,
            Some(json!({"tasks": []})),
            422,
        ),
        (
            "GET",
            "/api/v1/runs",
            "/api/v1/runs?state=done".into(),
            admin,
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/runs",
            "/api/v1/runs".into(),
            None,
            None,
            401,
        ),
        (
            "GET",
            "/api/v1/runs",
            "/api/v1/runs".into(),
            Some("wrong"),
            None,
            401,
        ),
        (
            "GET",
            "/api/v1/runs/{id}",
            "/api/v1/runs/nope".into(),
            admin,
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/runs/{id}/tasks",
            "/api/v1/runs/nope/tasks".into(),
            admin,
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/runs/{id}/tasks",
            format!("/api/v1/runs/{id}/tasks?limit=0"),
            admin,
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/runs/{id}/tasks/{task_id}",
            format!("/api/v1/runs/{id}/tasks/zz"),
            admin,
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/runs/{id}/events",
            "/api/v1/runs/nope/events".into(),
            admin,
            None,
            404,
        ),
        (
            "POST",
            "/api/v1/runs/{id}/cancel",
            "/api/v1/runs/nope/cancel".into(),
            admin,
            None,
            404,
        ),
        (
            "POST",
            "/api/v1/runs/{id}/retry",
            "/api/v1/runs/nope/retry".into(),
            admin,
            None,
            404,
        ),
        (
            "POST",
            "/api/v1/runs/{id}/retry",
            format!("/api/v1/runs/{id}/retry"),
            Some(&reader),
            None,
            403,
        ),
        (
            "PUT",
            "/api/v1/agents/{name}",
            "/api/v1/agents/w".into(),
            admin,
            Some(json!({"provider": "mock"})),
            400,
        ),
        (
            "PUT",
            "/api/v1/agents/{name}",
            "/api/v1/agents/w".into(),
            admin,
            Some(json!({"provider": "mock", "model": "m", "temperature": 9})),
            422,
        ),
        (
            "GET",
            "/api/v1/agents/{name}",
            "/api/v1/agents/nope".into(),
            admin,
            None,
            404,
        ),
        (
            "DELETE",
            "/api/v1/agents/{name}",
            "/api/v1/agents/nope".into(),
            admin,
            None,
            404,
        ),
        (
            "POST",
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            admin,
            Some(json!({"name": "reader", "scope": "read"})),
            409,
        ),
        (
            "POST",
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            admin,
            Some(json!({"name": "a b", "scope": "read"})),
            422,
        ),
        (
            "GET",
            "/api/v1/tokens",
            "/api/v1/tokens".into(),
            Some(&reader),
            None,
            403,
        ),
        (
            "DELETE",
            "/api/v1/tokens/{name}",
            "/api/v1/tokens/admin".into(),
            admin,
            None,
            409,
        ),
        (
            "DELETE",
            "/api/v1/tokens/{name}",
            "/api/v1/tokens/nope".into(),
            admin,
            None,
            404,
        ),
        (
            "GET",
            "/api/v1/audit",
            "/api/v1/audit?bogus=1".into(),
            admin,
            None,
            400,
        ),
        (
            "GET",
            "/api/v1/workers",
            "/api/v1/workers".into(),
            None,
            None,
            401,
        ),
        (
            "GET",
            "/api/v1/queues",
            "/api/v1/queues".into(),
            None,
            None,
            401,
        ),
        (
            "GET",
            "/api/v1/health",
            "/api/v1/health".into(),
            None,
            None,
            401,
        ),
        (
            "GET",
            "/api/v1/openapi.json",
            "/api/v1/openapi.json".into(),
            None,
            None,
            401,
        ),
    ];
    for (method, path, url, token, body, expected) in errors {
        let (s, b) = call(&sys, method, &url, token, body).await;
        assert_eq!(s, expected, "{method} {url}: {b}");
        c.check(method, path, s, &b);
    }
    let (s, b) = call(&sys, "DELETE", "/api/v1/tokens/reader", admin, None).await;
    assert_eq!(s, 204);
    c.check("DELETE", "/api/v1/tokens/{name}", s, &b);

    // Every documented operation was exercised, with a success and an error answer
    // (the probes outside /api/ have no error answer to give).
    people_and_daily(&sys, &mut c).await;

    let mut missing = Vec::new();
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let statuses: Vec<u16> = c
                .checked
                .iter()
                .filter(|(m, p, _)| *m == method && p == path)
                .map(|(_, _, s)| *s)
                .collect();
            // The WebSocket's 101 and /metrics' text are tested in ws.rs and faults.rs.
            let needs_success = !matches!(path.as_str(), "/api/v1/ws" | "/metrics");
            if needs_success && !statuses.iter().any(|s| *s < 300) {
                missing.push(format!("{method} {path}: no success answer checked"));
            }
            let needs_error = path.starts_with("/api/") && path != "/api/v1/ws";
            if needs_error && !statuses.iter().any(|s| *s >= 400) {
                missing.push(format!("{method} {path}: no error answer checked"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    sys.shutdown().await;
}

/// Waits until `GET url` answers a body for which `done` holds.
async fn wait_for(sys: &TestSystem, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, b) = call(sys, "GET", url, Some(ADMIN), None).await;
        if done(&b) {
            return b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never got there: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Approvals, cancelling one task, deleting a run, templates, schedules and hooks:
/// each operation's success and error answers.
async fn people_and_daily(sys: &TestSystem, c: &mut Contract) {
    let admin = Some(ADMIN);
    // Two approvals waiting side by side, and one to cancel.
    let spec = json!({"tasks": [
        {"id": "yes", "handler": "approval", "input": {"prompt": "ok?"}},
        {"id": "no", "handler": "approval", "input": {"prompt": "ok?"}},
        {"id": "drop", "handler": "approval", "input": {"prompt": "ok?"}},
    ]});
    let (s, run) = call(sys, "POST", "/api/v1/runs", admin, Some(spec)).await;
    assert_eq!(s, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    wait_for(sys, &format!("/api/v1/runs/{id}"), |b| {
        b["counts"]["waiting"].as_u64() == Some(3)
    })
    .await;
    let task = |t: &str, what: &str| format!("/api/v1/runs/{id}/tasks/{t}/{what}");
    for (t, what, body) in [
        ("yes", "approve", json!({"comment": "fine"})),
        ("no", "reject", json!({"comment": "not fine"})),
        ("drop", "cancel", json!({})),
    ] {
        let doc_path = format!("/api/v1/runs/{{id}}/tasks/{{task_id}}/{what}");
        let (s, b) = call(sys, "POST", &task(t, what), admin, Some(body.clone())).await;
        assert_eq!(s, 200, "{what}: {b}");
        c.check("POST", &doc_path, s, &b);
        // Decided already: a second decision conflicts.
        let (s, b) = call(sys, "POST", &task(t, what), admin, Some(body)).await;
        assert_eq!(s, 409, "{what} again: {b}");
        c.check("POST", &doc_path, s, &b);
    }
    wait_for(sys, &format!("/api/v1/runs/{id}"), |b| {
        b["finished_at_ms"].is_i64()
    })
    .await;
    // Re-run from one of its tasks; then one naming a task the run does not have.
    let url = format!("/api/v1/runs/{id}/rerun");
    let (s, b) = call(sys, "POST", &url, admin, Some(json!({"from": ["yes"]}))).await;
    assert_eq!(s, 201, "{b}");
    c.check("POST", "/api/v1/runs/{id}/rerun", s, &b);
    let (s, b) = call(sys, "POST", &url, admin, Some(json!({"from": ["ghost"]}))).await;
    assert_eq!(s, 422, "{b}");
    c.check("POST", "/api/v1/runs/{id}/rerun", s, &b);
    let (s, b) = call(sys, "DELETE", &format!("/api/v1/runs/{id}"), admin, None).await;
    assert_eq!(s, 204, "{b}");
    c.check("DELETE", "/api/v1/runs/{id}", s, &b);
    let (s, b) = call(sys, "DELETE", &format!("/api/v1/runs/{id}"), admin, None).await;
    assert_eq!(s, 404, "{b}");
    c.check("DELETE", "/api/v1/runs/{id}", s, &b);

    // Templates.
    let template = json!({"params": {"who": {"default": "world"}},
        "tasks": [{"id": "a", "handler": "echo", "input": {"to": {"$param": "who"}}}]});
    let (s, b) = call(sys, "PUT", "/api/v1/templates/greet", admin, Some(template)).await;
    assert_eq!(s, 201, "{b}");
    c.check("PUT", "/api/v1/templates/{name}", s, &b);
    let cyclic = json!({"tasks": [{"id": "a", "handler": "noop", "depends_on": ["a"]}]});
    let (s, b) = call(sys, "PUT", "/api/v1/templates/bad", admin, Some(cyclic)).await;
    assert_eq!(s, 422, "{b}");
    c.check("PUT", "/api/v1/templates/{name}", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/templates", admin, None).await;
    c.check("GET", "/api/v1/templates", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/templates/greet", admin, None).await;
    c.check("GET", "/api/v1/templates/{name}", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/templates/nope", admin, None).await;
    assert_eq!(s, 404, "{b}");
    c.check("GET", "/api/v1/templates/{name}", s, &b);
    let body = json!({"params": {"who": "you"}});
    let (s, b) = call(
        sys,
        "POST",
        "/api/v1/templates/greet/runs",
        admin,
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    c.check("POST", "/api/v1/templates/{name}/runs", s, &b);
    let body = json!({"params": {"nobody": 1}});
    let (s, b) = call(
        sys,
        "POST",
        "/api/v1/templates/greet/runs",
        admin,
        Some(body),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    c.check("POST", "/api/v1/templates/{name}/runs", s, &b);

    // Schedules.
    let schedule = json!({"template": "greet", "cron": "0 0 1 1 *", "timezone": "Europe/Paris"});
    let (s, b) = call(
        sys,
        "PUT",
        "/api/v1/schedules/yearly",
        admin,
        Some(schedule),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    c.check("PUT", "/api/v1/schedules/{name}", s, &b);
    let bad = json!({"template": "greet", "cron": "* * *"});
    let (s, b) = call(sys, "PUT", "/api/v1/schedules/bad", admin, Some(bad)).await;
    assert_eq!(s, 422, "{b}");
    c.check("PUT", "/api/v1/schedules/{name}", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/schedules", admin, None).await;
    c.check("GET", "/api/v1/schedules", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/schedules/yearly", admin, None).await;
    c.check("GET", "/api/v1/schedules/{name}", s, &b);
    for what in ["pause", "resume"] {
        let doc_path = format!("/api/v1/schedules/{{name}}/{what}");
        let url = format!("/api/v1/schedules/yearly/{what}");
        let (s, b) = call(sys, "POST", &url, admin, None).await;
        assert_eq!(s, 200, "{what}: {b}");
        c.check("POST", &doc_path, s, &b);
        let url = format!("/api/v1/schedules/nope/{what}");
        let (s, b) = call(sys, "POST", &url, admin, None).await;
        assert_eq!(s, 404, "{what}: {b}");
        c.check("POST", &doc_path, s, &b);
    }
    for expected in [204, 404] {
        let (s, b) = call(sys, "DELETE", "/api/v1/schedules/yearly", admin, None).await;
        assert_eq!(s, expected, "{b}");
        c.check("DELETE", "/api/v1/schedules/{name}", s, &b);
    }
    let (s, b) = call(sys, "GET", "/api/v1/schedules/yearly", admin, None).await;
    c.check("GET", "/api/v1/schedules/{name}", s, &b);

    // Hooks: managed with the token, delivered with a signature.
    let secret = "contract-secret-contract";
    let on_push = json!({"params": {"payload": {}},
        "tasks": [{"id": "build", "handler": "echo", "input": {"event": {"$param": "payload"}}}]});
    let (s, b) = call(
        sys,
        "PUT",
        "/api/v1/templates/on-push",
        admin,
        Some(on_push),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let hook = json!({"template": "on-push", "secret": secret});
    let (s, b) = call(sys, "PUT", "/api/v1/hooks/push", admin, Some(hook)).await;
    assert_eq!(s, 201, "{b}");
    c.check("PUT", "/api/v1/hooks/{name}", s, &b);
    let (s, b) = call(
        sys,
        "PUT",
        "/api/v1/hooks/push",
        admin,
        Some(json!({"template": "nope", "secret": secret})),
    )
    .await;
    assert!(s >= 400, "{s} {b}");
    c.check("PUT", "/api/v1/hooks/{name}", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/hooks", admin, None).await;
    c.check("GET", "/api/v1/hooks", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/hooks/push", admin, None).await;
    c.check("GET", "/api/v1/hooks/{name}", s, &b);
    let (s, b) = call(sys, "GET", "/api/v1/hooks/nope", admin, None).await;
    assert_eq!(s, 404, "{b}");
    c.check("GET", "/api/v1/hooks/{name}", s, &b);
    // The lists need a token like every other read.
    for path in ["/api/v1/templates", "/api/v1/schedules", "/api/v1/hooks"] {
        let (s, b) = call(sys, "GET", path, None, None).await;
        assert_eq!(s, 401, "{path}: {b}");
        c.check("GET", path, s, &b);
    }
    let payload = br#"{"ref": "main"}"#;
    let ts = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs())
    .to_string();
    let deliver = |sig: String| {
        sys.http
            .post(sys.url("/api/v1/hooks/push"))
            .header("content-type", "application/json")
            .header("x-apex-timestamp", ts.clone())
            .header("x-apex-signature", sig)
            .body(payload.to_vec())
            .send()
    };
    let good = format!("sha256={}", apex::api::hooks::sign(secret, &ts, payload));
    for (sig, expected) in [(good, 201), ("sha256=00".to_owned(), 401)] {
        let r = deliver(sig).await.unwrap();
        let s = r.status().as_u16();
        let b: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(s, expected, "{b}");
        c.check("POST", "/api/v1/hooks/{name}", s, &b);
    }
}

/// Every operation has its own `operationId` and an `x-required-scope`, and the server
/// enforces exactly that scope: a token one scope short is refused with 403 naming it,
/// and a token of that scope gets past the check (whatever it then answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_says_the_scope_the_server_enforces() {
    let sys = TestSystem::start_with(|c| {
        c.api_token = Some(ADMIN.to_owned());
        c.no_auth = false;
    })
    .await;
    let doc: Value = serde_json::from_str(apex::api::openapi_document()).unwrap();
    let order = ["read", "submit", "operate", "admin"];
    let mut secrets = std::collections::BTreeMap::new();
    for scope in &order[..3] {
        let body = json!({"name": format!("scope-{scope}"), "scope": scope});
        let (s, b) = call(&sys, "POST", "/api/v1/tokens", Some(ADMIN), Some(body)).await;
        assert_eq!(s, 201, "{b}");
        secrets.insert(*scope, b["token"].as_str().unwrap().to_owned());
    }
    secrets.insert("admin", ADMIN.to_owned());
    let mut ids = BTreeSet::new();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                !id.is_empty() && ids.insert(id.to_owned()),
                "{method} {path}: operationId {id:?} is missing or not unique"
            );
            let scope = op["x-required-scope"].as_str().unwrap_or_default();
            if scope == "none" || path == "/api/v1/ws" {
                // No token asked (probes, metrics, signed webhooks); the WebSocket's
                // scope is tests/tokens.rs's (an upgrade, not a plain request).
                assert!(scope == "none" || scope == "read", "{id}: {scope}");
                continue;
            }
            let need = order
                .iter()
                .position(|s| *s == scope)
                .unwrap_or_else(|| panic!("{id}: unknown x-required-scope {scope:?}"));
            // Path parameters get a placeholder: the scope is checked before anything
            // else the request says (api/auth.rs, `Allowed` is each handler's first
            // argument), so an unknown id still shows it.
            let url = path
                .replace("{id}", "r_none")
                .replace("{task_id}", "t")
                .replace("{name}", "n");
            let method = method.to_uppercase();
            let body = (method != "GET" && method != "DELETE").then(|| json!({}));
            if need > 0 {
                let short = &secrets[order[need - 1]];
                let (s, b) = call(&sys, &method, &url, Some(short), body.clone()).await;
                assert_eq!(s, 403, "{id} with scope {}: {b}", order[need - 1]);
                assert_eq!(b["error"]["required_scope"], scope, "{id}: {b}");
            }
            let (s, b) = call(&sys, &method, &url, Some(&secrets[scope]), body).await;
            assert!(s != 403 && s != 401, "{id} with scope {scope}: {s} {b}");
            checked += 1;
        }
    }
    assert!(checked >= 35, "only {checked} operations checked");
}
