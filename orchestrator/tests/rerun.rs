//! Re-running a finished run from chosen tasks: real server, store, workers and a fake
//! OpenAI-compatible provider whose request log says which tasks called a model.

mod common;

use common::{task, TestSystem};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);

/// `python -m apex_worker.testing.fake_providers`, logging every request to a file
/// (as in `tests/swarm.rs`).
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

    fn providers_file(&self) -> PathBuf {
        let path = self.log.with_extension("providers.json");
        let base_url = format!("http://127.0.0.1:{}/v1", self.port);
        let file = json!({"providers": {"fake": {"kind": "openai", "base_url": base_url,
                          "api_key_env": "FAKE_LLM_KEY", "allow_private": true}}});
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    /// The model of every request the server answered, in order.
    fn models(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["model"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
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

/// `examples/swarm.json` with every agent on the fake provider, model `fake-NAME`.
fn swarm() -> Value {
    let mut spec: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/swarm.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for (name, agent) in spec["agents"].as_object_mut().unwrap() {
        agent["provider"] = json!("fake");
        agent["model"] = json!(format!("fake-{name}"));
    }
    spec
}

fn tokens(usage: &Value) -> u64 {
    usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_from_the_critic_calls_only_the_critic_and_writer_and_reuses_the_rest() {
    let fake = FakeProviders::start();
    let providers = fake.providers_file();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    let file = providers.to_str().unwrap();
    sys.spawn_worker_with(
        "default",
        8,
        &["--providers-file", file],
        &[("FAKE_LLM_KEY", "sk-test")],
    );

    let old_id = sys.submit(&swarm()).await;
    let old = sys.wait_run(&old_id, LIMIT).await;
    assert_eq!(old["state"], "succeeded", "{old:#}");
    let before = fake.models().len();
    let researchers: Vec<&Value> = old["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["parent"] == "plan")
        .collect();
    assert!(!researchers.is_empty(), "{old:#}");

    // Unknown names are refused by name, and nothing runs.
    for (body, named) in [
        (json!({"from": ["nope"]}), "\"nope\""),
        (
            json!({"from": ["critique"], "overrides": {"tasks": {"ghost": {"input": {}}}}}),
            "\"ghost\"",
        ),
        (
            json!({"from": ["critique"], "overrides": {"tasks": {"plan": {"input": {}}}}}),
            "\"plan\"",
        ),
        (
            json!({"from": ["critique"], "overrides": {"agents": {"poet": {"model": "x"}}}}),
            "\"poet\"",
        ),
    ] {
        let (status, err) = sys
            .post(&format!("/api/v1/runs/{old_id}/rerun"), &body)
            .await;
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (422, Some("invalid_rerun")),
            "{body} {err}"
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains(named),
            "{err}"
        );
    }
    let nul = r#"{"from": ["critique"], "overrides": {"tasks": {"critique": {"input": {"p": "a\u0000b"}}}}}"#;
    let (status, err) = sys
        .post_raw(&format!("/api/v1/runs/{old_id}/rerun"), nul)
        .await;
    assert_eq!(status, 400, "a NUL cannot be stored: {err}");
    let (status, _) = sys
        .post(
            "/api/v1/runs/no-such-run/rerun",
            &json!({"from": ["critique"]}),
        )
        .await;
    assert_eq!(status, 404);

    let (status, created) = sys
        .post(
            &format!("/api/v1/runs/{old_id}/rerun"),
            &json!({"from": ["critique"], "overrides": {
                "agents": {"critic": {"model": "fake-critic-2"}},
                "tasks": {"critique": {"input": {"prompt": "Critique again: {{upstream}}"}}}}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let new_id = created["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    let new = sys.wait_run(&new_id, LIMIT).await;
    assert_eq!(new["state"], "succeeded", "{new:#}");

    // Only the re-run tasks called a model, and the override reached only the critic.
    let mut called = fake.models()[before..].to_vec();
    called.sort();
    assert_eq!(called, vec!["fake-critic-2", "fake-writer"]);

    // Planner and researchers are reused: same output, never dispatched.
    for t in std::iter::once(task(&old, "plan")).chain(researchers.iter().copied()) {
        let id = t["id"].as_str().unwrap();
        let reused = task(&new, id);
        assert_eq!(reused["state"], "succeeded", "{reused:#}");
        assert_eq!(reused["attempt"], 0, "{reused:#}");
        assert_eq!(reused["reused_from"], json!(old_id), "{reused:#}");
        assert_eq!(reused["output"], t["output"], "{id}");
    }
    for id in ["critique", "report"] {
        let t = task(&new, id);
        assert_eq!(t["attempt"], 1, "{t:#}");
        assert!(t.get("reused_from").is_none_or(Value::is_null), "{t:#}");
    }
    assert_eq!(
        task(&new, "critique")["input"]["prompt"],
        "Critique again: {{upstream}}"
    );
    assert_eq!(new["agents"]["critic"]["model"], "fake-critic-2");
    assert_eq!(new["agents"]["writer"]["model"], "fake-writer");
    // Its usage is what it executed: the critic and the writer.
    let ran = tokens(&task(&new, "critique")["usage"]) + tokens(&task(&new, "report")["usage"]);
    assert!(ran > 0);
    assert_eq!(tokens(&new["usage"]), ran);

    // The link: the new run names the old one and where it started; the old is unchanged.
    assert_eq!(
        new["rerun_of"],
        json!({"run": old_id, "from": ["critique"]})
    );
    let (_, summary) = sys.get(&format!("/api/v1/runs/{new_id}?tasks=false")).await;
    assert_eq!(summary["rerun_of"]["run"], json!(old_id));
    let (_, old_again) = sys.get(&format!("/api/v1/runs/{old_id}")).await;
    assert!(old_again["rerun_of"].is_null());
    assert_eq!(
        task(&old_again, "critique")["input"],
        task(&old, "critique")["input"]
    );
    let (_, one) = sys.get(&format!("/api/v1/runs/{new_id}/tasks/plan")).await;
    assert_eq!(one["reused_from"], json!(old_id));

    // The CLI: re-run the re-run from the writer with one input key and model changed.
    let before = fake.models().len();
    let base = sys.base.clone();
    let args = [
        "rerun",
        &new_id,
        "--from",
        "report",
        "--set",
        "report.input.style=\"short\"",
        "--agent-set",
        "writer.model=fake-writer-2",
        "--server",
        &base,
    ]
    .map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_apex"))
            .args(&args)
            .env_remove("APEX_SERVER")
            .env_remove("APEX_API_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let third = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let third = sys.wait_run(&third, LIMIT).await;
    assert_eq!(third["state"], "succeeded", "{third:#}");
    assert_eq!(fake.models()[before..], ["fake-writer-2"]);
    let report = task(&third, "report");
    assert_eq!(report["input"]["style"], "short");
    assert_eq!(
        report["input"]["prompt"],
        task(&new, "report")["input"]["prompt"],
        "other keys kept"
    );
    assert_eq!(task(&third, "critique")["reused_from"], json!(new_id));
    assert_eq!(
        task(&third, "critique")["output"],
        task(&new, "critique")["output"]
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_from_the_planner_spawns_its_researchers_anew_and_a_running_run_is_refused() {
    let fake = FakeProviders::start();
    let providers = fake.providers_file();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    let file = providers.to_str().unwrap();
    sys.spawn_worker_with(
        "default",
        8,
        &["--providers-file", file],
        &[("FAKE_LLM_KEY", "sk-test")],
    );

    let old_id = sys.submit(&swarm()).await;
    let (status, err) = sys
        .post(
            &format!("/api/v1/runs/{old_id}/rerun"),
            &json!({"from": ["plan"]}),
        )
        .await;
    // Still running right after submission, or already done on a fast machine.
    assert!(status == 409 || status == 201, "{status} {err}");
    let old = sys.wait_run(&old_id, LIMIT).await;
    assert_eq!(old["state"], "succeeded", "{old:#}");
    let before = fake.models().len();

    let (status, created) = sys
        .post(
            &format!("/api/v1/runs/{old_id}/rerun"),
            &json!({"from": ["plan"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let new = sys.wait_run(created["id"].as_str().unwrap(), LIMIT).await;
    assert_eq!(new["state"], "succeeded", "{new:#}");
    let children: Vec<&Value> = new["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["parent"] == "plan")
        .collect();
    assert!(!children.is_empty(), "{new:#}");
    for c in &children {
        assert_eq!(c["attempt"], 1, "spawned anew, not reused: {c:#}");
        assert!(c.get("reused_from").is_none_or(Value::is_null));
    }
    let olds = old["tasks"].as_array().unwrap().len();
    assert_eq!(
        new["tasks"].as_array().unwrap().len(),
        olds,
        "no stale children kept"
    );
    let calls = fake.models().len() - before;
    // Every task of the run called a model once (an early re-run, if the first
    // request was accepted, may add its own calls).
    assert!(calls >= olds, "{calls} < {olds}");
    sys.shutdown().await;
}
