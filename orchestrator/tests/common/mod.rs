//! A whole Apex system per test: a fresh Postgres database, its own Redis key prefix,
//! the orchestrator in-process, and real `apex-worker` processes. Dropped, it stops the
//! workers and removes the database and the keys.

#![allow(dead_code)]

use apex::config::ServeConfig;
use apex::server::RunningServer;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS: &str = "redis://127.0.0.1:6379";

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The `apex-worker` command: `APEX_WORKER_BIN`, or the repository's virtualenv.
pub fn worker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("APEX_WORKER_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/apex-worker");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/setup.sh` (or .ci/run) first",
        p.display()
    );
    p
}

pub struct TestSystem {
    pub server: Option<RunningServer>,
    /// Orchestrators running as processes (fault tests), by port.
    pub orchestrators: Vec<(u16, Child)>,
    pub redis: String,
    pub base: String,
    pub db_name: String,
    pub db_url: String,
    pub prefix: String,
    pub workers: Vec<Child>,
    pub http: reqwest::Client,
    pub config: ServeConfig,
}

impl TestSystem {
    /// A server with no workers yet.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut sys = Self::without_server(PG_ADMIN, REDIS).await;
        tweak(&mut sys.config);
        let server = apex::server::start(sys.config.clone())
            .await
            .expect("server starts");
        sys.base = format!("http://{}", server.addr);
        sys.server = Some(server);
        sys
    }

    /// A fresh database (on the Postgres `admin_url` points at) and Redis prefix, with no
    /// orchestrator yet: start one in-process or as a process.
    pub async fn without_server(admin_url: &str, redis: &str) -> Self {
        let db_name = unique("apex_test");
        let admin = sqlx::PgPool::connect(admin_url)
            .await
            .expect("Postgres is reachable");
        sqlx::query(&format!("create database {db_name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let db_url = format!("{}/{db_name}", admin_url.rsplit_once('/').unwrap().0);
        let prefix = unique("t");
        let config = ServeConfig::new(&db_url, redis, &prefix);
        Self {
            server: None,
            orchestrators: vec![],
            redis: redis.to_owned(),
            base: String::new(),
            db_name,
            db_url,
            prefix,
            workers: vec![],
            http: reqwest::Client::new(),
            config,
        }
    }

    /// Starts the `apex serve` binary on `port` against this system's database and
    /// Redis; `base` points at it.
    pub fn spawn_orchestrator(&mut self, port: u16) {
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("{}-{port}.log", self.prefix)))
                .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(["serve", "--no-auth", "--bind", &format!("127.0.0.1:{port}")])
            .args([
                "--database-url",
                &self.db_url,
                "--redis-url",
                &self.redis,
                "--redis-prefix",
                &self.prefix,
            ])
            .env("APEX_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("apex serve starts");
        self.orchestrators.push((port, child));
        self.base = format!("http://127.0.0.1:{port}");
    }

    /// Kills the orchestrator process on `port` with SIGKILL.
    pub fn kill_orchestrator(&mut self, port: u16) {
        let i = self
            .orchestrators
            .iter()
            .position(|(p, _)| *p == port)
            .expect("known orchestrator");
        let (_, mut child) = self.orchestrators.remove(i);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits until the server at `base` answers `/readyz` with 200.
    pub async fn wait_ready(&self, base: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(r) = self.http.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{base} not ready within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts an `apex-worker` process on `queue` with `concurrency` slots.
    pub fn spawn_worker(&mut self, queue: &str, concurrency: u32) -> &mut Child {
        let child = Command::new(worker_bin())
            .args(["--queue", queue, "--concurrency", &concurrency.to_string()])
            .args(["--redis-url", &self.redis, "--redis-prefix", &self.prefix])
            .args(["--heartbeat-interval", "1", "--shutdown-grace", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var("APEX_TEST_WORKER_LOGS").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("apex-worker starts");
        self.workers.push(child);
        self.workers.last_mut().unwrap()
    }

    /// Stops the orchestrator (as a crash would, minus the kill) and starts another on
    /// the same database and Redis prefix.
    pub async fn restart_server(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        let mut config = self.config.clone();
        config.bind = self.base.trim_start_matches("http://").parse().unwrap();
        let server = apex::server::start(config).await.expect("server restarts");
        self.server = Some(server);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs a JSON body; returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Submits a run and returns its id.
    pub async fn submit(&self, spec: &Value) -> String {
        let (status, body) = self.post("/api/v1/runs", spec).await;
        assert_eq!(status, 201, "submit failed: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Waits until a run is no longer running; returns it with its tasks.
    pub async fn wait_run(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, run) = self.get(&format!("/api/v1/runs/{id}")).await;
            assert_eq!(status, 200, "{run}");
            if run["state"] != "running" {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} still running after {limit:?}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `pred` holds for the run.
    pub async fn wait_until(
        &self,
        id: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (_, run) = self.get(&format!("/api/v1/runs/{id}")).await;
            if pred(&run) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "condition not met within {limit:?}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn task(&self, run: &str, task: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/runs/{run}/tasks/{task}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Stops everything and removes the database and Redis keys.
    pub async fn shutdown(mut self) {
        self.cleanup().await;
    }

    async fn cleanup(&mut self) {
        for w in self
            .workers
            .iter_mut()
            .chain(self.orchestrators.iter_mut().map(|(_, c)| c))
        {
            let _ = w.kill();
            let _ = w.wait();
        }
        self.workers.clear();
        self.orchestrators.clear();
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        if let Ok(client) = redis::Client::open(self.redis.as_str()) {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{}:*", self.prefix))
                    .query_async(&mut c)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
                }
            }
        }
        let admin_url = format!("{}/postgres", self.db_url.rsplit_once('/').unwrap().0);
        if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
            let _ = sqlx::query(&format!(
                "drop database if exists {} with (force)",
                self.db_name
            ))
            .execute(&admin)
            .await;
        }
    }
}

impl Drop for TestSystem {
    fn drop(&mut self) {
        // A test that panicked still must not leave processes behind.
        for w in self
            .workers
            .iter_mut()
            .chain(self.orchestrators.iter_mut().map(|(_, c)| c))
        {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

pub fn states(run: &Value) -> Vec<(String, String)> {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

pub fn task<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
