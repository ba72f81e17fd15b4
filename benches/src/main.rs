//! `apex-loadgen`: runs benchmark workloads against a live Apex and prints one JSON line
//! per workload with its throughput (tasks/s from submit to run completion), and, when
//! asked, the latency of live events to WebSocket clients.

mod live;
mod workloads;

use anyhow::{bail, Context};
use apex::api_types::{ErrorResponse, Run, RunState, RunSummary};
use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Benchmark workloads against a running Apex")]
struct Args {
    /// The orchestrator's URL.
    #[arg(long, env = "APEX_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// `w1`, `w2`, `w3` (one-task round trips), `w4` (slot efficiency with `sleep`
    /// tasks), `api` (GET latency at a fixed rate, idle and during W1), `ws` (W1 with
    /// WebSocket clients measuring event latency), `live` (W1 watched by each of
    /// `--live-rows`, against the first row), or `fair` (one-task runs beside a run of
    /// `--width` noops on the same queue).
    #[arg(long, default_value = "w1")]
    workload: String,
    /// Runs of the workload; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// W1's task count.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// WebSocket clients for the `ws` workload.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// The `live` workload's rows: watchers and their detail (`tasks`, `summary`, or
    /// `visible`: one screen of tasks each, as the dashboard follows a big run).
    #[arg(long, default_value = "1:tasks,50:tasks,50:visible,500:summary")]
    live_rows: String,
    /// W3's round trips per repeat.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// W4: slots serving its queue (workers × concurrency), its task count and sleep.
    #[arg(long, default_value_t = 1_000)]
    slots: usize,
    #[arg(long, default_value_t = 0.5)]
    sleep: f64,
    /// `api`: requests per second of the fixed-rate GET load, and its connections.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// `scale`: tasks per layer (the most in flight at once), and the orchestrator's
    /// process id, whose resident memory (`scale`) or CPU time (`live`) is sampled.
    #[arg(long, default_value_t = 100_000)]
    width: usize,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Queue of W4's tasks, served by workers with `--slots` slots in all.
    #[arg(long, default_value = "default")]
    queue: String,
    /// Free-form labels copied into the output (e.g. workers=2).
    #[arg(long)]
    label: Vec<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn percentile(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    if xs.is_empty() {
        return f64::NAN;
    }
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// The parts of a WebSocket frame the follower reads. Not `api_types::WsFrame`: at fifty
/// clients this process decodes every event fifty times, on the same two cores as the
/// server, so it reads only these fields (REST answers use the shared types).
#[derive(serde::Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    seq: Option<u64>,
    run: Option<RunLite>,
    #[serde(default)]
    events: Vec<EventLite>,
}

#[derive(serde::Deserialize)]
struct RunLite {
    state: String,
}

#[derive(serde::Deserialize)]
struct EventLite {
    kind: String,
    seq: Option<u64>,
    state: Option<String>,
    stored_at_ms: Option<i64>,
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn submit(&self, spec: &Value) -> anyhow::Result<String> {
        let r = self
            .http
            .post(format!("{}/api/v1/runs", self.base))
            .json(spec)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        if status.as_u16() != 201 {
            let why = serde_json::from_slice::<ErrorResponse>(&body)
                .map(|e| format!("{}: {}", e.error.code.as_str(), e.error.message))
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            bail!("submit answered {status}: {why}");
        }
        let run: RunSummary = serde_json::from_slice(&body).context("the submitted run")?;
        Ok(run.id)
    }

    fn ws_url(&self, run: &str) -> String {
        format!(
            "{}/api/v1/ws?run={run}",
            self.base.replacen("http", "ws", 1)
        )
    }

    /// Follows a run over the WebSocket until it ends, as a client should: on a
    /// `resync` it reconnects and resumes after the last event it saw. Returns the final
    /// state, the latency (ms) of each live task event (from its commit to the store to
    /// its arrival, counting only events after the client's snapshot), and the
    /// reconnections.
    async fn follow(&self, run: &str) -> anyhow::Result<(String, Vec<f64>, u32)> {
        let mut latencies = Vec::new();
        let mut last_seq: Option<u64> = None;
        let mut live_from = i64::MAX;
        let mut resyncs = 0;
        loop {
            let url = match last_seq {
                Some(s) => format!("{}&since={s}", self.ws_url(run)),
                None => self.ws_url(run),
            };
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            'frames: while let Some(msg) = ws.next().await {
                // A dropped connection is resumed like a resync.
                let Ok(msg) = msg else {
                    resyncs += 1;
                    break 'frames;
                };
                let Message::Text(text) = msg else { continue };
                let arrived = now_ms();
                // Only the fields used here are decoded: at fifty clients this process
                // reads every event fifty times, on the same two cores as the server.
                let frame: Frame = serde_json::from_str(&text)?;
                match frame.kind.as_str() {
                    "snapshot" => {
                        live_from = live_from.min(arrived);
                        last_seq = frame.seq;
                        let state = frame.run.map(|r| r.state).unwrap_or_default();
                        if state != "running" {
                            return Ok((state, latencies, resyncs));
                        }
                    }
                    "events" => {
                        for e in frame.events {
                            if e.seq.is_some() {
                                last_seq = e.seq;
                            }
                            let stored = e.stored_at_ms.unwrap_or(arrived);
                            if e.kind == "task" && stored >= live_from {
                                latencies.push((arrived - stored) as f64);
                            }
                            if e.kind == "run" && e.state.as_deref() != Some("running") {
                                return Ok((e.state.unwrap_or_default(), latencies, resyncs));
                            }
                        }
                    }
                    "resync" => {
                        resyncs += 1;
                        break 'frames;
                    }
                    _ => {}
                }
            }
            if resyncs > 100 {
                bail!("run {run}: too many resyncs");
            }
        }
    }

    /// Polls the list of running runs every 20 ms until it is empty.
    async fn wait_no_run_running(&self) -> anyhow::Result<()> {
        loop {
            let page: Value = self
                .http
                .get(format!("{}/api/v1/runs?state=running&limit=1", self.base))
                .send()
                .await?
                .json()
                .await?;
            if page["runs"].as_array().is_some_and(Vec::is_empty) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the run until it ends, with no pause between requests.
    async fn poll(&self, id: &str) -> anyhow::Result<String> {
        loop {
            let run = self.run(id).await?;
            if run.summary.state != RunState::Running {
                return Ok(run.summary.state.as_str().to_owned());
            }
        }
    }

    /// Polls the run's summary every `every` until it ends.
    async fn poll_every(&self, id: &str, every: Duration) -> anyhow::Result<String> {
        loop {
            let run: Run = self
                .http
                .get(format!("{}/api/v1/runs/{id}?tasks=false", self.base))
                .send()
                .await?
                .json()
                .await?;
            if run.summary.state != RunState::Running {
                return Ok(run.summary.state.as_str().to_owned());
            }
            tokio::time::sleep(every).await;
        }
    }

    /// The run with its tasks (`GET /api/v1/runs/{id}`).
    async fn run(&self, id: &str) -> anyhow::Result<Run> {
        Ok(self
            .http
            .get(format!("{}/api/v1/runs/{id}", self.base))
            .send()
            .await?
            .json()
            .await?)
    }
}

/// Submits `spec`, waits for completion, returns (tasks/s, run id).
async fn timed_run(c: &Client, spec: &Value) -> anyhow::Result<(f64, String)> {
    let n = spec["tasks"].as_array().map_or(0, Vec::len);
    let started = Instant::now();
    let id = c.submit(spec).await?;
    let (state, _, _) = c.follow(&id).await?;
    let secs = started.elapsed().as_secs_f64();
    if state != "succeeded" {
        bail!("run {id} ended {state}");
    }
    Ok((n as f64 / secs, id))
}

/// One-task round trips: submit, then see the run finished by following it (`ws`) or
/// by polling; the latencies in ms, and where each went by the server's timestamps.
async fn round_trips(c: &Client, rounds: usize, follow: bool) -> anyhow::Result<RoundTrips> {
    let spec = workloads::w3();
    let mut out = RoundTrips::default();
    for _ in 0..rounds {
        let submitted_ms = now_ms();
        let started = Instant::now();
        let id = c.submit(&spec).await?;
        let state = if follow {
            c.follow(&id).await?.0
        } else {
            c.poll(&id).await?
        };
        out.total.push(started.elapsed().as_secs_f64() * 1e3);
        let seen_ms = now_ms();
        if state != "succeeded" {
            bail!("run {id} ended {state}");
        }
        let run = c.run(&id).await?;
        let t = run
            .tasks
            .as_deref()
            .and_then(<[_]>::first)
            .context("the run's task")?;
        let at = |v: Option<i64>| v.unwrap_or(0);
        let (queued, begun, done) = (
            at(t.queued_at_ms),
            at(t.started_at_ms),
            at(t.finished_at_ms),
        );
        out.submit_to_queued.push((queued - submitted_ms) as f64);
        out.queued_to_started.push((begun - queued) as f64);
        out.started_to_finished.push((done - begun) as f64);
        out.finished_to_seen.push((seen_ms - done) as f64);
    }
    Ok(out)
}

/// Open-loop GETs of `url` at `rate` per second over `connections` connections until
/// `stop` is set: each latency counts from when its request was due, so a stalled server
/// is charged for the requests that queued behind it. Latencies in ms.
async fn fixed_rate(
    http: reqwest::Client,
    url: String,
    rate: u32,
    connections: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<f64>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    let senders: Vec<_> = (0..connections)
        .map(|_| {
            let (http, url, rx) = (http.clone(), url.clone(), std::sync::Arc::clone(&rx));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let Some(due) = rx.lock().await.recv().await else {
                        return anyhow::Ok(lat);
                    };
                    let r = http.get(&url).send().await?;
                    if !r.status().is_success() {
                        bail!("GET {url} answered {}", r.status());
                    }
                    r.bytes().await?;
                    lat.push(due.elapsed().as_secs_f64() * 1e3);
                }
            })
        })
        .collect();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut sent = 0u32;
    while !*stop.borrow() {
        tick.tick().await;
        let _ = tx.send(start + period * sent);
        sent += 1;
    }
    drop(tx);
    let mut all = Vec::new();
    for s in senders {
        all.extend(s.await??);
    }
    Ok(all)
}

/// Resident memory of process `pid` in MB, from /proc.
fn rss_mb(pid: u32) -> Option<f64> {
    status_mb(pid, "VmRSS:")
}

/// A memory line of process `pid`'s /proc status (`VmRSS:`, `VmHWM:`) in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Where one W4 run's time went, in ms, from the tasks' timestamps (`queued_at` is the
/// engine's decision, before its commit; `started_at` and `finished_at` are the
/// workers'): submit to the first task queued, to the first started, and to the last of
/// the first wave started; each sleep's overshoot; how long a slot stayed empty (the
/// n-th start of the second wave against the n-th finish of the first); the last
/// finish to the client seeing the run finished.
fn w4_parts(
    tasks: &[apex::api_types::Task],
    slots: usize,
    sleep_s: f64,
    submitted_ms: i64,
    seen_ms: i64,
) -> Value {
    let sorted = |f: fn(&apex::api_types::Task) -> Option<i64>| {
        let mut v: Vec<i64> = tasks.iter().filter_map(f).collect();
        v.sort_unstable();
        v
    };
    let queued = sorted(|t| t.queued_at_ms);
    let starts = sorted(|t| t.started_at_ms);
    let finishes = sorted(|t| t.finished_at_ms);
    let mut overshoot: Vec<f64> = tasks
        .iter()
        .filter_map(|t| Some((t.finished_at_ms? - t.started_at_ms?) as f64 - sleep_s * 1e3))
        .collect();
    let wave = slots.min(starts.len());
    let mut refill: Vec<f64> = starts[wave..]
        .iter()
        .zip(&finishes)
        .map(|(s, f)| (s - f) as f64)
        .collect();
    let first = |v: &[i64]| v.first().map_or(f64::NAN, |t| (t - submitted_ms) as f64);
    json!({
        "submit_to_first_queued": first(&queued),
        "submit_to_first_started": first(&starts),
        "submit_to_wave1_started": starts.get(wave.saturating_sub(1)).map(|t| t - submitted_ms),
        "overshoot_p50": percentile(&mut overshoot, 0.5),
        "overshoot_max": percentile(&mut overshoot, 1.0),
        "refill_gap_p50": percentile(&mut refill, 0.5),
        "refill_gap_max": percentile(&mut refill, 1.0),
        "last_finished_to_seen": finishes.last().map(|t| seen_ms - t),
    })
}

/// W3's latencies (ms), each round trip and its parts.
#[derive(Default)]
struct RoundTrips {
    total: Vec<f64>,
    submit_to_queued: Vec<f64>,
    queued_to_started: Vec<f64>,
    started_to_finished: Vec<f64>,
    finished_to_seen: Vec<f64>,
}

impl RoundTrips {
    fn report(mut self) -> Value {
        json!({
            "p50_ms": percentile(&mut self.total, 0.5),
            "p90_ms": percentile(&mut self.total, 0.9),
            "p99_ms": percentile(&mut self.total, 0.99),
            "parts_p50_ms": {
                "submit_to_queued": percentile(&mut self.submit_to_queued, 0.5),
                "queued_to_started": percentile(&mut self.queued_to_started, 0.5),
                "started_to_finished": percentile(&mut self.started_to_finished, 0.5),
                "finished_to_seen": percentile(&mut self.finished_to_seen, 0.5),
            },
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let c = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?,
        base: args.server.trim_end_matches('/').to_owned(),
    };
    let labels: serde_json::Map<String, Value> = args
        .label
        .iter()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
        })
        .collect();
    let mut out = json!({"workload": args.workload, "repeat": args.repeat, "labels": labels});
    match args.workload.as_str() {
        "w1" => {
            let spec = workloads::w1(args.tasks);
            let mut rates = Vec::new();
            for _ in 0..args.repeat {
                rates.push(timed_run(&c, &spec).await?.0);
            }
            out["tasks"] = json!(args.tasks);
            out["tasks_per_s"] = json!(rates);
            out["median_tasks_per_s"] = json!(median(&mut rates).round());
        }
        "keyed" => {
            // `--tasks` one-task runs on one key of limit 1, submitted 16 at a time:
            // tasks/s to the last run's end, and the server's CPU seconds meanwhile.
            let spec = workloads::keyed();
            let (mut rates, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..args.repeat {
                let cpu_before = args.server_pid.map(live::cpu_seconds).transpose()?;
                let started = Instant::now();
                let submitted: Vec<anyhow::Result<String>> = futures::stream::iter(0..args.tasks)
                    .map(|_| c.submit(&spec))
                    .buffer_unordered(16)
                    .collect()
                    .await;
                for r in submitted {
                    r?;
                }
                c.wait_no_run_running().await?;
                rates.push(args.tasks as f64 / started.elapsed().as_secs_f64());
                if let (Some(pid), Some(before)) = (args.server_pid, cpu_before) {
                    cpu.push(live::cpu_seconds(pid)? - before);
                }
            }
            out["runs"] = json!(args.tasks);
            out["tasks_per_s"] = json!(rates);
            out["median_tasks_per_s"] = json!(median(&mut rates).round());
            if !cpu.is_empty() {
                out["server_cpu_s"] = json!(cpu);
                out["median_server_cpu_s"] = json!(median(&mut cpu));
            }
        }
        "w2" => {
            let (spec, expected) = workloads::w2(50, 200, 42);
            let mut rates = Vec::new();
            for _ in 0..args.repeat {
                let (rate, id) = timed_run(&c, &spec).await?;
                let run = c.run(&id).await?;
                let tasks = run.tasks.as_deref().context("tasks")?;
                for (t, (id, want)) in tasks.iter().zip(&expected) {
                    let got = t.output.as_ref().and_then(Value::as_u64);
                    if t.id != *id || got != Some(*want) {
                        bail!("W2 task {id}: expected {want}, got {:?}", t.output);
                    }
                }
                rates.push(rate);
            }
            out["tasks"] = json!(expected.len());
            out["sums_checked"] = json!(true);
            out["tasks_per_s"] = json!(rates);
            out["median_tasks_per_s"] = json!(median(&mut rates).round());
        }
        "ws" => {
            let spec = workloads::w1(args.tasks);
            let mut p50s = Vec::new();
            let mut p95s = Vec::new();
            let mut resyncs = 0;
            for _ in 0..args.repeat {
                let id = c.submit(&spec).await?;
                let followers: Vec<_> = (0..args.clients)
                    .map(|_| {
                        let c = Client {
                            http: c.http.clone(),
                            base: c.base.clone(),
                        };
                        let id = id.clone();
                        tokio::spawn(async move { c.follow(&id).await })
                    })
                    .collect();
                let mut all = Vec::new();
                for f in followers {
                    let (state, mut lat, r) = f.await??;
                    resyncs += r;
                    if state != "succeeded" {
                        bail!("run {id} ended {state}");
                    }
                    all.append(&mut lat);
                }
                p50s.push(percentile(&mut all, 0.50));
                p95s.push(percentile(&mut all, 0.95));
            }
            out["clients"] = json!(args.clients);
            out["tasks"] = json!(args.tasks);
            out["event_latency_ms_p50"] = json!(median(&mut p50s));
            out["event_latency_ms_p95"] = json!(median(&mut p95s));
            out["resyncs"] = json!(resyncs);
        }
        "live" => {
            let rows = live::parse_rows(&args.live_rows)?;
            let mut runs: Vec<Vec<live::Measured>> = rows.iter().map(|_| Vec::new()).collect();
            // Rows interleaved, so a drift of the machine's load hits them alike.
            for _ in 0..args.repeat {
                for (i, row) in rows.iter().enumerate() {
                    runs[i].push(live::measure(&c, args.tasks, row, args.server_pid).await?);
                }
            }
            out["tasks"] = json!(args.tasks);
            out["rows"] = live::table(&rows, &runs);
        }
        "fair" => {
            // A wide run of `--width` noops, and one-task runs one after another until
            // it ends, each polled every 2 ms: what a small run waits behind a wide one
            // on the same queue, and what holding the wide one's backlog costs it.
            let wide = workloads::w1(args.width);
            let small = workloads::w3();
            let (mut p50s, mut p95s, mut worst, mut rates) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut smalls = 0;
            for _ in 0..args.repeat {
                let started = Instant::now();
                let id = c.submit(&wide).await?;
                let watcher = Client {
                    http: c.http.clone(),
                    base: c.base.clone(),
                };
                // Timed where it is seen finished, not after the small run in flight then.
                let wide_run = tokio::spawn(async move {
                    let state = watcher.poll_every(&id, Duration::from_millis(20)).await;
                    state.map(|s| (s, started.elapsed()))
                });
                let mut trips = Vec::new();
                while !wide_run.is_finished() {
                    let t = Instant::now();
                    let sid = c.submit(&small).await?;
                    let state = c.poll_every(&sid, Duration::from_millis(2)).await?;
                    if state != "succeeded" {
                        bail!("run {sid} ended {state}");
                    }
                    trips.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let (state, took) = wide_run.await??;
                if state != "succeeded" {
                    bail!("the wide run ended {state}");
                }
                rates.push(args.width as f64 / took.as_secs_f64());
                smalls += trips.len();
                p50s.push(percentile(&mut trips, 0.50));
                p95s.push(percentile(&mut trips, 0.95));
                worst.push(percentile(&mut trips, 1.0));
            }
            out["wide_tasks"] = json!(args.width);
            out["small_runs"] = json!(smalls);
            out["small_ms_p50"] = json!(median(&mut p50s));
            out["small_ms_p95"] = json!(median(&mut p95s));
            out["small_ms_max"] = json!(median(&mut worst));
            out["wide_tasks_per_s"] = json!(rates);
            out["median_wide_tasks_per_s"] = json!(median(&mut rates).round());
        }
        "w3" => {
            // Warm up connections and the server's caches; not measured.
            round_trips(&c, 5, true).await?;
            let mut ws = RoundTrips::default();
            let mut poll = RoundTrips::default();
            for _ in 0..args.repeat {
                let w = round_trips(&c, args.rounds, true).await?;
                let p = round_trips(&c, args.rounds, false).await?;
                for (into, from) in [(&mut ws, w), (&mut poll, p)] {
                    into.total.extend(from.total);
                    into.submit_to_queued.extend(from.submit_to_queued);
                    into.queued_to_started.extend(from.queued_to_started);
                    into.started_to_finished.extend(from.started_to_finished);
                    into.finished_to_seen.extend(from.finished_to_seen);
                }
            }
            out["rounds"] = json!(args.rounds * args.repeat);
            out["ws"] = ws.report();
            out["poll"] = poll.report();
        }
        "api" => {
            // A small finished run, read over and over: idle, then during W1.
            let small = c.submit(&workloads::w3()).await?;
            c.follow(&small).await?;
            let url = format!("{}/api/v1/runs/{small}", c.base);
            let spec = workloads::w1(args.tasks);
            let (mut idle, mut busy, mut floor) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..args.repeat {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let load = tokio::spawn(fixed_rate(
                    c.http.clone(),
                    url.clone(),
                    args.rate,
                    args.connections,
                    stopped,
                ));
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = stop.send(true);
                idle.push(load.await??);
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let load = tokio::spawn(fixed_rate(
                    c.http.clone(),
                    url.clone(),
                    args.rate,
                    args.connections,
                    stopped,
                ));
                timed_run(&c, &spec).await?;
                let _ = stop.send(true);
                busy.push(load.await??);
                // The floor: a GET that reads nothing, at the same rate during the same
                // kind of run. No read path can answer faster than this on this machine.
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let load = tokio::spawn(fixed_rate(
                    c.http.clone(),
                    format!("{}/healthz", c.base),
                    args.rate,
                    args.connections,
                    stopped,
                ));
                timed_run(&c, &spec).await?;
                let _ = stop.send(true);
                floor.push(load.await??);
            }
            let summary = |runs: &mut Vec<Vec<f64>>| {
                let (mut p50, mut p95, mut p99) = (Vec::new(), Vec::new(), Vec::new());
                for r in runs.iter_mut() {
                    p50.push(percentile(r, 0.50));
                    p95.push(percentile(r, 0.95));
                    p99.push(percentile(r, 0.99));
                }
                json!({"p50_ms": median(&mut p50), "p95_ms": median(&mut p95), "p99_ms": median(&mut p99),
                       "requests": runs.iter().map(Vec::len).sum::<usize>()})
            };
            out["rate"] = json!(args.rate);
            out["connections"] = json!(args.connections);
            out["idle"] = summary(&mut idle);
            out["during_w1"] = summary(&mut busy);
            out["healthz_during_w1"] = summary(&mut floor);
        }
        "scale" => {
            let spec = workloads::scale(args.tasks, args.width.min(args.tasks));
            let rss_before = args.server_pid.and_then(rss_mb);
            // Sampled from before the submission: accepting it is part of the peak.
            let peak = std::sync::Arc::new(std::sync::Mutex::new(0f64));
            let sampler = args.server_pid.map(|pid| {
                let peak = std::sync::Arc::clone(&peak);
                tokio::spawn(async move {
                    loop {
                        if let Some(mb) = rss_mb(pid) {
                            let mut p = peak.lock().expect("not poisoned");
                            *p = p.max(mb);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            });
            let started = Instant::now();
            let id = c.submit(&spec).await?;
            let accepted_s = started.elapsed().as_secs_f64();
            let state = c.poll_every(&id, Duration::from_secs(1)).await?;
            let secs = started.elapsed().as_secs_f64();
            if let Some(s) = sampler {
                s.abort();
            }
            // What the server keeps once the run is over and its last writes are done.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let rss_after = args.server_pid.and_then(rss_mb);
            let hwm = args.server_pid.and_then(|p| status_mb(p, "VmHWM:"));
            if state != "succeeded" {
                bail!("run {id} ended {state}");
            }
            out["tasks"] = json!(args.tasks);
            out["width"] = json!(args.width);
            out["accepted_s"] = json!(accepted_s);
            out["completed_s"] = json!(secs);
            out["tasks_per_s"] = json!((args.tasks as f64 / secs).round());
            out["server_rss_mb_before"] = json!(rss_before);
            out["server_rss_mb_peak"] =
                json!(args.server_pid.map(|_| *peak.lock().expect("not poisoned")));
            out["server_vmhwm_mb"] = json!(hwm);
            out["server_rss_mb_after"] = json!(rss_after);
        }
        "w4" => {
            let mut spec = workloads::w4(2 * args.slots, args.sleep);
            spec["queue"] = json!(args.queue);
            let n = 2 * args.slots;
            // Two waves of `slots` sleeps: the best possible makespan.
            let ideal = (n as f64 / args.slots as f64).ceil() * args.sleep;
            let mut effs = Vec::new();
            let mut parts = Vec::new();
            for _ in 0..args.repeat {
                let submitted_ms = now_ms();
                let started = Instant::now();
                let id = c.submit(&spec).await?;
                let (state, _, _) = c.follow(&id).await?;
                let secs = started.elapsed().as_secs_f64();
                let seen_ms = now_ms();
                if state != "succeeded" {
                    bail!("run {id} ended {state}");
                }
                effs.push(ideal / secs);
                // Read after the clock stopped: where the time over the ideal went.
                let run = c.run(&id).await?;
                let tasks = run.tasks.as_deref().context("the run's tasks")?;
                parts.push(w4_parts(
                    tasks,
                    args.slots,
                    args.sleep,
                    submitted_ms,
                    seen_ms,
                ));
            }
            out["tasks"] = json!(n);
            out["slots"] = json!(args.slots);
            out["efficiency"] = json!(effs);
            out["parts_ms"] = json!(parts);
            out["median_efficiency"] = json!((median(&mut effs) * 1000.0).round() / 1000.0);
        }
        other => bail!("unknown workload {other:?}: use w1, w2, w3, w4, api, scale, ws or live"),
    }
    println!("{out}");
    Ok(())
}
