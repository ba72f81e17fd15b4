//! No single request or client can stall or exhaust the API (GitHub issue #13): bad bytes
//! in any parameter of any route are a 4xx, a big run's tasks come in pages, WebSocket
//! connections are capped, and every other request is bounded in time. Against a real
//! server on the suite's store (`APEX_TEST_STORE`).

mod common;

use common::TestSystem;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(60);
/// The document every route is read from, so a new route is covered without a new test.
const OPENAPI: &str = include_str!("../openapi.json");

/// One documented operation and the names of its parameters.
#[derive(Debug)]
struct Operation {
    method: reqwest::Method,
    path: String,
    path_params: Vec<String>,
    query_params: Vec<String>,
}

fn operations() -> Vec<Operation> {
    let doc: Value = serde_json::from_str(OPENAPI).unwrap();
    let shared = &doc["components"]["parameters"];
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut o = Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                path_params: Vec::new(),
                query_params: Vec::new(),
            };
            for p in op["parameters"].as_array().into_iter().flatten() {
                let p = match p["$ref"].as_str() {
                    Some(r) => &shared[r.rsplit('/').next().unwrap()],
                    None => p,
                };
                let name = p["name"].as_str().unwrap().to_owned();
                match p["in"].as_str() {
                    Some("path") => o.path_params.push(name),
                    Some("query") => o.query_params.push(name),
                    _ => {}
                }
            }
            ops.push(o);
        }
    }
    ops
}

impl Operation {
    /// The URL path with every path parameter `x` but `bad`, which is `value`.
    fn path_with(&self, bad: Option<&str>, value: &str) -> String {
        let mut path = self.path.clone();
        for p in &self.path_params {
            let v = if Some(p.as_str()) == bad { value } else { "x" };
            path = path.replace(&format!("{{{p}}}"), v);
        }
        path
    }
}

/// Sends `method path` (with a JSON body for methods that take one); answers status
/// and JSON body.
async fn send(sys: &TestSystem, method: &reqwest::Method, path: &str) -> (u16, Value) {
    let mut req = sys.http.request(method.clone(), sys.url(path));
    if matches!(*method, reqwest::Method::POST | reqwest::Method::PUT) {
        req = req.header("content-type", "application/json").body("{}");
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_in_any_parameter_of_any_route_get_a_4xx_naming_it() {
    let sys = TestSystem::start().await;
    let ten_kb = "x".repeat(10 * 1024);
    let bad_values = [
        ("a NUL", "a%00b"),
        ("a newline", "a%0Ab"),
        ("10 KB", ten_kb.as_str()),
        ("bytes that are not UTF-8", "a%FFb"),
    ];
    let ops = operations();
    assert!(ops.len() >= 20, "the document lists the routes: {ops:?}");
    let mut checked = 0;
    for op in &ops {
        // Every documented parameter, and one no route knows.
        let params = op
            .path_params
            .iter()
            .map(|p| (p.as_str(), true))
            .chain(op.query_params.iter().map(|p| (p.as_str(), false)))
            .chain([("zz", false)]);
        for (name, in_path) in params {
            for (what, value) in &bad_values {
                let path = if in_path {
                    op.path_with(Some(name), value)
                } else {
                    format!("{}?{name}={value}", op.path_with(None, ""))
                };
                let (status, body) = send(&sys, &op.method, &path).await;
                let said = format!(
                    "{} {} with {what} in {name}: {status} {body}",
                    op.method, op.path
                );
                assert!((400..500).contains(&status), "{said}");
                assert_eq!(body["error"]["code"], "bad_request", "{said}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains(&format!("\"{name}\"")), "{said}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 150, "{checked}");

    // The schema fuzzer's case, on the store that gave a 500.
    let (status, body) = sys.get("/api/v1/runs?before=A%00b").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    // Long ids within the bound are ordinary requests.
    let long = "r".repeat(1024);
    assert_eq!(sys.get(&format!("/api/v1/runs/{long}")).await.0, 404);
    assert_eq!(sys.get(&format!("/api/v1/runs?before={long}")).await.0, 200);
    // Many parameters, each within the bound, still make a URI too long.
    let many: Vec<String> = (0..20)
        .map(|i| format!("p{i}={}", "y".repeat(1000)))
        .collect();
    let (status, body) = sys.get(&format!("/api/v1/runs?{}", many.join("&"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (414, Some("uri_too_long")),
        "{body}"
    );
    sys.shutdown().await;
}

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
    // A cursor naming no task of the run: well formed, so 404 rather than 400.
    let (s, body) = sys
        .get(&format!("/api/v1/runs/{id}/tasks?after=nope"))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("after"),
        "{body}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_the_cap_are_refused_until_one_closes() {
    let sys = TestSystem::start_with(|c| c.max_websockets = 2).await;
    let url = format!("{}/api/v1/ws", sys.base.replace("http://", "ws://"));
    let mut open = Vec::new();
    for _ in 0..2 {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        assert_eq!(next_text(&mut ws).await["type"], "snapshot");
        open.push(ws);
    }
    let refused = tokio_tungstenite::connect_async(&url)
        .await
        .expect_err("a third connection is over the cap");
    let tokio_tungstenite::tungstenite::Error::Http(answer) = refused else {
        panic!("refused with an HTTP answer, not {refused}");
    };
    assert_eq!(answer.status(), 503);
    let body: Value = serde_json::from_slice(answer.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2 WebSocket connections"),
        "{body}"
    );
    // The REST API is not affected.
    assert_eq!(sys.get("/api/v1/runs").await.0, 200);

    // A closed connection gives its slot back.
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let deadline = Instant::now() + LIMIT;
    let mut ws = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => break ws,
            Err(e) => assert!(Instant::now() < deadline, "no slot freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(next_text(&mut ws).await["type"], "snapshot");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlasts_the_timeout_gets_503_but_a_websocket_lives_on() {
    let sys = TestSystem::start_with(|c| c.request_timeout_s = 1.0).await;
    let ws_url = format!("{}/api/v1/ws", sys.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    assert_eq!(next_text(&mut ws).await["type"], "snapshot");

    // A client that sends its headers and then trickles its body holds the request open.
    let started = Instant::now();
    let addr = sys.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/validate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\nConnection: close\r\n\r\n{{"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(LIMIT, tcp.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 1 s"),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(20),
        "{took:?}"
    );

    // The WebSocket, open all along, still carries what happens next.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = sys
        .submit(&json!({"tasks": [{"id": "a", "handler": "noop"}]}))
        .await;
    loop {
        let frame = next_text(&mut ws).await;
        let created = frame["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == "run_created" && e["run"]["id"] == id.as_str());
        if created {
            break;
        }
    }
    sys.shutdown().await;
}
