//! A whole Apex system per test: a fresh store, its own Redis key prefix, the
//! orchestrator in-process, and real `apex-worker` processes. Dropped, it stops the
//! workers and removes the store and the keys.
//!
//! The store is the one `APEX_TEST_STORE` names: `postgres` (the default; a fresh
//! database on [`PG_ADMIN`]) or `sqlite` (a fresh database file in a fresh temporary
//! directory), so the whole suite runs against both.

#![allow(dead_code)]

use apex::config::ServeConfig;
use apex::server::RunningServer;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
pub const REDIS: &str = "redis://127.0.0.1:6379";

/// Which store a test system keeps its state in.
#[derive(Debug, Clone)]
pub enum TestStore {
    /// A fresh database on the Postgres server `admin_url` points at.
    Postgres { admin_url: String },
    /// A fresh SQLite file in a fresh temporary directory.
    Sqlite,
}

impl TestStore {
    /// The suite's store, from `APEX_TEST_STORE`: `postgres` (default, on [`PG_ADMIN`])
    /// or `sqlite`.
    pub fn from_env() -> Self {
        match std::env::var("APEX_TEST_STORE").as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("" | "postgres") => TestStore::Postgres {
                admin_url: PG_ADMIN.to_owned(),
            },
            Ok("sqlite") => TestStore::Sqlite,
            other => panic!("APEX_TEST_STORE must be `postgres` or `sqlite`, not {other:?}"),
        }
    }
}

/// Where a test system's store lives, to remove it afterwards.
enum Database {
    Postgres {
        admin_url: String,
        name: String,
    },
    /// The temporary directory holding the SQLite file (and its WAL and lock files).
    Sqlite {
        dir: PathBuf,
    },
}

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
    /// The store's URL, as orchestrators are given it.
    pub db_url: String,
    database: Database,
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
        let mut sys = Self::without_server_on(TestStore::from_env(), REDIS).await;
        tweak(&mut sys.config);
        let server = apex::server::start(sys.config.clone())
            .await
            .expect("server starts");
        sys.base = format!("http://{}", server.addr);
        sys.server = Some(server);
        sys
    }

    /// A fresh store and Redis prefix, with no orchestrator yet: start one in-process or
    /// as a process. [`PG_ADMIN`] stands for the suite's store (`APEX_TEST_STORE`); any
    /// other `admin_url` is a Postgres of the test's own, used whatever the environment
    /// says.
    pub async fn without_server(admin_url: &str, redis: &str) -> Self {
        let store = if admin_url == PG_ADMIN {
            TestStore::from_env()
        } else {
            TestStore::Postgres {
                admin_url: admin_url.to_owned(),
            }
        };
        Self::without_server_on(store, redis).await
    }

    /// A fresh store of the kind given and a Redis prefix, with no orchestrator yet.
    pub async fn without_server_on(store: TestStore, redis: &str) -> Self {
        let (db_url, database) = match store {
            TestStore::Postgres { admin_url } => {
                let name = unique("apex_test");
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("Postgres is reachable");
                sqlx::query(&format!("create database {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
                (url, Database::Postgres { admin_url, name })
            }
            TestStore::Sqlite => {
                // The orchestrator creates the directory and the file.
                let dir = std::env::temp_dir().join(unique("apex-sqlite"));
                let url = format!("sqlite://{}", dir.join("apex.db").display());
                (url, Database::Sqlite { dir })
            }
        };
        let prefix = unique("t");
        let config = ServeConfig::new(&db_url, redis, &prefix);
        Self {
            server: None,
            orchestrators: vec![],
            redis: redis.to_owned(),
            base: String::new(),
            db_url,
            database,
            prefix,
            workers: vec![],
            http: reqwest::Client::new(),
            config,
        }
    }

    /// Starts the `apex serve` binary on `port` against this system's database and
    /// Redis; `base` points at it.
    pub fn spawn_orchestrator(&mut self, port: u16) {
        self.spawn_orchestrator_with(port, &[]);
    }

    /// [`TestSystem::spawn_orchestrator`] with more `apex serve` flags.
    pub fn spawn_orchestrator_with(&mut self, port: u16, flags: &[&str]) {
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
            .args(flags)
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
        self.spawn_worker_with(queue, concurrency, &[], &[])
    }

    /// Starts an `apex-worker` with extra arguments (`--import MODULE`) and environment.
    pub fn spawn_worker_with(
        &mut self,
        queue: &str,
        concurrency: u32,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> &mut Child {
        let child = Command::new(worker_bin())
            .args(args)
            .envs(env.iter().copied())
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
            .header("content-type", "application/json")
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

    /// The server's Prometheus exposition (`GET /metrics`), as text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
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
        match &self.database {
            Database::Postgres { admin_url, name } => {
                if let Ok(admin) = sqlx::PgPool::connect(admin_url).await {
                    let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                        .execute(&admin)
                        .await;
                }
            }
            Database::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
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
        // A file store needs no server to remove it; the in-process orchestrator, if
        // any, still has it open, which Unix allows.
        if let Database::Sqlite { dir } = &self.database {
            let _ = std::fs::remove_dir_all(dir);
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
