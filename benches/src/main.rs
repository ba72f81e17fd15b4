//! `apex-loadgen`: runs benchmark workloads against a live Apex and prints one JSON line
//! per workload with its throughput (tasks/s from submit to run completion), and, when
//! asked, the latency of live events to WebSocket clients.

mod live;
mod workloads;

use anyhow::{bail, Context};
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
    /// `w1`, `w2`, `ws` (W1 with WebSocket clients measuring event latency), or `live`
    /// (W1 watched by each of `--live-rows`, against the first row).
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
    /// The `live` workload's rows: watchers and their detail (`tasks` or `summary`).
    #[arg(long, default_value = "1:tasks,50:tasks,500:summary")]
    live_rows: String,
    /// The orchestrator's process id, for the `live` workload's CPU figures.
    #[arg(long)]
    server_pid: Option<u32>,
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

/// The parts of a WebSocket frame the follower reads.
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
        let body: Value = r.json().await?;
        if status.as_u16() != 201 {
            bail!("submit answered {status}: {body}");
        }
        Ok(body["id"].as_str().context("run id")?.to_owned())
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

    async fn run(&self, id: &str) -> anyhow::Result<Value> {
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
        "w2" => {
            let (spec, expected) = workloads::w2(50, 200, 42);
            let mut rates = Vec::new();
            for _ in 0..args.repeat {
                let (rate, id) = timed_run(&c, &spec).await?;
                let run = c.run(&id).await?;
                let tasks = run["tasks"].as_array().context("tasks")?;
                for (t, (id, want)) in tasks.iter().zip(&expected) {
                    if t["id"] != id.as_str() || t["output"].as_u64() != Some(*want) {
                        bail!("W2 task {id}: expected {want}, got {}", t["output"]);
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
        other => bail!("unknown workload {other:?}: use w1, w2, ws or live"),
    }
    println!("{out}");
    Ok(())
}
