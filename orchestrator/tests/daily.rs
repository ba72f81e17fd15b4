//! Running Apex every day, end to end on a real server, store and Redis (and workers
//! where runs must finish): idempotent submission, templates, schedules (including a
//! leader failover right before a tick) and signed webhooks.

mod common;

use common::{free_port, task, TestSystem, PG_ADMIN, REDIS};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

async fn post_keyed(sys: &TestSystem, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = sys
        .http
        .post(sys.url(path))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn put(sys: &TestSystem, path: &str, body: &Value) -> (u16, Value) {
    let r = sys.http.put(sys.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn run_count(sys: &TestSystem) -> usize {
    let (_, body) = sys.get("/api/v1/runs?limit=500").await;
    body["runs"].as_array().unwrap().len()
}

fn dag(topic: &str) -> Value {
    json!({"name": "idem", "tasks": [{"id": "a", "handler": "echo", "input": {"topic": topic}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_and_body_make_one_run_even_concurrently_and_another_body_conflicts() {
    let sys = TestSystem::start().await;

    let (s1, first) = post_keyed(&sys, "/api/v1/runs", "key-1", &dag("tides")).await;
    assert_eq!(s1, 201, "{first}");
    let (s2, again) = post_keyed(&sys, "/api/v1/runs", "key-1", &dag("tides")).await;
    assert_eq!(s2, 200, "a repeat answers the first run: {again}");
    assert_eq!(again["id"], first["id"]);

    let (s3, conflict) = post_keyed(&sys, "/api/v1/runs", "key-1", &dag("moons")).await;
    assert_eq!(s3, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    assert_eq!(conflict["error"]["run_id"], first["id"]);

    // Eight at once with a fresh key: one creates, the others wait and get its run.
    let body = dag("tides");
    let answers =
        futures::future::join_all((0..8).map(|_| post_keyed(&sys, "/api/v1/runs", "key-2", &body)))
            .await;
    let ids: HashSet<&Value> = answers.iter().map(|(_, b)| &b["id"]).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 7);

    // Without a key, every POST is a new run.
    sys.submit(&dag("tides")).await;
    sys.submit(&dag("tides")).await;
    assert_eq!(run_count(&sys).await, 4);

    let r = sys
        .http
        .post(sys.url("/api/v1/runs"))
        .header("idempotency-key", "x".repeat(300))
        .json(&dag("tides"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an oversize key is refused");
    sys.shutdown().await;
}

fn research_template() -> Value {
    json!({
        "name": "research",
        "params": {"topic": {"default": "tides"}, "who": {"description": "the reader"}},
        "tasks": [
            {"id": "plan", "handler": "echo", "input": {"topic": {"$param": "topic"}, "for": {"$param": "who"}}},
            {"id": "write", "handler": "echo", "depends_on": ["plan"]}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_are_versioned_validated_like_submissions_and_run_with_params() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);

    let (s, v1) = put(&sys, "/api/v1/templates/research", &research_template()).await;
    assert_eq!(s, 201, "{v1}");
    assert_eq!(v1["version"], 1);
    let mut second = research_template();
    second["tasks"][1]["input"] = json!({"style": "brief"});
    let (s, v2) = put(&sys, "/api/v1/templates/research", &second).await;
    assert_eq!((s, &v2["version"]), (201, &json!(2)), "{v2}");

    // An invalid DAG is refused at PUT with the problems a submission gets.
    let cyclic = json!({"tasks": [
        {"id": "a", "handler": "echo", "depends_on": ["b"]},
        {"id": "b", "handler": "echo", "depends_on": ["a"]}
    ]});
    let (s, refused) = put(&sys, "/api/v1/templates/research", &cyclic).await;
    assert_eq!(s, 422, "{refused}");
    let (_, submitted) = sys.post("/api/v1/runs", &cyclic).await;
    assert_eq!(refused["error"]["details"], submitted["error"]["details"]);
    let (_, listed) = sys.get("/api/v1/templates").await;
    assert_eq!(
        listed["templates"][0]["versions"],
        json!([1, 2]),
        "{listed}"
    );

    // A required parameter must be given; an undeclared one is a typo.
    let (s, missing) = sys
        .post("/api/v1/templates/research/runs", &json!({}))
        .await;
    assert_eq!(s, 422, "{missing}");
    assert_eq!(missing["error"]["details"][0]["code"], "invalid_param");
    let (s, _) = sys
        .post(
            "/api/v1/templates/research/runs",
            &json!({"params": {"who": "ana", "topik": "x"}}),
        )
        .await;
    assert_eq!(s, 422);

    let (s, run) = sys
        .post(
            "/api/v1/templates/research/runs",
            &json!({"params": {"who": "ana"}, "version": 1}),
        )
        .await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(run["template"], json!({"name": "research", "version": 1}));
    let done = sys.wait_run(run["id"].as_str().unwrap(), LIMIT).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        task(&done, "plan")["output"],
        json!({"topic": "tides", "for": "ana"})
    );
    let (s, latest) = sys
        .post(
            "/api/v1/templates/research/runs",
            &json!({"params": {"who": "bo", "topic": "moons"}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(latest["template"]["version"], 2);

    // Template runs honour Idempotency-Key too.
    let body = json!({"params": {"who": "cy"}});
    let (s1, a) = post_keyed(&sys, "/api/v1/templates/research/runs", "t-1", &body).await;
    let (s2, b) = post_keyed(&sys, "/api/v1/templates/research/runs", "t-1", &body).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["id"], b["id"]);

    let (s, _) = sys.post("/api/v1/templates/nope/runs", &json!({})).await;
    assert_eq!(s, 404);
    sys.shutdown().await;
}

/// Runs a schedule started, oldest first, with their ticks.
async fn schedule_ticks(sys: &TestSystem, name: &str) -> Vec<i64> {
    let (s, body) = sys.get(&format!("/api/v1/schedules/{name}")).await;
    assert_eq!(s, 200, "{body}");
    let mut ticks: Vec<i64> = body["recent_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["schedule"], name, "{r}");
            r["schedule_tick_ms"].as_i64().unwrap()
        })
        .collect();
    ticks.reverse();
    ticks
}

async fn scheduled_runs(sys: &TestSystem, name: &str) -> usize {
    let (_, body) = sys.get("/api/v1/runs?limit=500").await;
    body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["schedule"] == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_every_two_seconds_fires_and_stops_when_deleted() {
    let mut sys = TestSystem::start().await;
    sys.spawn_worker("default", 4);
    let (s, _) = put(
        &sys,
        "/api/v1/templates/ping",
        &json!({"tasks": [{"id": "a", "handler": "noop"}]}),
    )
    .await;
    assert_eq!(s, 201);

    let bad = json!({"template": "ping", "cron": "* * *"});
    let (s, body) = put(&sys, "/api/v1/schedules/bad", &bad).await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_schedule");
    let both = json!({"template": "ping", "cron": "0 * * * *", "every_s": 2});
    let (s, body) = put(&sys, "/api/v1/schedules/bad", &both).await;
    assert_eq!(s, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one"),
        "{body}"
    );
    let (s, _) = put(
        &sys,
        "/api/v1/schedules/bad",
        &json!({"template": "none", "every_s": 2}),
    )
    .await;
    assert_eq!(s, 404);

    let started = Instant::now();
    let (s, created) = put(
        &sys,
        "/api/v1/schedules/ping-2s",
        &json!({"template": "ping", "every_s": 2}),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    assert!(created["next_fire_ms"].as_i64().unwrap() > created["created_at_ms"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(started.elapsed())).await;
    let fired = scheduled_runs(&sys, "ping-2s").await;
    assert!((4..=7).contains(&fired), "fired {fired} times in 11 s");
    let ticks = schedule_ticks(&sys, "ping-2s").await;
    assert!(ticks.windows(2).all(|w| w[1] - w[0] == 2000), "{ticks:?}");

    let (s, listed) = sys.get("/api/v1/schedules").await;
    assert_eq!(s, 200);
    assert!(listed["schedules"][0]["next_fire_ms"].is_i64(), "{listed}");

    let r = sys
        .http
        .delete(sys.url("/api/v1/schedules/ping-2s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after_delete = scheduled_runs(&sys, "ping-2s").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        scheduled_runs(&sys, "ping-2s").await,
        after_delete,
        "a deleted schedule fired"
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_does_not_fire_and_resumes_without_owed_ticks() {
    let sys = TestSystem::start().await;
    let (s, _) = put(
        &sys,
        "/api/v1/templates/ping",
        &json!({"tasks": [{"id": "a", "handler": "noop"}]}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = put(
        &sys,
        "/api/v1/schedules/p",
        &json!({"template": "ping", "every_s": 1, "paused": true, "overlap": "allow"}),
    )
    .await;
    assert_eq!(s, 201);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(scheduled_runs(&sys, "p").await, 0);
    let (s, resumed) = sys.post("/api/v1/schedules/p/resume", &json!({})).await;
    assert_eq!(s, 200, "{resumed}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (s, _) = sys.post("/api/v1/schedules/p/pause", &json!({})).await;
    assert_eq!(s, 200);
    // Ticks owed from the paused seconds would have made more than three runs.
    let n = scheduled_runs(&sys, "p").await;
    assert!((1..=3).contains(&n), "{n} runs after 2.5 s resumed");
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_due_while_the_leader_dies_fires_exactly_once_on_the_standby() {
    let mut sys = TestSystem::without_server(PG_ADMIN, REDIS).await;
    let (first, second) = (free_port(), free_port());
    sys.spawn_orchestrator(first);
    let leader = sys.base.clone();
    sys.wait_ready(&leader, LIMIT).await;
    sys.spawn_orchestrator(second);
    let standby = sys.base.clone();
    sys.base = leader;

    let (s, _) = put(
        &sys,
        "/api/v1/templates/ping",
        &json!({"tasks": [{"id": "a", "handler": "noop"}]}),
    )
    .await;
    assert_eq!(s, 201);
    let every_ms = 6_000;
    let (s, _) = put(
        &sys,
        "/api/v1/schedules/fo",
        &json!({"template": "ping", "every_s": every_ms / 1000, "overlap": "allow"}),
    )
    .await;
    assert_eq!(s, 201);
    // The first tick fires on the first leader.
    let deadline = Instant::now() + LIMIT;
    let first_tick = loop {
        if let Some(&t) = schedule_ticks(&sys, "fo").await.first() {
            break t;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Kill it just before the next tick.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let kill_at = first_tick + every_ms - 300;
    tokio::time::sleep(Duration::from_millis((kill_at - now_ms).max(0) as u64)).await;
    sys.kill_orchestrator(first);

    sys.base = standby.clone();
    sys.wait_ready(&standby, LIMIT).await;
    // Wait for the tick after the missed one, so the missed one has had every chance.
    let deadline = Instant::now() + LIMIT;
    loop {
        let ticks = schedule_ticks(&sys, "fo").await;
        if ticks
            .last()
            .is_some_and(|&t| t >= first_tick + 2 * every_ms)
        {
            break;
        }
        assert!(Instant::now() < deadline, "{ticks:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (s, _) = sys.post("/api/v1/schedules/fo/pause", &json!({})).await;
    assert_eq!(s, 200);
    let ticks = schedule_ticks(&sys, "fo").await;
    assert_eq!(ticks[0], first_tick);
    assert!(
        ticks.windows(2).all(|w| w[1] - w[0] == every_ms),
        "each tick exactly once, none skipped: {ticks:?}"
    );
    assert!(ticks.contains(&(first_tick + every_ms)));
    sys.shutdown().await;
}

fn signed(secret: &str, ts: i64, body: &[u8]) -> (String, String) {
    let ts = ts.to_string();
    let sig = apex::api::hooks::sign(secret, &ts, body);
    (ts, format!("sha256={sig}"))
}

async fn deliver(sys: &TestSystem, hook: &str, ts: &str, sig: &str, body: &[u8]) -> (u16, Value) {
    let r = sys
        .http
        .post(sys.url(&format!("/api/v1/hooks/{hook}")))
        .header("content-type", "application/json")
        .header("x-apex-timestamp", ts)
        .header("x-apex-signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_starts_a_run_and_bad_signatures_and_replays_are_refused() {
    let token = "apex_admin_token_for_hooks_test_0123456789";
    let mut sys = TestSystem::start_with(|c| {
        c.no_auth = false;
        c.api_token = Some(token.into());
        c.daily.hook_max_body_bytes = 1024;
    })
    .await;
    sys.spawn_worker("default", 4);
    let auth = |rb: reqwest::RequestBuilder| rb.bearer_auth(token);
    let r = auth(sys.http.put(sys.url("/api/v1/templates/on-push")))
        .json(&json!({"params": {"payload": {}},
            "tasks": [{"id": "build", "handler": "echo", "input": {"event": {"$param": "payload"}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let secret = "s3cret-s3cret-s3cret";
    let r = auth(sys.http.put(sys.url("/api/v1/hooks/github")))
        .json(&json!({"template": "on-push", "secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let listed: Value = auth(sys.http.get(sys.url("/api/v1/hooks")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["hooks"][0]["template"], "on-push");
    assert!(
        !listed.to_string().contains(secret),
        "the secret is never answered"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = br#"{"ref": "main", "commits": 3}"#;
    let (ts, sig) = signed(secret, now, body);
    let (s, run) = deliver(&sys, "github", &ts, &sig, body).await;
    assert_eq!(s, 201, "{run}");
    assert_eq!(run["hook"], "github");
    let id = run["id"].as_str().unwrap();
    let done = loop {
        let r: Value = auth(sys.http.get(sys.url(&format!("/api/v1/runs/{id}"))))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["state"] != "running" {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        task(&done, "build")["output"],
        json!({"event": {"ref": "main", "commits": 3}})
    );

    // The same delivery again is a replay.
    let (s, replay) = deliver(&sys, "github", &ts, &sig, body).await;
    assert_eq!(s, 401, "{replay}");
    // A changed body, a wrong secret, an old timestamp, an unknown hook: all 401.
    let (s, _) = deliver(&sys, "github", &ts, &sig, br#"{"ref": "evil"}"#).await;
    assert_eq!(s, 401);
    let (ts2, wrong) = signed("not-the-secret-at-all", now, body);
    assert_eq!(deliver(&sys, "github", &ts2, &wrong, body).await.0, 401);
    let (old_ts, old_sig) = signed(secret, now - 600, body);
    assert_eq!(
        deliver(&sys, "github", &old_ts, &old_sig, body).await.0,
        401
    );
    assert_eq!(deliver(&sys, "gitlab", &ts, &sig, body).await.0, 401);
    // Over the hook body cap.
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(2000));
    let (ts3, big_sig) = signed(secret, now, big.as_bytes());
    assert_eq!(
        deliver(&sys, "github", &ts3, &big_sig, big.as_bytes())
            .await
            .0,
        413
    );
    // Managing hooks still needs a token.
    let r = sys
        .http
        .put(sys.url("/api/v1/hooks/github"))
        .json(&json!({"template": "on-push", "secret": "another-secret-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ttl_over_ten_years_is_refused_by_validate_and_submit_alike() {
    let sys = TestSystem::start().await;
    let mut over = dag("ttl");
    over["ttl_s"] = json!(9_223_372_036_854_775_808_u64);
    for path in ["/api/v1/validate", "/api/v1/runs"] {
        let (status, body) = sys.post(path, &over).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("ttl_s:"),
            "{path} names the field: {body}"
        );
    }
    let mut template = dag("ttl");
    template["ttl_s"] = json!(316_224_001);
    let (status, body) = put(&sys, "/api/v1/templates/ttl", &template).await;
    assert_eq!(status, 400, "a template is checked as a submission: {body}");
    assert_eq!(run_count(&sys).await, 0, "nothing was stored");
    let mut within = dag("ttl");
    within["ttl_s"] = json!(316_224_000);
    let (status, body) = sys.post("/api/v1/validate", &within).await;
    assert_eq!(status, 200, "ten years is allowed: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_due_runs_in_batches_while_another_run_proceeds() {
    let mut sys = TestSystem::start_with(|c| {
        c.daily.retention_interval_s = 1;
        c.daily.retention_batch = 2;
    })
    .await;
    sys.spawn_worker("default", 8);
    // A run that keeps working while retention deletes around it.
    let long = sys
        .submit(&json!({"name": "long", "tasks": [
            {"id": "a", "handler": "sleep", "input": {"seconds": 1.5}},
            {"id": "b", "handler": "sleep", "input": {"seconds": 1.5}, "depends_on": ["a"]},
            {"id": "c", "handler": "sum", "depends_on": ["b"]}
        ]}))
        .await;
    let mut short = Vec::new();
    for i in 0..5 {
        short.push(
            sys.submit(&json!({"name": format!("short-{i}"), "ttl_s": 1,
                "tasks": [{"id": "a", "handler": "echo", "input": {"i": i}}]}))
                .await,
        );
    }
    let kept = sys
        .submit(&json!({"name": "kept", "tasks": [{"id": "a", "handler": "noop"}]}))
        .await;
    for id in short.iter().chain([&kept]) {
        sys.wait_run(id, LIMIT).await;
    }
    let (s, too_long) = sys
        .post(
            "/api/v1/runs",
            &json!({"ttl_s": u64::MAX / 2, "tasks": [{"id": "a", "handler": "noop"}]}),
        )
        .await;
    assert_eq!(s, 400, "{too_long}");

    // Five due runs, two per batch: all go within a few passes.
    let deadline = Instant::now() + LIMIT;
    for id in &short {
        loop {
            let (s, _) = sys.get(&format!("/api/v1/runs/{id}")).await;
            if s == 404 {
                break;
            }
            assert!(Instant::now() < deadline, "run {id} was not deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let run = sys.wait_run(&long, LIMIT).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let (s, _) = sys.get(&format!("/api/v1/runs/{kept}")).await;
    assert_eq!(
        s, 200,
        "a run without ttl_s is kept for --retain-finished-days"
    );

    // One run deleted by hand: refused while it runs, done once it finished.
    let busy = sys
        .submit(&json!({"tasks": [{"id": "a", "handler": "sleep", "input": {"seconds": 1}}]}))
        .await;
    let r = sys
        .http
        .delete(sys.url(&format!("/api/v1/runs/{busy}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    sys.wait_run(&busy, LIMIT).await;
    let r = sys
        .http
        .delete(sys.url(&format!("/api/v1/runs/{busy}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(sys.get(&format!("/api/v1/runs/{busy}")).await.0, 404);
    assert_eq!(sys.get(&format!("/api/v1/runs/{busy}/events")).await.0, 404);
    let r = sys
        .http
        .delete(sys.url(&format!("/api/v1/runs/{busy}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    sys.shutdown().await;
}

/// Runs the `apex` binary against `base`; its exit status and standard output.
fn apex(base: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_apex"))
        .args(args)
        .args(["--server", base])
        .env_remove("APEX_API_TOKEN")
        .env(
            "APEX_DATA_DIR",
            std::env::temp_dir().join(common::unique("apex-cli")),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_idempotently_and_manages_templates_schedules_and_hooks() {
    let sys = TestSystem::start().await;
    let base = sys.base.clone();
    let dag = dag("tides").to_string();
    let run = |args: Vec<String>, stdin: Option<String>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            apex(&base, &args, stdin.as_deref())
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (ok1, id1) = run(
        args(&["submit", "-", "--idempotency-key", "cli-1"]),
        Some(dag.clone()),
    )
    .await
    .unwrap();
    let (ok2, id2) = run(
        args(&["submit", "-", "--idempotency-key", "cli-1"]),
        Some(dag.clone()),
    )
    .await
    .unwrap();
    assert!(ok1 && ok2, "{id1} {id2}");
    assert_eq!(id1, id2, "the same key answers the same run");
    let (_, id3) = run(args(&["submit", "-"]), Some(dag.clone()))
        .await
        .unwrap();
    assert_ne!(id1, id3, "each invocation has its own key by default");

    let (ok, text) = run(
        args(&["templates", "put", "research", "-f", "-"]),
        Some(research_template().to_string()),
    )
    .await
    .unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("version 1"), "{text}");
    let (ok, text) = run(args(&["templates", "list"]), None).await.unwrap();
    assert!(ok && text.contains("research"), "{text}");
    let (ok, id) = run(
        args(&["templates", "run", "research", "-p", "who=ana", "--json"]),
        None,
    )
    .await
    .unwrap();
    assert!(ok, "{id}");
    let summary: Value = serde_json::from_str(&id).unwrap();
    assert_eq!(summary["template"]["name"], "research");

    let schedule = json!({"template": "research", "params": {"who": "bo"}, "cron": "0 9 * * 1", "timezone": "Europe/Paris"});
    let (ok, text) = run(
        args(&["schedules", "put", "weekly", "-f", "-"]),
        Some(schedule.to_string()),
    )
    .await
    .unwrap();
    assert!(ok && text.contains("created schedule"), "{text}");
    let (ok, text) = run(args(&["schedules", "pause", "weekly"]), None)
        .await
        .unwrap();
    assert!(ok, "{text}");
    let (ok, text) = run(args(&["schedules", "list"]), None).await.unwrap();
    assert!(
        ok && text.contains("weekly") && text.contains("paused"),
        "{text}"
    );
    let (ok, text) = run(args(&["schedules", "resume", "weekly"]), None)
        .await
        .unwrap();
    assert!(ok, "{text}");
    let (ok, text) = run(args(&["schedules", "delete", "weekly"]), None)
        .await
        .unwrap();
    assert!(ok, "{text}");
    let (ok, _) = run(args(&["schedules", "delete", "weekly"]), None)
        .await
        .unwrap();
    assert!(!ok, "deleting it twice fails");

    let (ok, text) = run(
        args(&[
            "hooks",
            "put",
            "gh",
            "--template",
            "research",
            "--secret",
            "0123456789abcdef-x",
        ]),
        None,
    )
    .await
    .unwrap();
    assert!(ok, "{text}");
    // A running run cannot be deleted; a cancelled one can.
    let id1 = id1.trim().to_owned();
    let (ok, text) = run(args(&["runs", "delete", &id1]), None).await.unwrap();
    assert!(!ok, "{text}");
    let (s, _) = sys
        .post(&format!("/api/v1/runs/{id1}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 202);
    sys.wait_run(&id1, LIMIT).await;
    let (ok, text) = run(args(&["runs", "delete", &id1]), None).await.unwrap();
    assert!(ok && text.contains("deleted run"), "{text}");
    assert_eq!(sys.get(&format!("/api/v1/runs/{id1}")).await.0, 404);
    let (ok, text) = run(args(&["runs", "--limit", "5"]), None).await.unwrap();
    assert!(ok, "{text}");

    let (ok, text) = run(args(&["hooks", "list"]), None).await.unwrap();
    assert!(
        ok && text.contains("gh") && !text.contains("0123456789abcdef"),
        "{text}"
    );
    sys.shutdown().await;
}
