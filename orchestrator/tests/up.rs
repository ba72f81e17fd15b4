//! `apex up` as a user runs it: the real binary, its own SQLite and Redis, local
//! workers it supervises and autoscales.

mod common;

use common::{free_port, unique, worker_bin};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// An `apex up` child that is stopped (SIGTERM, as Ctrl-C would) when dropped, so a
/// failing test does not leave it, its workers and its Redis running.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Processes whose command line mentions `marker`.
fn processes_mentioning(marker: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", marker])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn up_command(data_dir: &std::path::Path, port: u16, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apex"));
    cmd.arg("up")
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--redis-prefix",
            prefix,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("APEX_WORKER_BIN", worker_bin())
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("APEX_API_TOKEN")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn apex_up_demo_runs_the_demo_to_success_on_its_embedded_defaults_and_leaves_nothing_behind() {
    let dir = std::env::temp_dir().join(unique("apex-up"));
    let prefix = unique("up");
    let out = up_command(&dir, free_port(), &prefix)
        .args(["--demo", "--exit-when-done"])
        .output()
        .expect("apex up runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("Apex is up."), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("Demo: run ") && l.contains(" succeeded in ")),
        "{stdout}"
    );
    assert!(
        dir.join("apex.db").exists(),
        "SQLite store under the data directory"
    );
    assert!(
        dir.join("redis").exists(),
        "private Redis files under the data directory"
    );
    assert_eq!(
        processes_mentioning(&prefix),
        Vec::<String>::new(),
        "workers left running"
    );
    assert_eq!(
        processes_mentioning(&dir.display().to_string()),
        Vec::<String>::new(),
        "redis left running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn apex_up_says_what_to_do_when_the_worker_is_missing() {
    let dir = std::env::temp_dir().join(unique("apex-up"));
    let out = up_command(&dir, free_port(), &unique("up"))
        .env("APEX_WORKER_BIN", "/nonexistent/apex-worker")
        .args(["--demo", "--exit-when-done"])
        .output()
        .expect("apex up runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("apex-worker not found") && stderr.contains("scripts/setup.sh"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The default queue as the API shows it, or null while `apex up` is still starting.
async fn queue(http: &reqwest::Client, base: &str) -> Value {
    let Ok(r) = http.get(format!("{base}/api/v1/queues")).send().await else {
        return Value::Null;
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == "default").cloned())
        .unwrap_or(Value::Null)
}

async fn wait_for(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_local_workers_to_the_max_and_back_to_the_min_without_interrupting_a_task() {
    let dir = std::env::temp_dir().join(unique("apex-up"));
    let prefix = unique("up");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = Up(up_command(&dir, port, &prefix)
        .args([
            "--min-workers",
            "1",
            "--max-workers",
            "4",
            "--worker-concurrency",
            "10",
            "--cooldown-s",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("apex up starts"));
    let http = reqwest::Client::new();
    wait_for("one idle worker", async || {
        queue(&http, &base).await["workers_active"] == 1
    })
    .await;

    let tasks: Vec<Value> = (0..2000)
        .map(|i| json!({"id": format!("t{i}"), "handler": "sleep", "input": {"seconds": 0.05}}))
        .collect();
    let r = http
        .post(format!("{base}/api/v1/runs"))
        .json(&json!({"tasks": tasks}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut peak = 0;
    wait_for("the burst to finish", async || {
        peak = peak.max(
            queue(&http, &base).await["workers_active"]
                .as_u64()
                .unwrap_or(0),
        );
        let run: Value = http
            .get(format!("{base}/api/v1/runs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        run["state"] != "running"
    })
    .await;
    assert_eq!(peak, 4, "the fleet grew to its max");
    wait_for(
        "the fleet to shrink back to one after the cooldown",
        async || queue(&http, &base).await["workers_active"] == 1,
    )
    .await;

    let run: Value = http
        .get(format!("{base}/api/v1/runs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(run["state"], "succeeded");
    assert_eq!(run["counts"]["succeeded"], 2000);
    for t in run["tasks"].as_array().unwrap() {
        assert_eq!(
            t["attempt"], 1,
            "a drain interrupted or handed back {}",
            t["id"]
        );
    }

    let _ = Command::new("kill")
        .args(["-TERM", &up.0.id().to_string()])
        .status();
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "apex up did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
    assert_eq!(
        processes_mentioning(&prefix),
        Vec::<String>::new(),
        "workers left running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
