//! Many watchers cannot exhaust the orchestrator (issues #13 and #15): summary watchers
//! and one client that never reads follow a big run; every reader sees it finish, none
//! is told to resync, and the server's memory stays bounded.
//!
//! `APEX_WS_LOAD_CLIENTS` (default 200) and `APEX_WS_LOAD_TASKS` (default 20,000) set the
//! scale. Known gap: with 1,000 watchers connecting at once most are closed without a
//! frame (their first store reads queue behind the 16-connection read pool); issue #13
//! stays open for it.

mod common;

use common::TestSystem;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(300);

/// Resident memory of this process (the in-process server and the clients), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Reads frames until the run is seen finished; false on a resync or a closed socket.
async fn watch_to_the_end(url: String) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if frame["type"] == "resync" {
            return Err(format!("resync: {}", frame["reason"]));
        }
        let finished = |state: &Value| matches!(state.as_str(), Some("succeeded" | "failed"));
        if finished(&frame["run"]["state"])
            || frame["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e["kind"] == "run" && finished(&e["state"]))
            })
        {
            return Ok(());
        }
    }
    Err("closed".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_watchers_and_one_that_never_reads_leave_memory_bounded() {
    let tasks: usize = std::env::var("APEX_WS_LOAD_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut sys = TestSystem::start().await;
    let spec: Vec<Value> = (0..tasks)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    let id = sys.submit(&json!({"name": "big", "tasks": spec})).await;
    let ws = format!(
        "{}/api/v1/ws?run={id}",
        sys.base.replace("http://", "ws://")
    );
    // Connected with every task's detail, then never read: its frames pile up until the
    // server cuts it off, without slowing anyone else.
    let (never_reads, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let before = rss();
    let clients: usize = std::env::var("APEX_WS_LOAD_CLIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let watchers: Vec<_> = (0..clients)
        .map(|_| tokio::spawn(watch_to_the_end(format!("{ws}&detail=summary"))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sys.spawn_worker("default", 200);
    sys.spawn_worker("default", 200);
    let all = tokio::time::timeout(LIMIT, futures::future::join_all(watchers))
        .await
        .expect("every watcher saw the run finish in time");
    let mut failed: std::collections::BTreeMap<String, usize> = Default::default();
    for r in all {
        if let Err(why) = r.expect("the watcher task ran") {
            *failed.entry(why.chars().take(120).collect()).or_default() += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "watchers that did not see the end: {failed:?}"
    );
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded");
    let grew = rss().saturating_sub(before);
    println!(
        "{tasks} tasks, {clients} summary watchers and one stalled client: RSS grew by {} MiB",
        grew >> 20
    );
    assert!(grew < 512 << 20, "RSS grew by {} MiB", grew >> 20);
    drop(never_reads);
    sys.shutdown().await;
}
