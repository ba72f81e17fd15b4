//! People in the loop, end to end with a real server, store, Redis and Python workers:
//! approval tasks (decisions, 409s, restart, timeout across a failover) and cancelling
//! one task of a running run.

mod common;

use common::{free_port, task, TestSystem, PG_ADMIN, REDIS};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// plan → review (an approval) → write.
fn reviewed(timeout: Value) -> Value {
    json!({"name": "reviewed", "tasks": [
        {"id": "plan", "handler": "echo", "input": {"draft": "tides"}},
        {"id": "review", "handler": "approval", "depends_on": ["plan"],
         "input": {"prompt": "Publish this?", "timeout_s": timeout, "on_timeout": "reject"}},
        {"id": "write", "handler": "echo", "depends_on": ["review"]},
    ]})
}

async fn wait_waiting(sys: &TestSystem, id: &str) -> Value {
    sys.wait_until(id, LIMIT, |r| {
        r["tasks"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["state"] == "waiting"))
    })
    .await
}

/// The stored events of `task` that entered `state`.
async fn entered(sys: &TestSystem, run: &str, task_id: &str, state: &str) -> usize {
    let (status, body) = sys.get(&format!("/api/v1/runs/{run}/events")).await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["task_id"] == task_id && e["state"] == state)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_holds_no_slot_and_each_decision_is_taken_once() {
    let mut sys = TestSystem::start().await;
    // One slot: a waiting approval must not hold it.
    sys.spawn_worker("default", 1);

    let id = sys.submit(&reviewed(Value::Null)).await;
    let run = wait_waiting(&sys, &id).await;
    assert_eq!(task(&run, "review")["state"], "waiting");
    assert_eq!(task(&run, "write")["state"], "pending");
    let review = sys.task(&id, "review").await;
    assert_eq!(review["input"]["prompt"], "Publish this?");
    assert_eq!(review["upstream"]["plan"], json!({"draft": "tides"}));
    assert_eq!(review["attempt"], 0, "never sent to a worker: {review}");

    // Meanwhile another run's tasks get the only slot.
    let other = sys
        .submit(&json!({"tasks": [
            {"id": "a", "handler": "echo"}, {"id": "b", "handler": "echo", "depends_on": ["a"]}
        ]}))
        .await;
    assert_eq!(sys.wait_run(&other, LIMIT).await["state"], "succeeded");
    assert_eq!(sys.task(&id, "review").await["state"], "waiting");

    // Deciding the wrong task, or an unknown one, changes nothing.
    let base = format!("/api/v1/runs/{id}/tasks");
    let (status, body) = sys.post(&format!("{base}/write/approve"), &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not waiting"),
        "{body}"
    );
    // A JSON `null` body means "no options", as the document's optional body says: it
    // gets as far as the task's state, not a 400.
    let (status, body) = sys
        .post(&format!("{base}/write/approve"), &serde_json::Value::Null)
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = sys.post(&format!("{base}/nope/approve"), &json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = sys
        .post(
            &format!("{base}/review/approve"),
            &json!({"comment": "ok", "colour": 1}),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");

    let (status, body) = sys
        .post(
            &format!("{base}/review/approve"),
            &json!({"comment": "ship it", "output": {"tone": "dry"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "succeeded");
    let output = &body["output"];
    assert_eq!(output["approved"], true);
    assert_eq!(output["comment"], "ship it");
    assert_eq!(output["output"], json!({"tone": "dry"}));
    assert!(
        output["by"].as_str().is_some_and(|b| !b.is_empty()),
        "{output}"
    );
    // A second decision, either way, is refused.
    let (status, _) = sys
        .post(&format!("{base}/review/approve"), &json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = sys.post(&format!("{base}/review/reject"), &json!({})).await;
    assert_eq!(status, 409);

    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let write = sys.task(&id, "write").await;
    assert_eq!(write["upstream"]["review"]["comment"], "ship it");
    assert_eq!(entered(&sys, &id, "review", "succeeded").await, 1);

    // A rejection fails the approval and skips what needed it.
    let id = sys.submit(&reviewed(Value::Null)).await;
    wait_waiting(&sys, &id).await;
    let (status, body) = sys
        .post(
            &format!("/api/v1/runs/{id}/tasks/review/reject"),
            &json!({"comment": "too long"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["kind"], "rejected");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("too long"));
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(task(&run, "write")["state"], "skipped");
    let (status, _) = sys
        .post(
            &format!("/api/v1/runs/{id}/tasks/review/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "a finished run takes no decision");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_approval_setting_is_refused_with_its_name() {
    let sys = TestSystem::start().await;
    let (status, body) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "review", "handler": "approval", "input": {"on_timeout": "maybe"}}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("on_timeout"), "{body}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_after_a_restart_is_taken_once() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 2);
    let id = sys.submit(&reviewed(Value::Null)).await;
    wait_waiting(&sys, &id).await;
    sys.restart_server().await;
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    assert_eq!(sys.task(&id, "review").await["state"], "waiting");
    let path = format!("/api/v1/runs/{id}/tasks/review/approve");
    let (status, body) = sys.post(&path, &json!({"comment": "after restart"})).await;
    assert_eq!(status, 200, "{body}");
    // The decision was stored before the answer: another restart keeps it.
    sys.restart_server().await;
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    let (status, _) = sys.post(&path, &json!({})).await;
    assert_eq!(status, 409);
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(entered(&sys, &id, "review", "succeeded").await, 1);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_applies_once_across_a_failover() {
    let mut sys = TestSystem::without_server(PG_ADMIN, REDIS).await;
    let (leader, standby) = (free_port(), free_port());
    sys.spawn_orchestrator(leader);
    let leader_url = sys.base.clone();
    sys.wait_ready(&leader_url, LIMIT).await;
    sys.spawn_orchestrator(standby);
    let standby_url = sys.base.clone();
    sys.base = leader_url;
    sys.spawn_worker("default", 2);

    let id = sys.submit(&reviewed(json!(4))).await;
    wait_waiting(&sys, &id).await;
    let waiting_since = Instant::now();
    sys.kill_orchestrator(leader);
    sys.wait_ready(&standby_url, LIMIT).await;
    sys.base = standby_url;
    let run = sys.wait_run(&id, LIMIT).await;
    // The stored deadline held: the standby did not restart the clock from its takeover.
    assert!(waiting_since.elapsed() < Duration::from_secs(30));
    assert_eq!(run["state"], "failed", "{run}");
    let review = sys.task(&id, "review").await;
    assert_eq!(review["error"]["kind"], "rejected");
    assert!(review["error"]["message"]
        .as_str()
        .unwrap()
        .contains("on_timeout"));
    assert_eq!(task(&run, "write")["state"], "skipped");
    assert_eq!(entered(&sys, &id, "review", "failed").await, 1);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_one_running_task_frees_its_slot_and_the_rest_goes_on() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 1);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "slow", "handler": "sleep", "input": {"seconds": 120}},
            {"id": "after_slow", "handler": "echo", "depends_on": ["slow"]},
            {"id": "side", "handler": "echo", "input": {"n": 1}},
        ]}))
        .await;
    let run = sys
        .wait_until(&id, LIMIT, |r| {
            r["tasks"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["state"] == "running"))
        })
        .await;
    // The one slot holds whichever task came first; cancel the slow one when it runs.
    if task(&run, "side")["state"] == "running" || task(&run, "side")["state"] == "succeeded" {
        sys.wait_until(&id, LIMIT, |r| task(r, "slow")["state"] == "running")
            .await;
    }
    let cancelled = Instant::now();
    let (status, body) = sys
        .post(&format!("/api/v1/runs/{id}/tasks/slow/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled");
    let run = sys.wait_run(&id, LIMIT).await;
    assert!(
        cancelled.elapsed() < Duration::from_secs(30),
        "the slot was freed"
    );
    assert_eq!(task(&run, "side")["state"], "succeeded", "{run}");
    assert_eq!(task(&run, "after_slow")["state"], "skipped");
    assert_eq!(run["state"], "failed");
    // The worker's slot is free again: another run goes through.
    let next = sys
        .submit(&json!({"tasks": [{"id": "a", "handler": "echo"}]}))
        .await;
    assert_eq!(
        sys.wait_run(&next, Duration::from_secs(20)).await["state"],
        "succeeded"
    );
    let (status, _) = sys
        .post(&format!("/api/v1/runs/{id}/tasks/side/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409);
    sys.shutdown().await;
}

/// Runs `apex ARGS` to the end, off the async runtime: `(exit code, stdout, stderr)`.
async fn apex(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(&args)
            .env_remove("APEX_SERVER")
            .env_remove("APEX_API_TOKEN")
            .env("NO_COLOR", "1")
            .output()
            .expect("apex runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_waiting_runs_and_decides() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 2);
    let base = sys.base.clone();
    let waiting = sys.submit(&reviewed(Value::Null)).await;
    let rejected = sys.submit(&reviewed(Value::Null)).await;
    wait_waiting(&sys, &waiting).await;
    wait_waiting(&sys, &rejected).await;

    let (code, out, err) = apex(&["runs", "--waiting", "--json", "--server", &base]).await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&waiting.as_str()) && ids.contains(&rejected.as_str()),
        "{out}"
    );

    let (code, out, err) = apex(&[
        "approve",
        &waiting,
        "review",
        "--comment",
        "fine",
        "--output",
        "{\"n\": 1}",
        "--server",
        &base,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("approved task review"), "{out}");
    let (code, _, err) = apex(&["approve", &waiting, "review", "--server", &base]).await;
    assert_eq!(code, 6, "a second decision is a conflict: {err}");
    assert!(
        err.contains("not waiting") || err.contains("already succeeded"),
        "{err}"
    );
    let (code, _, _) = apex(&[
        "approve", &waiting, "review", "--output", "{", "--server", &base,
    ])
    .await;
    assert_eq!(code, 2, "bad --output JSON is bad input");

    let (code, _, err) = apex(&[
        "reject",
        &rejected,
        "review",
        "--comment",
        "no",
        "--server",
        &base,
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let review = sys.task(&rejected, "review").await;
    assert_eq!(review["error"]["kind"], "rejected");
    assert_eq!(sys.wait_run(&waiting, LIMIT).await["state"], "succeeded");
    assert_eq!(
        sys.task(&waiting, "write").await["upstream"]["review"]["output"],
        json!({"n": 1})
    );

    let (code, out, _) = apex(&["runs", "--waiting", "--server", &base]).await;
    assert_eq!(code, 0);
    assert!(out.contains("no run waits"), "{out}");

    let slow = sys
        .submit(&json!({"tasks": [{"id": "nap", "handler": "sleep", "input": {"seconds": 60}}]}))
        .await;
    let (code, out, err) = apex(&["task", "cancel", &slow, "nap", "--server", &base]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cancelled task nap"), "{out}");
    assert_eq!(sys.wait_run(&slow, LIMIT).await["state"], "failed");
    let (code, _, _) = apex(&["task", "cancel", &slow, "nap", "--server", &base]).await;
    assert_eq!(code, 6);
    let (code, _, _) = apex(&["task", "cancel", &slow, "nope", "--server", &base]).await;
    assert_eq!(code, 3);
    sys.shutdown().await;
}
