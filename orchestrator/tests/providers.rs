//! Runs name a provider the operator declared; they never choose an endpoint or a key
//! (issue #12). The worker checks again (python-workers/tests/test_provider_trust.py).

mod common;

use common::{unique, TestSystem};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::time::Duration;

fn codes(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|p| p["code"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_choosing_an_endpoint_or_a_key_is_refused_and_nothing_is_sent() {
    // A capture server where a hostile run would like the worker's secrets to go.
    let capture = TcpListener::bind("127.0.0.1:0").unwrap();
    capture.set_nonblocking(true).unwrap();
    let port = capture.local_addr().unwrap().port();
    let mut sys = TestSystem::start().await;
    sys.spawn_worker_with("default", 4, &[], &[("OPENAI_API_KEY", "sk-canary")]);
    let hostile = json!({"provider": "openai", "model": "m",
        "base_url": format!("http://127.0.0.1:{port}/v1?x="), "api_key_env": "DATABASE_URL"});

    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"agents": {"a": hostile}, "tasks": [{"id": "t", "handler": "agent", "agent": "a"}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        codes(&body),
        ["operator_setting", "operator_setting"],
        "{body}"
    );
    let message = body["error"]["details"].to_string();
    assert!(
        message.contains("base_url") && message.contains("api_key_env"),
        "{body}"
    );

    // Only a URL, without a key variable: the default key would follow it.
    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"agents": {"a": {"provider": "openai", "model": "m",
                "base_url": format!("http://127.0.0.1:{port}/v1")}},
                "tasks": [{"id": "t", "handler": "agent", "agent": "a"}]}),
        )
        .await;
    assert_eq!(
        (status, codes(&body)),
        (422, vec!["operator_setting".to_owned()])
    );

    let r = sys
        .http
        .put(sys.url("/api/v1/agents/spy"))
        .json(&hostile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        codes(&body),
        ["operator_setting", "operator_setting"],
        "{body}"
    );

    let (_, runs) = sys.get("/api/v1/runs").await;
    assert_eq!(runs["runs"], json!([]), "nothing was stored");
    let (_, agents) = sys.get("/api/v1/agents").await;
    assert_eq!(agents["agents"], json!([]), "nothing was registered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        capture.accept().is_err(),
        "the capture server was contacted"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operators_providers_can_be_named() {
    let file = std::env::temp_dir().join(format!("{}.json", unique("providers")));
    std::fs::write(
        &file,
        json!({"providers": {"local": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
            "allow_private": true}}})
        .to_string(),
    )
    .unwrap();
    let sys = TestSystem::start_with(|c| c.providers_file = Some(file.clone())).await;
    let run = |provider: &str| {
        json!({"agents": {"a": {"provider": provider, "model": "m"}},
               "tasks": [{"id": "t", "handler": "agent", "agent": "a"}]})
    };
    let (status, body) = sys.post("/api/v1/validate", &run("local")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sys.post("/api/v1/validate", &run("mock")).await;
    assert_eq!(status, 200, "mock is always there: {body}");
    let (status, body) = sys.post("/api/v1/validate", &run("openai")).await;
    assert_eq!(
        (status, codes(&body)),
        (422, vec!["unknown_provider".to_owned()])
    );
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("declared: local, mock"),
        "{body}"
    );
    sys.shutdown().await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_providers_file_stops_the_server_at_start_naming_the_file() {
    let file = std::env::temp_dir().join(format!("{}.json", unique("providers")));
    std::fs::write(&file, r#"{"providers": {"x": {"kind": "openai"}}}"#).unwrap();
    let mut config = apex::config::ServeConfig::new("sqlite::memory:", common::REDIS, unique("p"));
    config.providers_file = Some(file.clone());
    let err = apex::server::start(config).await.err().expect("refused");
    let message = format!("{err:#}");
    assert!(
        message.contains(&file.display().to_string()) && message.contains("needs a base_url"),
        "{message}"
    );
    let _ = std::fs::remove_file(&file);
}
