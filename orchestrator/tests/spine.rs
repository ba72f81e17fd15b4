//! The spine end to end: REST → engine → Redis → real Python workers → Postgres.

mod common;

use common::{states, task, TestSystem};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_and_a_diamond_run_to_success_with_outputs_flowing() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 20);

    // Diamond of sums: a=1, b=c=2, d=2+2+1=5.
    let diamond = sys
        .submit(&json!({"name": "diamond", "tasks": [
            {"id": "a", "handler": "sum"},
            {"id": "b", "handler": "sum", "depends_on": ["a"]},
            {"id": "c", "handler": "sum", "depends_on": ["a"]},
            {"id": "d", "handler": "sum", "depends_on": ["b", "c"]},
        ]}))
        .await;
    // Chain: echo's output becomes the next task's upstream.
    let chain = sys
        .submit(&json!({"name": "chain", "tasks": [
            {"id": "plan", "handler": "echo", "input": {"topic": "tides"}},
            {"id": "research", "handler": "sum", "input": {"value": 10}, "depends_on": ["plan"]},
            {"id": "write", "handler": "sum", "depends_on": ["research"]},
        ]}))
        .await;

    let run = sys.wait_run(&diamond, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(task(&run, "d")["output"], 5);
    assert_eq!(task(&run, "b")["output"], 2);
    let d = sys.task(&diamond, "d").await;
    assert_eq!(d["upstream"], json!({"b": 2, "c": 2}));
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert!(d["worker_id"].as_str().is_some_and(|w| !w.is_empty()));

    let run = sys.wait_run(&chain, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(task(&run, "plan")["output"], json!({"topic": "tides"}));
    // research: 10 + (plan's output is not numeric) + 1 = 11; write: 11 + 1 = 12.
    assert_eq!(task(&run, "research")["output"], 11);
    assert_eq!(task(&run, "write")["output"], 12);
    assert_eq!(run["counts"]["succeeded"], 3);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_with_retries_succeeds_on_a_later_attempt() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "flaky", "handler": "fail", "input": {"message": "provider hiccup", "until_attempt": 3},
             "retries": 3, "retry_backoff_s": 0.05},
            {"id": "after", "handler": "noop", "depends_on": ["flaky"]},
        ]}))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let flaky = sys.task(&id, "flaky").await;
    assert_eq!(flaky["attempt"], 3);
    let attempts = flaky["attempts"].as_array().unwrap();
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["failed", "failed", "succeeded"]);
    assert_eq!(attempts[0]["error"]["message"], "provider hiccup");
    assert!(attempts[0]["error"]["traceback"]
        .as_str()
        .is_some_and(|t| t.contains("Traceback")));
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_failure_skips_all_success_dependents_and_runs_all_done_ones() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "bad", "handler": "fail", "input": {"message": "no"}, "retries": 1, "retry_backoff_s": 0.01},
            {"id": "next", "handler": "noop", "depends_on": ["bad"]},
            {"id": "after_next", "handler": "noop", "depends_on": ["next"]},
            {"id": "cleanup", "handler": "echo", "input": "cleaned", "depends_on": ["bad"], "trigger": "all_done"},
        ]}))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(
        states(&run),
        [
            ("bad", "failed"),
            ("next", "skipped"),
            ("after_next", "skipped"),
            ("cleanup", "succeeded")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(task(&run, "bad")["attempt"], 2, "one retry");
    assert_eq!(task(&run, "cleanup")["output"], "cleaned");
    assert_eq!(run["error"], "1 task(s) failed: bad");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_counts_as_a_failed_attempt() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "slow", "handler": "sleep", "input": {"seconds": 30}, "timeout_s": 0.3, "retries": 1, "retry_backoff_s": 0.01},
        ]}))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed");
    let slow = sys.task(&id, "slow").await;
    assert_eq!(slow["attempt"], 2);
    assert_eq!(slow["error"]["kind"], "timeout");
    let attempts = slow["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts.iter().all(|a| a["error"]["kind"] == "timeout"));
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_dags_get_4xx_naming_the_problem_and_store_nothing() {
    let sys = TestSystem::start().await;
    let cases = [
        (
            json!({"tasks": [{"id": "a", "handler": "noop", "depends_on": ["b"]}, {"id": "b", "handler": "noop", "depends_on": ["a"]}]}),
            422,
            "cycle: a -> b -> a (remove one of these dependencies)",
        ),
        (
            json!({"tasks": [{"id": "a", "handler": "noop", "depends_on": ["ghost"]}]}),
            422,
            r#"task "a" depends on "ghost", which is not a task in this run"#,
        ),
        (
            json!({"tasks": [{"id": "a", "handler": "noop"}, {"id": "a", "handler": "noop"}]}),
            422,
            r#"task id "a" is used by 2 tasks"#,
        ),
        (json!({"tasks": []}), 422, "the run has no tasks"),
    ];
    for (spec, status, message) in cases {
        let (got, body) = sys.post("/api/v1/runs", &spec).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"]["code"], "invalid_dag");
        assert_eq!(body["error"]["details"][0]["message"], message, "{body}");
    }
    let (got, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "a", "handler": "noop", "colour": "red"}]}),
        )
        .await;
    assert_eq!(got, 400);
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`"),
        "{body}"
    );
    let (got, body) = sys.post_raw("/api/v1/runs", "{not json").await;
    assert_eq!(got, 400);
    assert_eq!(body["error"]["code"], "invalid_json");

    let (_, list) = sys.get("/api/v1/runs").await;
    assert_eq!(
        list["runs"],
        json!([]),
        "nothing is stored for rejected runs"
    );
    let (got, body) = sys.get("/api/v1/runs/nope").await;
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_rejected_with_413() {
    let sys = TestSystem::start_with(|c| c.max_body_bytes = 1_000).await;
    let tasks: Vec<_> = (0..100)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    let (got, body) = sys.post("/api/v1/runs", &json!({"tasks": tasks})).await;
    assert_eq!(got, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_retried_reruns_only_what_did_not_succeed() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    // `fail` succeeds from attempt 2 on, and a rerun starts a new attempt.
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "first", "handler": "sum"},
            {"id": "flaky", "handler": "fail", "input": {"until_attempt": 2}, "depends_on": ["first"]},
            {"id": "last", "handler": "sum", "depends_on": ["flaky"]},
        ]}))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(task(&run, "last")["state"], "skipped");
    let first_finished = task(&run, "first")["finished_at_ms"].clone();

    let (status, body) = sys
        .post(&format!("/api/v1/runs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(
        task(&run, "first")["finished_at_ms"],
        first_finished,
        "a success is not re-run"
    );
    assert_eq!(task(&run, "flaky")["attempt"], 2);

    let (status, body) = sys
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "a finished run cannot be cancelled: {body}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_running_tasks() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "long1", "handler": "sleep", "input": {"seconds": 60}},
            {"id": "long2", "handler": "sleep", "input": {"seconds": 60}},
            {"id": "later", "handler": "noop", "depends_on": ["long1"]},
        ]}))
        .await;
    sys.wait_until(&id, LIMIT, |r| r["counts"]["running"] == 2)
        .await;
    let (status, body) = sys
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "cancelled");
    assert!(states(&run).iter().all(|(_, s)| s == "cancelled"), "{run}");
    // The worker frees its slots: its heartbeat shows nothing in flight.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let (_, w) = sys.get("/api/v1/workers").await;
        if w["workers"][0]["in_flight"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "worker still busy: {w}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_orchestrator_resumes_running_runs() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "a", "handler": "sleep", "input": {"seconds": 0.5}},
            {"id": "b", "handler": "sleep", "input": {"seconds": 0.5}, "depends_on": ["a"]},
            {"id": "c", "handler": "sum", "depends_on": ["b"]},
        ]}))
        .await;
    sys.wait_until(&id, LIMIT, |r| r["counts"]["running"] == 1)
        .await;
    sys.restart_server().await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    for t in run["tasks"].as_array().unwrap() {
        assert_eq!(t["attempt"], 1, "no task ran twice: {t}");
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_workers_queues_and_listing_answer() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 7);
    let (status, body) = sys.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = sys.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        sys.submit(&json!({"tasks": [{"id": "x", "handler": "noop"}]}))
            .await;
    }
    let (_, page) = sys.get("/api/v1/runs?limit=2").await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let (_, rest) = sys
        .get(&format!("/api/v1/runs?limit=2&before={next}"))
        .await;
    assert_eq!(rest["runs"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next"], serde_json::Value::Null);
    let (status, body) = sys.get("/api/v1/runs?state=sideways").await;
    assert_eq!(status, 400, "{body}");
    let first = page["runs"][0]["id"].as_str().unwrap();
    let (_, summary) = sys.get(&format!("/api/v1/runs/{first}?tasks=false")).await;
    assert_eq!(summary["id"], first);
    assert!(summary.get("tasks").is_none(), "summary only: {summary}");

    let deadline = std::time::Instant::now() + LIMIT;
    let workers = loop {
        let (_, w) = sys.get("/api/v1/workers").await;
        if !w["workers"].as_array().unwrap().is_empty() {
            break w;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(workers["workers"][0]["concurrency"], 7);
    assert_eq!(workers["workers"][0]["queues"], json!(["default"]));
    let (_, queues) = sys.get("/api/v1/queues").await;
    assert_eq!(queues["queues"][0]["name"], "default");
    assert_eq!(queues["queues"][0]["workers_active"], 1);
    let metrics = sys.metrics().await;
    assert!(metrics.contains("apex_queue_depth"), "{metrics}");
    sys.shutdown().await;
}
