//! The `live` workload (issue #15): W1 runs watched by 1, 50 and 500 WebSocket clients,
//! each row reporting the latency of live events from their commit to the store to
//! their arrival (p50/p95/p99), resyncs, dropped connections, and the orchestrator's CPU
//! time (from `/proc` of `--server-pid`), against the 1-watcher row.

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// One row of the table: this many watchers, at this detail.
#[derive(Debug, Clone)]
pub struct Row {
    pub watchers: usize,
    /// `tasks` or `summary`.
    pub detail: String,
}

/// Reads `1:tasks,50:tasks,500:summary`.
pub fn parse_rows(s: &str) -> anyhow::Result<Vec<Row>> {
    s.split(',')
        .map(|r| {
            let (n, detail) = r.split_once(':').unwrap_or((r, "tasks"));
            if !matches!(detail, "tasks" | "summary") {
                bail!("detail must be tasks or summary, not {detail:?}");
            }
            Ok(Row {
                watchers: n.parse().with_context(|| format!("watchers in {r:?}"))?,
                detail: detail.to_owned(),
            })
        })
        .collect()
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<f64>,
    resyncs: u32,
    drops: u32,
}

// Fields are borrowed from the frame's text where they can be (`Cow`: a string with
// escapes is copied): fifty watchers decode every frame on the same two cores as the
// server, so the client's share of the measured latency should be the parse, not
// allocations. Every event of every frame is still parsed.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    seq_to: Option<u64>,
    #[serde(borrow)]
    run: Option<RunLite<'a>>,
    #[serde(default, borrow)]
    events: Vec<EventLite<'a>>,
}

#[derive(serde::Deserialize)]
struct RunLite<'a> {
    #[serde(borrow)]
    state: Cow<'a, str>,
    stored_at_ms: Option<i64>,
}

#[derive(serde::Deserialize)]
struct EventLite<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    stored_at_ms: Option<i64>,
}

fn finished(state: &str) -> bool {
    !matches!(state, "running" | "pending" | "queued")
}

/// Follows run `run` at `detail` until it ends, resuming with `since` after a resync or
/// a dropped connection (each counted). Latency counts live task events (with `tasks`)
/// or run summaries (with `summary`) stored after the watcher's first snapshot; events
/// replayed from the store (a watcher whose snapshot took long) are not timed.
async fn watch(ws_base: String, run: String, detail: String) -> anyhow::Result<Seen> {
    let mut seen = Seen::default();
    let mut since: Option<u64> = None;
    let mut live_from = i64::MAX;
    loop {
        let mut url = format!("{ws_base}/api/v1/ws?run={run}&detail={detail}");
        if let Some(s) = since {
            url.push_str(&format!("&since={s}"));
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        loop {
            let msg = match ws.next().await {
                Some(Ok(m)) => m,
                Some(Err(_)) | None => {
                    seen.drops += 1;
                    break;
                }
            };
            let Message::Text(text) = msg else { continue };
            let arrived = crate::now_ms();
            let frame: Frame = serde_json::from_str(&text)?;
            match &*frame.kind {
                "snapshot" => {
                    live_from = live_from.min(arrived);
                    since = frame.seq;
                    if frame.run.as_ref().is_some_and(|r| finished(&r.state)) {
                        return Ok(seen);
                    }
                }
                "events" => {
                    if frame.seq_to.is_some() {
                        since = frame.seq_to;
                    }
                    if let Some(r) = &frame.run {
                        if let Some(stored) = r.stored_at_ms.filter(|_| detail == "summary") {
                            if stored >= live_from {
                                seen.latencies.push((arrived - stored) as f64);
                            }
                        }
                        if finished(&r.state) {
                            return Ok(seen);
                        }
                    }
                    for e in frame.events {
                        if e.seq.is_some() && frame.seq_to.is_none() {
                            since = e.seq;
                        }
                        // Replayed events (read back from the store) carry no
                        // `stored_at_ms`: only live ones are timed.
                        if let Some(stored) = e.stored_at_ms {
                            if detail == "tasks" && e.kind == "task" && stored >= live_from {
                                seen.latencies.push((arrived - stored) as f64);
                            }
                        }
                        if e.kind == "run" && e.state.as_deref().is_some_and(finished) {
                            return Ok(seen);
                        }
                    }
                }
                "resync" => {
                    seen.resyncs += 1;
                    since = None;
                    break;
                }
                _ => {}
            }
        }
        if seen.resyncs + seen.drops > 100 {
            bail!("run {run}: over 100 resyncs and drops");
        }
    }
}

/// Starts one watcher on a thread of its own, as each watcher is its own program (a
/// browser tab, a CLI) in real use: the kernel shares the cores between watchers, so
/// one watcher's arrival is never stamped only after fifty others finished parsing
/// their copies on a shared runtime thread. Each still reads and parses every frame.
fn spawn_watcher(
    ws_base: String,
    run: String,
    detail: String,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<Seen>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let _ = tx.send(rt.block_on(watch(ws_base, run, detail)));
        })?;
    Ok(rx)
}

/// CPU seconds (user + system) process `pid` has used.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // USER_HZ is 100 on every Linux this runs on.
    Ok(ticks / 100.0)
}

/// One measured row of one repetition.
pub struct Measured {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub resyncs: u32,
    pub drops: u32,
    pub cpu_s: f64,
    pub wall_s: f64,
}

/// Submits a W1 run of `tasks` and has `row.watchers` clients watch it to the end.
pub async fn measure(
    c: &crate::Client,
    tasks: usize,
    row: &Row,
    server_pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let spec = crate::workloads::w1(tasks);
    let cpu_before = server_pid.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let id = c.submit(&spec).await?;
    let ws_base = c.base.replacen("http", "ws", 1);
    let watchers: Vec<_> = (0..row.watchers)
        .map(|_| spawn_watcher(ws_base.clone(), id.clone(), row.detail.clone()))
        .collect::<anyhow::Result<_>>()?;
    let mut all = Vec::new();
    let (mut resyncs, mut drops) = (0, 0);
    for w in watchers {
        let mut seen = w
            .await
            .context("a watcher's thread ended without a result")??;
        resyncs += seen.resyncs;
        drops += seen.drops;
        all.append(&mut seen.latencies);
    }
    let wall_s = started.elapsed().as_secs_f64();
    let run = c.run(&id).await?;
    if run.summary.state != apex::api_types::RunState::Succeeded {
        bail!("run {id} ended {}", run.summary.state.as_str());
    }
    let cpu_s = match (server_pid, cpu_before) {
        (Some(pid), Some(before)) => cpu_seconds(pid)? - before,
        _ => f64::NAN,
    };
    Ok(Measured {
        p50: crate::percentile(&mut all, 0.50),
        p95: crate::percentile(&mut all, 0.95),
        p99: crate::percentile(&mut all, 0.99),
        resyncs,
        drops,
        cpu_s,
        wall_s,
    })
}

/// Medians over repetitions of each row, with each row's ratio to the first (the
/// 1-watcher row).
pub fn table(rows: &[Row], runs: &[Vec<Measured>]) -> Value {
    let med = |i: usize, f: &dyn Fn(&Measured) -> f64| {
        let mut xs: Vec<f64> = runs[i].iter().map(f).collect();
        crate::median(&mut xs)
    };
    let out: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (p95, cpu) = (med(i, &|m| m.p95), med(i, &|m| m.cpu_s));
            let ratio = |x: f64, base: f64| ((x / base) * 100.0).round() / 100.0;
            json!({
                "watchers": r.watchers,
                "detail": r.detail,
                "latency_ms_p50": med(i, &|m| m.p50),
                "latency_ms_p95": p95,
                "latency_ms_p99": med(i, &|m| m.p99),
                "resyncs": runs[i].iter().map(|m| m.resyncs).sum::<u32>(),
                "drops": runs[i].iter().map(|m| m.drops).sum::<u32>(),
                "server_cpu_s": (cpu * 100.0).round() / 100.0,
                "wall_s": (med(i, &|m| m.wall_s) * 10.0).round() / 10.0,
                "p95_vs_first": ratio(p95, med(0, &|m| m.p95)),
                "cpu_vs_first": ratio(cpu, med(0, &|m| m.cpu_s)),
            })
        })
        .collect();
    Value::from(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_read_with_their_detail() {
        let rows = super::parse_rows("1:tasks,50,500:summary").unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.watchers, r.detail.as_str()))
            .collect();
        assert_eq!(got, [(1, "tasks"), (50, "tasks"), (500, "summary")]);
        assert!(super::parse_rows("5:all").is_err());
        assert!(super::parse_rows("x:tasks").is_err());
    }
}
