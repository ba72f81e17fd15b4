//! `apex up`: the whole system on one machine with no setup. SQLite under the data
//! directory unless `DATABASE_URL` says otherwise, a private `redis-server` unless
//! `REDIS_URL` is given, local workers autoscaled on queue depth, the API and the
//! dashboard. Ctrl-C stops everything it started.

pub mod data_dir;
mod redis;
mod supervisor;

pub use data_dir::DataDir;
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
    /// Address of the API and dashboard [default: 127.0.0.1:8080, or a free port when
    /// 8080 is taken].
    #[arg(long, env = "APEX_BIND")]
    pub bind: Option<SocketAddr>,
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
    /// Bearer token the API requires [default: a random one, kept in the data directory
    /// and reused].
    #[arg(long, env = "APEX_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Serve without authentication: any program or web page that can reach the port
    /// can use the API. Loopback addresses only.
    #[arg(long, conflicts_with = "api_token")]
    pub no_auth: bool,
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
    /// The LLM providers runs may name, with their endpoints and key variables (JSON;
    /// see python-workers/README.md) [default: openai, anthropic, mock].
    #[arg(long, env = "APEX_PROVIDERS_FILE")]
    pub providers_file: Option<PathBuf>,
    /// Ceilings on the limits runs share, per concurrency key or agent (JSON; see
    /// `apex serve --help` and docs/API.md, Limits).
    #[arg(long, env = "APEX_CONCURRENCY_LIMITS_FILE")]
    pub concurrency_limits_file: Option<PathBuf>,
    /// The `apex-worker` command (default: the project's .venv, then PATH).
    #[arg(long, env = "APEX_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Serve the dashboard from this built directory instead of the copy compiled into
    /// the binary (for dashboard development).
    #[arg(long, env = "APEX_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Also submit a demo DAG and show its progress.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: stop when the demo run ends, exiting 0 if it succeeded.
    #[arg(long, requires = "demo")]
    pub exit_when_done: bool,
}

/// The address `apex up` serves at when none is given.
const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Runs `apex up` until Ctrl-C (or the demo ends, with `--exit-when-done`).
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::open(&args.data_dir)?;
    let worker = match (find_worker(args.worker_bin.as_deref()), &args.worker_bin) {
        (Some(w), _) => w,
        (None, Some(given)) => anyhow::bail!(
            "apex-worker not found at {}: fix --worker-bin / APEX_WORKER_BIN, or install the \
             worker (from a checkout of Apex: `pip install ./python-workers`, or \
             `bash scripts/setup.sh`, which installs it into .venv)",
            given.display()
        ),
        (None, None) => anyhow::bail!(
            "apex-worker not found on PATH or in .venv: install it (from a checkout of Apex: \
             `pip install ./python-workers`, or `bash scripts/setup.sh`, which installs it \
             into .venv), or pass --worker-bin"
        ),
    };
    let api_token = match (&args.api_token, args.no_auth) {
        (_, true) => None,
        (Some(t), false) => Some(t.trim().to_owned()),
        (None, false) => Some(data_dir.token()?),
    };
    let listener = bind(args.bind).await?;
    let addr = listener.local_addr()?;
    let mut private_redis = None;
    let redis_url = match &args.redis_url {
        Some(url) => url.clone(),
        None => {
            let r = redis::PrivateRedis::start(&data_dir.path().join("redis"))?;
            let url = r.url();
            private_redis = Some(r);
            url
        }
    };
    let database_url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.path().join("apex.db").display()));
    let providers_file = match &args.providers_file {
        Some(p) => Some(std::path::absolute(p).context("the providers file path")?),
        None => None,
    };
    let mut config = serve_config(&args, database_url, redis_url.clone());
    config.providers_file = providers_file.clone();
    config.bind = addr;
    config.no_auth = api_token.is_none();
    config.api_token = api_token.clone();
    let server = crate::server::start_on(config, listener).await?;
    let url = format!("http://{}", server.addr);
    data_dir.record_server(&url)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut supervisor = Supervisor::new(WorkerSpec {
        program: worker,
        queues: args.queues.clone(),
        concurrency: args.worker_concurrency,
        redis_url,
        redis_prefix: args.redis_prefix.clone(),
        imports: args.imports.clone(),
        log: data_dir.path().join("workers.log"),
        providers_file,
    });
    let engine = server.handle.clone();
    let store = Arc::clone(&server.store);
    let fleet = tokio::spawn(async move {
        supervisor.run(engine, stop_rx).await;
        supervisor
    });
    print_banner(&url, api_token.as_deref(), data_dir.path(), &args);

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

/// Listens where asked; with no address given, on 8080, or on a free port when 8080 is
/// taken (a second checkout, another program), so the first run never fails on it.
async fn bind(asked: Option<SocketAddr>) -> anyhow::Result<tokio::net::TcpListener> {
    if let Some(addr) = asked {
        return Ok(crate::server::bind(addr).await?);
    }
    let default: SocketAddr = DEFAULT_BIND.parse().expect("a valid address");
    match crate::server::bind(default).await {
        Ok(l) => Ok(l),
        Err(crate::server::BindError::InUse(_)) => {
            let l = crate::server::bind(SocketAddr::new(default.ip(), 0)).await?;
            println!(
                "Port {} is taken; serving on port {} instead (choose one with --bind).",
                default.port(),
                l.local_addr()?.port()
            );
            Ok(l)
        }
        Err(e) => Err(e.into()),
    }
}

fn serve_config(args: &UpArgs, database_url: String, redis_url: String) -> ServeConfig {
    let mut c = ServeConfig::new(database_url, redis_url, args.redis_prefix.clone());
    c.autoscale_min = args.min_workers;
    c.autoscale_max = args.max_workers;
    c.autoscale_cooldown_s = args.cooldown_s;
    c.worker_slots = args.worker_concurrency;
    c.queues = args.queues.clone();
    c.dashboard_dir = args.dashboard_dir.clone();
    c.concurrency_limits_file = args.concurrency_limits_file.clone();
    c
}

fn print_banner(url: &str, token: Option<&str>, data_dir: &Path, args: &UpArgs) {
    println!("Apex is up.");
    match token {
        Some(t) => println!("Dashboard: {url}/?token={t}"),
        None => println!("Dashboard: {url}/  (authentication is OFF: --no-auth)"),
    }
    if !crate::api::dashboard_embedded() && args.dashboard_dir.is_none() {
        println!("  (this binary was built without the dashboard: `/` says how to build it)");
    }
    println!("  API        {url}/api/v1  (docs: {url}/api/v1/openapi.json)");
    println!(
        "  workers    {}..{} local, {} slots each, serving {}",
        args.min_workers,
        args.max_workers,
        args.worker_concurrency,
        args.queues.join(", ")
    );
    println!("  data       {}", data_dir.display());
    if token.is_some() {
        println!(
            "  token      in {} (the apex CLI run here, or with --data-dir, finds it)",
            data_dir.join(data_dir::TOKEN_FILE).display()
        );
    }
    println!("Submit a DAG:  apex submit examples/diamond.json --watch");
}

/// Submits the demo DAG and prints its progress until it ends; true if it succeeded.
async fn run_demo(engine: &crate::engine::EngineHandle, store: &dyn Store) -> anyhow::Result<bool> {
    let spec: RunSpec = serde_json::from_str(DEMO).context("the embedded demo DAG")?;
    let dag = validate(spec, &Limits::default())
        .map_err(|e| anyhow::anyhow!("the demo DAG is invalid: {e}"))?;
    let started = Instant::now();
    // Recorded as the run's creator, as a token's name would be.
    let run = engine.submit(dag, "apex-up").await?;
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
