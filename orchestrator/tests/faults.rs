//! Fault injection with real processes: workers and orchestrators killed with SIGKILL,
//! a standby taking over, Redis restarted empty, Postgres stopped. Each test asserts the
//! run completes with every task's outcome recorded exactly once. Restarted services are
//! private instances on free ports, so other tests never see the outage.

mod common;

use common::{free_port, TestSystem, PG_ADMIN, REDIS};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

/// A Redis server of this test's own, which it can restart empty.
struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = free_port();
        let child = Self::spawn(port);
        Self { port, child }
    }

    fn spawn(port: u16) -> Child {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills Redis and starts an empty one on the same port.
    fn restart_empty(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of this test's own, which it can stop and start.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb");
        let dir = std::env::temp_dir().join(common::unique("apex-pg"));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Self {
            dir,
            port: free_port(),
            bin,
        };
        if Self::as_root() {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pg.dir));
        }
        run(pg
            .cmd("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&pg.dir));
        pg.up();
        pg
    }

    fn as_root() -> bool {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false)
    }

    /// A command run as the `postgres` user when we are root (PostgreSQL refuses root).
    fn cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-o", &opts, "-w", "-l"])
            .arg(self.dir.join("log"))
            .arg("start"));
    }

    fn down(&self) {
        run(self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"]));
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.stdout(Stdio::null()).output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every task succeeded, and each has exactly one `succeeded` event: nothing lost, nothing
/// run twice to completion.
async fn assert_each_task_succeeded_once(sys: &TestSystem, id: &str) -> Value {
    let run = sys.wait_run(id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let (_, log) = sys
        .get(&format!("/api/v1/runs/{id}/events?limit=100000"))
        .await;
    let events = log["events"].as_array().unwrap();
    for t in run["tasks"].as_array().unwrap() {
        let successes = events
            .iter()
            .filter(|e| e["task_id"] == t["id"] && e["state"] == "succeeded")
            .count();
        assert_eq!(successes, 1, "task {} succeeded {successes} times", t["id"]);
    }
    run
}

fn layered_sleeps(layers: usize, width: usize, seconds: f64) -> Value {
    let mut tasks = vec![];
    for l in 0..layers {
        for i in 0..width {
            let deps: Vec<String> = if l == 0 {
                vec![]
            } else {
                (0..width).map(|j| format!("l{}-{j}", l - 1)).collect()
            };
            tasks.push(json!({"id": format!("l{l}-{i}"), "handler": "sleep", "input": {"seconds": seconds}, "depends_on": deps}));
        }
    }
    json!({"name": "layers", "tasks": tasks})
}

async fn started_server(mut sys: TestSystem) -> TestSystem {
    let server = apex::server::start(sys.config.clone())
        .await
        .expect("server starts");
    sys.base = format!("http://{}", server.addr);
    sys.server = Some(server);
    sys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_has_its_tasks_run_again_elsewhere() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 10);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "a", "handler": "sleep", "input": {"seconds": 4}},
            {"id": "b", "handler": "sleep", "input": {"seconds": 4}},
            {"id": "c", "handler": "sleep", "input": {"seconds": 4}},
            {"id": "join", "handler": "sum", "depends_on": ["a", "b", "c"]},
        ]}))
        .await;
    sys.wait_until(&id, LIMIT, |r| r["counts"]["running"] == 3)
        .await;
    sys.workers[0].kill().unwrap();
    sys.workers[0].wait().unwrap();
    let killed = Instant::now();
    sys.spawn_worker("default", 10);
    sys.wait_until(&id, LIMIT, |r| {
        r["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["attempt"] == 2)
            .count()
            == 3
    })
    .await;
    println!(
        "tasks of the killed worker queued again after {:?}",
        killed.elapsed()
    );
    let run = assert_each_task_succeeded_once(&sys, &id).await;
    for t in ["a", "b", "c"] {
        let detail = sys.task(&id, t).await;
        let attempts = detail["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{detail}");
        assert_eq!(attempts[0]["error"]["kind"], "worker_lost");
        assert_eq!(attempts[1]["outcome"], "succeeded");
        assert_ne!(attempts[0]["worker_id"], attempts[1]["worker_id"]);
    }
    assert_eq!(
        common::task(&run, "join")["output"],
        1,
        "sleep outputs are not numbers: 0 + 1"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_mid_run_restarts_and_every_run_completes_once() {
    let mut sys = TestSystem::without_server(PG_ADMIN, REDIS).await;
    let port = free_port();
    sys.spawn_orchestrator(port);
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    sys.spawn_worker("default", 50);
    sys.spawn_worker("default", 50);
    let layers = sys.submit(&layered_sleeps(4, 6, 0.4)).await;
    let noops: Vec<Value> = (0..3000)
        .map(|i| json!({"id": format!("n{i}"), "handler": "noop"}))
        .collect();
    let wide = sys.submit(&json!({"tasks": noops})).await;
    sys.wait_until(&layers, LIMIT, |r| {
        r["counts"]["succeeded"].as_u64().unwrap() >= 6
    })
    .await;
    sys.kill_orchestrator(port);
    // Workers go on finishing work while no orchestrator reads their results.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sys.spawn_orchestrator(port);
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    assert_each_task_succeeded_once(&sys, &layers).await;
    let wide = assert_each_task_succeeded_once(&sys, &wide).await;
    assert_eq!(wide["counts"]["succeeded"], 3000);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_between_dispatch_slices_restarts_and_runs_each_task_once() {
    // A wide run is dispatched in slices (20 tasks here): killed right after the run
    // is accepted, the store holds some tasks queued and the rest still pending.
    let postgres = common::TestStore::Postgres {
        admin_url: PG_ADMIN.to_owned(),
    };
    let mut sys = TestSystem::without_server_on(postgres, REDIS).await;
    let port = free_port();
    let slice = ["--dispatch-slice", "20"];
    sys.spawn_orchestrator_with(port, &slice);
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    let noops: Vec<Value> = (0..2000)
        .map(|i| json!({"id": format!("n{i}"), "handler": "noop"}))
        .collect();
    let wide = sys.submit(&json!({"tasks": noops})).await;
    sys.kill_orchestrator(port);
    let db = sqlx::PgPool::connect(&sys.db_url).await.unwrap();
    let states: Vec<(String, i64)> = sqlx::query_as(
        "select state, count(*) from tasks where run_id = $1 group by state order by state",
    )
    .bind(&wide)
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    let count = |s: &str| states.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    assert!(
        count("queued") >= 20 && count("pending") > 0,
        "killed between slices: {states:?}"
    );
    sys.spawn_orchestrator_with(port, &slice);
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    sys.spawn_worker("default", 100);
    let wide = assert_each_task_succeeded_once(&sys, &wide).await;
    assert_eq!(wide["counts"]["succeeded"], 2000);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_dies() {
    let mut sys = TestSystem::without_server(PG_ADMIN, REDIS).await;
    let (leader, standby) = (free_port(), free_port());
    sys.spawn_orchestrator(leader);
    let leader_url = sys.base.clone();
    sys.wait_ready(&leader_url, LIMIT).await;
    sys.spawn_orchestrator(standby);
    let standby_url = sys.base.clone();
    sys.base = leader_url;
    sys.spawn_worker("default", 10);
    // The standby answers health, not the API.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = sys
        .http
        .get(format!("{standby_url}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "standby");
    let r = sys
        .http
        .get(format!("{standby_url}/api/v1/runs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);

    let id = sys.submit(&layered_sleeps(5, 2, 0.5)).await;
    sys.wait_until(&id, LIMIT, |r| {
        r["counts"]["running"].as_u64().unwrap() >= 1
    })
    .await;
    sys.kill_orchestrator(leader);
    let killed = Instant::now();
    sys.wait_ready(&standby_url, LIMIT).await;
    println!("standby took over after {:?}", killed.elapsed());
    sys.base = standby_url;
    assert_each_task_succeeded_once(&sys, &id).await;
    sys.shutdown().await;
}

/// A write batch that changes one worker row: enough to see whether a write lands.
fn worker_batch(id: &str, state: &str) -> apex::store::WriteBatch {
    apex::store::WriteBatch {
        workers: vec![apex::store::WorkerRow {
            id: id.into(),
            info: json!({}),
            state: state.into(),
            last_heartbeat_ms: 1,
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_writes_abort_once_another_leader_took_the_next_epoch() {
    let sys = TestSystem::without_server(PG_ADMIN, REDIS).await;
    let old = apex::store::open(&sys.db_url).await.unwrap();
    let new = apex::store::open(&sys.db_url).await.unwrap();
    let first = old.fence().await.unwrap();
    old.apply(&worker_batch("w", "running")).await.unwrap();
    let second = new.fence().await.unwrap();
    assert_eq!(second, first + 1);
    match old.apply(&worker_batch("w", "lost")).await {
        Err(apex::store::StoreError::Fenced { ours, current }) => {
            assert_eq!((ours, current), (first, second))
        }
        other => panic!("the old leader's write was not fenced: {other:?}"),
    }
    assert!(!old.holds_epoch().await.unwrap());
    assert!(new.holds_epoch().await.unwrap());
    new.apply(&worker_batch("w", "draining")).await.unwrap();
    let workers = new.list_workers().await.unwrap();
    assert_eq!(
        workers[0].state, "draining",
        "nothing of the old leader's landed"
    );
    sys.shutdown().await;
}

/// Sends `sig` (e.g. `-STOP`) to a process.
fn signal(pid: u32, sig: &str) {
    run(Command::new("kill").args([sig, &pid.to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_lock_writes_nothing_after_the_standby_takes_over() {
    // The lock is a Postgres session here, whatever store the suite runs on.
    let postgres = common::TestStore::Postgres {
        admin_url: PG_ADMIN.to_owned(),
    };
    let mut sys = TestSystem::without_server_on(postgres, REDIS).await;
    let (leader, standby) = (free_port(), free_port());
    sys.spawn_orchestrator(leader);
    let leader_url = sys.base.clone();
    let leader_pid = sys.orchestrators.last().unwrap().1.id();
    sys.wait_ready(&leader_url, LIMIT).await;
    sys.spawn_orchestrator(standby);
    let standby_url = sys.base.clone();
    sys.base = leader_url;
    sys.spawn_worker("default", 20);
    let id = sys.submit(&layered_sleeps(6, 10, 0.3)).await;
    sys.wait_until(&id, LIMIT, |r| {
        r["counts"]["succeeded"].as_u64().unwrap() >= 10
    })
    .await;

    // The leader stalls (a long pause, a partition) and its lock session ends, as a NAT
    // or pooler idle timeout would end it; the standby takes over meanwhile.
    signal(leader_pid, "-STOP");
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1",
    )
    .bind(format!("apex-leader-lock-{leader_pid}"))
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(killed, vec![(true,)], "the leader's lock session");
    sys.wait_ready(&standby_url, LIMIT).await;
    // The old leader wakes with its work still in memory, believing it leads.
    signal(leader_pid, "-CONT");
    sys.base = standby_url;
    let run = assert_each_task_succeeded_once(&sys, &id).await;
    assert_eq!(run["counts"]["succeeded"], 60);

    // It stepped down on its own, and every event of the run has one sequence number.
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        let (_, child) = sys
            .orchestrators
            .iter_mut()
            .find(|(p, _)| *p == leader)
            .unwrap();
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the old leader is still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "it exits non-zero: {status}");
    let (_, log) = sys
        .get(&format!("/api/v1/runs/{id}/events?limit=100000"))
        .await;
    let seqs: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_run_is_noticed_and_the_run_completes() {
    let mut redis = PrivateRedis::start();
    let mut sys = started_server(TestSystem::without_server(PG_ADMIN, &redis.url()).await).await;
    sys.spawn_worker("default", 20);
    sys.spawn_worker("default", 20);
    let id = sys.submit(&layered_sleeps(3, 5, 1.0)).await;
    sys.wait_until(&id, LIMIT, |r| {
        r["counts"]["succeeded"].as_u64().unwrap() >= 5
            && r["counts"]["running"].as_u64().unwrap() >= 1
    })
    .await;
    redis.restart_empty();
    assert_each_task_succeeded_once(&sys, &id).await;
    sys.shutdown().await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_a_few_seconds_loses_nothing_and_the_api_says_503() {
    let pg = PrivatePostgres::start();
    let mut sys = started_server(TestSystem::without_server(&pg.admin_url(), REDIS).await).await;
    sys.spawn_worker("default", 10);
    let id = sys.submit(&layered_sleeps(6, 1, 0.5)).await;
    sys.wait_until(&id, LIMIT, |r| {
        r["counts"]["succeeded"].as_u64().unwrap() >= 1
    })
    .await;
    pg.down();
    // A read the store must answer says so. (A document read before the outage may
    // still be served as last stored: nothing can be stored meanwhile, api/run_docs.rs.)
    let (status, body) = sys.get(&format!("/api/v1/runs/{id}?tasks=false")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    let (status, _) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [{"id": "x", "handler": "noop"}]}),
        )
        .await;
    assert_eq!(status, 503);
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.up();
    assert_each_task_succeeded_once(&sys, &id).await;
    let (status, _) = sys.get("/readyz").await;
    assert_eq!(status, 200);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_late_and_malformed_results_change_nothing() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 5);
    let id = sys.submit(&json!({"tasks": [{"id": "a", "handler": "sum"}, {"id": "b", "handler": "sum", "depends_on": ["a"]}]})).await;
    let before = assert_each_task_succeeded_once(&sys, &id).await;
    let a = common::task(&before, "a").clone();
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let results = format!("{}:results", sys.prefix);
    let forged = |attempt: u32, output: i64| {
        json!({"v": 1, "type": "result", "run_id": id, "task_id": "a", "attempt": attempt,
               "worker_id": "forger", "queue": "default", "msg_id": "1-1", "outcome": "succeeded",
               "output": output, "started_at_ms": 1, "finished_at_ms": 2})
        .to_string()
    };
    for body in [
        forged(1, 999),
        forged(7, 555),
        "{not json".to_owned(),
        json!({"v": 99, "type": "log"}).to_string(),
    ] {
        let _: String = redis::cmd("XADD")
            .arg(&results)
            .arg("*")
            .arg("m")
            .arg(body)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let dead = format!("{}:dead", sys.prefix);
    let deadline = Instant::now() + LIMIT;
    loop {
        let n: u64 = redis::cmd("XLEN")
            .arg(&dead)
            .query_async(&mut conn)
            .await
            .unwrap();
        if n >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "malformed messages were not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = assert_each_task_succeeded_once(&sys, &id).await;
    assert_eq!(
        common::task(&after, "a"),
        &a,
        "a recorded outcome is never overwritten"
    );
    assert_eq!(after["last_seq"], before["last_seq"], "no new events");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_attempt_fails_on_its_idle_timeout_and_frees_its_slot() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 5);
    let id = sys.submit(&json!({"tasks": [{"id": "hung", "handler": "sleep", "input": {"seconds": 60}, "idle_timeout_s": 1.5}]})).await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed");
    assert_eq!(common::task(&run, "hung")["error"]["kind"], "idle_timeout");
    let deadline = Instant::now() + LIMIT;
    loop {
        let (_, w) = sys.get("/api/v1/workers").await;
        if w["workers"][0]["in_flight"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker kept running the hung attempt: {w}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_tasks_no_worker_has_read_are_never_started() {
    let mut sys = TestSystem::start().await;
    let id = sys.submit(&json!({"tasks": (0..5).map(|i| json!({"id": format!("t{i}"), "handler": "sleep", "input": {"seconds": 30}})).collect::<Vec<_>>()})).await;
    // Wait for the entries to be in Redis, then cancel before any worker exists.
    let mut conn = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{}:queue:default", sys.prefix);
    let deadline = Instant::now() + LIMIT;
    while redis::cmd("XLEN")
        .arg(&stream)
        .query_async::<u64>(&mut conn)
        .await
        .unwrap()
        < 5
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = sys
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + LIMIT;
    while redis::cmd("XLEN")
        .arg(&stream)
        .query_async::<u64>(&mut conn)
        .await
        .unwrap()
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "cancelled entries stay in the queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sys.spawn_worker("default", 5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, log) = sys.get(&format!("/api/v1/runs/{id}/events")).await;
    let events = log["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .filter(|e| e["kind"] == "task")
            .all(|e| e["state"] != "running"),
        "{log}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["state"] == "cancelled" && e["kind"] == "task")
            .count(),
        5
    );
    sys.shutdown().await;
}
