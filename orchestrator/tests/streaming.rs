//! Streamed answers end to end: a real worker calls the local fake provider
//! (`apex_worker.testing.fake_providers`), the orchestrator relays its `text_delta`s to
//! the run's subscribers, and a client that connects mid-answer gets the whole text.

mod common;

use common::TestSystem;
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The fake provider server, which writes the providers file declaring it (`openai`).
struct FakeProvider {
    child: Child,
    providers: PathBuf,
}

impl FakeProvider {
    /// Streams each word of its answer `chunk_delay_s` after the previous one.
    fn start(chunk_delay_s: f64) -> Self {
        let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        let providers =
            std::env::temp_dir().join(format!("{}.json", common::unique("fake_providers")));
        let mut child = Command::new(python)
            .args(["-m", "apex_worker.testing.fake_providers", "--port", "0"])
            .args(["--chunk-delay-s", &chunk_delay_s.to_string()])
            .arg("--providers-file")
            .arg(&providers)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fake provider server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on "), "{line:?}");
        Self { child, providers }
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.providers);
    }
}

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

/// A task's answer as one client saw it: the text so far it was sent on joining
/// (`answer`), then every delta.
#[derive(Debug, Default)]
struct Seen {
    text: String,
    /// The text the first `answer` event carried, if one came.
    joined_with: Option<String>,
    deltas: usize,
}

/// Reads frames until task `task` succeeds (or, with `until_len`, until that much
/// text came), adding its streamed text to `seen`.
async fn watch_answer(ws: &mut Socket, task: &str, seen: &mut Seen, until_len: Option<usize>) {
    loop {
        let frame = next_frame(ws).await;
        for e in frame["events"].as_array().into_iter().flatten() {
            if e["task_id"] != task {
                continue;
            }
            match e["kind"].as_str() {
                Some("answer") => {
                    assert_eq!(e["dropped_bytes"], 0);
                    let text = e["text"].as_str().unwrap();
                    seen.joined_with.get_or_insert_with(|| text.to_owned());
                    seen.text = text.to_owned();
                }
                Some("progress") => {
                    if let Some(d) = e["text_delta"].as_str() {
                        seen.text.push_str(d);
                        seen.deltas += 1;
                    }
                }
                Some("task") if e["state"] == "succeeded" => return,
                _ => {}
            }
        }
        if until_len.is_some_and(|n| seen.text.len() >= n) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_mid_answer_gets_the_whole_text_and_task_show_follow_prints_it() {
    // About 40 words, one every 80 ms: the answer takes three seconds to stream.
    let fake = FakeProvider::start(0.08);
    let providers = fake.providers.clone();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    let file = fake.providers.to_str().unwrap().to_owned();
    sys.spawn_worker_with("default", 4, &["--providers-file", &file], &[]);
    let prompt = "Tell me how the moon pulls the oceans of the earth into two bulges that \
                  travel around the planet every day and why the sun makes the tides stronger";
    let id = sys
        .submit(&json!({
            "agents": {"explainer": {"provider": "openai", "model": "fake-stream"}},
            "tasks": [{"id": "answer", "handler": "agent", "agent": "explainer",
                       "input": {"prompt": prompt}}],
        }))
        .await;
    let expected_len = format!("fake-stream heard: {prompt}").len();

    // `apex task show --follow`, started before the answer begins.
    let follow = Command::new(env!("CARGO_BIN_EXE_apex"))
        .args([
            "task", "show", &id, "answer", "--follow", "--server", &sys.base,
        ])
        .env_remove("APEX_API_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apex runs");

    // An early client, from the start, until it has seen half the answer.
    let mut early = connect(&sys, &format!("?run={id}")).await;
    let mut first = Seen::default();
    watch_answer(&mut early, "answer", &mut first, Some(expected_len / 2)).await;
    assert!(
        first.text.len() < expected_len,
        "still streaming: {first:?}"
    );
    // A client joining now gets the text so far, then the rest.
    let mut late = connect(&sys, &format!("?run={id}")).await;
    assert_eq!(next_frame(&mut late).await["type"], "snapshot");
    let mut joined = Seen::default();
    watch_answer(&mut late, "answer", &mut joined, None).await;
    watch_answer(&mut early, "answer", &mut first, None).await;

    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let task = sys.task(&id, "answer").await;
    let text = task["output"]["text"].as_str().unwrap().to_owned();
    assert_eq!(text.len(), expected_len, "{text}");
    let so_far = joined
        .joined_with
        .clone()
        .expect("an answer event on joining");
    assert!(
        so_far.len() >= expected_len / 2,
        "joined mid-answer: {so_far:?}"
    );
    assert!(
        joined.deltas > 0,
        "and then got the rest as deltas: {joined:?}"
    );
    assert_eq!(joined.text, text, "the late client has the whole text");
    assert_eq!(first.text, text, "so has the client that watched it all");

    let out = tokio::task::spawn_blocking(move || {
        let mut follow = follow;
        let mut stdout = String::new();
        follow
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let status = follow.wait().unwrap();
        (status, stdout)
    })
    .await
    .unwrap();
    assert!(out.0.success(), "{out:?}");
    assert_eq!(out.1.trim_end(), text, "--follow prints the answer");
    sys.shutdown().await;
}
