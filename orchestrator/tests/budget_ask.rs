//! Budgets that ask (`"on_exceeded": "ask"`), end to end: the swarm example against a
//! real server, store, Redis, Python workers and the local fake provider. The first
//! task the run's budget cannot cover waits, no call is made for it until a person
//! raises the budget (stored: it survives a restart) or rejects the raise.

mod common;

use common::{task, TestSystem};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

/// `python -m apex_worker.testing.fake_providers`, logging every request to a file.
struct FakeProviders {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl FakeProviders {
    fn start() -> Self {
        let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        let log = std::env::temp_dir().join(format!("{}.jsonl", common::unique("fake_llm")));
        let mut child = Command::new(python)
            .args(["-m", "apex_worker.testing.fake_providers", "--port", "0"])
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fake provider server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the fake server: {line:?}"));
        Self { child, port, log }
    }

    /// A providers file declaring this server as provider `openai`: the name spawned
    /// researchers' agents are checked against (a run's children are validated against
    /// the built-in provider names, not the operator's file).
    fn providers_file(&self) -> PathBuf {
        let path = self.log.with_extension("providers.json");
        let base_url = format!("http://127.0.0.1:{}/v1", self.port);
        let file = json!({"providers": {"openai": {"kind": "openai", "base_url": base_url,
                          "api_key_env": "FAKE_LLM_KEY", "allow_private": true}}});
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    /// Requests the server answered for `model`.
    fn calls(&self, model: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|r| r["model"] == model)
            .count()
    }
}

impl Drop for FakeProviders {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(self.log.with_extension("providers.json"));
    }
}

/// `examples/swarm.json` on the fake provider at $1 per thousand tokens, with a run
/// budget of $1 that asks. The critic's output allowance (2,000 tokens) alone is more
/// than the budget, while the planner and researchers reserve about $0.5 each and spend
/// a few cents: the critic is the first task the budget cannot cover.
fn swarm() -> Value {
    let mut spec: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/swarm.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for (_, agent) in spec["agents"].as_object_mut().unwrap() {
        agent["provider"] = json!("openai");
        agent["price"] = json!({"input_per_mtok": 1000.0, "output_per_mtok": 1000.0});
    }
    spec["agents"]["critic"]["max_output_tokens"] = json!(2000);
    spec["budget"] = json!({"max_cost_usd": 1.0, "on_exceeded": "ask"});
    spec
}

async fn start(fake: &FakeProviders) -> TestSystem {
    let providers = fake.providers_file();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    sys.spawn_worker_with(
        "default",
        4,
        &["--providers-file", providers.to_str().unwrap()],
        &[("FAKE_LLM_KEY", "sk-test")],
    );
    sys
}

/// Waits until the critic waits for the budget, and checks what that looks like.
async fn critic_waits(sys: &TestSystem, fake: &FakeProviders, id: &str) {
    let run = sys
        .wait_until(id, LIMIT, |r| task(r, "critique")["state"] == "waiting")
        .await;
    assert_eq!(run["state"], "running");
    assert_eq!(task(&run, "report")["state"], "pending");
    let critique = sys.task(id, "critique").await;
    assert_eq!(critique["waiting_for"], "budget", "{critique:#}");
    assert_eq!(critique["attempt"], 0, "never dispatched: {critique:#}");
    assert_eq!(critique["error"]["kind"], "awaiting_budget");
    assert_eq!(critique["error"]["error_type"], "run");
    let message = critique["error"]["message"].as_str().unwrap();
    assert!(message.contains("max_cost_usd 1"), "{message}");
    assert_eq!(fake.calls("mock-critic"), 0, "no call before a decision");
    assert!(fake.calls("mock-researcher") >= 1);
    let (_, events) = sys.get(&format!("/api/v1/runs/{id}/events")).await;
    let waits: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["task_id"] == "critique" && e["state"] == "waiting")
        .collect();
    assert_eq!(waits.len(), 1, "{events:#}");
    assert_eq!(waits[0]["reason"], "budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_after_a_restart_lets_the_swarm_finish_once() {
    let fake = FakeProviders::start();
    let mut sys = start(&fake).await;
    let id = sys.submit(&swarm()).await;
    critic_waits(&sys, &fake, &id).await;

    sys.restart_server().await;
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    assert_eq!(sys.task(&id, "critique").await["state"], "waiting");
    assert_eq!(fake.calls("mock-critic"), 0);

    let path = format!("/api/v1/runs/{id}/tasks/critique/approve");
    // Approving without a raise, or a raise that lowers the budget, is refused.
    let (status, body) = sys.post(&path, &json!({})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("raise"), "{body}");
    let (status, body) = sys
        .post(&path, &json!({"raise": {"max_cost_usd": 0.5}}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(sys.task(&id, "critique").await["state"], "waiting");

    // The raise, as a person would type it.
    let args: Vec<String> = ["approve", &id, "critique", "--raise-cost", "5", "--server"]
        .iter()
        .map(|s| s.to_string())
        .chain([sys.base.clone()])
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(assert_cmd::cargo::cargo_bin("apex"))
            .args(&args)
            .env_remove("APEX_API_TOKEN")
            .env("NO_COLOR", "1")
            .output()
            .expect("apex runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("raised the budget of task critique"),
        "{stdout}"
    );
    let (status, _) = sys
        .post(&path, &json!({"raise": {"max_cost_usd": 9}}))
        .await;
    assert_eq!(status, 409, "one decision only");

    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["budget"]["max_cost_usd"], 5.0, "{run:#}");
    assert_eq!(fake.calls("mock-critic"), 1);
    assert_eq!(fake.calls("mock-writer"), 1);
    // The raise was stored: a restarted server still shows it.
    sys.restart_server().await;
    sys.wait_ready(&sys.base.clone(), LIMIT).await;
    let (_, run) = sys.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["budget"]["max_cost_usd"], 5.0, "{run:#}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_the_raise_fails_the_run_as_the_budget_would_have() {
    let fake = FakeProviders::start();
    let sys = start(&fake).await;
    let id = sys.submit(&swarm()).await;
    critic_waits(&sys, &fake, &id).await;
    let (status, body) = sys
        .post(
            &format!("/api/v1/runs/{id}/tasks/critique/reject"),
            &json!({"comment": "too dear"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "skipped");
    assert_eq!(body["error"]["kind"], "budget_exceeded");
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed", "{run:#}");
    assert!(
        run["error"].as_str().unwrap().contains("too dear"),
        "{run:#}"
    );
    assert_eq!(task(&run, "report")["state"], "skipped");
    assert_eq!(fake.calls("mock-critic"), 0);
    assert_eq!(fake.calls("mock-writer"), 0);
    sys.shutdown().await;
}
