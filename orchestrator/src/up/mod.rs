//! `apex up`: the whole system on one machine with no setup. SQLite under the data
//! directory unless `DATABASE_URL` says otherwise, a private `redis-server` unless
//! `REDIS_URL` is given, local workers autoscaled on queue depth, the API and the
//! dashboard. Ctrl-C stops everything it started.

mod redis;
mod supervisor;

pub use supervisor::{find_worker, Supervisor, WorkerSpec};

use crate::config::ServeConfig;
use crate::dag::{validate, Limits, RunSpec};
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The DAG `--demo` runs: a chain whose draft step fails once and succeeds on retry.
const DEMO: &str = include_str!("../../../examples/chain.json");

/// Settings of `apex up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Address of the API and dashboard.
    #[arg(long, env = "APEX_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Where the SQLite database, Redis files and logs live.
    #[arg(long, env = "APEX_DATA_DIR", default_value = ".apex")]
    pub data_dir: PathBuf,
    /// Store to use instead of SQLite under the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis to use instead of starting a private one.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Namespace of every Redis key.
    #[arg(long, env = "APEX_REDIS_PREFIX", default_value = "apex")]
    pub redis_prefix: String,
    /// Bearer token the API requires; without one, auth is off (loopback only).
    #[arg(long, env = "APEX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Fewest local workers, even when idle.
    #[arg(long, default_value_t = 1)]
    pub min_workers: u32,
    /// Most local workers, whatever the backlog.
    #[arg(long, default_value_t = 4)]
    pub max_workers: u32,
    /// Slots (concurrent attempts) of each local worker.
    #[arg(long, default_value_t = 50)]
    pub worker_concurrency: u32,
    /// Seconds the queue must stay quieter before workers are drained.
    #[arg(long, default_value_t = 30.0)]
    pub cooldown_s: f64,
    /// Queues the local workers serve.
    #[arg(long = "queue", default_value = "default")]
    pub queues: Vec<String>,
    /// Python modules with your handlers, imported by every local worker.
    #[arg(long = "import")]
    pub imports: Vec<String>,
    /// The `apex-worker` command (default: the project's .venv, then PATH).
    #[arg(long, env = "APEX_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Built dashboard to serve (default: dashboard/dist of the checkout).
    #[arg(long, env = "APEX_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Also submit a demo DAG and show its progress.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: stop when the demo run ends, exiting 0 if it succeeded.
    #[arg(long, requires = "demo")]
    pub exit_when_done: bool,
}

/// Runs `apex up` until Ctrl-C (or the demo ends, with `--exit-when-done`).
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let worker = match (find_worker(args.worker_bin.as_deref()), &args.worker_bin) {
        (Some(w), _) => w,
        (None, Some(given)) => anyhow::bail!(
            "apex-worker not found at {}: run `bash scripts/setup.sh` (it installs the worker into .venv), \
             or `pip install ./python-workers`, or fix --worker-bin / APEX_WORKER_BIN",
            given.display()
        ),
        (None, None) => anyhow::bail!(
            "apex-worker not found: run `bash scripts/setup.sh` (it installs the worker into .venv), \
             or `pip install ./python-workers`, or pass --worker-bin"
        ),
    };
    let mut private_redis = None;
    let redis_url = match &args.redis_url {
        Some(url) => url.clone(),
        None => {
            let r = redis::PrivateRedis::start(&args.data_dir.join("redis"))?;
            let url = r.url();
            private_redis = Some(r);
            url
        }
    };
    let database_url = args.database_url.clone().unwrap_or_else(|| {
        let db = std::path::absolute(args.data_dir.join("apex.db"))
            .unwrap_or_else(|_| args.data_dir.join("apex.db"));
        format!("sqlite://{}", db.display())
    });
    let config = serve_config(&args, database_url, redis_url.clone());
    let server = crate::server::start(config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut supervisor = Supervisor::new(WorkerSpec {
        program: worker,
        queues: args.queues.clone(),
        concurrency: args.worker_concurrency,
        redis_url,
        redis_prefix: args.redis_prefix.clone(),
        imports: args.imports.clone(),
        log: args.data_dir.join("workers.log"),
    });
    let engine = server.handle.clone();
    let store = Arc::clone(&server.store);
    let fleet = tokio::spawn(async move {
        supervisor.run(engine, stop_rx).await;
        supervisor
    });
    print_banner(server.addr, &args);

    let outcome = if args.demo {
        let demo = tokio::select! {
            r = run_demo(&server.handle, store.as_ref()) => Some(r),
            _ = crate::server::shutdown_signal() => None,
        };
        match demo {
            Some(Ok(succeeded)) if args.exit_when_done => Some(succeeded),
            Some(Ok(_)) => {
                println!("Still serving; Ctrl-C to stop.");
                crate::server::shutdown_signal().await;
                None
            }
            Some(Err(e)) => {
                eprintln!("apex up: the demo could not run: {e:#}");
                Some(false)
            }
            None => None,
        }
    } else {
        crate::server::shutdown_signal().await;
        None
    };

    println!("Stopping workers, server and Redis…");
    let _ = stop_tx.send(true);
    if let Ok(mut supervisor) = fleet.await {
        supervisor.shutdown(Duration::from_secs(10)).await;
    }
    server.stop().await;
    if let Some(mut r) = private_redis {
        r.stop();
    }
    println!("Stopped.");
    Ok(match outcome {
        Some(false) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn serve_config(args: &UpArgs, database_url: String, redis_url: String) -> ServeConfig {
    let mut c = ServeConfig::new(database_url, redis_url, args.redis_prefix.clone());
    c.bind = args.bind;
    c.api_token = args.api_token.clone();
    c.no_auth = args.api_token.is_none();
    c.autoscale_min = args.min_workers;
    c.autoscale_max = args.max_workers;
    c.autoscale_cooldown_s = args.cooldown_s;
    c.worker_slots = args.worker_concurrency;
    c.queues = args.queues.clone();
    c.dashboard_dir = args.dashboard_dir.clone().unwrap_or_else(find_dashboard);
    c
}

/// The built dashboard of this checkout: here, or beside the binary's checkout.
fn find_dashboard() -> PathBuf {
    let here = PathBuf::from("dashboard/dist");
    if here.join("index.html").exists() {
        return here;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(Path::parent)
                .and_then(Path::parent)
                .map(|root| root.join("dashboard/dist"))
        })
        .filter(|d| d.join("index.html").exists())
        .unwrap_or(here)
}

fn print_banner(addr: SocketAddr, args: &UpArgs) {
    let url = format!("http://{addr}");
    println!("Apex is up.");
    println!("  dashboard  {url}/");
    println!("  API        {url}/api/v1  (docs: {url}/api/v1/openapi.json)");
    println!(
        "  workers    {}..{} local, {} slots each, serving {}",
        args.min_workers,
        args.max_workers,
        args.worker_concurrency,
        args.queues.join(", ")
    );
    println!("  data       {}", args.data_dir.display());
    println!("Submit a DAG:  curl -X POST {url}/api/v1/runs -d @examples/diamond.json");
    println!("           or  apex submit examples/diamond.json --watch --server {url}");
}

/// Submits the demo DAG and prints its progress until it ends; true if it succeeded.
async fn run_demo(engine: &crate::engine::EngineHandle, store: &dyn Store) -> anyhow::Result<bool> {
    let spec: RunSpec = serde_json::from_str(DEMO).context("the embedded demo DAG")?;
    let dag = validate(spec, &Limits::default())
        .map_err(|e| anyhow::anyhow!("the demo DAG is invalid: {e}"))?;
    let started = Instant::now();
    let run = engine.submit(dag).await?;
    println!("Demo: submitted run {} ({} tasks)", run.id, run.task_count);
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(r) = store.get_run(&run.id).await? else {
            continue;
        };
        let c = crate::store::counts_map(&r.counts);
        let line = format!(
            "Demo: {}/{} succeeded, {} running, {} queued, {} failed",
            c["succeeded"],
            r.task_count,
            c["running"],
            c["queued"] + c["ready"],
            c["failed"]
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        if r.state.is_terminal() {
            println!(
                "Demo: run {} {} in {:.1} s",
                r.id,
                r.state,
                started.elapsed().as_secs_f64()
            );
            return Ok(r.state == crate::state_machine::RunState::Succeeded);
        }
    }
}
