//! `apex up` as a user runs it: the real binary, its own SQLite and Redis, local
//! workers it supervises and autoscales.

mod common;

use common::{free_port, unique, worker_bin};
use serde_json::{json, Value};
use std::path::Path;
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
        stderr.contains("apex-worker not found") && stderr.contains("pip install ./python-workers"),
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

/// A client carrying the token `apex up` generated in `dir`, once it exists.
async fn authed(dir: &Path) -> reqwest::Client {
    let file = dir.join("api-token");
    wait_for("the generated API token", async || file.exists()).await;
    let token = std::fs::read_to_string(&file).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
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
    let http = authed(&dir).await;
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

/// What a person runs after `cargo install`: `apex up` in an empty directory, with
/// `apex-worker` on PATH and nothing else set.
fn up_in(cwd: &Path, port: u16, prefix: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apex"));
    let venv_bin = worker_bin().parent().unwrap().to_owned();
    let path = std::env::join_paths(
        std::iter::once(venv_bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    cmd.current_dir(cwd)
        .arg("up")
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--redis-prefix",
            prefix,
        ])
        .env("PATH", path)
        .env_remove("APEX_WORKER_BIN")
        .env_remove("APEX_DATA_DIR")
        .env_remove("APEX_DASHBOARD_DIR")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("APEX_API_TOKEN")
        .env_remove("APEX_SERVER")
        .stdin(Stdio::null());
    cmd
}

/// Reads `apex up`'s output until its `Dashboard: URL` line; answers the URL.
fn dashboard_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("apex up printed no Dashboard line")
            .unwrap();
        if let Some(url) = line.strip_prefix("Dashboard: ") {
            break url.to_owned();
        }
    };
    // Keep draining, so apex up never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apex_up_in_an_empty_directory_serves_the_dashboard_and_locks_the_api_with_the_printed_token(
) {
    let cwd = std::env::temp_dir().join(unique("apex-empty"));
    std::fs::create_dir_all(&cwd).unwrap();
    let port = free_port();
    let prefix = unique("up");
    let mut up = Up(up_in(&cwd, port, &prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("apex up starts"));
    let url = dashboard_url(&mut up.0);
    let base = format!("http://127.0.0.1:{port}");
    let token = url
        .strip_prefix(&format!("{base}/?token="))
        .unwrap_or_else(|| panic!("{url}"))
        .to_owned();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(
        std::fs::read_to_string(cwd.join(".apex/api-token"))
            .unwrap()
            .trim(),
        token,
        "kept in the data directory"
    );

    let http = reqwest::Client::new();
    let page = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<div id=\"root\">"),
        "the built dashboard: {html}"
    );
    let client_route = http
        .get(format!("{base}/runs/some-run"))
        .send()
        .await
        .unwrap();
    assert_eq!(client_route.status(), 200, "client-side routes get the app");

    let runs = format!("{base}/api/v1/runs");
    assert_eq!(http.get(&runs).send().await.unwrap().status(), 401);
    let ok = http.get(&runs).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    // The CLI, run in the same directory, finds the server and its token by itself.
    let cli = tokio::task::spawn_blocking({
        let cwd = cwd.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_apex"))
                .current_dir(&cwd)
                .args(["runs", "--json"])
                .env_remove("APEX_SERVER")
                .env_remove("APEX_API_TOKEN")
                .env_remove("APEX_DATA_DIR")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    // Named another server, the CLI does not hand it the local token.
    let elsewhere = Command::new(env!("CARGO_BIN_EXE_apex"))
        .current_dir(&cwd)
        .args(["runs", "--server", &format!("http://localhost:{port}")])
        .env_remove("APEX_API_TOKEN")
        .output()
        .unwrap();
    assert_eq!(elsewhere.status.code(), Some(4), "401 without the token");

    drop(up);
    assert_eq!(processes_mentioning(&prefix), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn apex_up_demo_works_with_a_relative_data_dir_with_spaces() {
    let cwd = std::env::temp_dir().join(unique("apex-rel"));
    std::fs::create_dir_all(&cwd).unwrap();
    let prefix = unique("up");
    let out = up_in(&cwd, free_port(), &prefix)
        .args([
            "--data-dir",
            "my data/apex dir",
            "--demo",
            "--exit-when-done",
        ])
        .output()
        .expect("apex up runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = cwd.join("my data/apex dir");
    assert!(dir.join("apex.db").exists());
    assert!(dir.join("redis/redis.log").exists(), "redis found its log");
    assert_eq!(processes_mentioning(&prefix), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn apex_up_on_a_busy_port_says_which_port_and_which_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(unique("apex-up"));
    let out = up_command(&dir, port, &unique("up"))
        .output()
        .expect("apex up runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}"))
            && stderr.contains("already in use")
            && stderr.contains("--bind"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn apex_up_without_redis_server_says_how_to_get_it() {
    let dir = std::env::temp_dir().join(unique("apex-up"));
    let out = up_command(&dir, free_port(), &unique("up"))
        .env("PATH", "/nonexistent")
        .output()
        .expect("apex up runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis-server is not installed") && stderr.contains("REDIS_URL"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_redis_server_that_fails_to_start_is_explained_in_its_own_words() {
    // A fake redis-server on PATH that complains and exits, as a broken install would.
    let dir = std::env::temp_dir().join(unique("apex-up"));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("redis-server");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'FATAL: cannot open config, permission denied' >&2\nexit 1\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = up_command(&dir.join("data"), free_port(), &unique("up"))
        .env("PATH", path)
        .output()
        .expect("apex up runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis-server did not start")
            && stderr.contains("cannot open config, permission denied"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
