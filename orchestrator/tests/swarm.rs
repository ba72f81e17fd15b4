//! Agent swarms end to end: real workers calling a real (fake) OpenAI-compatible server
//! over loopback HTTP, the agent registry, budgets, keyed and per-agent concurrency,
//! `max_parallel`, and dynamic fan-out.

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
    fn start(delay_s: f64) -> Self {
        let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        let log = std::env::temp_dir().join(format!("{}.jsonl", common::unique("fake_llm")));
        let mut child = Command::new(python)
            .args(["-m", "apex_worker.testing.fake_providers", "--port", "0"])
            .args(["--delay-s", &delay_s.to_string()])
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

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// A providers file declaring this server as provider `fake` (loopback, so listed
    /// with allow_private), keyed by FAKE_LLM_KEY: what an operator would write.
    fn providers_file(&self) -> PathBuf {
        let path = self.log.with_extension("providers.json");
        let file = json!({"providers": {"fake": {"kind": "openai", "base_url": self.base_url(),
                          "api_key_env": "FAKE_LLM_KEY", "allow_private": true}}});
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    /// Every request the server answered, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
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

/// Most intervals open at once.
fn max_overlap(intervals: &[(f64, f64)]) -> usize {
    let mut edges: Vec<(f64, i32)> = intervals
        .iter()
        .flat_map(|&(s, e)| [(s, 1), (e, -1)])
        .collect();
    // An end before a start at the same instant: back-to-back is not overlapping.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

fn tokens(usage: &Value) -> u64 {
    usage["input_tokens"].as_u64().unwrap() + usage["output_tokens"].as_u64().unwrap()
}

fn tasks(run: &Value) -> &Vec<Value> {
    run["tasks"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swarm_example_runs_offline_and_children_finish_before_the_critic() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 8);
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/swarm.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let id = sys.submit(&spec).await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");

    let children: Vec<&Value> = tasks(&run)
        .iter()
        .filter(|t| t["parent"] == "plan")
        .collect();
    assert!(
        !children.is_empty(),
        "the planner spawned researchers: {run:#}"
    );
    let critique = task(&run, "critique");
    let deps = critique["depends_on"].as_array().unwrap();
    for c in &children {
        assert!(c["id"].as_str().unwrap().starts_with("plan."));
        assert!(deps.contains(&c["id"]), "critique waits on {}", c["id"]);
        assert!(
            c["finished_at_ms"].as_i64().unwrap() <= critique["started_at_ms"].as_i64().unwrap()
        );
    }
    // Every agent call reports usage, and the run's is their sum.
    let mut sum = 0;
    for t in tasks(&run) {
        assert!(tokens(&t["usage"]) > 0, "{t:#}");
        sum += tokens(&t["usage"]);
    }
    assert_eq!(tokens(&run["usage"]), sum);
    assert_eq!(task(&run, "report")["agent"], "writer");
    assert_eq!(run["agents"]["researcher"]["max_concurrency"], 4);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_agents_are_snapshotted_into_runs_and_bad_input_is_named() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);
    let put = |body: Value| {
        let http = sys.http.clone();
        let url = sys.url("/api/v1/agents/helper");
        async move {
            let r = http.put(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, agent) =
        put(json!({"provider": "mock", "model": "m1", "max_concurrency": 2})).await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(
        (agent["name"].as_str(), agent["model"].as_str()),
        (Some("helper"), Some("m1"))
    );
    let (status, replaced) = put(json!({"provider": "mock", "model": "m1"})).await;
    assert_eq!(status, 200, "replaced");
    assert_eq!(replaced["created_at_ms"], agent["created_at_ms"]);
    assert_eq!(replaced["max_concurrency"], Value::Null, "replaced whole");

    let (status, err) = put(json!({"provider": "nope", "model": "m"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("invalid_agent"))
    );
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"nope\""));
    let (status, err) = put(json!({"provider": "mock", "model": "m", "colour": "red"})).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (_, list) = sys.get("/api/v1/agents").await;
    assert_eq!(list["agents"][0]["name"], "helper");

    let id = sys
        .submit(
            &json!({"tasks": [{"id": "ask", "handler": "agent", "agent": "helper",
                                    "input": {"prompt": "hello"}}]}),
        )
        .await;
    // The run keeps the agent as it was when submitted.
    put(json!({"provider": "mock", "model": "m2"})).await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["agents"]["helper"]["model"], "m1");
    assert!(tokens(&task(&run, "ask")["usage"]) > 0);

    let (status, err) = sys
        .post(
            "/api/v1/runs",
            &json!({"tasks": [
                {"id": "a", "handler": "agent", "agent": "ghost"},
                {"id": "b", "handler": "noop", "parent": "a"},
            ]}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    let codes: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unknown_agent", "invalid_parent"], "{err}");

    let delete = || sys.http.delete(sys.url("/api/v1/agents/helper")).send();
    assert_eq!(delete().await.unwrap().status().as_u16(), 204);
    assert_eq!(delete().await.unwrap().status().as_u16(), 404);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_budget_stops_dispatching_at_the_first_task_it_cannot_cover() {
    let fake = FakeProviders::start(0.0);
    let providers = fake.providers_file();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    let file = providers.to_str().unwrap();
    sys.spawn_worker_with(
        "default",
        4,
        &["--providers-file", file],
        &[("FAKE_LLM_KEY", "sk-test")],
    );
    const MAX: u64 = 150;
    let chain: Vec<Value> = (0..12)
        .map(|i| {
            let deps: Vec<String> = (i > 0).then(|| format!("t{}", i - 1)).into_iter().collect();
            json!({"id": format!("t{i}"), "handler": "agent", "agent": "a", "depends_on": deps,
                   "input": {"prompt": format!("Say something short about step {i}.")}})
        })
        .collect();
    let id = sys
        .submit(&json!({
            "agents": {"a": {"provider": "fake", "model": "fake-budget", "max_output_tokens": 50}},
            "budget": {"max_tokens": MAX},
            "tasks": chain,
        }))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed", "{run:#}");

    // A prefix of the chain ran; the rest was never dispatched.
    let ran: Vec<&Value> = tasks(&run)
        .iter()
        .filter(|t| t["state"] == "succeeded")
        .collect();
    let k = ran.len();
    assert!((1..12).contains(&k), "{run:#}");
    for (i, t) in tasks(&run).iter().enumerate() {
        let expected = if i < k { "succeeded" } else { "skipped" };
        assert_eq!(t["state"], expected, "{t:#}");
        if i >= k {
            assert_eq!(t["error"]["kind"], "budget_exceeded");
            assert_eq!(t["attempt"], 0, "never dispatched");
        }
    }
    assert_eq!(fake.requests().len(), k, "no request for a skipped task");

    // It stopped because the next task's reservation did not fit what was left.
    let used: u64 = ran.iter().map(|t| tokens(&t["usage"])).sum();
    assert_eq!(tokens(&run["usage"]), used);
    assert!(used <= MAX, "{used}");
    let error = run["error"].as_str().unwrap();
    let prefix = format!("budget exceeded: the run's max_tokens {MAX}: {used} used, about ");
    let needed: u64 = error
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{error:?} does not start with {prefix:?}"));
    assert!(used + needed > MAX, "{error}");
    assert!(error.contains(&format!("\"t{k}\"")), "{error}");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_agent_and_run_concurrency_limits_are_never_exceeded() {
    let fake = FakeProviders::start(0.3);
    let providers = fake.providers_file();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    let file = providers.to_str().unwrap();
    sys.spawn_worker_with(
        "default",
        16,
        &["--providers-file", file],
        &[("FAKE_LLM_KEY", "sk-test")],
    );
    let agent = |model: &str, max: Option<u32>| {
        let mut a = json!({"provider": "fake", "model": model, "max_output_tokens": 20});
        if let Some(m) = max {
            a["max_concurrency"] = json!(m);
        }
        a
    };
    let keyed = |n: usize| {
        json!({
            "agents": {"k": agent("fake-keyed", None)},
            "concurrency_limits": {"provider:fake": {"max_concurrency": 2}},
            "tasks": (0..n).map(|i| json!({"id": format!("k{i}"), "handler": "agent", "agent": "k",
                "concurrency_key": "provider:fake", "input": {"prompt": format!("hi {i}")}}))
                .collect::<Vec<_>>(),
        })
    };
    // Two runs share the key: the limit holds across them.
    let runs = [
        sys.submit(&keyed(4)).await,
        sys.submit(&keyed(4)).await,
        sys.submit(&json!({
            "agents": {"solo": agent("fake-solo", Some(1))},
            "tasks": (0..3).map(|i| json!({"id": format!("s{i}"), "handler": "agent", "agent": "solo",
                "input": {"prompt": format!("hello {i}")}})).collect::<Vec<_>>(),
        }))
        .await,
        sys.submit(&json!({
            "max_parallel": 2,
            "tasks": (0..6).map(|i| json!({"id": format!("p{i}"), "handler": "sleep",
                "input": {"seconds": 0.3}})).collect::<Vec<_>>(),
        }))
        .await,
    ];
    let mut done = vec![];
    for id in &runs {
        let run = sys.wait_run(id, LIMIT).await;
        assert_eq!(run["state"], "succeeded", "{run:#}");
        done.push(run);
    }

    let requests = fake.requests();
    let intervals = |model: &str| -> Vec<(f64, f64)> {
        requests
            .iter()
            .filter(|r| r["model"] == model)
            .map(|r| {
                (
                    r["started_at"].as_f64().unwrap(),
                    r["finished_at"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let keyed = intervals("fake-keyed");
    assert_eq!(keyed.len(), 8);
    assert_eq!(
        max_overlap(&keyed),
        2,
        "at most 2 on the key, and 2 were used"
    );
    let solo = intervals("fake-solo");
    assert_eq!(solo.len(), 3);
    assert_eq!(max_overlap(&solo), 1, "the agent's max_concurrency is 1");

    let sleeps: Vec<(f64, f64)> = tasks(&done[3])
        .iter()
        .map(|t| {
            (
                t["started_at_ms"].as_f64().unwrap(),
                t["finished_at_ms"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(max_overlap(&sleeps), 2, "max_parallel 2");
    sys.shutdown().await;
}

/// Handlers that spawn children, in a module a worker imports.
const SPAWNING_HANDLERS: &str = r#"from apex_worker import Spawn, handler


@handler
async def cyclic(input, upstream, ctx):
    return Spawn({"planned": 2}, children=[
        {"id": "x", "handler": "noop", "depends_on": ["y"]},
        {"id": "y", "handler": "noop", "depends_on": ["x"]},
    ])


@handler
async def split(input, upstream, ctx):
    children = [{"id": f"part{i}", "handler": "sleep", "input": {"seconds": input["seconds"], "part": i}}
                for i in range(input["parts"])]
    return Spawn({"parts": input["parts"]}, children=children)
"#;

/// A worker with [`SPAWNING_HANDLERS`]; returns the module's directory, to remove.
fn spawning_worker(sys: &mut TestSystem) -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique("handlers"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("spawning_handlers.py"), SPAWNING_HANDLERS).unwrap();
    let path = dir.to_str().unwrap().to_owned();
    sys.spawn_worker_with(
        "default",
        4,
        &["--import", "spawning_handlers"],
        &[("PYTHONPATH", &path)],
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_children_are_stored_and_survive_a_restart() {
    let mut sys = TestSystem::start().await;
    let dir = spawning_worker(&mut sys);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "plan", "handler": "split", "input": {"parts": 3, "seconds": 1.0}},
            {"id": "join", "handler": "echo", "depends_on": ["plan"]},
        ]}))
        .await;
    sys.wait_until(&id, LIMIT, |run| {
        tasks(run).len() == 5 && task(run, "plan.part0")["state"] == "running"
    })
    .await;
    sys.restart_server().await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let join = task(&run, "join");
    assert_eq!(
        join["depends_on"],
        json!(["plan", "plan.part0", "plan.part1", "plan.part2"])
    );
    for i in 0..3 {
        let child = task(&run, &format!("plan.part{i}"));
        assert_eq!(child["parent"], "plan");
        assert!(
            child["finished_at_ms"].as_i64().unwrap() <= join["started_at_ms"].as_i64().unwrap()
        );
    }
    // The join received every child's output, and the parent's.
    let (_, detail) = sys.get(&format!("/api/v1/runs/{id}/tasks/join")).await;
    assert_eq!(detail["upstream"]["plan.part2"]["part"], 2, "{detail:#}");
    assert_eq!(detail["upstream"]["plan"]["parts"], 3, "{detail:#}");
    sys.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_child_cycle_fails_the_parent_with_a_clear_error() {
    let mut sys = TestSystem::start().await;
    let dir = spawning_worker(&mut sys);
    let id = sys
        .submit(&json!({"tasks": [
            {"id": "plan", "handler": "cyclic"},
            {"id": "after", "handler": "noop", "depends_on": ["plan"]},
        ]}))
        .await;
    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed");
    let plan = task(&run, "plan");
    assert_eq!(plan["error"]["kind"], "invalid_children");
    assert_eq!(
        plan["error"]["message"],
        r#"children of task "plan": cycle: plan.x -> plan.y -> plan.x (remove one of these dependencies)"#
    );
    assert_eq!(plan["attempt"], 1, "a bad spawn is not retried");
    assert_eq!(tasks(&run).len(), 2, "no child was added");
    assert_eq!(task(&run, "after")["state"], "skipped");
    sys.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Issue #13: a provider that bills the prompt and then hangs until the task's timeout
/// costs the run what it billed as soon as the worker hears of it, and the run's budget
/// stops what comes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_billed_by_a_call_that_then_times_out_counts_at_once_against_the_run_budget() {
    let fake = FakeProviders::start(0.0);
    let providers = fake.providers_file();
    let mut sys = TestSystem::start_with(|c| c.providers_file = Some(providers.clone())).await;
    let file = providers.to_str().unwrap();
    sys.spawn_worker_with(
        "default",
        4,
        &["--providers-file", file],
        &[("FAKE_LLM_KEY", "sk-test")],
    );
    // About 500 tokens of prompt each: the stalled call bills its prompt, the next task
    // would need about as many again, and the budget covers only one of the two.
    let padding = "lorem ipsum ".repeat(170);
    const MAX: u64 = 800;
    let id = sys
        .submit(&json!({
            "agents": {"a": {"provider": "fake", "model": "fake-stall", "max_output_tokens": 20}},
            "budget": {"max_tokens": MAX},
            "tasks": [
                {"id": "stall", "handler": "agent", "agent": "a", "timeout_s": 3,
                 "input": {"prompt": format!("[fake:stall] {padding}")}},
                {"id": "after", "handler": "agent", "agent": "a", "trigger": "all_done",
                 "depends_on": ["stall"], "input": {"prompt": format!("then {padding}")}},
                {"id": "last", "handler": "agent", "agent": "a", "depends_on": ["after"],
                 "input": {"prompt": "and finally"}},
            ],
        }))
        .await;
    // While the call hangs, what it billed already shows on the task and the run.
    let seen = sys
        .wait_until(&id, LIMIT, |run| {
            tokens(&run["usage"]) > 0 || task(run, "stall")["state"] == "failed"
        })
        .await;
    let stall = task(&seen, "stall");
    assert_eq!(stall["state"], "running", "{seen:#}");
    assert!(tokens(&stall["usage"]) >= 400, "{stall:#}");
    assert_eq!(tokens(&seen["usage"]), tokens(&stall["usage"]), "{seen:#}");

    let run = sys.wait_run(&id, LIMIT).await;
    assert_eq!(run["state"], "failed", "{run:#}");
    let stall = task(&run, "stall");
    assert_eq!(stall["error"]["kind"], "timeout", "{stall:#}");
    let billed = tokens(&stall["usage"]);
    assert!(billed >= 400, "the billed prompt counts: {stall:#}");
    assert_eq!(tokens(&run["usage"]), billed, "counted once: {run:#}");
    for t in ["after", "last"] {
        let t = task(&run, t);
        assert_eq!(t["state"], "skipped", "{t:#}");
        assert_eq!(t["error"]["kind"], "budget_exceeded", "{t:#}");
    }
    assert_eq!(fake.requests().len(), 1, "only the stalled call was made");
    sys.shutdown().await;
}

/// Issue #13: the operator's limits (`--concurrency-limits-file`) hold every run whose
/// tasks name the key, whether the run sets no limit for it or a looser one, and an
/// agent's limit holds runs whose agent sets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_limits_hold_runs_that_set_none_or_a_looser_one() {
    let fake = FakeProviders::start(0.3);
    let providers = fake.providers_file();
    let limits = std::env::temp_dir().join(format!("{}.json", common::unique("limits")));
    let file = json!({"provider:fake": {"max_concurrency": 2},
                      "agent:solo": {"max_concurrency": 1}});
    std::fs::write(&limits, file.to_string()).unwrap();
    let mut sys = TestSystem::start_with(|c| {
        c.providers_file = Some(providers.clone());
        c.concurrency_limits_file = Some(limits.clone());
    })
    .await;
    sys.spawn_worker_with(
        "default",
        16,
        &["--providers-file", providers.to_str().unwrap()],
        &[("FAKE_LLM_KEY", "sk-test")],
    );
    let keyed = |limits: Value| {
        json!({
            "agents": {"k": {"provider": "fake", "model": "fake-keyed", "max_output_tokens": 20}},
            "concurrency_limits": limits,
            "tasks": (0..4).map(|i| json!({"id": format!("k{i}"), "handler": "agent", "agent": "k",
                "concurrency_key": "provider:fake", "input": {"prompt": format!("hi {i}")}}))
                .collect::<Vec<_>>(),
        })
    };
    let runs = [
        sys.submit(&keyed(json!({}))).await,
        sys.submit(&keyed(json!({"provider:fake": {"max_concurrency": 10}})))
            .await,
        sys.submit(&json!({
            "agents": {"solo": {"provider": "fake", "model": "fake-solo", "max_output_tokens": 20}},
            "tasks": (0..3).map(|i| json!({"id": format!("s{i}"), "handler": "agent", "agent": "solo",
                "input": {"prompt": format!("hello {i}")}})).collect::<Vec<_>>(),
        }))
        .await,
    ];
    for id in &runs {
        let run = sys.wait_run(id, LIMIT).await;
        assert_eq!(run["state"], "succeeded", "{run:#}");
    }
    let requests = fake.requests();
    let intervals = |model: &str| -> Vec<(f64, f64)> {
        requests
            .iter()
            .filter(|r| r["model"] == model)
            .map(|r| {
                (
                    r["started_at"].as_f64().unwrap(),
                    r["finished_at"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let keyed = intervals("fake-keyed");
    assert_eq!(keyed.len(), 8);
    assert_eq!(
        max_overlap(&keyed),
        2,
        "the operator's 2, not the runs' none or 10"
    );
    let solo = intervals("fake-solo");
    assert_eq!(solo.len(), 3);
    assert_eq!(max_overlap(&solo), 1, "the operator's 1 for agent:solo");
    sys.shutdown().await;
    let _ = std::fs::remove_file(limits);
}
