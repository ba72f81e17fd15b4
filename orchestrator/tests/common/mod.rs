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
        let db_name = unique("apex_test");
        let admin = sqlx::PgPool::connect(PG_ADMIN)
            .await
            .expect("Postgres at 127.0.0.1:5432");
        sqlx::query(&format!("create database {db_name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let db_url = format!("postgres://postgres@127.0.0.1:5432/{db_name}");
        let prefix = unique("t");
        let mut config = ServeConfig::new(&db_url, REDIS, &prefix);
        tweak(&mut config);
        let server = apex::server::start(config.clone())
            .await
            .expect("server starts");
        let base = format!("http://{}", server.addr);
        Self {
            server: Some(server),
            base,
            db_name,
            db_url,
            prefix,
            workers: vec![],
            http: reqwest::Client::new(),
            config,
        }
    }

    /// Starts an `apex-worker` process on `queue` with `concurrency` slots.
    pub fn spawn_worker(&mut self, queue: &str, concurrency: u32) -> &mut Child {
        let child = Command::new(worker_bin())
            .args(["--queue", queue, "--concurrency", &concurrency.to_string()])
            .args(["--redis-url", REDIS, "--redis-prefix", &self.prefix])
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
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        self.workers.clear();
        if let Some(s) = self.server.take() {
            s.stop().await;
        }
        if let Ok(client) = redis::Client::open(REDIS) {
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
        if let Ok(admin) = sqlx::PgPool::connect(PG_ADMIN).await {
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
        // A test that panicked still must not leave worker processes behind.
        for w in &mut self.workers {
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
