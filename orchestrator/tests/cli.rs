//! The `apex` client CLI, run as the real binary against a whole system: an in-process
//! orchestrator on a fresh Postgres database and Redis prefix, and real `apex-worker`
//! processes. Each test checks what a person reads and what a script reads (the exit
//! code, the `--json` shape).

mod common;

use common::TestSystem;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// What one run of the binary did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// A failure must be one `error:` line (plus listed problems), never a panic or a
    /// Rust debug dump.
    fn assert_clean_failure(&self, code: i32, says: &str) {
        assert_eq!(self.code, code, "{self:?}");
        let first = self.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{self:?}");
        assert!(first.contains(says), "expected {says:?} in {first:?}");
        for line in self.stderr.lines().skip(1) {
            assert!(
                line.starts_with("  - ["),
                "only problem lines follow: {self:?}"
            );
        }
        for bad in ["panicked", "RUST_BACKTRACE", "Error {", "Os {", "kind:"] {
            assert!(!self.stderr.contains(bad), "{bad:?} in {self:?}");
        }
    }
}

/// The `apex` binary with a clean environment: no server or token from the caller's
/// shell, no colour.
fn apex_command() -> StdCommand {
    let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("apex"));
    cmd.env_remove("APEX_SERVER")
        .env_remove("APEX_API_TOKEN")
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE");
    cmd
}

/// Runs `apex ARGS` to the end, off the async runtime (the server shares it).
async fn apex(args: &[&str]) -> Ran {
    apex_with_stdin(args, None).await
}

async fn apex_with_stdin(args: &[&str], stdin: Option<Vec<u8>>) -> Ran {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = assert_cmd::Command::from_std(apex_command());
        cmd.args(&args).timeout(LIMIT);
        if let Some(input) = stdin {
            cmd.write_stdin(input);
        }
        let out = cmd.output().expect("apex runs");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// Waits for a spawned `apex` process to exit; answers what it did.
async fn finish(child: Child) -> Ran {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + LIMIT;
        let mut child = child;
        loop {
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                return Ran {
                    code: out.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
}

/// A scratch directory for DAG files and handler modules, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(common::unique("apex_cli"));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    fn dag(&self, name: &str, spec: &Value) -> String {
        self.file(name, &spec.to_string())
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chain() -> Value {
    json!({"name": "cli-chain", "tasks": [
        {"id": "plan", "handler": "echo", "input": {"topic": "tides"}},
        // Long enough that a watch started right after the submission sees it run.
        {"id": "research", "handler": "sleep", "input": {"seconds": 1.0}, "depends_on": ["plan"]},
        {"id": "report", "handler": "sum", "depends_on": ["research"]},
    ]})
}

/// Listed out of order on purpose: depth, not submission order, decides `run show`.
fn failing() -> Value {
    json!({"name": "cli-failing", "tasks": [
        {"id": "summary", "handler": "echo", "depends_on": ["draft"]},
        {"id": "draft", "handler": "echo", "depends_on": ["root"]},
        // Slow, so that a watch started after the submission sees every failure live.
        {"id": "root", "handler": "sleep", "input": {"seconds": 1.5}},
        {"id": "boom", "handler": "fail", "input": {"message": "kaboom"}, "depends_on": ["root"],
         "retries": 1, "retry_backoff_s": 0.1},
        {"id": "after", "handler": "echo", "depends_on": ["boom"]},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_with_watch_follows_a_run_to_success_and_exits_0() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let files = Scratch::new();
    let dag = files.dag("chain.json", &chain());

    let ran = apex(&["submit", &dag, "--watch", "--server", &sys.base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("submitted run "), "{ran:?}");
    assert!(ran.stdout.contains("research succeeded in"), "{ran:?}");
    let last = ran.stdout.lines().last().unwrap();
    assert!(
        last.starts_with("run ") && last.contains(" succeeded in "),
        "{last}"
    );
    assert!(last.ends_with("3 succeeded"), "{last}");

    // Without --watch: only the id, for `ID=$(apex submit …)`; then watch it by id.
    let ran = apex(&["submit", &dag, "--server", &sys.base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let id = ran.stdout.trim();
    assert_eq!(ran.stdout.lines().count(), 1, "{ran:?}");
    let watched = apex(&["watch", id, "--server", &sys.base]).await;
    assert_eq!(watched.code, 0, "{watched:?}");
    assert!(
        watched.stdout.contains(&format!("run {id} succeeded")),
        "{watched:?}"
    );

    // The same from standard input, with the server from the environment.
    let piped = tokio::task::spawn_blocking({
        let base = sys.base.clone();
        move || {
            assert_cmd::Command::from_std(apex_command())
                .args(["submit", "-", "--json"])
                .env("APEX_SERVER", base)
                .write_stdin(chain().to_string())
                .timeout(LIMIT)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(piped.status.code(), Some(0));
    let summary: Value = serde_json::from_slice(&piped.stdout).unwrap();
    assert_eq!(summary["task_count"], 3);
    assert_eq!(summary["name"], "cli-chain");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_a_failing_run_exits_1_and_shows_the_failure() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let files = Scratch::new();
    let dag = files.dag("failing.json", &failing());
    let submitted = apex(&["submit", &dag, "--json", "--server", &sys.base]).await;
    assert_eq!(submitted.code, 0, "{submitted:?}");
    let id = submitted.json()["id"].as_str().unwrap().to_owned();

    let ran = apex(&["watch", &id, "--server", &sys.base]).await;
    assert_eq!(ran.code, 1, "a failed run exits 1: {ran:?}");
    assert!(
        ran.stdout
            .contains("boom failed attempt 1/2: HandlerFailed: kaboom; retrying"),
        "{ran:?}"
    );
    assert!(
        ran.stdout
            .contains("boom failed (attempt 2/2): HandlerFailed: kaboom"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("after skipped"), "{ran:?}");
    assert!(ran.stdout.contains(&format!("run {id} failed")), "{ran:?}");
    assert!(
        ran.stdout.contains(&format!("details: apex run show {id}")),
        "{ran:?}"
    );

    // --json: a snapshot line, then one event per line, ending with the run's outcome.
    let ran = apex(&["watch", &id, "--json", "--server", &sys.base]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    let first: Value = serde_json::from_str(ran.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "snapshot");
    assert_eq!(first["run"]["state"], "failed");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_show_orders_tasks_by_depth_and_highlights_failures() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys.submit(&failing()).await;
    sys.wait_run(&id, LIMIT).await;

    let ran = apex(&["run", "show", &id, "--server", &sys.base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let out = &ran.stdout;
    assert!(
        out.starts_with(&format!("run {id}  cli-failing  failed")),
        "{out}"
    );
    assert!(
        out.contains("5 tasks: 3 succeeded, 1 failed, 1 skipped"),
        "{out}"
    );
    // Rows by depth, then submission order; deeper ones indented under a tree mark.
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("TASK"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let state_column = out
        .lines()
        .find(|l| l.starts_with("TASK"))
        .unwrap()
        .find("STATE")
        .unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r[..state_column].trim_end()).collect();
    assert_eq!(
        names,
        ["root", "└ draft", "└ boom", "  └ summary", "  └ after"],
        "{out}"
    );
    let boom = rows.iter().find(|r| r.contains("boom")).unwrap();
    assert!(
        boom.contains("failed") && boom.contains("2/2") && boom.contains("root"),
        "{boom}"
    );
    assert!(
        out.contains("boom (attempt 2/2): HandlerFailed: kaboom"),
        "{out}"
    );
    assert!(
        out.contains(&format!("details: apex task show {id} boom")),
        "{out}"
    );

    let ran = apex(&["run", "show", &id, "--json", "--server", &sys.base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let run = ran.json();
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["state"], "failed");
    assert_eq!(run["task_count"], 5);
    let tasks = run["tasks"].as_array().unwrap();
    let order: Vec<(&str, u64)> = tasks
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        order,
        [
            ("root", 0),
            ("draft", 1),
            ("boom", 1),
            ("summary", 2),
            ("after", 2)
        ]
    );
    let boom = &tasks[2];
    for field in [
        "state",
        "attempt",
        "worker_id",
        "depends_on",
        "error",
        "started_at_ms",
    ] {
        assert!(boom.get(field).is_some(), "{field} missing: {boom}");
    }
    assert_eq!(boom["error"]["message"], "kaboom");
    sys.shutdown().await;
}

/// A worker that also has a `chatty` handler, which logs and uses its upstream.
fn spawn_chatty_worker(sys: &mut TestSystem, dir: &Path) {
    std::fs::write(
        dir.join("cli_test_handlers.py"),
        r#"
from apex_worker import handler

@handler("chatty")
async def chatty(input, upstream, ctx):
    await ctx.log("thinking about " + str(input.get("topic")))
    await ctx.log("almost there", "warning")
    return {"answer": 42, "from": sorted(upstream)}
"#,
    )
    .unwrap();
    let child = StdCommand::new(common::worker_bin())
        .args(["--queue", "default", "--concurrency", "10"])
        .args(["--redis-url", common::REDIS, "--redis-prefix", &sys.prefix])
        .args(["--heartbeat-interval", "1", "--shutdown-grace", "5"])
        .args(["--import", "cli_test_handlers"])
        .env("PYTHONPATH", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apex-worker starts");
    sys.workers.push(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_show_tells_input_upstream_output_attempts_and_logs() {
    let mut sys = TestSystem::start().await;
    let scratch = Scratch::new();
    spawn_chatty_worker(&mut sys, scratch.path());
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "plan", "handler": "echo", "input": {"steps": 2}},
            {"id": "think", "handler": "chatty", "input": {"topic": "tides"}, "depends_on": ["plan"]},
            {"id": "boom", "handler": "fail", "input": {"message": "kaboom"}},
        ]}))
        .await;
    sys.wait_run(&id, LIMIT).await;

    let ran = apex(&["task", "show", &id, "think", "--server", &sys.base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let out = &ran.stdout;
    assert!(
        out.starts_with(&format!("task think of run {id}  succeeded")),
        "{out}"
    );
    assert!(out.contains("handler chatty · queue default"), "{out}");
    assert!(out.contains("depends on: plan"), "{out}");
    assert!(out.contains("input:\n  {\"topic\":\"tides\"}\n"), "{out}");
    assert!(
        out.contains("upstream outputs:\n  plan:\n    {\"steps\":2}\n"),
        "{out}"
    );
    assert!(
        out.contains("output:\n  {\"answer\":42,\"from\":[\"plan\"]}\n"),
        "{out}"
    );
    assert!(out.contains("attempts: (times UTC)"), "{out}");
    assert!(out.contains("2 log lines (show them with --logs)"), "{out}");
    let worker = sys.task(&id, "think").await["worker_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let attempt_row = out
        .lines()
        .find(|l| l.trim_start().starts_with("1  succeeded"))
        .unwrap_or_else(|| panic!("no attempt row: {out}"));
    assert!(attempt_row.contains(&worker), "{attempt_row}");

    let ran = apex(&[
        "task", "show", &id, "think", "--logs", "--server", &sys.base,
    ])
    .await;
    assert!(
        ran.stdout.contains("#1  info     thinking about tides"),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("#1  warning  almost there"), "{ran:?}");

    let failed = apex(&["task", "show", &id, "boom", "--server", &sys.base]).await;
    assert_eq!(failed.code, 0, "{failed:?}");
    assert!(
        failed
            .stdout
            .contains("error (exception): HandlerFailed: kaboom"),
        "{failed:?}"
    );
    assert!(
        failed
            .stdout
            .contains("traceback:\n  Traceback (most recent call last)"),
        "{failed:?}"
    );

    let ran = apex(&[
        "task", "show", &id, "think", "--json", "--server", &sys.base,
    ])
    .await;
    let detail = ran.json();
    assert_eq!(detail["run_id"], id.as_str());
    assert_eq!(detail["id"], "think");
    assert_eq!(detail["upstream"], json!({"plan": {"steps": 2}}));
    assert_eq!(detail["output"], json!({"answer": 42, "from": ["plan"]}));
    assert_eq!(detail["attempts"][0]["attempt"], 1);
    assert_eq!(detail["attempts"][0]["worker_id"], worker.as_str());
    assert_eq!(detail["attempts"][0]["outcome"], "succeeded");
    let logs: Vec<&str> = detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(logs, ["thinking about tides", "almost there"]);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_gives_the_servers_errors_offline() {
    let sys = TestSystem::start().await;
    let files = Scratch::new();
    let cases = [
        (
            "cycle.json",
            json!({"tasks": [
                {"id": "a", "handler": "echo", "depends_on": ["b"]},
                {"id": "b", "handler": "echo", "depends_on": ["a"]},
            ]})
            .to_string(),
            "cycle: a -> b -> a (remove one of these dependencies) [cycle]; fix it",
        ),
        (
            "unknown.json",
            json!({"tasks": [
                {"id": "a", "handler": "echo"},
                {"id": "a", "handler": "echo", "depends_on": ["ghost"]},
            ]})
            .to_string(),
            "[unknown_dependency] task \"a\" depends on \"ghost\", which is not a task in this run",
        ),
        (
            "field.json",
            r#"{"tasks": [{"id": "a", "handler": "echo", "retires": 3}]}"#.to_owned(),
            "unknown field `retires`",
        ),
        (
            "syntax.json",
            "{\"tasks\": [".to_owned(),
            "is not valid JSON",
        ),
    ];
    for (name, body, says) in cases {
        let path = files.file(name, &body);
        let (status, server) = sys.post_raw("/api/v1/validate", body.clone()).await;
        assert!(status == 400 || status == 422, "{status} {server}");

        let ran = apex(&["validate", &path, "--json"]).await;
        assert_eq!(ran.code, 2, "{ran:?}");
        assert_eq!(ran.json(), server, "same answer as the server for {name}");

        let ran = apex(&["validate", &path]).await;
        ran.assert_clean_failure(2, &path);
        assert!(ran.stderr.contains(says), "{name}: {ran:?}");
    }

    let ok = json!({"tasks": [{"id": "a", "handler": "echo"}, {"id": "b", "handler": "echo", "depends_on": ["a"]}]});
    let path = files.dag("ok.json", &ok);
    let ran = apex(&["validate", &path]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.stdout.trim(), format!("{path}: a valid DAG of 2 tasks"));
    let (_, server) = sys.post("/api/v1/validate", &ok).await;
    let ran = apex_with_stdin(
        &["validate", "-", "--json"],
        Some(ok.to_string().into_bytes()),
    )
    .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json(), server);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_fail_with_one_line_and_exit_2() {
    let sys = TestSystem::start().await;
    let files = Scratch::new();
    let base = sys.base.as_str();
    let missing = files.path().join("missing.json").display().to_string();
    let ran = apex(&["submit", &missing, "--server", base]).await;
    ran.assert_clean_failure(2, &format!("cannot read {missing}: no such file"));

    let dir = files.path().display().to_string();
    let ran = apex(&["validate", &dir]).await;
    ran.assert_clean_failure(2, "it is a directory");

    let broken = files.file("broken.json", "{\"tasks\": [}");
    let ran = apex(&["submit", &broken, "--server", base]).await;
    ran.assert_clean_failure(2, &format!("{broken} is not valid JSON: "));
    assert!(ran.stderr.contains("line 1 column 12"), "{ran:?}");

    // An invalid DAG is rejected by the server: its problems are listed, nothing is stored.
    let two = files.dag(
        "two.json",
        &json!({"tasks": [
            {"id": "a", "handler": "echo"},
            {"id": "a", "handler": "echo"},
            {"id": "c", "handler": "echo", "depends_on": ["nope"]},
        ]}),
    );
    let ran = apex(&["submit", &two, "--server", base]).await;
    ran.assert_clean_failure(
        2,
        &format!("{two} is not a valid DAG: 2 problems in the DAG"),
    );
    assert!(
        ran.stderr
            .contains("  - [duplicate_id] task id \"a\" is used by 2 tasks"),
        "{ran:?}"
    );
    assert!(
        ran.stderr.contains("  - [unknown_dependency] task \"c\""),
        "{ran:?}"
    );
    let cycle = files.dag(
        "cycle.json",
        &json!({"tasks": [
            {"id": "a", "handler": "echo", "depends_on": ["b"]},
            {"id": "b", "handler": "echo", "depends_on": ["a"]},
        ]}),
    );
    let ran = apex(&["submit", &cycle, "--server", base]).await;
    ran.assert_clean_failure(
        2,
        &format!("{cycle} is not a valid DAG: cycle: a -> b -> a (remove one of these dependencies) [cycle]"),
    );
    assert_eq!(ran.stderr.lines().count(), 1, "{ran:?}");
    let (_, runs) = sys.get("/api/v1/runs").await;
    assert_eq!(runs["runs"], json!([]));

    let ran = apex(&["runs", "--limit", "0", "--server", base]).await;
    assert_eq!(ran.code, 2, "usage errors exit 2: {ran:?}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_exit_3_and_conflicts_exit_6() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let base = sys.base.clone();
    let base = base.as_str();
    for args in [
        vec!["run", "show", "r_nope"],
        vec!["watch", "r_nope"],
        vec!["cancel", "r_nope"],
        vec!["retry", "r_nope"],
        vec!["task", "show", "r_nope", "a"],
    ] {
        let ran = apex(&[&args[..], &["--server", base]].concat()).await;
        ran.assert_clean_failure(3, "run r_nope not found");
        assert!(
            ran.stderr.contains("`apex runs` lists recent runs"),
            "{ran:?}"
        );
    }

    let id = sys.submit(&chain()).await;
    sys.wait_run(&id, LIMIT).await;
    let ran = apex(&["task", "show", &id, "ghost", "--server", base]).await;
    ran.assert_clean_failure(3, &format!("task ghost not found in run {id}"));
    assert!(ran
        .stderr
        .contains(&format!("`apex run show {id}` lists the run's tasks")));

    let ran = apex(&["cancel", &id, "--server", base]).await;
    ran.assert_clean_failure(6, &format!("run {id} is already succeeded"));

    let slow = sys
        .submit(&json!({"tasks": [{"id": "nap", "handler": "sleep", "input": {"seconds": 30}}]}))
        .await;
    let ran = apex(&["retry", &slow, "--server", base]).await;
    ran.assert_clean_failure(6, "is still running");
    let ran = apex(&["cancel", &slow, "--json", "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ran.json()["id"], slow.as_str());
    let ran = apex(&["watch", &slow, "--server", base]).await;
    assert_eq!(ran.code, 1, "a cancelled run exits 1: {ran:?}");
    assert!(
        ran.stdout.contains(&format!("run {slow} cancelled")),
        "{ran:?}"
    );
    let ran = apex(&["retry", &slow, "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stdout.starts_with(&format!("retrying run {slow}")),
        "{ran:?}"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_exits_5() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let files = Scratch::new();
    let dag = files.dag("chain.json", &chain());
    for args in [
        vec!["runs"],
        vec!["run", "show", "r_1"],
        vec!["watch", "r_1"],
        vec!["submit", dag.as_str()],
        vec!["workers"],
    ] {
        let ran = apex(&[&args[..], &["--server", &nobody]].concat()).await;
        ran.assert_clean_failure(5, &format!("cannot reach the Apex server at {nobody}"));
        assert!(ran.stderr.contains("is it running?"), "{ran:?}");
    }
    let ran = apex(&["runs", "--server", "ftp://example.invalid"]).await;
    ran.assert_clean_failure(2, "invalid --server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_is_spoken_to_in_tls() {
    // A listener that records the first bytes a client sends: a TLS ClientHello starts
    // with a handshake record (0x16, version 0x03 0x0N).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let first = std::thread::spawn(move || {
        use std::io::Read;
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = [0u8; 3];
        conn.read_exact(&mut head).unwrap();
        head
    });
    let ran = apex(&["runs", "--server", &format!("https://127.0.0.1:{port}")]).await;
    assert_ne!(ran.code, 0);
    let head = first.join().unwrap();
    assert_eq!((head[0], head[1]), (0x16, 0x03), "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_control_sequences_from_the_server_never_reach_the_terminal() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let evil = "pwn\u{1b}]0;owned\u{7}\u{1b}[2J\rname";
    let id = sys
        .submit(
            &json!({"name": evil, "tasks": [{"id": "a", "handler": "fail",
            "input": {"message": "bad\u{1b}[1A\u{1b}]8;;http://evil.test\u{1b}\\link"}}]}),
        )
        .await;
    sys.wait_run(&id, LIMIT).await;
    let base = sys.base.clone();
    for args in [
        vec!["runs", "--server", base.as_str()],
        vec!["run", "show", id.as_str(), "--server", base.as_str()],
        vec!["task", "show", id.as_str(), "a", "--server", base.as_str()],
    ] {
        let ran = apex(&args).await;
        for stream in [&ran.stdout, &ran.stderr] {
            assert!(
                !stream.contains('\u{1b}') && !stream.contains('\r'),
                "{args:?}: {stream:?}"
            );
        }
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_exits_4() {
    let mut sys =
        TestSystem::start_with(|c| c.api_token = Some("secret-secret-secret".into())).await;
    sys.spawn_worker("default", 10);
    let base = sys.base.clone();
    let base = base.as_str();
    let ran = apex(&["runs", "--server", base]).await;
    ran.assert_clean_failure(4, "requires an API token (401 unauthorized)");
    assert!(ran.stderr.contains("APEX_API_TOKEN"), "{ran:?}");
    let ran = apex(&["runs", "--server", base, "--api-token", "guess"]).await;
    ran.assert_clean_failure(4, "rejected the API token");
    let ran = apex(&["watch", "r_1", "--server", base]).await;
    ran.assert_clean_failure(4, "requires an API token");

    // With the token everything works, the WebSocket included.
    let files = Scratch::new();
    let dag = files.dag("chain.json", &chain());
    let ran = apex(&[
        "submit",
        &dag,
        "--watch",
        "--server",
        base,
        "--api-token",
        "secret-secret-secret",
    ])
    .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = tokio::task::spawn_blocking({
        let base = base.to_owned();
        move || {
            assert_cmd::Command::from_std(apex_command())
                .args(["runs", "--json", "--server", &base])
                .env("APEX_API_TOKEN", "secret-secret-secret")
                .timeout(LIMIT)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(ran.status.code(), Some(0));
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_server_restart_and_exits_0() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "first", "handler": "sleep", "input": {"seconds": 1.5}},
            {"id": "second", "handler": "sleep", "input": {"seconds": 1.5}, "depends_on": ["first"]},
            {"id": "third", "handler": "sum", "depends_on": ["second"]},
        ]}))
        .await;
    let watch = apex_command()
        .args(["watch", &id, "--server", &sys.base])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sys.wait_until(&id, LIMIT, |r| {
        common::task(r, "first")["state"] == "running"
    })
    .await;
    sys.restart_server().await;

    let ran = finish(watch).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stderr.contains("reconnecting"), "{ran:?}");
    assert!(ran.stderr.contains("reconnected"), "{ran:?}");
    for task in ["first", "second", "third"] {
        assert_eq!(
            ran.stdout.matches(&format!("{task} succeeded")).count(),
            1,
            "each transition once, none lost or repeated: {ran:?}"
        );
    }
    assert!(
        ran.stdout.contains(&format!("run {id} succeeded")),
        "{ran:?}"
    );
    sys.shutdown().await;
}

/// The in-process restart above leaves the old server's socket open but silent; a real
/// process that dies closes it, and its replacement refuses connections for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_a_killed_orchestrator_process_and_exits_0() {
    let mut sys = TestSystem::without_server(common::PG_ADMIN, common::REDIS).await;
    let port = common::free_port();
    sys.spawn_orchestrator(port);
    let base = sys.base.clone();
    sys.wait_ready(&base, LIMIT).await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "first", "handler": "sleep", "input": {"seconds": 1.5}},
            {"id": "second", "handler": "sum", "depends_on": ["first"]},
        ]}))
        .await;
    let watch = apex_command()
        .args(["watch", &id, "--server", &base])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    sys.wait_until(&id, LIMIT, |r| {
        common::task(r, "first")["state"] == "running"
    })
    .await;
    sys.kill_orchestrator(port);
    // Long enough for the watch to find nobody listening and back off at least once.
    tokio::time::sleep(Duration::from_millis(800)).await;
    sys.spawn_orchestrator(port);

    let ran = finish(watch).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stderr.contains("lost the connection"), "{ran:?}");
    assert!(ran.stderr.contains("reconnected"), "{ran:?}");
    assert_eq!(ran.stdout.matches("second succeeded").count(), 1, "{ran:?}");
    assert!(
        ran.stdout.contains(&format!("run {id} succeeded")),
        "{ran:?}"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_workers_and_queues_print_tables_and_json() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 7);
    let ok = sys.submit(&chain()).await;
    let bad = sys.submit(&failing()).await;
    sys.wait_run(&ok, LIMIT).await;
    sys.wait_run(&bad, LIMIT).await;
    let base = sys.base.clone();
    let base = base.as_str();

    let ran = apex(&["runs", "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATE"),
        "{ran:?}"
    );
    assert!(
        lines[1].starts_with(&bad) && lines[1].contains("failed"),
        "newest first: {ran:?}"
    );
    assert!(lines[1].contains("5/5"), "{ran:?}");
    assert!(
        lines[2].starts_with(&ok) && lines[2].contains("succeeded"),
        "{ran:?}"
    );

    let ran = apex(&["runs", "--state", "failed", "--json", "--server", base]).await;
    let body = ran.json();
    let runs = body["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], bad.as_str());
    assert_eq!(runs[0]["counts"]["failed"], 1);
    assert!(body.get("next").is_some());
    let ran = apex(&["runs", "--limit", "1", "--server", base]).await;
    assert!(
        ran.stdout
            .contains(&format!("older runs: apex runs --before {bad}")),
        "{ran:?}"
    );

    let ran = apex(&["workers", "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stdout.contains("running") && ran.stdout.contains("/7 "),
        "{ran:?}"
    );
    let ran = apex(&["workers", "--json", "--server", base]).await;
    let w = &ran.json()["workers"][0];
    assert_eq!(w["queues"], json!(["default"]));
    assert_eq!(w["concurrency"], 7);
    for field in [
        "id",
        "host",
        "pid",
        "state",
        "in_flight",
        "last_heartbeat_ms",
    ] {
        assert!(w.get(field).is_some(), "{field} missing: {w}");
    }

    let ran = apex(&["queues", "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(
        ran.stdout.lines().any(|l| l.starts_with("default ")),
        "{ran:?}"
    );
    let ran = apex(&["queues", "--json", "--server", base]).await;
    let q = &ran.json()["queues"][0];
    assert_eq!(q["name"], "default");
    assert_eq!(q["depth"], 0);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_help_need_no_server() {
    let ran = apex(&["completions", "bash"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("_apex()"), "{ran:?}");
    let ran = apex(&["--help"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("Exit codes:"), "{ran:?}");
    for cmd in [
        "submit", "validate", "runs", "watch", "cancel", "retry", "workers", "queues",
    ] {
        assert!(ran.stdout.contains(cmd), "{cmd} in help: {ran:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_put_listed_shown_and_deleted() {
    let sys = TestSystem::start().await;
    let base = sys.base.as_str();
    let dir = std::env::temp_dir().join(common::unique("agents_cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("researcher.json");
    std::fs::write(
        &file,
        r#"{"provider": "mock", "model": "mock-researcher", "max_concurrency": 4,
            "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();

    let ran = apex(&[
        "agents",
        "put",
        "researcher",
        "--file",
        file,
        "--server",
        base,
    ])
    .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.contains("created agent researcher"), "{ran:?}");
    let ran = apex(&[
        "agents",
        "put",
        "researcher",
        "--file",
        file,
        "--server",
        base,
    ])
    .await;
    assert!(ran.stdout.contains("replaced agent researcher"), "{ran:?}");

    let ran = apex(&["agents", "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let row = ran.stdout.lines().find(|l| l.starts_with("researcher"));
    let row = row.unwrap_or_else(|| panic!("no researcher row: {ran:?}"));
    assert!(
        row.contains("mock-researcher") && row.contains('4'),
        "{row}"
    );
    let ran = apex(&["agents", "show", "researcher", "--json", "--server", base]).await;
    assert_eq!(ran.json()["max_concurrency"], 4);

    std::fs::write(
        dir.join("bad.json"),
        r#"{"provider": "nope", "model": "m"}"#,
    )
    .unwrap();
    let bad = dir.join("bad.json");
    let ran = apex(&[
        "agents",
        "put",
        "x",
        "--file",
        bad.to_str().unwrap(),
        "--server",
        base,
    ])
    .await;
    ran.assert_clean_failure(2, "nope");

    let ran = apex(&["agents", "delete", "researcher", "--server", base]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = apex(&["agents", "show", "researcher", "--server", base]).await;
    ran.assert_clean_failure(3, "agent researcher not found");
    let _ = std::fs::remove_dir_all(dir);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_made_listed_and_revoked_and_run_show_names_who_acted() {
    const ADMIN: &str = "admin-secret-admin-secret";
    let sys = TestSystem::start_with(|c| c.api_token = Some(ADMIN.into())).await;
    let base = sys.base.clone();
    let as_token = |token: &str, args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--server".into(),
            base.clone(),
            "--api-token".into(),
            token.into(),
        ]);
        all
    };
    let run_as = |token: &str, args: &[&str]| {
        let all = as_token(token, args);
        async move {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            apex(&refs).await
        }
    };

    // The secret alone on stdout, so `$(apex tokens create …)` captures it.
    let ran = run_as(
        ADMIN,
        &["tokens", "create", "--name", "ci", "--scope", "submit"],
    )
    .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let ci = ran.stdout.trim().to_owned();
    assert!(ci.starts_with("apex_") && !ci.contains(' '), "{ran:?}");
    assert!(ran.stderr.contains("only time"), "{ran:?}");
    let ran = run_as(
        ADMIN,
        &[
            "tokens", "create", "--name", "ops", "--scope", "operate", "--json",
        ],
    )
    .await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let created = ran.json();
    assert_eq!(
        (&created["name"], &created["scope"]),
        (&json!("ops"), &json!("operate"))
    );
    let ops = created["token"].as_str().unwrap().to_owned();
    let ran = run_as(
        ADMIN,
        &["tokens", "create", "--name", "ops", "--scope", "read"],
    )
    .await;
    ran.assert_clean_failure(6, "already exists");

    let ran = run_as(ADMIN, &["tokens", "list"]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let rows: Vec<Vec<&str>> = ran
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["NAME", "SCOPE", "CREATED", "BY", "CREATED", "LAST", "USED"]
    );
    assert_eq!(rows[1][..3], ["ci", "submit", "admin"]);
    assert_eq!(rows[2][..3], ["ops", "operate", "admin"]);
    assert!(!ran.stdout.contains(&ci), "no secrets listed");
    let ran = run_as(&ci, &["tokens", "list"]).await;
    ran.assert_clean_failure(4, "lacks the admin scope");

    let files = Scratch::new();
    let nap = json!({"tasks": [{"id": "nap", "handler": "sleep", "input": {"seconds": 30}}]});
    let ran = run_as(&ci, &["submit", &files.dag("nap.json", &nap)]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let id = ran.stdout.trim().to_owned();
    let ran = run_as(&ci, &["cancel", &id]).await;
    ran.assert_clean_failure(
        4,
        "this token (\"ci\", scope submit) lacks the operate scope",
    );
    let ran = run_as(&ops, &["cancel", &id]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let ran = run_as(&ci, &["run", "show", &id]).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    let who = ran.stdout.lines().nth(2).unwrap_or_default();
    assert_eq!(who.trim(), "created by ci · cancelled by ops", "{ran:?}");

    let ran = run_as(ADMIN, &["tokens", "revoke", "ops"]).await;
    assert_eq!(
        (ran.code, ran.stdout.trim()),
        (0, "revoked token ops"),
        "{ran:?}"
    );
    let ran = run_as(&ops, &["runs"]).await;
    ran.assert_clean_failure(4, "rejected the API token");
    let ran = run_as(ADMIN, &["tokens", "revoke", "ops"]).await;
    ran.assert_clean_failure(3, "apex tokens list");
    sys.shutdown().await;
}
