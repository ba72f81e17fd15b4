//! No single request or client can stall or exhaust the API (GitHub issue #13): a big
//! run's tasks come in pages. Against a real server on the suite's store
//! (`APEX_TEST_STORE`).

mod common;

use common::TestSystem;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);
/// 25 tasks, every third waiting on the one before it: with no worker, `pending` and
/// `queued` tasks interleave.
fn interleaved_run() -> Value {
    let tasks: Vec<Value> = (0..25)
        .map(|i| {
            let deps: Vec<String> = if i % 3 == 2 {
                vec![format!("t{:02}", i - 1)]
            } else {
                vec![]
            };
            json!({"id": format!("t{i:02}"), "handler": "noop", "depends_on": deps})
        })
        .collect();
    json!({"name": "big", "tasks": tasks})
}

fn ids(tasks: &Value) -> Vec<String> {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `/tasks` with `query`, following `next_after`; answers the ids and the
/// number of pages.
async fn all_pages(sys: &TestSystem, run: &str, query: &str) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for pages in 1.. {
        let cursor = after
            .as_ref()
            .map_or(String::new(), |a| format!("&after={a}"));
        let (status, page) = sys
            .get(&format!("/api/v1/runs/{run}/tasks?{query}{cursor}"))
            .await;
        assert_eq!(status, 200, "{page}");
        out.extend(ids(&page["tasks"]));
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return (out, pages),
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_run_is_answered_in_pages_everywhere() {
    let mut sys = TestSystem::start_with(|c| c.max_inline_tasks = 10).await;
    let id = sys.submit(&interleaved_run()).await;
    let all: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    let pending: Vec<String> = (0..25)
        .filter(|i| i % 3 == 2)
        .map(|i| format!("t{i:02}"))
        .collect();
    let run = sys
        .wait_until(&id, LIMIT, |r| r["counts"]["queued"] == 17)
        .await;

    // The run's document: the first page, the cursor, and exact counts.
    assert_eq!(ids(&run["tasks"]), all[..10]);
    assert_eq!(run["tasks_next_after"], "t09");
    assert_eq!(
        (
            run["task_count"].as_u64(),
            run["counts"]["pending"].as_u64()
        ),
        (Some(25), Some(8))
    );

    // Pages in run order, however they are cut, the same task objects as the document.
    assert_eq!(all_pages(&sys, &id, "").await, (all.clone(), 1));
    assert_eq!(all_pages(&sys, &id, "limit=7").await, (all.clone(), 4));
    assert_eq!(
        all_pages(&sys, &id, "limit=5").await,
        (all.clone(), 5),
        "no empty last page"
    );
    assert_eq!(
        all_pages(&sys, &id, "state=pending&limit=3").await,
        (pending.clone(), 3)
    );
    assert_eq!(
        all_pages(&sys, &id, "state=queued,pending&limit=25")
            .await
            .0,
        all
    );
    assert_eq!(all_pages(&sys, &id, "state=failed").await, (vec![], 1));
    let (_, page) = sys.get(&format!("/api/v1/runs/{id}/tasks?limit=10")).await;
    assert_eq!(page["tasks"], run["tasks"]);
    assert_eq!(page["next_after"], "t09");
    let (_, page) = sys.get(&format!("/api/v1/runs/{id}/tasks?after=t23")).await;
    assert_eq!(
        (ids(&page["tasks"]), &page["next_after"]),
        (vec!["t24".to_owned()], &Value::Null)
    );

    for (query, status, says) in [
        ("state=running,sideways", 400, "\"sideways\""),
        ("state=", 400, "unknown task state"),
        ("limit=5001", 400, "limit"),
        ("limit=0", 400, "limit"),
        ("after=nope", 400, "after"),
        ("colour=red", 400, "colour"),
    ] {
        let (s, body) = sys.get(&format!("/api/v1/runs/{id}/tasks?{query}")).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (status, Some("bad_request")),
            "{query}: {body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    let (s, body) = sys.get("/api/v1/runs/r_nope/tasks").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // The live snapshot is bounded the same way.
    let url = format!(
        "{}/api/v1/ws?run={id}",
        sys.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let snapshot = next_text(&mut ws).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(ids(&snapshot["run"]["tasks"]), all[..10]);
    assert_eq!(snapshot["run"]["tasks_next_after"], "t09");
    drop(ws);

    // The CLI follows the pages: `run show --json` is the whole run.
    let shown = apex(&["run", "show", &id, "--json", "--server", &sys.base]).await;
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let mut got = ids(&shown["tasks"]);
    got.sort();
    assert_eq!(got, all);
    assert!(shown.get("tasks_next_after").is_none(), "{shown}");

    // And so does `watch`, which sums up every task of the run.
    sys.spawn_worker("default", 10);
    sys.wait_run(&id, LIMIT).await;
    let watched = apex(&["watch", &id, "--server", &sys.base]).await;
    assert!(watched.contains(": 25 succeeded"), "{watched}");
    sys.shutdown().await;
}

/// Runs the `apex` binary to the end off the runtime; answers its standard output.
async fn apex(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(&args)
            .env_remove("APEX_SERVER")
            .env_remove("APEX_API_TOKEN")
            .env("NO_COLOR", "1")
            .output()
            .expect("apex runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    })
    .await
    .unwrap()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Socket) -> Value {
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
