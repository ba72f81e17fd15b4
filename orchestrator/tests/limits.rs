//! One run cannot stall scheduling for everyone (issue #13): a task whose message would
//! be too large fails before dispatch, and a message Redis keeps refusing fails its task
//! instead of blocking the writer.

mod common;

use common::{task, TestSystem, REDIS};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

const BIG_HANDLERS: &str = r#"
from apex_worker import handler

@handler("big")
async def big(input, upstream, ctx):
    return "x" * input["bytes"]
"#;

/// A worker that also knows the `big` handler; returns the module's directory.
fn big_worker(sys: &mut TestSystem) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique("handlers"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big_handlers.py"), BIG_HANDLERS).unwrap();
    let path = dir.to_str().unwrap().to_owned();
    sys.spawn_worker_with(
        "default",
        8,
        &["--import", "big_handlers"],
        &[("PYTHONPATH", &path)],
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_upstream_outputs_are_too_large_fails_and_everything_else_goes_on() {
    let mut sys = TestSystem::start().await;
    let dir = big_worker(&mut sys);
    let mut tasks: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("big{i}"), "handler": "big", "input": {"bytes": 15_000_000}}))
        .collect();
    tasks.push(json!({"id": "join", "handler": "noop",
        "depends_on": (0..6).map(|i| format!("big{i}")).collect::<Vec<_>>()}));
    tasks.push(json!({"id": "after", "handler": "noop", "depends_on": ["join"]}));
    let big = sys.submit(&json!({"name": "big", "tasks": tasks})).await;
    let small = sys
        .submit(&json!({"name": "small", "tasks": [
            {"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop", "depends_on": ["a"]}]}))
        .await;
    assert_eq!(sys.wait_run(&small, LIMIT).await["state"], "succeeded");

    let run = sys.wait_run(&big, LIMIT).await;
    assert_eq!(run["state"], "failed", "{}", run["state"]);
    for i in 0..6 {
        assert_eq!(task(&run, &format!("big{i}"))["state"], "succeeded");
    }
    let join = task(&run, "join");
    assert_eq!(join["state"], "failed");
    assert_eq!(
        join["error"]["kind"], "input_too_large",
        "{}",
        join["error"]
    );
    let message = join["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("upstream outputs (90000012 bytes)") && message.contains("67108864"),
        "{message}"
    );
    assert_eq!(task(&run, "after")["state"], "skipped");

    // The engine is not stuck: a new run still goes through, and readiness is fine.
    let again = sys
        .submit(&json!({"tasks": [{"id": "x", "handler": "noop"}]}))
        .await;
    assert_eq!(sys.wait_run(&again, LIMIT).await["state"], "succeeded");
    let ready = sys.http.get(sys.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    sys.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_redis_keeps_refusing_fails_its_tasks_without_stalling_other_runs() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);
    // Someone (or something) left a plain string where the queue's stream belongs:
    // every XADD and XGROUP on it fails, and always will.
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{}:queue:poison", sys.prefix))
        .arg("not a stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    let poisoned = sys
        .submit(
            &json!({"tasks": [{"id": "p", "handler": "noop", "queue": "poison"},
                                  {"id": "q", "handler": "noop", "depends_on": ["p"]}]}),
        )
        .await;
    let fine = sys
        .submit(&json!({"tasks": [{"id": "a", "handler": "noop"}]}))
        .await;
    assert_eq!(sys.wait_run(&fine, LIMIT).await["state"], "succeeded");
    let run = sys.wait_run(&poisoned, LIMIT).await;
    let p = task(&run, "p");
    assert_eq!(p["state"], "failed");
    assert_eq!(p["error"]["kind"], "enqueue_failed");
    assert!(
        p["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WRONGTYPE"),
        "{}",
        p["error"]
    );
    assert_eq!(task(&run, "q")["state"], "skipped");
    let ready = sys.http.get(sys.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "the writer is not stuck");
    sys.shutdown().await;
}
