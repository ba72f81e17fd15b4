//! The `live` workload (issue #15): W1 runs watched by 1, 50 and 500 WebSocket clients,
//! in full (`tasks`), by summary (`summary`), or as the dashboard follows a big run
//! (`visible`: the tasks of one screen of rows, each watcher its own). Each row reports
//! the latency of live events from their commit to the store to their arrival
//! (p50/p95/p99), resyncs, dropped connections, and the orchestrator's CPU time (from
//! `/proc` of `--server-pid`), against the 1-watcher row.

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
    /// `tasks`, `summary` or `visible`.
    pub detail: String,
}

/// Reads `1:tasks,50:tasks,50:visible,500:summary`.
pub fn parse_rows(s: &str) -> anyhow::Result<Vec<Row>> {
    s.split(',')
        .map(|r| {
            let (n, detail) = r.split_once(':').unwrap_or((r, "tasks"));
            if !matches!(detail, "tasks" | "summary" | "visible") {
                bail!("detail must be tasks, summary or visible, not {detail:?}");
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

/// Rows on one screen of the dashboard's task table: a `visible` watcher follows this
/// many tasks.
const SCREEN_ROWS: usize = 50;

/// What watcher `i` of `watchers` asks a run of `tasks` W1 tasks for: `detail=…`, or for
/// `visible`, the ids of one screen of rows (`tasks=…`, as the dashboard asks for a big
/// run), the screens spread over the run so that each watcher's filter is its own.
fn stream_query(detail: &str, i: usize, watchers: usize, tasks: usize) -> String {
    if detail != "visible" {
        return format!("detail={detail}");
    }
    let first = i * (tasks / watchers.max(1)).max(1);
    let ids: Vec<String> = (first..first + SCREEN_ROWS.min(tasks))
        .map(|j| format!("t{}", j % tasks.max(1)))
        .collect();
    format!("tasks={}", ids.join(","))
}

/// Follows run `run` at `detail` (`query` its stream's parameters) until it ends,
/// resuming with `since` after a resync or a dropped connection (each counted). Latency
/// counts live task events (with `tasks` and `visible`) or run summaries (with
/// `summary`) stored after the watcher's first snapshot; events replayed from the store
/// (a watcher whose snapshot took long) are not timed.
async fn watch(
    ws_base: String,
    run: String,
    detail: String,
    query: String,
) -> anyhow::Result<Seen> {
    let mut seen = Seen::default();
    let mut since: Option<u64> = None;
    let mut live_from = i64::MAX;
    loop {
        let mut url = format!("{ws_base}/api/v1/ws?run={run}&{query}");
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
                            if detail != "summary" && e.kind == "task" && stored >= live_from {
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
    query: String,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<Seen>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let _ = tx.send(rt.block_on(watch(ws_base, run, detail, query)));
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
    /// The loadgen's own CPU seconds (user + system) over the row: the watchers share
    /// the two cores with the server.
    pub loadgen_cpu_s: f64,
    /// The server's per-hop histograms over the row (bucket counts added, by name).
    pub hops: Hops,
}

/// The server's histograms of a live event's hops, as exported on `/metrics`, each from
/// when the event became durable: in its stream (`published`), in a frame (`cut`),
/// written to a relaying watcher's socket (`written`), or to a joining watcher's after
/// its snapshot (`caught_up`).
const HOPS: [(&str, &str); 4] = [
    ("published", "apex_live_published_seconds"),
    ("cut", "apex_live_frame_cut_seconds"),
    ("written", "apex_ws_frame_written_seconds"),
    ("caught_up", "apex_ws_frame_caught_up_seconds"),
];

/// Cumulative bucket counts (upper bound in seconds, count) by hop name.
pub type Hops = std::collections::BTreeMap<&'static str, Vec<(f64, f64)>>;

/// The hop histograms in a `/metrics` page (absent ones, e.g. on an older server, left
/// out).
fn parse_hops(text: &str) -> Hops {
    let mut out = Hops::new();
    for (hop, name) in HOPS {
        let prefix = format!("{name}_bucket{{le=\"");
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect();
        if !buckets.is_empty() {
            out.insert(hop, buckets);
        }
    }
    out
}

async fn scrape_hops(c: &crate::Client) -> Hops {
    match c.http.get(format!("{}/metrics", c.base)).send().await {
        Ok(r) => parse_hops(&r.text().await.unwrap_or_default()),
        Err(_) => Hops::new(),
    }
}

/// `after - before`, bucket by bucket (a hop missing before counts from zero).
fn hops_delta(before: &Hops, after: &Hops) -> Hops {
    after
        .iter()
        .map(|(hop, b)| {
            let base = before.get(hop);
            let d = b
                .iter()
                .enumerate()
                .map(|(i, &(le, n))| (le, n - base.and_then(|x| x.get(i)).map_or(0.0, |x| x.1)))
                .collect();
            (*hop, d)
        })
        .collect()
}

/// Adds `more` into `into`, bucket by bucket.
fn hops_add(into: &mut Hops, more: &Hops) {
    for (hop, b) in more {
        let e = into
            .entry(hop)
            .or_insert_with(|| b.iter().map(|&(le, _)| (le, 0.0)).collect());
        for (i, &(_, n)) in b.iter().enumerate() {
            if let Some(x) = e.get_mut(i) {
                x.1 += n;
            }
        }
    }
}

/// A hop's count, the upper bound (ms) of the bucket holding each quantile, and the
/// shares within 10 and 50 ms.
fn hop_summary(b: &[(f64, f64)]) -> Value {
    let total = b.last().map_or(0.0, |x| x.1);
    if total <= 0.0 {
        return json!({"count": 0});
    }
    let q = |p: f64| {
        b.iter().find(|&&(_, n)| n >= p * total).map(|&(le, _)| {
            if le.is_finite() {
                json!(le * 1000.0)
            } else {
                json!("inf")
            }
        })
    };
    let within = |ms: f64| {
        let n = b
            .iter()
            .take_while(|&&(le, _)| le * 1000.0 <= ms + 1e-9)
            .last()
            .map_or(0.0, |x| x.1);
        (n / total * 100.0).round() / 100.0
    };
    json!({
        "count": total,
        "p50_le_ms": q(0.50),
        "p95_le_ms": q(0.95),
        "p99_le_ms": q(0.99),
        "within_10ms": within(10.0),
        "within_50ms": within(50.0),
    })
}

/// Submits a W1 run of `tasks` and has `row.watchers` clients watch it to the end.
pub async fn measure(
    c: &crate::Client,
    tasks: usize,
    row: &Row,
    server_pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let spec = crate::workloads::w1(tasks);
    let hops_before = scrape_hops(c).await;
    let own_before = cpu_seconds(std::process::id())?;
    let cpu_before = server_pid.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let id = c.submit(&spec).await?;
    let ws_base = c.base.replacen("http", "ws", 1);
    let watchers: Vec<_> = (0..row.watchers)
        .map(|i| {
            let query = stream_query(&row.detail, i, row.watchers, tasks);
            spawn_watcher(ws_base.clone(), id.clone(), row.detail.clone(), query)
        })
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
    let loadgen_cpu_s = cpu_seconds(std::process::id())? - own_before;
    let hops = hops_delta(&hops_before, &scrape_hops(c).await);
    Ok(Measured {
        p50: crate::percentile(&mut all, 0.50),
        p95: crate::percentile(&mut all, 0.95),
        p99: crate::percentile(&mut all, 0.99),
        resyncs,
        drops,
        cpu_s,
        wall_s,
        loadgen_cpu_s,
        hops,
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
            let mut hops = Hops::new();
            for m in &runs[i] {
                hops_add(&mut hops, &m.hops);
            }
            let hops: serde_json::Map<String, Value> = hops
                .iter()
                .map(|(hop, b)| ((*hop).to_owned(), hop_summary(b)))
                .collect();
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
                "loadgen_cpu_s": (med(i, &|m| m.loadgen_cpu_s) * 100.0).round() / 100.0,
                "hops": hops,
            })
        })
        .collect();
    Value::from(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_read_with_their_detail() {
        let rows = super::parse_rows("1:tasks,50,50:visible,500:summary").unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.watchers, r.detail.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "tasks"),
                (50, "tasks"),
                (50, "visible"),
                (500, "summary")
            ]
        );
        assert!(super::parse_rows("5:all").is_err());
        assert!(super::parse_rows("x:tasks").is_err());
    }

    /// A `visible` watcher asks for one screen of ids, its own, within the run and
    /// under the server's 1,024-byte parameter limit; the others ask for their detail.
    #[test]
    fn visible_watchers_follow_a_screen_of_their_own() {
        assert_eq!(
            super::stream_query("summary", 3, 50, 20_000),
            "detail=summary"
        );
        let screens: Vec<Vec<String>> = (0..50)
            .map(|i| {
                let q = super::stream_query("visible", i, 50, 20_000);
                assert!(q.len() <= 1_024 + "tasks=".len(), "{} bytes", q.len());
                let ids = q.strip_prefix("tasks=").expect("a task filter");
                ids.split(',').map(str::to_owned).collect()
            })
            .collect();
        assert!(screens.iter().all(|s| s.len() == super::SCREEN_ROWS));
        assert_eq!(screens[1][0], "t400");
        let all: std::collections::HashSet<&String> = screens.iter().flatten().collect();
        assert_eq!(all.len(), 50 * super::SCREEN_ROWS, "the screens overlap");
        let wraps = super::stream_query("visible", 1, 2, 60);
        assert!(
            wraps.starts_with("tasks=t30,") && wraps.contains(",t59,t0,"),
            "{wraps}"
        );
        assert!(wraps.ends_with(",t19"), "ids wrap within the run: {wraps}");
        let small = super::stream_query("visible", 0, 1, 30);
        assert_eq!(
            small.split(',').count(),
            30,
            "a run smaller than a screen: {small}"
        );
    }

    #[test]
    fn hop_histograms_are_read_subtracted_and_summarised() {
        let page = |a: f64, b: f64| {
            format!(
                "# TYPE apex_live_frame_cut_seconds histogram\n\
                 apex_live_frame_cut_seconds_bucket{{le=\"0.01\"}} {a}\n\
                 apex_live_frame_cut_seconds_bucket{{le=\"0.05\"}} {b}\n\
                 apex_live_frame_cut_seconds_bucket{{le=\"+Inf\"}} {b}\n\
                 apex_live_frame_cut_seconds_sum 1\n"
            )
        };
        let before = super::parse_hops(&page(1.0, 2.0));
        let after = super::parse_hops(&page(9.0, 12.0));
        let d = super::hops_delta(&before, &after);
        assert_eq!(d["cut"], [(0.01, 8.0), (0.05, 10.0), (f64::INFINITY, 10.0)]);
        let s = super::hop_summary(&d["cut"]);
        assert_eq!(
            (s["p50_le_ms"].as_f64(), s["p95_le_ms"].as_f64()),
            (Some(10.0), Some(50.0))
        );
        assert_eq!(s["within_10ms"].as_f64(), Some(0.8));
        assert!(!d.contains_key("written"), "absent on this page");
    }
}
