//! The local actuator of autoscaling: keeps as many `apex-worker` processes running as
//! the engine's desired count for their queues, starting them at once and draining
//! them on the way down. A drained worker takes no new work, finishes what it runs and
//! exits, so scaling never interrupts a task.

use crate::engine::EngineHandle;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the workers are started.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub program: PathBuf,
    pub queues: Vec<String>,
    pub concurrency: u32,
    pub redis_url: String,
    pub redis_prefix: String,
    pub imports: Vec<String>,
    pub log: PathBuf,
    /// The operator's providers file, which the workers read too.
    pub providers_file: Option<PathBuf>,
}

struct Worker {
    child: Child,
    /// Set once it was told to drain.
    draining_since: Option<Instant>,
}

/// The local worker fleet.
pub struct Supervisor {
    spec: WorkerSpec,
    workers: Vec<Worker>,
    started: u32,
}

/// A worker draining on scale-down gets this long to finish what it runs.
const DRAIN_GRACE_S: u32 = 3_600;

fn signal(child: &Child, sig: &str) {
    // `kill(1)`: this crate forbids unsafe code, so no libc call.
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
}

impl Supervisor {
    pub fn new(spec: WorkerSpec) -> Self {
        Self {
            spec,
            workers: Vec::new(),
            started: 0,
        }
    }

    /// Workers running and not draining.
    pub fn active(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.draining_since.is_none())
            .count()
    }

    /// Workers still running, draining or not.
    pub fn alive(&self) -> usize {
        self.workers.len()
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        self.started += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)?;
        let mut cmd = Command::new(&self.spec.program);
        for q in &self.spec.queues {
            cmd.args(["--queue", q]);
        }
        for m in &self.spec.imports {
            cmd.args(["--import", m]);
        }
        cmd.args(["--concurrency", &self.spec.concurrency.to_string()])
            .args(["--redis-prefix", &self.spec.redis_prefix])
            // In the environment, not on the command line: the URL may carry a password.
            .env("REDIS_URL", &self.spec.redis_url)
            .args(["--shutdown-grace", &DRAIN_GRACE_S.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(file) = &self.spec.providers_file {
            cmd.env("APEX_PROVIDERS_FILE", file);
        }
        let child = cmd.spawn()?;
        tracing::info!(pid = child.id(), n = self.started, "started a worker");
        self.workers.push(Worker {
            child,
            draining_since: None,
        });
        Ok(())
    }

    /// Forgets workers that exited; restarts none by itself (the next step decides).
    fn reap(&mut self) {
        self.workers.retain_mut(|w| match w.child.try_wait() {
            Ok(Some(status)) => {
                if w.draining_since.is_none() {
                    tracing::warn!(pid = w.child.id(), %status, "a worker exited on its own");
                } else {
                    tracing::info!(pid = w.child.id(), "a drained worker exited");
                }
                false
            }
            _ => true,
        });
    }

    /// Moves the fleet one step towards `desired` active workers.
    pub fn step(&mut self, desired: usize) -> std::io::Result<()> {
        self.reap();
        while self.active() < desired {
            self.spawn()?;
        }
        let surplus = self.active().saturating_sub(desired);
        // The newest go first: the oldest have warmed caches and connections.
        for w in self
            .workers
            .iter_mut()
            .rev()
            .filter(|w| w.draining_since.is_none())
            .take(surplus)
        {
            tracing::info!(pid = w.child.id(), "draining a worker (scale down)");
            signal(&w.child, "-TERM");
            w.draining_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Follows the engine's desired count for the supervised queues until `stop` fires.
    pub async fn run(
        &mut self,
        engine: EngineHandle,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let Ok(stats) = engine.queue_stats().await else {
                return;
            };
            let desired: u64 = stats
                .iter()
                .filter(|q| self.spec.queues.contains(&q.name))
                .map(|q| q.workers_desired)
                .max()
                .unwrap_or(0);
            if let Err(e) = self.step(desired as usize) {
                tracing::error!(error = %e, program = %self.spec.program.display(), "cannot start a worker");
            }
        }
    }

    /// Stops every worker: asks them to finish (SIGTERM), then, after `grace`, to hand
    /// back what they still run (a second SIGTERM), and kills what is left.
    pub async fn shutdown(&mut self, grace: Duration) {
        for w in &self.workers {
            signal(&w.child, "-TERM");
        }
        let waited = Self::wait_all(&mut self.workers, grace).await;
        if !waited {
            for w in &self.workers {
                signal(&w.child, "-TERM");
            }
            if !Self::wait_all(&mut self.workers, Duration::from_secs(5)).await {
                for w in &mut self.workers {
                    let _ = w.child.kill();
                }
            }
        }
        for w in &mut self.workers {
            let _ = w.child.wait();
        }
        self.workers.clear();
    }

    async fn wait_all(workers: &mut [Worker], limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if workers
                .iter_mut()
                .all(|w| !matches!(w.child.try_wait(), Ok(None)))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // Never leave orphans, even on an early return.
        for w in &mut self.workers {
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
    }
}

/// Finds the `apex-worker` command: the explicit path, the project's virtualenv (here or
/// beside this binary's checkout), or `PATH`.
pub fn find_worker(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        // A path that is not there is a mistake to report, not a reason to look elsewhere.
        return p.exists().then(|| p.to_path_buf());
    }
    let mut candidates = vec![PathBuf::from(".venv/bin/apex-worker")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/apex → the checkout's .venv
        if let Some(root) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
            candidates.push(root.join(".venv/bin/apex-worker"));
        }
    }
    if let Some(found) = candidates.into_iter().find(|p| p.exists()) {
        return Some(found);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("apex-worker"))
            .find(|p| p.exists())
    })
}
