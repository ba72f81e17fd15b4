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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_queue_names_are_capped_and_idle_ones_are_removed() {
    let sys = TestSystem::start().await;
    // 5,000 queue names in one run: over the default cap of 1,000.
    let tasks: Vec<Value> = (0..5_000)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop", "queue": format!("q{i}")}))
        .collect();
    let (status, body) = sys.post("/api/v1/runs", &json!({"tasks": tasks})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["details"][0]["code"], "too_many_queues");
    let (_, runs) = sys.get("/api/v1/runs").await;
    assert_eq!(runs["runs"], json!([]), "nothing stored");
    sys.shutdown().await;

    let mut sys = TestSystem::start_with(|c| {
        c.max_queues = 3;
        c.queue_idle_s = 1;
    })
    .await;
    // `default` (configured) plus two more fill the cap.
    let first = sys
        .submit(
            &json!({"tasks": [{"id": "a", "handler": "noop", "queue": "alpha"},
                                  {"id": "b", "handler": "noop", "queue": "beta"}]}),
        )
        .await;
    let third = json!({"tasks": [{"id": "c", "handler": "noop", "queue": "gamma"}]});
    let (status, body) = sys.post("/api/v1/runs", &third).await;
    assert_eq!(status, 422, "{body}");
    let message = body["error"]["details"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("gamma") && message.contains("--max-queues"),
        "{message}"
    );
    // Once alpha and beta have nothing left, they are removed, streams and all.
    let (status, _) = sys
        .post(&format!("/api/v1/runs/{first}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let exists: u32 = redis::cmd("EXISTS")
            .arg(format!("{}:queue:alpha", sys.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        let (status, _) = sys.post("/api/v1/runs", &third).await;
        if exists == 0 && status == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alpha was never removed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    sys.spawn_worker("default", 1);
    sys.shutdown().await;
}

/// Resident memory of this process (the in-process server), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_log_lines_is_capped_per_attempt_and_memory_stays_bounded() {
    let sys = TestSystem::start().await;
    // A task no worker takes, so only the forged lines below speak for it: 2,000 lines
    // of 50 KB (100 MB), as a handler without the worker's own caps (or a forger) sends.
    let id = sys
        .submit(&json!({"tasks": [{"id": "chatty", "handler": "noop", "queue": "nobody"}]}))
        .await;
    sys.wait_until(&id, LIMIT, |r| r["counts"]["queued"] == 1)
        .await;
    let before = rss();
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let line = "x".repeat(50_000);
    for chunk in 0..20 {
        let mut pipe = redis::pipe();
        for n in 0..100 {
            let msg = json!({"v": 1, "type": "log", "run_id": id, "task_id": "chatty",
                "attempt": 1, "worker_id": "w", "level": "info",
                "message": format!("{chunk}-{n} {line}"), "at_ms": 1});
            pipe.cmd("XADD")
                .arg(format!("{}:results", sys.prefix))
                .arg("*")
                .arg("m")
                .arg(msg.to_string())
                .ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let deadline = std::time::Instant::now() + LIMIT;
    let detail = loop {
        let (_, detail) = sys.get(&format!("/api/v1/runs/{id}/tasks/chatty")).await;
        let logs = detail["logs"].as_array().map_or(0, Vec::len);
        let len: u64 = redis::cmd("XLEN")
            .arg(format!("{}:results", sys.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        if len == 0 && logs > 0 {
            break detail;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lines were not all read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = detail["logs"].as_array().unwrap();
    let bytes: usize = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(logs.len() <= 1_001, "{} lines stored", logs.len());
    assert!(bytes <= (1 << 20) + 1_000, "{bytes} bytes stored");
    assert!(
        logs.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("log cap reached"),
        "the cap is said in the log"
    );
    // The reader holds at most 128 MiB of unhandled messages; what is stored is 1 MiB.
    let grew = rss().saturating_sub(before);
    println!("RSS grew by {} MiB", grew >> 20);
    assert!(grew < 300 << 20, "RSS grew by {} MiB", grew >> 20);
    sys.shutdown().await;
}
