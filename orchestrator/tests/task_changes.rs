//! `GET /runs/{id}/tasks?since=`: a viewer that read a run's tasks once and then only
//! what changed since holds exactly what a full read answers, through retries (some
//! waiting their turn under `max_parallel`), failures and the skips they cause, a
//! spawn that rewrites a waiting task's `depends_on`, and a cancel.

mod common;

use common::TestSystem;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);
/// Small pages, so that reads of changes span several.
const PAGE: u32 = 7;

/// A handler that spawns a quick child and one that runs until cancelled.
const FAN_HANDLERS: &str = r#"from apex_worker import Spawn, handler


@handler
async def fan(input, upstream, ctx):
    return Spawn({"children": 2}, children=[
        {"id": "fan_quick", "handler": "noop"},
        {"id": "fan_long", "handler": "sleep", "input": {"seconds": 600}},
    ])
"#;

fn fan_worker(sys: &mut TestSystem) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique("handlers"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fan_handlers.py"), FAN_HANDLERS).unwrap();
    let path = dir.to_str().unwrap().to_owned();
    sys.spawn_worker_with(
        "default",
        8,
        &["--import", "fan_handlers"],
        &[("PYTHONPATH", &path)],
    );
    dir
}

/// Every task of the run as a read (all of it, or what changed since `since`) answers
/// it, by id, and the cursor of its first page.
async fn read(sys: &TestSystem, run: &str, since: Option<u64>) -> (BTreeMap<String, Value>, u64) {
    let mut tasks = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut cursor = None;
    loop {
        let mut path = format!("/api/v1/runs/{run}/tasks?limit={PAGE}");
        if let Some(s) = since {
            path += &format!("&since={s}");
        }
        if let Some(a) = &after {
            path += &format!("&after={a}");
        }
        let (status, page) = sys.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        cursor.get_or_insert(page["next_since"].as_u64().expect("next_since"));
        for t in page["tasks"].as_array().unwrap() {
            tasks.insert(t["id"].as_str().unwrap().to_owned(), t.clone());
        }
        match page["next_after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => return (tasks, cursor.unwrap()),
        }
    }
}

/// What a viewer holds: a full read, then changes merged in.
struct Viewer {
    tasks: BTreeMap<String, Value>,
    cursor: u64,
}

impl Viewer {
    async fn open(sys: &TestSystem, run: &str) -> Self {
        let (tasks, cursor) = read(sys, run, None).await;
        Self { tasks, cursor }
    }

    /// Reads what changed and merges it; answers how many tasks the read carried.
    async fn catch_up(&mut self, sys: &TestSystem, run: &str) -> usize {
        let (changed, cursor) = read(sys, run, Some(self.cursor)).await;
        assert!(
            cursor >= self.cursor,
            "the cursor went back: {cursor} < {}",
            self.cursor
        );
        self.cursor = cursor;
        let n = changed.len();
        self.tasks.extend(changed);
        n
    }

    /// Catches up, then checks it holds what a full read answers.
    async fn check(&mut self, sys: &TestSystem, run: &str, when: &str) -> usize {
        let n = self.catch_up(sys, run).await;
        let (full, _) = read(sys, run, None).await;
        let ids = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(ids(&self.tasks), ids(&full), "{when}: task ids differ");
        for (id, t) in &full {
            assert_eq!(&self.tasks[id], t, "{when}: task {id} differs");
        }
        n
    }
}

fn count(run: &Value, state: &str) -> u64 {
    run["counts"][state].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_since_a_read_keep_a_viewer_exact_through_retries_failures_spawns_and_cancel() {
    let mut sys = TestSystem::start().await;
    let dir = fan_worker(&mut sys);
    let mut tasks = vec![
        // Late enough that the viewer's first read is long done when `fan` spawns.
        json!({"id": "gate", "handler": "sleep", "input": {"seconds": 0.5}}),
        json!({"id": "fan", "handler": "fan", "depends_on": ["gate"]}),
        // Waits on `fan`, then on its children too: the spawn rewrites its spec, and one
        // child runs until cancelled, so nothing else writes its row before the check.
        json!({"id": "after_fan", "handler": "noop", "depends_on": ["fan"]}),
        json!({"id": "long", "handler": "sleep", "input": {"seconds": 600}}),
    ];
    for i in 0..4 {
        tasks.push(json!({"id": format!("flaky{i}"), "handler": "fail",
            "input": {"until_attempt": 3}, "retries": 3, "retry_backoff_s": 0.05}));
    }
    for i in 0..2 {
        tasks.push(json!({"id": format!("bad{i}"), "handler": "fail", "retries": 0}));
        tasks.push(json!({"id": format!("after_bad{i}"), "handler": "noop",
            "depends_on": [format!("bad{i}")]}));
    }
    for i in 0..16 {
        tasks.push(json!({"id": format!("quick{i}"), "handler": "sleep",
            "input": {"seconds": 0.05 * f64::from(i % 4)}}));
    }
    // `max_parallel` gates the run: a retry whose backoff passed waits its turn, a row
    // change that is no event.
    let id = sys
        .submit(&json!({"name": "changes", "max_parallel": 4, "tasks": tasks}))
        .await;

    let mut viewer = Viewer::open(&sys, &id).await;
    // Changes while it runs, read as a viewer would, until all that can finish has.
    let deadline = Instant::now() + LIMIT;
    loop {
        viewer.catch_up(&sys, &id).await;
        let (_, run) = sys.get(&format!("/api/v1/runs/{id}")).await;
        let settled = count(&run, "running") == 2
            && count(&run, "pending") == 1
            && count(&run, "queued") + count(&run, "ready") == 0;
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not settle: {run}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    viewer.check(&sys, &id, "settled").await;
    let after_fan = &viewer.tasks["after_fan"]["depends_on"];
    assert_eq!(after_fan.as_array().map(Vec::len), Some(3), "{after_fan}");
    for i in 0..4 {
        let t = &viewer.tasks[&format!("flaky{i}")];
        assert_eq!(
            (t["state"].as_str(), t["attempt"].as_u64()),
            (Some("succeeded"), Some(3)),
            "{t}"
        );
    }
    // Nothing changes now: a read of changes carries the last commit's rows at most,
    // not the run.
    let again = viewer.check(&sys, &id, "settled, read again").await;
    assert!(
        again < viewer.tasks.len() / 2,
        "{again} of {} tasks",
        viewer.tasks.len()
    );

    let (status, body) = sys
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert!(matches!(status, 200 | 202), "{status}: {body}");
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "cancelled", "{run:#}");
    viewer.check(&sys, &id, "cancelled").await;
    assert_eq!(viewer.tasks["long"]["state"], "cancelled");
    assert_eq!(viewer.tasks["after_bad0"]["state"], "skipped");
    assert_eq!(viewer.tasks["bad1"]["state"], "failed");

    sys.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_is_not_one_of_the_runs_is_refused_with_a_json_error() {
    let sys = TestSystem::start().await;
    let id = sys
        .submit(&json!({"tasks": [{"id": "a", "handler": "noop"}]}))
        .await;
    let (_, page) = sys.get(&format!("/api/v1/runs/{id}/tasks")).await;
    let cursor = page["next_since"].as_u64().expect("next_since");
    let (status, page) = sys
        .get(&format!("/api/v1/runs/{id}/tasks?since={cursor}"))
        .await;
    assert_eq!(status, 200, "{page}");
    for bad in ["-1", "x", "1.5", "99999999999999999999"] {
        let (status, body) = sys
            .get(&format!("/api/v1/runs/{id}/tasks?since={bad}"))
            .await;
        assert_eq!(status, 400, "since={bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "since={bad}: {body}");
    }
    // Well formed, but ahead of anything this run has written.
    let ahead = cursor + 1_000;
    let (status, body) = sys
        .get(&format!("/api/v1/runs/{id}/tasks?since={ahead}"))
        .await;
    assert_eq!(status, 409, "since={ahead}: {body}");
    assert_eq!(body["error"]["code"], "conflict", "since={ahead}: {body}");
    let (status, body) = sys.get("/api/v1/runs/nope/tasks?since=0").await;
    assert_eq!(status, 404, "{body}");
    sys.shutdown().await;
}
