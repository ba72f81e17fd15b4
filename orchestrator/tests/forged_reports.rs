//! Redis is not a trusted channel: a report can acknowledge only the queue entry the
//! engine recorded for that attempt, and only from the worker running it (issue #12).

mod common;

use common::{task, TestSystem, REDIS};
use serde_json::{json, Value};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// The entry id of the task message for `task_id` in the default queue's stream.
async fn entry_of(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    task_id: &str,
) -> String {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}:queue:default"))
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    entries
        .into_iter()
        .find(|(_, fields)| {
            fields.iter().any(|(_, body)| {
                serde_json::from_str::<Value>(body).is_ok_and(|m| m["task_id"] == task_id)
            })
        })
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no entry for {task_id}"))
}

async fn pending_ids(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let pending: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(format!("{prefix}:queue:default"))
        .arg(worker_protocol::keys::WORKER_GROUP)
        .arg("-")
        .arg("+")
        .arg(100)
        .query_async(conn)
        .await
        .unwrap();
    pending.into_iter().map(|p| p.0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_naming_another_tasks_entry_or_from_another_worker_is_dropped() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "short", "handler": "sleep", "input": {"seconds": 2.5}},
            {"id": "long", "handler": "sleep", "input": {"seconds": 4}}]}))
        .await;
    let running = sys
        .wait_until(&id, LIMIT, |run| {
            ["short", "long"]
                .iter()
                .all(|t| task(run, t)["state"] == "running")
        })
        .await;
    let worker = task(&running, "short")["worker_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let long_entry = entry_of(&mut conn, &sys.prefix, "long").await;
    let short_entry = entry_of(&mut conn, &sys.prefix, "short").await;
    let forged = |task_id: &str, worker_id: &str, msg_id: &str| {
        json!({"v": 1, "type": "result", "run_id": id, "task_id": task_id, "attempt": 1,
               "worker_id": worker_id, "queue": "default", "msg_id": msg_id,
               "outcome": "succeeded", "output": "forged", "started_at_ms": 1, "finished_at_ms": 2})
        .to_string()
    };
    for body in [
        // The real worker's name, but the other task's queue entry.
        forged("short", &worker, &long_entry),
        // The right entry, from a worker that does not run it.
        forged("short", "forger", &short_entry),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(format!("{}:results", sys.prefix))
            .arg("*")
            .arg("m")
            .arg(body)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pending = pending_ids(&mut conn, &sys.prefix).await;
    assert!(
        pending.contains(&long_entry),
        "the other task's entry was acknowledged"
    );
    assert!(
        pending.contains(&short_entry),
        "a forger acknowledged the entry"
    );
    let (_, now) = sys.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(
        task(&now, "short")["state"],
        "running",
        "the forged result was applied"
    );

    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    for t in ["short", "long"] {
        assert_eq!(task(&run, t)["attempt"], 1, "{t} ran once");
        assert_ne!(task(&run, t)["output"], "forged");
    }
    let metrics = sys.metrics().await;
    for reason in ["foreign_entry", "other_worker"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("apex_worker_reports_rejected_total")
                    && l.contains(&format!("reason=\"{reason}\""))),
            "{reason} not counted"
        );
    }
    assert!(
        pending_ids(&mut conn, &sys.prefix).await.is_empty(),
        "entries were acknowledged once done"
    );
    sys.shutdown().await;
}
