//! Admission across runs: what a pass costs with thousands of runs parked on one key,
//! and that parking leaves nothing a visit of every run would have admitted.

use super::admission::SWEEP;
use super::core::Core;
use super::writer::Flush;
use super::{Clock, EngineConfig};
use crate::ceilings::Ceilings;
use crate::dag::{work, Dag, KeyLimit};
use crate::state_machine::{AttemptSuccess, TaskState};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Tasks a pass may admit: the engine's slice.
const ROOM: usize = super::core::DISPATCH_SLICE;

/// Removes the store's directory when the test ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A core with nothing around it: no writer takes its flushes, none is sent.
struct Engine {
    core: Core,
    _flushes: mpsc::Receiver<Flush>,
    _enqueued: mpsc::UnboundedSender<super::writer::Enqueued>,
    _inbox: mpsc::Sender<super::Input>,
    _dir: TempDir,
}

async fn engine(ceilings: Ceilings, clock: Clock) -> Engine {
    let dir = TempDir(std::env::temp_dir().join(format!("apex-admit-{}", uuid::Uuid::now_v7())));
    let store = crate::store::open(&format!("sqlite://{}/apex.db", dir.0.display()))
        .await
        .expect("store");
    let config = EngineConfig {
        ceilings,
        clock,
        ..EngineConfig::default()
    };
    let (flush_tx, flushes) = mpsc::channel(8);
    let (enqueued, enqueued_rx) = mpsc::unbounded_channel();
    let (inbox, _) = mpsc::channel(1);
    Engine {
        core: Core::new(store, config, flush_tx, enqueued_rx, inbox.downgrade()),
        _flushes: flushes,
        _enqueued: enqueued,
        _inbox: inbox,
        _dir: dir,
    }
}

fn dag(spec: Value) -> Arc<Dag> {
    let spec: crate::dag::RunSpec = serde_json::from_value(spec).unwrap();
    Arc::new(crate::dag::validate(spec, &crate::dag::Limits::default()).unwrap())
}

/// A run of `n` independent `noop` tasks, `t0`, `t1`, ...
fn noops(n: usize) -> Arc<Dag> {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    dag(json!({ "tasks": tasks }))
}

/// One batch's end, as the loop runs it: a fresh slice of room, then admission.
fn batch_end(core: &mut Core) {
    core.room = ROOM;
    core.admit_waiting();
}

fn succeed(core: &mut Core, run: &str, task: &str) {
    let success = AttemptSuccess {
        output: json!(1),
        worker: Arc::from("w1"),
        started_at_ms: 0,
        finished_at_ms: 1,
        usage: None,
        children: vec![],
    };
    let applied = core.on_task(run, task, |m, i, o| {
        let attempt = m.task(i).attempt;
        m.succeeded(i, attempt, success, o)
    });
    assert!(applied.is_some(), "{run}/{task} succeeded");
}

fn state(core: &Core, run: &str, task: u32) -> TaskState {
    core.runs[run].machine.task(task).state
}

#[tokio::test]
async fn a_freed_slot_costs_the_same_however_many_runs_wait_on_its_key() {
    const BATCHES: usize = 200;
    let one = dag(json!({
        "tasks": [{"id": "t", "handler": "noop", "concurrency_key": "k"}],
        "concurrency_limits": {"k": {"max_concurrency": 1}},
    }));
    for runs in [1_000, 10_000] {
        let mut e = engine(Ceilings::default(), Clock::manual(1_700_000_000_000)).await;
        let ids: Vec<Arc<str>> = (0..runs)
            .map(|_| e.core.submit(Arc::clone(&one), Vec::new(), Arc::from("t")))
            .collect();
        batch_end(&mut e.core);
        assert_eq!(state(&e.core, &ids[0], 0), TaskState::Queued);
        let mut most = 0;
        for b in 0..BATCHES {
            succeed(&mut e.core, &ids[b], "t");
            let before = work::done();
            batch_end(&mut e.core);
            most = most.max(work::done() - before);
            // Runs go in the order they waited.
            assert_eq!(
                state(&e.core, &ids[b + 1], 0),
                TaskState::Queued,
                "batch {b}"
            );
            assert_eq!(
                state(&e.core, &ids[b + 2], 0),
                TaskState::Ready,
                "batch {b}"
            );
        }
        // Visiting every waiting run costs `runs` units a pass; here a pass admits the
        // next run, is refused once for the one after, and sweeps SWEEP runs.
        assert!(
            most <= 2 + SWEEP,
            "{runs} runs waiting: a pass cost up to {most} units"
        );
        assert_eq!(e.core.sweep_admitted, 0, "no wake was lost");
    }
}

/// What a generated run asks of a key: its own limit, tightened by the ceiling.
const RUN_LIMITS: [Option<KeyLimit>; 4] = [
    None,
    Some(KeyLimit {
        max_concurrency: Some(1),
        rpm: None,
        tpm: None,
    }),
    Some(KeyLimit {
        max_concurrency: Some(2),
        rpm: None,
        tpm: None,
    }),
    Some(KeyLimit {
        max_concurrency: Some(3),
        rpm: Some(2),
        tpm: None,
    }),
];

#[derive(Debug, Clone)]
enum Op {
    /// A run of `tasks` tasks on keys k0/k1 (alternating from `key`), each key held to
    /// `RUN_LIMITS[limit]`; `chain` makes each task wait for the one before.
    Submit {
        tasks: u8,
        key: u8,
        limit: usize,
        chain: bool,
        max_parallel: Option<u32>,
    },
    /// The `nth` attempt in flight (modulo their count) succeeds.
    Finish { nth: usize },
    /// The `nth` run (modulo their count) is cancelled.
    Cancel { nth: usize },
    /// The clock moves on (rolling windows reopen).
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1..4u8, 0..2u8, 0..RUN_LIMITS.len(), any::<bool>(), proptest::option::of(1..3u32))
            .prop_map(|(tasks, key, limit, chain, max_parallel)| Op::Submit { tasks, key, limit, chain, max_parallel }),
        4 => any::<usize>().prop_map(|nth| Op::Finish { nth }),
        1 => any::<usize>().prop_map(|nth| Op::Cancel { nth }),
        1 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn ceiling() -> impl Strategy<Value = Option<KeyLimit>> {
    proptest::option::of(
        (proptest::option::of(1..4u32), proptest::option::of(1..4u32)).prop_map(
            |(max_concurrency, rpm)| KeyLimit {
                max_concurrency,
                rpm,
                tpm: None,
            },
        ),
    )
}

fn spec(tasks: u8, key: u8, limit: usize, chain: bool, max_parallel: Option<u32>) -> Value {
    let tasks: Vec<Value> = (0..tasks)
        .map(|j| {
            let mut t = json!({
                "id": format!("t{j}"),
                "handler": "noop",
                "concurrency_key": format!("k{}", (key + j) % 2),
            });
            if chain && j > 0 {
                t["depends_on"] = json!([format!("t{}", j - 1)]);
            }
            t
        })
        .collect();
    let mut spec = json!({"tasks": tasks});
    if let Some(l) = RUN_LIMITS[limit] {
        spec["concurrency_limits"] = json!({"k0": l, "k1": l});
    }
    if let Some(m) = max_parallel {
        spec["max_parallel"] = json!(m);
    }
    spec
}

/// One dispatch seen: when, on which key, under which limit.
struct Dispatched {
    at_ms: i64,
    key: String,
    limit: KeyLimit,
}

/// Checks after a pass: nothing left that a visit of every run would admit, nothing
/// the sweep had to admit, and no key over the limit of the task it last admitted.
fn check(
    core: &mut Core,
    ceilings: &Ceilings,
    seen: &mut HashMap<(Arc<str>, u32), u32>,
    log: &mut Vec<Dispatched>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(core.sweep_admitted, 0, "a wake was lost");
    core.room = ROOM;
    prop_assert_eq!(core.admit_every_run(), 0, "a full scan admits more");
    let now = core.config.clock.now_ms();
    let mut in_flight: HashMap<String, Vec<KeyLimit>> = HashMap::new();
    for (id, run) in &core.runs {
        let m = &run.machine;
        for (i, t) in m.tasks().iter().enumerate() {
            let i = i as u32;
            let keys = m.limit_keys(i);
            if matches!(t.state, TaskState::Queued | TaskState::Running) {
                for (k, l) in &keys {
                    in_flight
                        .entry(k.clone())
                        .or_default()
                        .push(ceilings.apply(k, *l));
                }
            }
            if t.attempt > 0 && seen.insert((Arc::clone(id), i), t.attempt) != Some(t.attempt) {
                for (k, l) in &keys {
                    log.push(Dispatched {
                        at_ms: now,
                        key: k.clone(),
                        limit: ceilings.apply(k, *l),
                    });
                }
            }
        }
    }
    // Each admission saw its key below its own limit, and only the last one since
    // matters: a key holds at most the loosest limit among the attempts it holds.
    for (key, limits) in &in_flight {
        if let Some(most) = limits
            .iter()
            .map(|l| l.max_concurrency)
            .collect::<Option<Vec<u32>>>()
            .and_then(|m| m.into_iter().max())
        {
            prop_assert!(
                limits.len() as u32 <= most,
                "{} holds {}",
                key,
                limits.len()
            );
        }
    }
    // The same for requests in the last minute.
    let mut window: HashMap<&str, Vec<Option<u32>>> = HashMap::new();
    for d in log.iter().filter(|d| d.at_ms > now - 60_000) {
        window.entry(&d.key).or_default().push(d.limit.rpm);
    }
    for (key, rpms) in window {
        if let Some(most) = rpms
            .iter()
            .copied()
            .collect::<Option<Vec<u32>>>()
            .and_then(|r| r.into_iter().max())
        {
            prop_assert!(
                rpms.len() as u32 <= most,
                "{} took {} a minute",
                key,
                rpms.len()
            );
        }
    }
    Ok(())
}

/// Drives random submissions, completions, cancels and clock moves through a core:
/// after every batch a visit of every run (admission as it was) admits nothing more,
/// no key goes over its limit, the sweep admits nothing, and once the work stops
/// coming every run finishes.
#[test]
fn parked_runs_leave_nothing_a_full_scan_would_admit() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec(ceiling(), 2),
        proptest::collection::vec(op(), 1..80),
    );
    runner
        .run(&strategy, |(ceilings, ops)| {
            let file: serde_json::Map<String, Value> = ceilings
                .iter()
                .enumerate()
                .filter_map(|(k, c)| c.map(|c| (format!("k{k}"), serde_json::to_value(c).unwrap())))
                .collect();
            let ceilings = Ceilings::parse(&Value::Object(file).to_string()).unwrap();
            let clock = Clock::manual(1_700_000_000_000);
            let mut e = rt.block_on(engine(ceilings.clone(), clock.clone()));
            let core = &mut e.core;
            let (mut runs, mut seen, mut log) = (Vec::new(), HashMap::new(), Vec::new());
            for op in ops {
                match op {
                    Op::Submit {
                        tasks,
                        key,
                        limit,
                        chain,
                        max_parallel,
                    } => {
                        let d = dag(spec(tasks, key, limit, chain, max_parallel));
                        runs.push(core.submit(d, Vec::new(), Arc::from("t")));
                    }
                    Op::Finish { nth } => {
                        let flying = in_flight(core);
                        if let Some((run, task)) = flying.get(nth % flying.len().max(1)) {
                            succeed(core, run, task);
                        }
                    }
                    Op::Cancel { nth } => {
                        if let Some(id) = runs.get(nth % runs.len().max(1)).cloned() {
                            let now = clock.now_ms();
                            let _ = core.apply(&id, |m, o| m.cancel(now, o));
                        }
                    }
                    Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
                }
                batch_end(core);
                check(core, &ceilings, &mut seen, &mut log)?;
            }
            // No more work comes: finishing what runs, and letting windows reopen,
            // drives every run to its end.
            for _ in 0..200 {
                let flying = in_flight(core);
                if flying.is_empty()
                    && runs
                        .iter()
                        .all(|id| core.runs[id].machine.state().is_terminal())
                {
                    break;
                }
                for (run, task) in flying {
                    succeed(core, &run, &task);
                }
                clock.advance(Duration::from_secs(61));
                batch_end(core);
                check(core, &ceilings, &mut seen, &mut log)?;
            }
            for id in &runs {
                prop_assert!(
                    core.runs[id].machine.state().is_terminal(),
                    "run {} stranded",
                    id
                );
            }
            Ok(())
        })
        .unwrap();
}

/// Attempts queued or running, as (run, task id), in a stable order.
fn in_flight(core: &Core) -> Vec<(Arc<str>, String)> {
    let mut out: Vec<(Arc<str>, String)> = core
        .runs
        .iter()
        .flat_map(|(id, run)| {
            let m = &run.machine;
            m.tasks()
                .iter()
                .enumerate()
                .filter(|(_, t)| matches!(t.state, TaskState::Queued | TaskState::Running))
                .map(|(i, _)| (Arc::clone(id), m.dag().task(i as u32).id.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out
}

/// Runs deferred behind a wide one are served in turn: submitted in the same batch as
/// a run wider than the room, each small run's task goes in the second release, not
/// after every slice of the wide run (which took 9.5 s for 100,000 tasks).
#[tokio::test]
async fn runs_deferred_behind_a_wide_run_go_in_the_next_release() {
    const ROOM: usize = 12;
    let mut e = engine(Ceilings::default(), Clock::manual(1_700_000_000_000)).await;
    e.core.room = ROOM;
    let wide = e.core.submit(noops(100), Vec::new(), Arc::from("t"));
    let small: Vec<Arc<str>> = (0..11)
        .map(|_| e.core.submit(noops(1), Vec::new(), Arc::from("t")))
        .collect();
    let queued = |core: &Core, run: &str| {
        (0..core.runs[run].machine.tasks().len() as u32)
            .filter(|&i| state(core, run, i) == TaskState::Queued)
            .count()
    };
    assert_eq!(queued(&e.core, &wide), ROOM, "the first slice");
    assert!(
        small.iter().all(|s| queued(&e.core, s) == 0),
        "no room left"
    );
    // Nothing takes the flushes here, so the writer counts as caught up.
    for release in 1..=2 {
        e.core.room = ROOM;
        e.core.release_deferred();
        assert_eq!(e.core.room, 0, "release {release} used its room");
    }
    for s in &small {
        assert_eq!(queued(&e.core, s), 1, "run {s} waited past its turn");
    }
    assert_eq!(
        queued(&e.core, &wide),
        2 * ROOM + 1,
        "the wide run kept its share"
    );
    // It goes on to the end.
    while e.core.runs[&wide].machine.has_deferred() {
        e.core.room = ROOM;
        e.core.release_deferred();
    }
    assert_eq!(queued(&e.core, &wide), 100);
}

/// A wide run's later slices go no faster than its tasks leave the queue: at most
/// `run_backlog` of them wait there, so a run submitted later queues behind that many,
/// not the whole run; it is topped up once half has gone, and what is left goes at once
/// when it is no more than the backlog; a held run does not keep the loop awake.
#[tokio::test]
async fn a_wide_run_keeps_at_most_its_backlog_in_the_queue() {
    const ROOM: usize = 12;
    const BACKLOG: usize = 20;
    let mut e = engine(Ceilings::default(), Clock::manual(1_700_000_000_000)).await;
    e.core.config.run_backlog = BACKLOG;
    e.core.room = ROOM;
    let wide = e.core.submit(noops(100), Vec::new(), Arc::from("t"));
    let queued = |core: &Core| core.runs[&wide].machine.counts()[TaskState::Queued as usize];
    // Takes `n` of its queued tasks off the queue (they succeed).
    let leave = |core: &mut Core, n: usize| {
        let ids: Vec<String> = (0..100u32)
            .filter(|&i| state(core, &wide, i) == TaskState::Queued)
            .take(n)
            .map(|i| format!("t{i}"))
            .collect();
        for id in ids {
            succeed(core, &wide, &id);
        }
    };
    let release = |core: &mut Core| {
        core.room = ROOM;
        core.release_deferred();
        ROOM - core.room
    };
    assert_eq!(queued(&e.core), ROOM as u32, "the first slice");
    // Less than half the backlog free: nothing goes, and nothing asks the loop to look
    // again (the report of a start wakes it).
    assert_eq!(release(&mut e.core), 0, "a held run takes no room");
    assert_eq!(e.core.backlog_due(), None);
    leave(&mut e.core, 2);
    assert!(e.core.backlog_due().is_some(), "half free: released soon");
    assert_eq!(release(&mut e.core), 10, "topped up to the backlog");
    assert_eq!(queued(&e.core), BACKLOG as u32);
    leave(&mut e.core, 5);
    assert_eq!(release(&mut e.core), 0);
    leave(&mut e.core, 5);
    assert_eq!(release(&mut e.core), 10);
    // It still goes to the end, each task once; the last backlog's worth at once.
    while e.core.runs[&wide].machine.deferred_len() > BACKLOG {
        leave(&mut e.core, 7);
        release(&mut e.core);
        assert!(queued(&e.core) <= BACKLOG as u32);
    }
    let left = e.core.runs[&wide].machine.deferred_len();
    assert_eq!(release(&mut e.core), left);
    assert!(!e.core.runs[&wide].machine.has_deferred());
    let m = &e.core.runs[&wide].machine;
    assert_eq!(
        m.counts()[TaskState::Queued as usize] + m.counts()[TaskState::Succeeded as usize],
        100
    );

    // A held run that is cancelled leaves the turn order at its next release.
    e.core.room = ROOM;
    let held = e.core.submit(noops(100), Vec::new(), Arc::from("t"));
    assert_eq!(release(&mut e.core), 0, "held");
    assert_eq!(e.core.deferred_runs.len(), 1);
    e.core
        .apply(&held, |m, o| m.cancel(1_700_000_000_000, o))
        .unwrap();
    assert_eq!(release(&mut e.core), 0);
    assert!(
        e.core.deferred_runs.is_empty(),
        "no cancelled run kept in turn"
    );

    // A run across queues is not held: a backlog on one queue (its workers slow or
    // absent) would hold back the tasks of another.
    let tasks: Vec<Value> = (0..100)
        .map(|i| {
            let queue = ["a", "b"][i % 2];
            json!({"id": format!("t{i}"), "handler": "noop", "queue": queue})
        })
        .collect();
    e.core.room = ROOM;
    let mixed = e
        .core
        .submit(dag(json!({ "tasks": tasks })), Vec::new(), Arc::from("t"));
    assert_eq!(release(&mut e.core), ROOM, "released as room allows");
    assert_eq!(
        e.core.runs[&mixed].machine.counts()[TaskState::Queued as usize],
        2 * ROOM as u32
    );
}
