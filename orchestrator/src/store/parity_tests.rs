//! Tests of the SQLite store, above all its parity with Postgres: the same batches
//! written to both must read back the same (`answers_match_postgres_after_the_same_batches`).
//! A child module of `sqlite`, so it reaches the store's private helpers.

use super::*;
use crate::access::Scope;
use crate::state_machine::{RunState, TaskFailure, TaskState, Usage};
use crate::store::postgres::PgStore;
use serde_json::json;
use serde_json::Value;
use std::path::PathBuf;

/// A database file in a fresh directory, removed on drop.
struct TempDb {
    dir: PathBuf,
    url: String,
}

impl TempDb {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("apex-sqlite-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/nested/apex.db", dir.display());
        Self { dir, url }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spec(i: usize) -> TaskSpec {
    let deps: Vec<String> = if i == 0 {
        vec![]
    } else {
        vec![format!("t{}", i - 1)]
    };
    serde_json::from_value(json!({
        "id": format!("t{i}"), "handler": "sum", "input": {"value": i, "note": "ünïcode ✓"},
        "depends_on": deps, "retries": 2, "timeout_s": 1.5,
    }))
    .unwrap()
}

fn task_row(run: &str, i: usize, state: TaskState) -> TaskRow {
    let done = state == TaskState::Succeeded;
    let failed = state == TaskState::Failed;
    // Odd finished tasks called a model; the rest report nothing.
    let called_model = (done || failed) && i % 2 == 1;
    let usage = Usage {
        input_tokens: 100 + i as u64,
        output_tokens: 40,
        cost_usd: 0.000125,
    };
    let mut charges = crate::state_machine::budget::Charges::default();
    if called_model {
        charges.report(1, &usage);
    }
    TaskRow {
        run_id: run.to_owned(),
        task_id: format!("t{i}"),
        idx: i as u32,
        state,
        attempt: u32::from(done || failed),
        failures: u32::from(failed),
        lost: 0,
        // Even tasks output a number, odd ones JSON null (which is not SQL null).
        output: done.then(|| [json!(i), Value::Null][i % 2].clone()),
        error: failed.then(|| TaskFailure {
            kind: "exception".into(),
            error_type: Some("ValueError".into()),
            message: "no".into(),
            traceback: None,
        }),
        worker_id: (done || failed).then(|| "w1".to_owned()),
        queued_at_ms: Some(1_000 + i as i64),
        started_at_ms: (done || failed).then_some(2_000),
        finished_at_ms: (done || failed).then_some(3_000 + i as i64),
        usage: if called_model {
            usage
        } else {
            Usage::default()
        },
        charges,
        rev: 7 + i as u64,
    }
}

fn run_row(id: &str, tasks: usize, state: RunState, seq: u64) -> RunRow {
    let mut counts = [0u32; crate::state_machine::TASK_STATE_COUNT];
    counts[TaskState::Queued as usize] = tasks as u32;
    RunRow {
        id: id.to_owned(),
        name: format!("run {id}"),
        queue: "default".into(),
        state,
        task_count: tasks as u32,
        counts,
        error: (state == RunState::Failed).then(|| "1 task(s) failed: t0".to_owned()),
        created_at_ms: 500,
        finished_at_ms: state.is_terminal().then_some(9_000),
        last_seq: seq,
        options: std::sync::Arc::new(
            serde_json::from_value(json!({
                "agents": {"writer": {"provider": "mock", "model": "m", "max_concurrency": 2,
                                      "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}},
                "budget": {"max_tokens": 5000, "max_cost_usd": 0.25},
                "max_parallel": 3,
                "concurrency_limits": {"provider:mock": {"max_concurrency": 2, "rpm": 60}},
            }))
            .unwrap(),
        ),
        usage: Usage {
            input_tokens: seq * 10,
            output_tokens: seq,
            cost_usd: seq as f64 / 1_000.0,
        },
        created_by: Some("ci".into()),
    }
}

fn new_run(id: &str, tasks: usize) -> NewRun {
    let specs = (0..tasks).map(spec).collect();
    let run =
        crate::dag::RunSpec::from_parts("run".into(), "default".into(), specs, Default::default());
    let dag = crate::dag::validate(run, &crate::dag::Limits::default()).unwrap();
    NewRun {
        run: run_row(id, tasks, RunState::Running, 0),
        dag: std::sync::Arc::new(dag),
        tasks: (0..tasks)
            .map(|i| task_row(id, i, TaskState::Queued))
            .collect(),
    }
}

fn event(run: &str, seq: u64, task: Option<usize>, state: &str) -> EventRow {
    EventRow {
        run_id: run.to_owned(),
        seq,
        task_id: task.map(|i| format!("t{i}")),
        kind: if task.is_some() { "task" } else { "run" }.into(),
        state: Some(state.into()),
        attempt: 1,
        worker_id: task.map(|_| "w1".to_owned()),
        at_ms: 4_000 + seq as i64,
        data: (state == "failed").then(|| json!({"kind": "exception", "message": "no"})),
        // Run events were caused by API calls; task events by workers.
        by: task.is_none().then(|| "ops".to_owned()),
    }
}

fn worker(id: &str, state: &str, hb: i64) -> WorkerRow {
    WorkerRow {
        id: id.to_owned(),
        info: json!({"id": id, "host": "h", "queues": ["default"], "concurrency": 10}),
        state: state.into(),
        last_heartbeat_ms: hb,
    }
}

/// Three runs' lives in batches: submitted, progressing, finished (one failed, one
/// succeeded, one still running), with events (one replayed) and workers (one
/// updated).
fn history(ids: &[String; 3]) -> Vec<WriteBatch> {
    let [a, b, c] = ids;
    let mut batches = vec![WriteBatch {
        new_runs: vec![new_run(a, 4), new_run(b, 3)],
        workers: vec![worker("w2", "running", 10), worker("w1", "running", 11)],
        ..Default::default()
    }];
    batches.push(WriteBatch {
        new_runs: vec![new_run(c, 2)],
        tasks: vec![
            task_row(a, 0, TaskState::Succeeded),
            task_row(a, 1, TaskState::Failed),
            task_row(b, 0, TaskState::Succeeded),
        ],
        events: vec![
            event(a, 1, Some(0), "succeeded"),
            event(a, 2, Some(1), "failed"),
            event(b, 1, Some(0), "succeeded"),
        ],
        runs: vec![
            run_row(a, 4, RunState::Running, 2),
            run_row(b, 3, RunState::Running, 1),
        ],
        workers: vec![worker("w1", "draining", 20)],
        ..Default::default()
    });

    batches.push(WriteBatch {
        tasks: vec![
            task_row(a, 2, TaskState::Succeeded),
            task_row(a, 3, TaskState::Skipped),
            task_row(b, 1, TaskState::Succeeded),
            task_row(b, 2, TaskState::Succeeded),
        ],
        events: vec![
            // Replayed after a retried commit: ignored.
            event(a, 2, Some(1), "failed"),
            event(a, 3, Some(2), "succeeded"),
            event(a, 4, Some(3), "skipped"),
            event(a, 5, None, "failed"),
            event(b, 2, Some(1), "succeeded"),
            event(b, 3, Some(2), "succeeded"),
            event(b, 4, None, "succeeded"),
        ],
        runs: vec![
            run_row(a, 4, RunState::Failed, 5),
            run_row(b, 3, RunState::Succeeded, 4),
        ],
        ..Default::default()
    });
    // t0 of run c spawns t9; t0's dependent t1 now waits on t9 too.
    let mut child = spec(9);
    child.depends_on = vec!["t0".into()];
    child.parent = Some("t0".into());
    let mut grown = spec(1);
    grown.depends_on.push("t9".into());
    batches.push(WriteBatch {
        new_tasks: vec![(child, task_row(c, 9, TaskState::Pending))],
        specs: vec![(c.clone(), grown)],
        tasks: vec![task_row(c, 0, TaskState::Succeeded)],
        ..Default::default()
    });
    batches
}

/// Registers, replaces and deletes agents; answers what the registry then holds.
async fn agent_answers(store: &dyn Store) -> (bool, bool, bool, bool, Vec<AgentRow>) {
    let agent = |name: &str, model: &str, at: i64| AgentRow {
        name: name.into(),
        spec: serde_json::from_value(json!({"provider": "openai", "model": model,
            "temperature": 0.5}))
        .unwrap(),
        created_at_ms: at,
        updated_at_ms: at,
    };
    let (_, created) = store.put_agent(&agent("b", "m1", 10), "ops").await.unwrap();
    let (stored, replaced) = store.put_agent(&agent("b", "m2", 20), "ops").await.unwrap();
    assert_eq!((stored.created_at_ms, stored.updated_at_ms), (10, 20));
    store
        .put_agent(&agent("a", "m3", 30), "admin")
        .await
        .unwrap();
    store
        .put_agent(&agent("gone", "m", 40), "admin")
        .await
        .unwrap();
    let deleted = store.delete_agent("gone", "ops", 50).await.unwrap();
    let deleted_again = store.delete_agent("gone", "ops", 60).await.unwrap();
    assert_eq!(
        store.get_agent("b").await.unwrap().unwrap().spec.model,
        "m2"
    );
    assert!(store.get_agent("nope").await.unwrap().is_none());
    let mut agents = store.list_agents().await.unwrap();
    agents.retain(|a| ["a", "b"].contains(&a.name.as_str()));
    (created, replaced, deleted, deleted_again, agents)
}

/// What the token and audit tables answer after tokens are made, used and revoked.
#[derive(Debug, PartialEq)]
struct TokenAnswers {
    created: Vec<bool>,
    found: Vec<Option<TokenRow>>,
    revoked: Vec<bool>,
    tokens: Vec<TokenRow>,
    /// The audit log without its ids, which the two stores number alike only by
    /// chance of history; in pages of 3 and of all.
    audit: Vec<Vec<AuditRow>>,
}

async fn token_answers(store: &dyn Store) -> TokenAnswers {
    let token = |name: &str, scope, hash: &str, at| TokenRow {
        name: name.into(),
        scope,
        secret_sha256: hash.into(),
        created_at_ms: at,
        created_by: "admin".into(),
        last_used_at_ms: None,
    };
    let mut created = vec![];
    for t in [
        token("ci", Scope::Read, "aa", 100),
        token("deploy", Scope::Operate, "bb", 110),
        token("ci", Scope::Admin, "cc", 120),
        token("old", Scope::Submit, "dd", 130),
    ] {
        created.push(store.create_token(&t).await.unwrap());
    }
    store.touch_token("ci", 200).await.unwrap();
    store.touch_token("ci", 150).await.unwrap();
    let revoked = vec![
        store.revoke_token("old", "deploy", 300).await.unwrap(),
        store.revoke_token("old", "deploy", 310).await.unwrap(),
    ];
    let mut found = vec![];
    for hash in ["aa", "bb", "cc", "dd"] {
        found.push(store.find_token(hash).await.unwrap());
    }
    let all = store.audit_log(None, 100).await.unwrap();
    let mut audit = vec![all.clone(), store.audit_log(None, 3).await.unwrap()];
    audit.push(store.audit_log(Some(all[2].id), 100).await.unwrap());
    for page in &mut audit {
        page.iter_mut().for_each(|a| a.id = 0);
    }
    TokenAnswers {
        created,
        found,
        revoked,
        tokens: store.list_tokens().await.unwrap(),
        audit,
    }
}

/// Everything the store answers about the runs `ids`.
#[derive(Debug, PartialEq)]
struct Answers {
    lists: Vec<Vec<RunRow>>,
    runs: Vec<Option<RunRow>>,
    tasks: Vec<Vec<StoredTask>>,
    /// Pages of tasks changed since a cursor.
    changed: Vec<Vec<StoredTask>>,
    task: Vec<Option<StoredTask>>,
    /// Tasks asked for by id, several at once.
    by_id: Vec<Vec<StoredTask>>,
    events: Vec<Vec<EventRow>>,
    history: Vec<Vec<EventRow>>,
    active: Vec<RunRow>,
    workers: Vec<WorkerRow>,
}

async fn answers(store: &dyn Store, ids: &[String; 3]) -> Answers {
    let query = |state: Option<&str>, before: Option<&String>, limit| RunQuery {
        state: state.map(str::to_owned),
        before: before.cloned(),
        limit,
    };
    let mut lists = vec![];
    for q in [
        query(None, None, 50),
        query(None, None, 2),
        query(None, None, 0),
        query(Some("failed"), None, 50),
        query(Some("running"), None, 50),
        query(None, Some(&ids[2]), 50),
        query(Some("succeeded"), Some(&ids[2]), 50),
        query(Some("succeeded"), Some(&ids[1]), 50),
    ] {
        lists.push(store.list_runs(&q).await.unwrap());
    }
    let mut runs = vec![];
    let mut tasks = vec![];
    let mut pages = vec![];
    let mut task = vec![];
    let mut by_id = vec![];
    let mut events = vec![];
    let mut history = vec![];
    for id in ids.iter().chain([&"nope".to_owned()]) {
        history.push(store.run_history(id).await.unwrap());
        runs.push(store.get_run(id).await.unwrap());
        tasks.push(store.get_tasks(id).await.unwrap());
        // Changed since a cursor (rows carry `rev` 7 + their index), alone, with a
        // state filter and after a page cursor.
        for (states, after, since) in [
            (vec![], None, Some(9)),
            (vec![], None, Some(0)),
            (vec![], Some("t1"), Some(9)),
            (vec![TaskState::Succeeded, TaskState::Failed], None, Some(9)),
            (vec![], None, Some(1_000)),
        ] {
            let q = TaskQuery {
                states,
                after: after.map(str::to_owned),
                since,
                limit: 50,
            };
            let changed = store.list_tasks(id, &q).await.unwrap();
            assert!(changed.iter().all(|t| t.row.rev >= since.unwrap()));
            pages.push(changed);
        }
        task.push(store.get_task(id, "t1").await.unwrap());
        task.push(store.get_task(id, "t9").await.unwrap());
        let some = ["t9", "t1", "nope", "t1", "t0"].map(String::from);
        by_id.push(store.get_tasks_by_id(id, &some).await.unwrap());
        by_id.push(store.get_tasks_by_id(id, &[]).await.unwrap());
        events.push(store.events(id, 0, None, 100).await.unwrap());
        events.push(store.events(id, 2, None, 100).await.unwrap());
        events.push(store.events(id, 0, None, 2).await.unwrap());
        events.push(store.events(id, 0, Some("t1"), 100).await.unwrap());
        events.push(store.events(id, 2, Some("t1"), 100).await.unwrap());
    }
    Answers {
        lists,
        runs,
        tasks,
        changed: pages,
        task,
        by_id,
        events,
        history,
        active: store.active_runs().await.unwrap(),
        workers: store.list_workers().await.unwrap(),
    }
}

fn run_ids() -> [String; 3] {
    std::array::from_fn(|_| uuid::Uuid::now_v7().to_string())
}

#[test]
fn urls_name_files_relative_absolute_or_bare_and_never_memory() {
    let path = |url| database_path(url).map(|p| p.display().to_string());
    assert_eq!(path("sqlite://.apex/apex.db").unwrap(), ".apex/apex.db");
    assert_eq!(
        path("sqlite:///var/lib/apex.db").unwrap(),
        "/var/lib/apex.db"
    );
    assert_eq!(path("sqlite:apex.db").unwrap(), "apex.db");
    assert_eq!(path("sqlite://apex.db?mode=rwc").unwrap(), "apex.db");
    for bad in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite://?mode=memory",
        "sqlite://",
    ] {
        let err = database_path(bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad}: {err}");
    }
    let err = database_path("sqlite::memory:").unwrap_err().to_string();
    assert!(
        err.contains("in-memory") && err.contains("sqlite://.apex/apex.db"),
        "{err}"
    );
}

#[test]
fn multi_row_statements_stay_under_the_bound_variable_limit() {
    for rows in [
        INSERT_RUNS,
        INSERT_TASKS,
        UPDATE_TASKS,
        INSERT_EVENTS,
        UPDATE_RUNS,
        UPDATE_SPECS,
        UPSERT_WORKERS,
    ] {
        let per_statement = rows.rows_per_statement();
        let sql = rows.sql(per_statement);
        assert_eq!(sql.matches('?').count(), per_statement * rows.width);
        assert!(sql.matches('?').count() <= MAX_VARIABLES);
        let widest = Rows {
            width: MAX_VARIABLES / 100,
            ..rows
        };
        assert!(widest.rows_per_statement() * widest.width <= MAX_VARIABLES);
    }
    assert_eq!(
        UPDATE_TASKS
            .sql(2)
            .matches("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .count(),
        2
    );
}

#[tokio::test]
async fn open_creates_the_directory_and_a_wal_database_with_foreign_keys() {
    let db = TempDb::new();
    let store = open(&db.url).await.unwrap();
    store.ping().await.unwrap();
    let sqlite = SqliteStore::connect(&db.url).await.unwrap();
    let (mode,): (String,) = sqlx::query_as("pragma journal_mode")
        .fetch_one(sqlite.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let (fk,): (i64,) = sqlx::query_as("pragma foreign_keys")
        .fetch_one(sqlite.pool())
        .await
        .unwrap();
    assert_eq!(fk, 1);
    // An event of a run that does not exist is refused (SQLite keeps the foreign keys
    // Postgres dropped in migration 0009 for their cost per insert).
    let orphan = WriteBatch {
        events: vec![event("nope", 1, None, "running")],
        ..Default::default()
    };
    let err = sqlite.apply(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::Query(_)), "{err}");
}

#[tokio::test]
async fn answers_match_postgres_after_the_same_batches() {
    const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!("apex_sqlite_parity_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(PG_ADMIN)
        .await
        .expect("Postgres is reachable");
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let pg = PgStore::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
        .await
        .unwrap();
    let db = TempDb::new();
    let sqlite = SqliteStore::connect(&db.url).await.unwrap();

    let ids = run_ids();
    for batch in history(&ids) {
        pg.apply(&batch).await.unwrap();
        sqlite.apply(&batch).await.unwrap();
    }
    let from_pg = answers(&pg, &ids).await;
    let from_sqlite = answers(&sqlite, &ids).await;
    let agents_pg = agent_answers(&pg).await;
    let agents_sqlite = agent_answers(&sqlite).await;
    let tokens_pg = token_answers(&pg).await;
    let tokens_sqlite = token_answers(&sqlite).await;
    pg.pool().close().await;
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(from_sqlite, from_pg);
    // And the answers are what was written, not merely the same mistakes.
    assert_eq!(from_sqlite.lists[0].len(), 3);
    assert_eq!(
        from_sqlite.active,
        vec![run_row(&ids[2], 2, RunState::Running, 0)]
    );
    assert_eq!(
        from_sqlite.tasks[0][1].row,
        task_row(&ids[0], 1, TaskState::Failed)
    );
    assert_eq!(from_sqlite.tasks[0][1].spec, spec(1));
    assert_eq!(from_sqlite.events[0].len(), 5);
    assert_eq!(from_sqlite.workers[0], worker("w1", "draining", 20));
    // Usage and options survive; a spawned task is stored and its parent's
    // dependents' specs changed.
    assert_eq!(
        from_sqlite.runs[0],
        Some(run_row(&ids[0], 4, RunState::Failed, 5))
    );
    assert_eq!(from_sqlite.tasks[2].len(), 3);
    // By id: each named task the run has, once, in submission order; none for no ids.
    let named: Vec<_> = from_sqlite.tasks[0]
        .iter()
        .filter(|t| ["t9", "t1", "t0"].contains(&t.row.task_id.as_str()))
        .cloned()
        .collect();
    assert!(!named.is_empty());
    assert_eq!(from_sqlite.by_id[0], named);
    assert!(from_sqlite.by_id[1].is_empty());
    // Run 0, since 9: its rows but the two first (rev 7 and 8); since 0: all of them.
    assert_eq!(from_sqlite.changed[0].len() + 2, from_sqlite.tasks[0].len());
    assert_eq!(from_sqlite.changed[1], from_sqlite.tasks[0]);
    assert!(from_sqlite.changed[4].is_empty());
    assert_eq!(from_sqlite.tasks[2][2].spec.parent.as_deref(), Some("t0"));
    assert_eq!(from_sqlite.tasks[2][1].spec.depends_on, ["t0", "t9"]);
    assert_eq!(agents_sqlite, agents_pg);
    let (created, replaced, deleted, deleted_again, agents) = agents_sqlite;
    assert!(created && !replaced && deleted && !deleted_again);
    assert_eq!(agents.len(), 2);
    assert_eq!((agents[1].created_at_ms, agents[1].updated_at_ms), (10, 20));
    // Runs keep who created them; the run's own events, who caused them.
    assert_eq!(
        from_sqlite.runs[0].as_ref().unwrap().created_by.as_deref(),
        Some("ci")
    );
    assert_eq!(from_sqlite.history[0].len(), 1);
    assert_eq!(from_sqlite.history[0][0].by.as_deref(), Some("ops"));
    assert_eq!(from_sqlite.history[3], vec![]);
    assert_eq!(tokens_sqlite, tokens_pg);
    let t = tokens_sqlite;
    assert_eq!(t.created, [true, true, false, true]);
    assert_eq!(t.revoked, [true, false]);
    let names: Vec<&str> = t.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ci", "deploy"]);
    assert_eq!(
        t.tokens[0].scope,
        Scope::Read,
        "a taken name keeps its token"
    );
    assert_eq!(
        t.tokens[0].last_used_at_ms,
        Some(200),
        "last use never goes back"
    );
    assert_eq!(t.found[1].as_ref().map(|t| t.scope), Some(Scope::Operate));
    assert_eq!((t.found[2].is_none(), t.found[3].is_none()), (true, true));
    // The agents' changes, then the tokens': newest first.
    let actions: Vec<(&str, &str, &str)> = t.audit[0]
        .iter()
        .map(|a| (a.action.as_str(), a.by.as_str(), a.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("token.revoke", "deploy", "old"),
            ("token.create", "admin", "old"),
            ("token.create", "admin", "deploy"),
            ("token.create", "admin", "ci"),
            ("agent.delete", "ops", "gone"),
            ("agent.put", "admin", "gone"),
            ("agent.put", "admin", "a"),
            ("agent.put", "ops", "b"),
            ("agent.put", "ops", "b"),
        ]
    );
    assert_eq!(t.audit[0][1].detail, Some(json!({"scope": "submit"})));
    assert_eq!(t.audit[0][8].detail, Some(json!({"created": true})));
    assert_eq!(t.audit[0][7].detail, Some(json!({"created": false})));
    assert_eq!(t.audit[1], t.audit[0][..3]);
    assert_eq!(t.audit[2], t.audit[0][3..]);
}

#[tokio::test]
async fn a_batch_wider_than_one_statement_is_written_whole() {
    let db = TempDb::new();
    let store = SqliteStore::connect(&db.url).await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    // 4,950 tasks: 25 statements, the last one short of 200 rows.
    let n = 4_950;
    store
        .apply(&WriteBatch {
            new_runs: vec![new_run(&id, n)],
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .apply(&WriteBatch {
            tasks: (0..n)
                .map(|i| task_row(&id, i, TaskState::Succeeded))
                .collect(),
            events: (0..n)
                .map(|i| event(&id, i as u64 + 1, Some(i), "succeeded"))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let tasks = store.get_tasks(&id).await.unwrap();
    assert_eq!(tasks.len(), n);
    assert!(tasks
        .iter()
        .enumerate()
        .all(|(i, t)| t.row == task_row(&id, i, TaskState::Succeeded)));
    assert_eq!(store.events(&id, 0, None, 100_000).await.unwrap().len(), n);
}

#[tokio::test]
async fn a_postgres_batch_wider_than_one_statement_is_written_whole() {
    const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!("apex_pg_wide_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(PG_ADMIN)
        .await
        .expect("Postgres is reachable");
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let store = PgStore::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    // Two statements of 8,192 rows and a short third, for task inserts, task updates
    // and events alike.
    let n = 20_000;
    store
        .apply(&WriteBatch {
            new_runs: vec![new_run(&id, n)],
            events: (0..n)
                .map(|i| event(&id, i as u64 + 1, Some(i), "queued"))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .apply(&WriteBatch {
            tasks: (0..n)
                .map(|i| task_row(&id, i, TaskState::Succeeded))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    let tasks = store.get_tasks(&id).await.unwrap();
    assert_eq!(tasks.len(), n);
    assert!(tasks
        .iter()
        .enumerate()
        .all(|(i, t)| t.row == task_row(&id, i, TaskState::Succeeded)));
    assert_eq!(store.events(&id, 0, None, 100_000).await.unwrap().len(), n);
    drop(store);
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_locked_database_is_unavailable_and_a_damaged_row_corrupt() {
    let db = TempDb::new();
    let store = SqliteStore::connect(&db.url).await.unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    store
        .apply(&WriteBatch {
            new_runs: vec![new_run(&id, 2)],
            ..Default::default()
        })
        .await
        .unwrap();

    // Another connection holds the write lock; one that will not wait is refused.
    let opts = options(&db.url).unwrap();
    let mut holder = opts.clone().connect().await.unwrap();
    sqlx::query("begin immediate")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut impatient = opts.busy_timeout(Duration::ZERO).connect().await.unwrap();
    let busy = sqlx::query("begin immediate")
        .execute(&mut impatient)
        .await
        .unwrap_err();
    let busy = classify(busy);
    assert!(busy.is_transient(), "{busy}");
    sqlx::query("rollback").execute(&mut holder).await.unwrap();

    // A hand-edited row the store cannot read back.
    sqlx::query("update tasks set state = 'lost_in_space' where task_id = 't0'")
        .execute(&mut impatient)
        .await
        .unwrap();
    sqlx::query("update tasks set spec = '{\"handler\": 3}' where task_id = 't1'")
        .execute(&mut impatient)
        .await
        .unwrap();
    let bad_state = store.get_task(&id, "t0").await.unwrap_err();
    assert!(
        matches!(bad_state, StoreError::Corrupt(ref m) if m.contains("lost_in_space")),
        "{bad_state}"
    );
    let bad_spec = store.get_task(&id, "t1").await.unwrap_err();
    assert!(matches!(bad_spec, StoreError::Corrupt(_)), "{bad_spec}");
}

/// A fresh Postgres database for one test, dropped by [`drop_pg`].
async fn fresh_pg(tag: &str) -> (sqlx::PgPool, String) {
    const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
    let name = format!("apex_pg_{tag}_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(PG_ADMIN)
        .await
        .expect("Postgres is reachable");
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await
        .unwrap();
    (admin, name)
}

async fn drop_pg(admin: &sqlx::PgPool, name: &str) {
    sqlx::query(&format!("drop database {name} with (force)"))
        .execute(admin)
        .await
        .unwrap();
}

/// The one-statement write sees a snapshot from before any of its parts ran, so a
/// batch that inserts a run and also updates it (flushes merged by the writer) must be
/// written statement by statement, or the update finds no row and is lost.
#[tokio::test]
async fn a_postgres_batch_inserting_and_updating_a_run_keeps_the_update() {
    let (admin, name) = fresh_pg("merged").await;
    let store = PgStore::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let batch = WriteBatch {
        new_runs: vec![new_run(&id, 2)],
        tasks: vec![task_row(&id, 0, TaskState::Succeeded)],
        runs: vec![run_row(&id, 2, RunState::Running, 3)],
        events: vec![
            event(&id, 1, Some(0), "queued"),
            event(&id, 2, Some(1), "queued"),
            event(&id, 3, Some(0), "succeeded"),
        ],
        ..Default::default()
    };
    store.apply(&batch).await.unwrap();
    let tasks = store.get_tasks(&id).await.unwrap();
    assert_eq!(tasks[0].row, task_row(&id, 0, TaskState::Succeeded));
    assert_eq!(tasks[1].row, task_row(&id, 1, TaskState::Queued));
    let run = store
        .get_run(&id)
        .await
        .unwrap()
        .expect("the run is stored");
    assert_eq!(run.last_seq, 3);
    assert_eq!(store.events(&id, 0, None, 100).await.unwrap().len(), 3);
    drop(store);
    drop_pg(&admin, &name).await;
}

/// A small batch (written in one statement) of a leader whose epoch was taken over
/// is refused as fenced and writes nothing, like a batch written in a transaction.
#[tokio::test]
async fn a_small_postgres_batch_of_a_fenced_leader_writes_nothing() {
    let (admin, name) = fresh_pg("fenced").await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let old = PgStore::connect(&url).await.unwrap();
    let new = PgStore::connect(&url).await.unwrap();
    let first = old.fence().await.unwrap();
    let kept = uuid::Uuid::now_v7().to_string();
    old.apply(&WriteBatch {
        new_runs: vec![new_run(&kept, 1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let second = new.fence().await.unwrap();
    let lost = uuid::Uuid::now_v7().to_string();
    let small = WriteBatch {
        new_runs: vec![new_run(&lost, 1)],
        events: vec![event(&lost, 1, Some(0), "queued")],
        ..Default::default()
    };
    match old.apply(&small).await {
        Err(StoreError::Fenced { ours, current }) => assert_eq!((ours, current), (first, second)),
        other => panic!("the old leader's write was not fenced: {other:?}"),
    }
    let update = WriteBatch {
        tasks: vec![task_row(&kept, 0, TaskState::Succeeded)],
        runs: vec![run_row(&kept, 1, RunState::Succeeded, 2)],
        ..Default::default()
    };
    assert!(matches!(
        old.apply(&update).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(new.get_run(&lost).await.unwrap().is_none());
    assert!(new.events(&lost, 0, None, 10).await.unwrap().is_empty());
    let run = new
        .get_run(&kept)
        .await
        .unwrap()
        .expect("stored before the takeover");
    assert_eq!(
        run.state,
        RunState::Running,
        "nothing of the fenced update landed"
    );
    assert_eq!(
        new.get_tasks(&kept).await.unwrap()[0].row,
        task_row(&kept, 0, TaskState::Queued)
    );
    new.apply(&update).await.unwrap();
    assert_eq!(
        new.get_run(&kept).await.unwrap().unwrap().state,
        RunState::Succeeded
    );
    drop((old, new));
    drop_pg(&admin, &name).await;
}

/// The writer's statements are prepared once per connection, and after five runs
/// Postgres keeps a generic plan: made while `tasks` was empty and never analyzed, an
/// update by key from an `unnest` scans the whole table at every commit, and with
/// autovacuum off nothing ever replaces that plan (the keyed benchmark slowed with
/// every run it finished). The store analyzes the tables it writes once it has written
/// enough rows, which makes a connection holding such a plan plan it again, by index.
#[tokio::test]
async fn a_plan_cached_on_empty_tables_is_replaced_once_the_store_has_written_rows() {
    use sqlx::Connection;
    let (admin, name) = fresh_pg("analyze").await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let store = PgStore::connect(&url).await.unwrap();
    // This database's tables are never analyzed by autovacuum, whatever the server's
    // setting (CI's Postgres has it off altogether).
    for table in ["runs", "tasks", "task_events"] {
        sqlx::query(&format!(
            "alter table {table} set (autovacuum_enabled = false)"
        ))
        .execute(store.pool())
        .await
        .unwrap();
    }
    // The shape of the writer's task update (`single.rs`), its generic plan cached now.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "prepare upd(text[], text[], text[]) as update tasks set state = u.st
         from unnest($1::text[], $2::text[], $3::text[]) as u(r, t, st)
         where tasks.run_id = u.r and tasks.task_id = u.t",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for _ in 0..6 {
        sqlx::query("execute upd('{r}', '{t0}', '{queued}')")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let analyzed_tasks = || async {
        sqlx::query_scalar::<_, f32>("select reltuples from pg_class where relname = 'tasks'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    // 5,000 one-task runs, then more (one at a time) until an ANALYZE has seen at least
    // 4,000 tasks (they run in the background and skip a threshold while one is busy).
    for _ in 0..50 {
        let batch = WriteBatch {
            new_runs: (0..100)
                .map(|_| new_run(&uuid::Uuid::now_v7().to_string(), 1))
                .collect(),
            ..Default::default()
        };
        store.apply(&batch).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while analyzed_tasks().await < 4_000.0 && std::time::Instant::now() < deadline {
        let batch = WriteBatch {
            new_runs: vec![new_run(&uuid::Uuid::now_v7().to_string(), 1)],
            ..Default::default()
        };
        store.apply(&batch).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let plan: Vec<String> = sqlx::query_scalar("explain execute upd('{r}', '{t0}', '{queued}')")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan") && !plan.contains("Seq Scan on tasks"),
        "the cached plan still scans every task:\n{plan}"
    );
    drop(conn);
    drop(store);
    drop_pg(&admin, &name).await;
}

/// `GET /runs?state=failed` on a store of many runs that succeeded reads the failed
/// ones, not every run: the filter has its own index (`runs_by_state`), and its
/// statement is planned for the state asked (a plan cached for `succeeded` would walk
/// every run by id for a rare state).
#[tokio::test]
async fn listing_runs_in_one_state_reads_only_those_runs() {
    let (admin, name) = fresh_pg("runs_by_state").await;
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let store = PgStore::connect(&url).await.unwrap();
    let mut ids: Vec<String> = (0..5_000)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    ids.sort();
    for chunk in ids.chunks(500) {
        let batch = WriteBatch {
            new_runs: chunk.iter().map(|id| new_run(id, 1)).collect(),
            ..Default::default()
        };
        store.apply(&batch).await.unwrap();
    }
    // The oldest two failed, every newer one succeeded.
    sqlx::query("update runs set state = case when id > $1 then 'succeeded' else 'failed' end")
        .bind(&ids[1])
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("analyze runs")
        .execute(store.pool())
        .await
        .unwrap();
    let query = |state: &str| RunQuery {
        state: Some(state.into()),
        before: None,
        limit: 50,
    };
    // Asked for both states, as a dashboard switching filters does, more than the
    // five times after which Postgres may settle on one plan for a cached statement.
    for _ in 0..8 {
        assert_eq!(
            store.list_runs(&query("succeeded")).await.unwrap().len(),
            50
        );
        let failed: Vec<String> = store
            .list_runs(&query("failed"))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(failed, vec![ids[1].clone(), ids[0].clone()]);
    }
    // The statement as the store sends it: unnamed, so planned with the values bound.
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "explain (analyze, costs off, timing off) {}",
        crate::store::postgres::list_runs_sql(true)
    ))
    .bind("failed")
    .bind(None::<String>)
    .bind(50_i64)
    .persistent(false)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let plan = plan.join("\n");
    let removed: u64 = plan
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rows Removed by Filter: "))
        .map(|n| n.trim().parse::<u64>().unwrap())
        .sum();
    assert!(
        removed < 100 && !plan.contains("Seq Scan on runs"),
        "listing 2 failed runs read the others too:\n{plan}"
    );
    drop(store);
    drop_pg(&admin, &name).await;
}

/// Postgres holds no foreign key from tasks and events to runs (migration 0009), so
/// deleting runs must delete their tasks and events itself: none is left behind, and
/// the runs not deleted keep theirs.
#[tokio::test]
async fn deleting_runs_leaves_no_orphan_tasks_or_events() {
    let (admin, name) = fresh_pg("orphans").await;
    let store = PgStore::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}"))
        .await
        .unwrap();
    let ids = run_ids();
    for batch in history(&ids) {
        store.apply(&batch).await.unwrap();
    }
    // Runs a and b finished; c is still running and is not deleted even when asked.
    let deleted = store.daily().delete_runs(&ids).await.unwrap();
    assert_eq!((deleted.runs, deleted.tasks), (2, 7), "{deleted:?}");
    let (orphans,): (i64,) = sqlx::query_as(
        "select (select count(*) from tasks t
                 where not exists (select 1 from runs r where r.id = t.run_id))
              + (select count(*) from task_events e
                 where not exists (select 1 from runs r where r.id = e.run_id))",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    assert_eq!(store.get_tasks(&ids[2]).await.unwrap().len(), 3);
    drop(store);
    drop_pg(&admin, &name).await;
}
