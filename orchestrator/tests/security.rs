//! Authentication and hostile input against a real server.

mod common;

use common::TestSystem;
use futures::StreamExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_websocket_require_the_token() {
    let sys = TestSystem::start_with(|c| {
        c.api_token = Some("s3cret-token-0123456789".into());
        c.no_auth = false;
    })
    .await;
    let runs = sys.url("/api/v1/runs");
    let r = sys.http.get(&runs).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    let r = sys
        .http
        .get(&runs)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = sys
        .http
        .post(&runs)
        .json(&json!({"tasks": [{"id": "a", "handler": "noop"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "nothing is submitted without the token");
    let r = sys
        .http
        .get(&runs)
        .bearer_auth("s3cret-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = sys
        .http
        .get(format!("{runs}?token=s3cret-token-0123456789&limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a token in the URL is read on the WebSocket only: elsewhere it would end up in logs"
    );
    // Health stays open for probes.
    assert_eq!(
        sys.http
            .get(sys.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let ws = sys.base.replace("http://", "ws://") + "/api/v1/ws";
    let err = tokio_tungstenite::connect_async(&ws)
        .await
        .expect_err("refused without a token");
    assert!(err.to_string().contains("401"), "{err}");
    let err = tokio_tungstenite::connect_async(format!("{ws}?token=nope"))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("401"), "{err}");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}?token=s3cret-token-0123456789"))
            .await
            .unwrap();
    let first = socket.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"snapshot\""));
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_answered_with_4xx_naming_the_limit() {
    let sys = TestSystem::start().await;
    let deps: Vec<String> = (0..1001).map(|i| format!("t{i}")).collect();
    let mut tasks: Vec<Value> = deps
        .iter()
        .map(|d| json!({"id": d, "handler": "noop"}))
        .collect();
    tasks.push(json!({"id": "sink", "handler": "noop", "depends_on": deps}));
    let (status, body) = sys.post("/api/v1/runs", &json!({"tasks": tasks})).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"][0]["code"], "too_many_dependencies");

    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "x".repeat(200), "handler": "noop"}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"][0]["code"].as_str()),
        (422, Some("invalid_id"))
    );

    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!([deep]);
    }
    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "a", "handler": "noop", "input": deep}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"][0]["code"].as_str()),
        (422, Some("input_too_deep"))
    );

    let (status, body) = sys
        .post_raw(
            "/api/v1/runs",
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );

    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "a", "handler": "noop"}], "shell": "rm -rf /"}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are rejected: {body}");
    let (_, list) = sys.get("/api/v1/runs").await;
    assert_eq!(list["runs"], json!([]));
    sys.shutdown().await;
}

/// JSON values that look roughly like DAG submissions, and plenty that do not.
fn arbitrary_body() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
        prop_oneof![
            Just("noop"),
            Just("id"),
            Just("a"),
            Just("b"),
            Just("depends_on")
        ]
        .prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("handler".to_owned()),
                    Just("depends_on".to_owned()),
                    Just("input".to_owned()),
                    Just("retries".to_owned()),
                    Just("trigger".to_owned()),
                    "[a-z]{1,5}"
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let task = (
        "[a-c]{1,2}",
        prop_oneof![Just("noop"), Just("sum"), Just(""), Just("bad name")],
        prop::collection::vec("[a-c]{1,2}", 0..3),
        value.clone(),
    )
        .prop_map(|(id, handler, deps, input)| json!({"id": id, "handler": handler, "depends_on": deps, "input": input}));
    prop_oneof![
        value,
        prop::collection::vec(task, 0..6).prop_map(|tasks| json!({"name": "fuzz", "tasks": tasks})),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_submissions_never_get_a_5xx_and_rejected_ones_store_nothing() {
    let sys = TestSystem::start().await;
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let bodies: Vec<Value> = (0..200)
        .map(|_| arbitrary_body().new_tree(&mut runner).unwrap().current())
        .collect();
    let mut accepted = 0;
    for body in &bodies {
        let (status, answer) = sys.post("/api/v1/runs", body).await;
        assert!(status < 500, "{status} for {body}: {answer}");
        if status == 201 {
            accepted += 1;
        } else {
            assert!(answer["error"]["code"].is_string(), "{answer}");
        }
    }
    let (_, list) = sys.get("/api/v1/runs?limit=500").await;
    assert_eq!(
        list["runs"].as_array().unwrap().len(),
        accepted,
        "only accepted runs are stored"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_is_refused_on_submit_and_never_stalls_the_store() {
    let mut sys = TestSystem::start().await;
    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "a", "handler": "echo", "input": "a\u{0}b"}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("NUL"));

    // A worker may still report one: it is stored, and later writes go on. The report
    // must match the engine's records (the entry the task was pushed as), so it names
    // the real entry of a task no worker has taken (its queue has none).
    sys.spawn_worker("default", 5);
    let id = sys
        .submit(
            &json!({"tasks": [{"id": "slow", "handler": "sleep", "queue": "nobody",
            "input": {"seconds": 30}}]}),
        )
        .await;
    sys.wait_until(&id, Duration::from_secs(60), |r| r["counts"]["queued"] == 1)
        .await;
    let mut conn = redis::Client::open(common::REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{}:queue:nobody", sys.prefix))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let msg_id = entries[0].0.clone();
    let forged = json!({"v": 1, "type": "result", "run_id": id, "task_id": "slow", "attempt": 1,
        "worker_id": "w\u{0}x", "queue": "nobody", "msg_id": msg_id, "outcome": "succeeded",
        "output": {"text": "x\u{0}y"}, "started_at_ms": 1, "finished_at_ms": 2});
    let _: String = redis::cmd("XADD")
        .arg(format!("{}:results", sys.prefix))
        .arg("*")
        .arg("m")
        .arg(forged.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    let run = sys.wait_run(&id, Duration::from_secs(60)).await;
    assert_eq!(run["state"], "succeeded");
    assert_eq!(common::task(&run, "slow")["output"]["text"], "x\u{fffd}y");
    let next = sys
        .submit(&json!({"tasks": [{"id": "after", "handler": "noop"}]}))
        .await;
    assert_eq!(
        sys.wait_run(&next, Duration::from_secs(60)).await["state"],
        "succeeded"
    );
    sys.shutdown().await;
}
