//! The live event stream over a real WebSocket (tokio-tungstenite).

mod common;

use common::TestSystem;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(sys: &TestSystem, query: &str) -> Socket {
    let url = format!("{}/api/v1/ws{query}", sys.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

async fn next_frame(ws: &mut Socket) -> Value {
    loop {
        let msg = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Reads `events` frames until the run's terminal event; returns every event read.
async fn events_until_finished(ws: &mut Socket) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let frame = next_frame(ws).await;
        assert_eq!(frame["type"], "events", "{frame}");
        for e in frame["events"].as_array().unwrap() {
            all.push(e.clone());
            if e["kind"] == "run" && e["state"] != "running" {
                return all;
            }
        }
    }
}

fn stored_seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

fn slow_chain() -> Value {
    json!({"tasks": [
        {"id": "a", "handler": "sleep", "input": {"seconds": 0.2}},
        {"id": "b", "handler": "sleep", "input": {"seconds": 0.2}, "depends_on": ["a"]},
        {"id": "c", "handler": "sleep", "input": {"seconds": 0.2}, "depends_on": ["a"]},
        {"id": "d", "handler": "sum", "depends_on": ["b", "c"]},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_the_snapshot_then_every_transition_in_order() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys.submit(&slow_chain()).await;
    let mut ws = connect(&sys, &format!("?run={id}")).await;
    let snapshot = next_frame(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["run"]["id"], id.as_str());
    assert_eq!(snapshot["run"]["tasks"].as_array().unwrap().len(), 4);
    let from = snapshot["seq"].as_u64().unwrap();

    let events = events_until_finished(&mut ws).await;
    let seqs = stored_seqs(&events);
    assert_eq!(
        seqs,
        ((from + 1)..=(from + seqs.len() as u64)).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    let last = events.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["state"].as_str()),
        (Some("run"), Some("succeeded"))
    );
    // d's lifecycle is all there, in order.
    let d: Vec<&str> = events
        .iter()
        .filter(|e| e["task_id"] == "d" && e["kind"] == "task")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(d.first(), Some(&"queued"));
    assert_eq!(d.last(), Some(&"succeeded"));
    // The stream matches the stored log exactly, plus when each event was stored.
    let (_, stored) = sys
        .get(&format!("/api/v1/runs/{id}/events?since={from}"))
        .await;
    let live: Vec<Value> = events
        .iter()
        .filter(|e| e["seq"].is_u64())
        .map(|e| {
            let mut e = e.clone();
            assert!(e["stored_at_ms"].as_i64().unwrap() >= e["at_ms"].as_i64().unwrap());
            e.as_object_mut().unwrap().remove("stored_at_ms");
            e
        })
        .collect();
    assert_eq!(stored["events"].as_array().unwrap(), &live);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_since_loses_nothing() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys.submit(&slow_chain()).await;
    let mut ws = connect(&sys, &format!("?run={id}")).await;
    let snapshot = next_frame(&mut ws).await;
    let mut seen = snapshot["seq"].as_u64().unwrap();
    // Read one frame, then drop the connection mid-run.
    let first = next_frame(&mut ws).await;
    if let Some(s) = stored_seqs(first["events"].as_array().unwrap()).last() {
        seen = *s;
    }
    drop(ws);
    sys.wait_run(&id, LIMIT).await;

    let mut ws = connect(&sys, &format!("?run={id}&since={seen}")).await;
    let frame = next_frame(&mut ws).await;
    assert_eq!(
        frame["type"], "events",
        "a resuming client gets the missed events, not a snapshot"
    );
    let resumed = stored_seqs(frame["events"].as_array().unwrap());
    let (_, run) = sys.get(&format!("/api/v1/runs/{id}")).await;
    let last = run["last_seq"].as_u64().unwrap();
    assert_eq!(resumed, ((seen + 1)..=last).collect::<Vec<_>>());
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_stream_sends_a_snapshot_then_run_and_worker_changes() {
    let mut sys = TestSystem::start().await;
    let mut ws = connect(&sys, "").await;
    let snapshot = next_frame(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert!(
        snapshot["runs"].is_array()
            && snapshot["workers"].is_array()
            && snapshot["queues"].is_array()
    );
    sys.spawn_worker("default", 5);
    let id = sys
        .submit(&json!({"tasks": [{"id": "x", "handler": "noop"}]}))
        .await;
    let (mut created, mut finished, mut worker) = (false, false, false);
    while !(created && finished && worker) {
        let frame = next_frame(&mut ws).await;
        for e in frame["events"].as_array().unwrap() {
            match e["kind"].as_str() {
                Some("run_created") if e["run"]["id"] == id.as_str() => created = true,
                Some("run_updated")
                    if e["run"]["id"] == id.as_str() && e["run"]["state"] == "succeeded" =>
                {
                    finished = true
                }
                Some("worker") => worker = true,
                _ => {}
            }
        }
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_stall_a_run() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 200);
    sys.spawn_worker("default", 200);
    let tasks: Vec<Value> = (0..12_000)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    // Stalled clients: connected, never reading.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(connect(&sys, "").await);
    }
    let id = sys.submit(&json!({"tasks": tasks})).await;
    for _ in 0..2 {
        stalled.push(connect(&sys, &format!("?run={id}")).await);
    }
    let run = sys.wait_run(&id, Duration::from_secs(120)).await;
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["counts"]["succeeded"], 12_000);
    // The server is still responsive to a well-behaved client afterwards.
    let mut ws = connect(&sys, &format!("?run={id}")).await;
    assert_eq!(next_frame(&mut ws).await["run"]["state"], "succeeded");
    for mut s in stalled {
        let _ = s.close(None).await;
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_told_when_the_server_stops() {
    let mut sys = TestSystem::start().await;
    let mut ws = connect(&sys, "").await;
    assert_eq!(next_frame(&mut ws).await["type"], "snapshot");
    sys.server.take().unwrap().stop().await;
    // Fleet events published just before the stop (the engine's first queue stats) may
    // still come first; then the close frame.
    loop {
        let msg = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("told in time");
        match msg {
            Some(Ok(Message::Text(_))) => continue,
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001, "going away");
                break;
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    sys.shutdown().await;
}
