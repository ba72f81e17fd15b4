//! OpenTelemetry traces end to end: `apex serve` and a real `apex-worker` (with the
//! `otel` extra) export to an OTLP/HTTP receiver run by this test, an agent task calls
//! the fake OpenAI-compatible provider, and the spans must form one trace per run:
//! run → task → attempt → the worker's execution → the LLM call, with the tokens the
//! provider reported. Without the OTel environment no `traceparent` is sent at all.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::{free_port, task, TestStore, TestSystem, REDIS};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(90);

/// A span as received, with the `service.name` of the resource that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attr(&self, key: &str) -> Option<&Any> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn str(&self, key: &str) -> Option<&str> {
        match self.attr(key)? {
            Any::StringValue(s) => Some(s),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.attr(key)? {
            Any::IntValue(i) => Some(*i),
            _ => None,
        }
    }

    fn float(&self, key: &str) -> Option<f64> {
        match self.attr(key)? {
            Any::DoubleValue(f) => Some(*f),
            _ => None,
        }
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// The OTLP/HTTP trace receiver: decodes each protobuf export request and keeps its
/// spans. Anything that is not a valid request is answered 400, so a malformed export
/// fails the test rather than vanishing.
async fn receive(State(spans): State<Spans>, body: Bytes) -> impl IntoResponse {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut out = spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// Starts the receiver on a free port; returns its base URL and what it received.
async fn collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(Arc::clone(&spans));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

/// The fake OpenAI-compatible server of `apex_worker.testing.fake_providers`, and a
/// providers file naming it `fake`.
struct FakeLlm {
    child: Child,
    providers: PathBuf,
}

impl FakeLlm {
    fn start() -> Self {
        let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        let mut child = Command::new(python)
            .args(["-m", "apex_worker.testing.fake_providers", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fake provider server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the fake server: {line:?}"));
        let providers =
            std::env::temp_dir().join(format!("{}.json", common::unique("otel_providers")));
        let file = json!({"providers": {"fake": {"kind": "openai",
            "base_url": format!("http://127.0.0.1:{port}/v1"),
            "api_key_env": "FAKE_LLM_KEY", "allow_private": true}}});
        std::fs::write(&providers, file.to_string()).unwrap();
        Self { child, providers }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.providers);
    }
}

/// Every `OTEL_*` variable this process has, so a child can be started without them.
fn otel_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("OTEL_"))
        .collect()
}

/// Starts `apex serve` as a process on a free port with `env` (and no other `OTEL_*`
/// variable), recorded in `sys` so its shutdown stops it.
fn spawn_serve(sys: &mut TestSystem, providers: Option<&PathBuf>, env: &[(&str, &str)]) {
    let port = free_port();
    let log =
        std::fs::File::create(std::env::temp_dir().join(format!("{}-{port}.log", sys.prefix)))
            .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_apex"));
    cmd.args(["serve", "--no-auth", "--bind", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &sys.db_url, "--redis-url", &sys.redis])
        .args(["--redis-prefix", &sys.prefix]);
    if let Some(p) = providers {
        cmd.arg("--providers-file").arg(p);
    }
    for k in otel_vars() {
        cmd.env_remove(k);
    }
    let child = cmd
        .envs(env.iter().copied())
        .env("APEX_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("apex serve starts");
    sys.orchestrators.push((port, child));
    sys.base = format!("http://127.0.0.1:{port}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_one_trace_from_the_orchestrator_through_the_worker_to_the_llm_call() {
    let (endpoint, received) = collector().await;
    let fake = FakeLlm::start();
    let mut sys = TestSystem::without_server_on(TestStore::from_env(), REDIS).await;
    spawn_serve(
        &mut sys,
        Some(&fake.providers),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    sys.wait_ready(&sys.base, LIMIT).await;
    let providers = fake.providers.to_str().unwrap().to_owned();
    let otel_env: Vec<(String, String)> = otel_vars()
        .into_iter()
        .map(|k| (k, String::new()))
        .collect();
    let mut worker_env: Vec<(&str, &str)> = otel_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    worker_env.extend([
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export each finished span within a fraction of a second, not the default 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("FAKE_LLM_KEY", "sk-test"),
    ]);
    sys.spawn_worker_with("default", 4, &["--providers-file", &providers], &worker_env);

    let id = sys
        .submit(&json!({
            "name": "traced",
            "agents": {"writer": {"provider": "fake", "model": "fake-trace", "max_output_tokens": 40,
                                  "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}},
            "tasks": [
                {"id": "prepare", "handler": "echo", "input": {"topic": "tides"}},
                {"id": "side", "handler": "noop"},
                {"id": "write", "handler": "agent", "agent": "writer", "depends_on": ["prepare"],
                 "input": {"prompt": "One sentence on {{upstream.prepare.topic}}."}},
            ],
        }))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");

    // 1 run + 3 tasks + 3 attempts from the orchestrator; 3 executions + 1 LLM call from
    // the worker. Exports arrive in their own time: wait for all of them.
    let deadline = Instant::now() + LIMIT;
    let spans = loop {
        let spans = received.lock().unwrap().clone();
        let named = |n: &str| spans.iter().filter(|s| s.span.name == n).count();
        if named("apex.run") >= 1
            && named("apex.task") >= 3
            && named("apex.attempt") >= 3
            && named("apex.execute") >= 3
            && spans.iter().any(|s| s.span.name.starts_with("chat "))
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans missing after {LIMIT:?}: {:#?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.span.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // One trace, the one derived from the run id.
    let trace = apex::telemetry::ids::trace_id(&id);
    for s in &spans {
        assert_eq!(
            hex(&s.span.trace_id),
            hex(&trace),
            "{} in another trace",
            s.span.name
        );
    }
    let by_id: HashMap<Vec<u8>, &Received> =
        spans.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    let parent = |s: &Received| by_id.get(&s.span.parent_span_id).copied();
    let of =
        |name: &str| -> Vec<&Received> { spans.iter().filter(|s| s.span.name == name).collect() };

    let runs = of("apex.run");
    assert_eq!(runs.len(), 1, "one span per run");
    let run_span = runs[0];
    assert!(
        run_span.span.parent_span_id.is_empty(),
        "the run is the root"
    );
    assert_eq!(run_span.service, "apex");
    assert_eq!(run_span.str("apex.run_id"), Some(id.as_str()));
    assert_eq!(run_span.str("apex.run.name"), Some("traced"));
    assert!(run_span.span.end_time_unix_nano >= run_span.span.start_time_unix_nano);

    for t in of("apex.task") {
        assert_eq!(
            parent(t).map(|p| p.span.name.as_str()),
            Some("apex.run"),
            "{t:?}"
        );
        assert_eq!(t.str("apex.task.state"), Some("succeeded"));
    }
    let mut tasks_seen: Vec<&str> = of("apex.task")
        .iter()
        .filter_map(|t| t.str("apex.task_id"))
        .collect();
    tasks_seen.sort_unstable();
    assert_eq!(tasks_seen, ["prepare", "side", "write"]);

    for a in of("apex.attempt") {
        let task_span = parent(a).expect("an attempt's parent was exported");
        assert_eq!(task_span.span.name, "apex.task");
        assert_eq!(a.str("apex.task_id"), task_span.str("apex.task_id"));
        assert_eq!(a.int("apex.attempt"), Some(1));
        assert_eq!(a.str("apex.outcome"), Some("succeeded"));
        assert_eq!(a.str("apex.queue"), Some("default"));
        assert!(
            a.str("apex.worker_id").is_some_and(|w| !w.is_empty()),
            "{a:?}"
        );
        let events: Vec<&str> = a.span.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(events, ["queued", "started"]);
        assert!(a.span.events[0].time_unix_nano <= a.span.events[1].time_unix_nano);
        // The attempt's span id is the one the task message named, derived the same way.
        let task_id = a.str("apex.task_id").unwrap();
        assert_eq!(
            hex(&a.span.span_id),
            hex(&apex::telemetry::ids::attempt_span(&id, task_id, 1))
        );
    }
    let write_attempt = of("apex.attempt")
        .into_iter()
        .find(|a| a.str("apex.task_id") == Some("write"))
        .unwrap();
    assert_eq!(write_attempt.str("apex.handler"), Some("agent"));
    assert_eq!(write_attempt.str("apex.agent"), Some("writer"));

    // The worker continued the trace across Redis: each execution under its attempt.
    for e in of("apex.execute") {
        assert_eq!(e.service, "apex-worker");
        let attempt = parent(e).expect("an execution's parent is the attempt span");
        assert_eq!(attempt.span.name, "apex.attempt");
        assert_eq!(e.str("apex.task_id"), attempt.str("apex.task_id"));
        assert_eq!(e.str("apex.worker_id"), attempt.str("apex.worker_id"));
    }

    // The LLM call, under the agent task's execution, with what the provider reported.
    let calls: Vec<&Received> = spans
        .iter()
        .filter(|s| s.span.name.starts_with("chat "))
        .collect();
    assert_eq!(calls.len(), 1);
    let call = calls[0];
    let exec = parent(call).expect("the LLM call's parent is the execution");
    assert_eq!(exec.span.name, "apex.execute");
    assert_eq!(exec.str("apex.task_id"), Some("write"));
    assert_eq!(call.str("gen_ai.system"), Some("openai"));
    assert_eq!(call.str("gen_ai.request.model"), Some("fake-trace"));
    assert_eq!(call.int("gen_ai.request.max_tokens"), Some(40));
    let write = task(&run, "write");
    let usage = &write["usage"];
    assert!(usage["input_tokens"].as_i64().unwrap() > 0, "{write:#}");
    assert!(
        write["output"]["usage"].get("estimated").is_none(),
        "the fake provider reports usage: {write:#}"
    );
    assert_eq!(
        call.int("gen_ai.usage.input_tokens"),
        usage["input_tokens"].as_i64()
    );
    assert_eq!(
        call.int("gen_ai.usage.output_tokens"),
        usage["output_tokens"].as_i64()
    );
    let cost = call.float("apex.cost_usd").expect("cost attribute");
    assert!(cost > 0.0, "priced agent");
    assert!(
        (cost - usage["cost_usd"].as_f64().unwrap()).abs() < 1e-12,
        "{cost} vs {usage}"
    );

    drop(fake);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_otel_environment_no_traceparent_is_sent() {
    let mut sys = TestSystem::without_server_on(TestStore::from_env(), REDIS).await;
    spawn_serve(&mut sys, None, &[]);
    sys.wait_ready(&sys.base, LIMIT).await;
    // No worker: the message stays in its stream for this test to read.
    let id = sys
        .submit(&json!({"tasks": [{"id": "a", "handler": "noop"}]}))
        .await;
    sys.wait_until(&id, LIMIT, |r| r["tasks"][0]["state"] == "queued")
        .await;
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = worker_protocol::Keys::new(sys.prefix.clone()).queue("default");
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(entries.ids.len(), 1, "one task message in {key}");
    let raw: String = entries.ids[0].get("m").expect("the message field");
    let msg: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(msg["run_id"], id.as_str());
    assert!(msg.get("traceparent").is_none(), "{msg}");
    sys.shutdown().await;
}
