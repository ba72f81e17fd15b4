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

/// Reads `events` frames until the run's terminal event; returns every frame read.
async fn frames_until_finished(ws: &mut Socket) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next_frame(ws).await;
        assert_eq!(frame["type"], "events", "{frame}");
        let done = frame["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "run" && e["state"] != "running");
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

fn events_of(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .flat_map(|f| f["events"].as_array().unwrap().iter().cloned())
        .collect()
}

/// Checks that the frames account for every stored event after `from` exactly once:
/// their `seq_from..=seq_to` ranges follow each other with no gap or overlap, and each
/// event's `seq` lies in its frame's range. Returns the last sequence number.
fn assert_contiguous(frames: &[Value], from: u64) -> u64 {
    let mut last = from;
    for f in frames {
        let (Some(lo), Some(hi)) = (f["seq_from"].as_u64(), f["seq_to"].as_u64()) else {
            assert!(
                f["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|e| e["seq"].is_null()),
                "a frame of stored events names its range: {f}"
            );
            continue;
        };
        assert_eq!(lo, last + 1, "no gap, no repeat: {f}");
        assert!(hi >= lo);
        for e in f["events"].as_array().unwrap() {
            if let Some(s) = e["seq"].as_u64() {
                assert!((lo..=hi).contains(&s), "{e} outside {lo}..={hi}");
            }
        }
        last = hi;
    }
    last
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

    let frames = frames_until_finished(&mut ws).await;
    let last_seq = assert_contiguous(&frames, from);
    let events = events_of(&frames);
    let last = events.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["state"].as_str()),
        (Some("run"), Some("succeeded"))
    );
    assert!(
        frames.iter().any(|f| f["run"]["counts"].is_object()),
        "frames carry the run's counts"
    );
    // d's lifecycle is in order and ends as stored (steps within one frame coalesce).
    let d: Vec<&str> = events
        .iter()
        .filter(|e| e["task_id"] == "d" && e["kind"] == "task")
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(d.last(), Some(&"succeeded"));
    // Every event sent is the stored one, plus when it was stored; a stored event not
    // sent was superseded by a later one of its task within the same frame.
    let (_, stored) = sys
        .get(&format!("/api/v1/runs/{id}/events?since={from}"))
        .await;
    let stored = stored["events"].as_array().unwrap();
    assert_eq!(stored.last().unwrap()["seq"].as_u64(), Some(last_seq));
    for f in &frames {
        let sent = f["events"].as_array().unwrap();
        for e in sent.iter().filter(|e| e["seq"].is_u64()) {
            let mut e = e.clone();
            assert!(e["stored_at_ms"].as_i64().unwrap() >= e["at_ms"].as_i64().unwrap());
            e.as_object_mut().unwrap().remove("stored_at_ms");
            let seq = e["seq"].as_u64().unwrap();
            assert_eq!(stored.iter().find(|s| s["seq"] == seq), Some(&e));
        }
        let (Some(lo), Some(hi)) = (f["seq_from"].as_u64(), f["seq_to"].as_u64()) else {
            continue;
        };
        for s in stored
            .iter()
            .filter(|s| (lo..=hi).contains(&s["seq"].as_u64().unwrap()))
        {
            let kept = sent.iter().any(|e| e["seq"] == s["seq"]);
            let superseded = sent.iter().any(|e| {
                e["kind"] == "task"
                    && e["task_id"] == s["task_id"]
                    && e["seq"].as_u64() > s["seq"].as_u64()
            });
            assert!(
                kept || (s["kind"] == "task" && superseded),
                "{s} went missing"
            );
        }
    }
    // Each hop of a live event's delivery has its histogram, for operators and the
    // live bench's breakdown: stored -> in its stream -> in a frame -> written.
    let metrics = sys.metrics().await;
    for hop in [
        "apex_live_published_seconds_count",
        "apex_live_frame_cut_seconds_count",
        "apex_ws_frame_written_seconds_count",
    ] {
        assert!(metrics.contains(hop), "{hop} missing");
    }
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
    if let Some(s) = first["seq_to"].as_u64() {
        seen = s;
    }
    drop(ws);
    sys.wait_run(&id, LIMIT).await;

    let (_, run) = sys.get(&format!("/api/v1/runs/{id}")).await;
    let last = run["last_seq"].as_u64().unwrap();
    let mut ws = connect(&sys, &format!("?run={id}&since={seen}")).await;
    // The replay ends where the live stream had got to when the client joined; the
    // engine may still be publishing the run's last events, which follow as frames.
    let mut frames = Vec::new();
    while frames
        .last()
        .and_then(|f: &Value| f["seq_to"].as_u64())
        .is_none_or(|to| to < last)
    {
        let frame = next_frame(&mut ws).await;
        assert_eq!(
            frame["type"], "events",
            "a resuming client gets the missed events, not a snapshot"
        );
        frames.push(frame);
    }
    assert_eq!(assert_contiguous(&frames, seen), last);
    // Coalesced, the missed events still end every task in its stored state.
    let events: Vec<&Value> = frames
        .iter()
        .flat_map(|f| f["events"].as_array().unwrap())
        .collect();
    for t in run["tasks"].as_array().unwrap() {
        let latest = events
            .iter()
            .rfind(|e| e["kind"] == "task" && e["task_id"] == t["id"]);
        if let Some(e) = latest {
            assert_eq!(e["state"], t["state"], "{e}");
        }
    }
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

/// Runs one statement on the test system's store, behind the server's back.
async fn execute(sys: &TestSystem, sql: &str) {
    if sys.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&sys.db_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&sys.db_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_is_told_why_when_the_store_cannot_be_read() {
    let sys = TestSystem::start().await;
    let id = sys
        .submit(&json!({"name": "r", "tasks": [{"id": "a", "handler": "noop"}]}))
        .await;
    // The run is there, its events are not readable: replaying them fails.
    execute(&sys, "alter table task_events rename to task_events_gone").await;
    let mut ws = connect(&sys, &format!("?run={id}&since=0")).await;
    let frame = next_frame(&mut ws).await;
    assert_eq!(frame["type"], "resync", "{frame}");
    let reason = frame["reason"].as_str().unwrap();
    assert!(reason.contains("could not read"), "{reason}");
    assert!(
        !reason.contains("task_events"),
        "no internals leak: {reason}"
    );
    let msg = tokio::time::timeout(LIMIT, ws.next())
        .await
        .expect("closed in time");
    match msg {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1013, "try again later");
            assert_eq!(frame.reason.as_str(), reason);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    execute(&sys, "alter table task_events_gone rename to task_events").await;
    sys.shutdown().await;
}

/// Where a state lies in a task's lifecycle; without retries, a client must never see a
/// task move back.
fn rank(state: &str) -> u8 {
    match state {
        "pending" | "ready" | "waiting" => 0,
        "queued" => 1,
        "running" => 2,
        _ => 3,
    }
}

/// The parts of a frame a follower reads (fifty of them read every frame, so no more).
#[derive(serde::Deserialize)]
struct Lite {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<u64>,
    seq_from: Option<u64>,
    seq_to: Option<u64>,
    #[serde(default)]
    events: Vec<LiteEvent>,
    run: Option<LiteRun>,
}

#[derive(serde::Deserialize)]
struct LiteRun {
    counts: Option<std::collections::HashMap<String, u64>>,
    #[serde(default)]
    tasks: Vec<LiteTask>,
}

#[derive(serde::Deserialize)]
struct LiteTask {
    id: String,
    state: String,
}

#[derive(serde::Deserialize)]
struct LiteEvent {
    kind: String,
    seq: Option<u64>,
    task_id: Option<String>,
    state: Option<String>,
}

/// One client's view of a run, folded from its snapshot and frames.
#[derive(Default)]
struct Follower {
    tasks: std::collections::HashMap<String, u8>,
    cursor: u64,
    finished: bool,
    resyncs: u32,
    problems: Vec<String>,
}

impl Follower {
    fn apply(&mut self, text: &str) {
        let f: Lite = serde_json::from_str(text).unwrap();
        match f.kind.as_str() {
            "snapshot" => {
                self.cursor = f.seq.unwrap();
                for t in f.run.into_iter().flat_map(|r| r.tasks) {
                    self.tasks.insert(t.id, rank(&t.state));
                }
            }
            "events" => {
                if let (Some(lo), Some(hi)) = (f.seq_from, f.seq_to) {
                    if lo != self.cursor + 1 {
                        self.problems
                            .push(format!("frame {lo}..={hi} after {}", self.cursor));
                    }
                    self.cursor = hi;
                }
                for e in f.events {
                    match (e.kind.as_str(), e.task_id, e.state) {
                        ("task", Some(id), Some(state)) => {
                            let to = rank(&state);
                            let from = self.tasks.insert(id.clone(), to).unwrap_or(0);
                            if to < from || (to == from && to == 3) {
                                self.problems
                                    .push(format!("{id} went {from} → {state} (seq {:?})", e.seq));
                            }
                        }
                        ("run", _, Some(state)) if state != "running" => self.finished = true,
                        _ => {}
                    }
                }
            }
            "resync" => {
                self.resyncs += 1;
                let v: Value = serde_json::from_str(text).unwrap_or_default();
                self.problems.push(format!("resync: {}", v["reason"]));
            }
            other => self.problems.push(format!("unexpected frame {other}")),
        }
    }
}

/// Follows run `id` to its end; with `drop_after`, leaves after that many frames and
/// comes back with `since`.
async fn follow_to_the_end(
    base: String,
    id: String,
    tasks: usize,
    drop_after: Option<usize>,
) -> Follower {
    let url = |q: String| format!("{}/api/v1/ws?run={id}{q}", base.replace("http://", "ws://"));
    let mut f = Follower::default();
    let (mut ws, _) = tokio_tungstenite::connect_async(url(String::new()))
        .await
        .unwrap();
    let mut frames = 0;
    loop {
        let msg = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("a frame in time");
        let Some(Ok(msg)) = msg else {
            f.problems.push(format!("connection dropped: {msg:?}"));
            return f;
        };
        let Message::Text(text) = msg else { continue };
        f.apply(&text);
        if frames == 0 {
            // The snapshot carries the first tasks; the rest have not started, as its
            // counts say: queued, or still pending while a wide run goes out in slices.
            let unseen = (0..tasks)
                .filter(|i| !f.tasks.contains_key(&format!("t{i}")))
                .count();
            let counts: Lite = serde_json::from_str(&text).unwrap();
            let not_started: u64 = counts
                .run
                .and_then(|r| r.counts)
                .map(|c| {
                    ["pending", "ready", "waiting", "queued"]
                        .iter()
                        .filter_map(|s| c.get(*s))
                        .sum()
                })
                .unwrap_or(0);
            assert!(
                not_started >= unseen as u64,
                "{unseen} tasks not in the snapshot, {not_started} not started"
            );
            for i in 0..tasks {
                f.tasks.entry(format!("t{i}")).or_insert(rank("pending"));
            }
        }
        frames += 1;
        if f.finished || f.resyncs > 0 {
            return f;
        }
        if drop_after == Some(frames) {
            let _ = ws.close(None).await;
            let since = format!("&since={}", f.cursor);
            ws = tokio_tungstenite::connect_async(url(since))
                .await
                .unwrap()
                .0;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_of_a_20k_task_run_each_end_with_every_tasks_final_state() {
    const TASKS: usize = 20_000;
    // Small snapshots: fifty clients of a 20,000-task run need not each parse it all.
    let mut sys = TestSystem::start_with(|c| c.max_inline_tasks = 100).await;
    let tasks: Vec<Value> = (0..TASKS)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    let id = sys.submit(&json!({"tasks": tasks})).await;
    // Everyone is subscribed before the first task runs.
    let followers: Vec<_> = (0..50)
        .map(|i| {
            let drop_after = (i == 7).then_some(40);
            tokio::spawn(follow_to_the_end(
                sys.base.clone(),
                id.clone(),
                TASKS,
                drop_after,
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    sys.spawn_worker("default", 200);
    sys.spawn_worker("default", 200);
    let run = sys.wait_run(&id, Duration::from_secs(180)).await;
    assert_eq!(run["counts"]["succeeded"], TASKS);
    let last = run["last_seq"].as_u64().unwrap();
    for (i, f) in followers.into_iter().enumerate() {
        let f = f.await.unwrap();
        assert!(
            f.problems.is_empty(),
            "client {i}: {:?}",
            &f.problems[..f.problems.len().min(5)]
        );
        assert_eq!(f.resyncs, 0, "client {i} was told to resync");
        assert!(f.finished, "client {i} saw the run finish");
        assert_eq!(f.cursor, last, "client {i} accounted for every event");
        assert_eq!(f.tasks.len(), TASKS);
        assert!(
            f.tasks.values().all(|&r| r == rank("succeeded")),
            "client {i} ends with every task succeeded"
        );
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resuming_at_the_same_point_of_a_watched_run_are_served_from_memory_exactly() {
    const TASKS: usize = 3_000;
    let mut sys = TestSystem::start_with(|c| c.max_inline_tasks = 100).await;
    let tasks: Vec<Value> = (0..TASKS)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    let id = sys.submit(&json!({"tasks": tasks})).await;
    // A watcher keeps the run's stream, and so its recent events, alive.
    let mut watcher = connect(&sys, &format!("?run={id}")).await;
    let snapshot = next_frame(&mut watcher).await;
    assert_eq!(snapshot["type"], "snapshot");
    sys.spawn_worker("default", 200);
    // Resume from a point a few hundred events into the run.
    let start = snapshot["seq"].as_u64().unwrap();
    let mut since = start;
    while since < start + 300 {
        let f = next_frame(&mut watcher).await;
        if let Some(to) = f["seq_to"].as_u64() {
            since = to;
        }
    }
    let resumers: Vec<_> = (0..20)
        .map(|_| {
            let base = sys.base.replace("http://", "ws://");
            let id = id.clone();
            tokio::spawn(async move {
                let url = format!("{base}/api/v1/ws?run={id}&since={since}");
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                frames_until_finished(&mut ws).await
            })
        })
        .collect();
    let run = sys.wait_run(&id, LIMIT).await;
    let last = run["last_seq"].as_u64().unwrap();
    for (i, r) in resumers.into_iter().enumerate() {
        let frames = r.await.unwrap();
        // Events kept in memory carry when they were stored; read back from the store,
        // they would not. A frame of counts alone (one cut before the client joined,
        // whose events its replay already had) may come first.
        let first = frames
            .iter()
            .find(|f| f["seq_from"].is_u64())
            .expect("a frame of stored events");
        assert_eq!(
            first["seq_from"].as_u64(),
            Some(since + 1),
            "client {i}: {first}"
        );
        assert!(
            first["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["stored_at_ms"].is_i64()),
            "client {i} was replayed from memory"
        );
        assert_eq!(assert_contiguous(&frames, since), last, "client {i}");
        // Each task's latest event is its final state, none seen twice at its end.
        let mut states = std::collections::HashMap::new();
        for e in events_of(&frames) {
            if e["kind"] == "task" {
                let id = e["task_id"].as_str().unwrap().to_owned();
                let before = states.insert(id.clone(), e["state"].clone());
                assert_ne!(before, Some(json!("succeeded")), "client {i}: {id} twice");
            }
        }
        assert!(
            states.values().all(|s| s == "succeeded"),
            "client {i}: every task it heard of ended succeeded"
        );
    }
    drop(watcher);
    sys.shutdown().await;
}

/// Every frame a client can get (the run's stream in each detail, and the fleet's) is
/// what the document's `WsFrame` says: the WebSocket is an endpoint like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_matches_the_documents_ws_frame() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);
    let (status, doc) = sys.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    let mut root = json!({"$ref": "#/components/schemas/WsFrame"});
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).expect("WsFrame compiles");
    let check = |what: &str, frame: &Value| {
        let errors: Vec<String> = validator
            .iter_errors(frame)
            .map(|e| format!("{e} at {}", e.instance_path))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: a frame the document does not describe:\n{}\nframe: {frame}",
            errors.join("\n")
        );
    };

    let mut fleet = connect(&sys, "").await;
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "a", "handler": "sleep", "input": {"seconds": 0.3}},
            {"id": "b", "handler": "fail", "depends_on": ["a"]},
            {"id": "c", "handler": "echo", "input": {"x": 1}, "depends_on": ["a"]}
        ]}))
        .await;
    let mut streams = Vec::new();
    for query in ["", "&detail=summary", "&tasks=a,c"] {
        let mut ws = connect(&sys, &format!("?run={id}{query}")).await;
        let snapshot = next_frame(&mut ws).await;
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        check(&format!("run stream {query:?}, snapshot"), &snapshot);
        streams.push((query, ws));
    }
    let (_, mut tasks) = streams.remove(0);
    for frame in frames_until_finished(&mut tasks).await {
        check("run stream, events", &frame);
    }
    // The other streams had the same run: whatever they got by now is checked too.
    for (query, mut ws) in streams {
        while let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(500), ws.next()).await
        {
            check(
                &format!("run stream {query:?}"),
                &serde_json::from_str(&t).unwrap(),
            );
        }
    }
    let mut fleet_frames = 0;
    while let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(500), fleet.next()).await
    {
        check("fleet stream", &serde_json::from_str(&t).unwrap());
        fleet_frames += 1;
    }
    assert!(fleet_frames >= 2, "the fleet's snapshot and the run's news");
    sys.shutdown().await;
}

/// Whatever the stream has said is stored, a read of the run shows at once, though the
/// run's document was read (and kept in memory) a moment before the change, and a deleted
/// run is gone at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_the_stream_reports_a_change_shows_the_change() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);
    for round in 0..5 {
        let id = sys
            .submit(&json!({"tasks": [
                {"id": "a", "handler": "sleep", "input": {"seconds": 1}},
            ]}))
            .await;
        // Read while it runs: both shapes of the document are now kept.
        sys.wait_until(&id, LIMIT, |r| r["counts"]["running"] == 1)
            .await;
        let (_, head) = sys.get(&format!("/api/v1/runs/{id}?tasks=false")).await;
        assert_eq!(head["state"], "running", "{head}");
        let mut ws = connect(&sys, &format!("?run={id}")).await;
        loop {
            let frame = next_frame(&mut ws).await;
            if frame["run"]["state"] == "succeeded" {
                break;
            }
        }
        for shape in ["", "?tasks=false"] {
            let (status, run) = sys.get(&format!("/api/v1/runs/{id}{shape}")).await;
            assert_eq!(status, 200, "{run}");
            assert_eq!(
                (run["state"].as_str(), run["counts"]["succeeded"].as_u64()),
                (Some("succeeded"), Some(1)),
                "round {round}, GET {shape}: the stream said succeeded, the read {run}"
            );
        }
        let r = sys
            .http
            .delete(sys.url(&format!("/api/v1/runs/{id}")))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        for shape in ["", "?tasks=false"] {
            let (status, body) = sys.get(&format!("/api/v1/runs/{id}{shape}")).await;
            assert_eq!(status, 404, "deleted, yet GET {shape} answered {body}");
        }
    }
    sys.shutdown().await;
}

/// A stream filtered to some tasks opens with exactly those the run has, in id order,
/// whatever order they were named or submitted in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_filtered_stream_opens_with_the_named_tasks_the_run_has() {
    let sys = TestSystem::start().await;
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "c", "handler": "noop"},
            {"id": "b", "handler": "noop"},
            {"id": "a", "handler": "noop"}
        ]}))
        .await;
    let mut ws = connect(&sys, &format!("?run={id}&tasks=c,zz,a&tasks=c")).await;
    let snapshot = next_frame(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let ids: Vec<&str> = snapshot["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"], "{snapshot}");
    sys.shutdown().await;
}
