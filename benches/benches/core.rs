//! The pure scheduler core at scale: validate a 100,000-task layered DAG, then drive it
//! to completion through the state machine, as the engine would with instant workers;
//! and the same run under `max_parallel`, where every task passes admission.

use apex::dag::{validate, Limits, RunSpec};
use apex::state_machine::{AttemptSuccess, Command, Open, Output, RunMachine, RunState};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{json, Value};
use std::sync::Arc;

/// `layers` × `width` tasks; task i of a layer depends on tasks i, i+1, i+2 (mod width)
/// of the previous one.
fn layered(layers: usize, width: usize) -> RunSpec {
    let mut tasks = Vec::with_capacity(layers * width);
    for l in 0..layers {
        for i in 0..width {
            let deps: Vec<String> = if l == 0 {
                vec![]
            } else {
                (0..3)
                    .map(|k| format!("l{}-{}", l - 1, (i + k) % width))
                    .collect()
            };
            tasks.push(json!({"id": format!("l{l}-{i}"), "handler": "sum", "depends_on": deps}));
        }
    }
    serde_json::from_value(json!({"name": "bench", "tasks": tasks})).unwrap()
}

fn drive(machine: &mut RunMachine) {
    let worker: Arc<str> = Arc::from("w");
    let mut out = Output::default();
    machine.start(0, &mut out);
    let mut ready: Vec<(u32, u32)> = Vec::new();
    loop {
        // What the engine does after each batch when tasks wait for admission.
        if machine.has_waiting() {
            machine.admit(0, &mut Open, &mut out);
        }
        ready.extend(out.commands.drain(..).filter_map(|c| match c {
            Command::Dispatch { task, attempt } => Some((task, attempt)),
            _ => None,
        }));
        out.events.clear();
        out.dirty.clear();
        let Some((task, attempt)) = ready.pop() else {
            break;
        };
        let success = AttemptSuccess {
            output: Value::from(1),
            worker: Arc::clone(&worker),
            started_at_ms: 1,
            finished_at_ms: 2,
            usage: None,
            children: vec![],
        };
        machine.succeeded(task, attempt, success, &mut out).unwrap();
    }
    assert_eq!(machine.state(), RunState::Succeeded);
}

fn bench(c: &mut Criterion) {
    let spec = layered(100, 1_000);
    let mut g = c.benchmark_group("core_100k_tasks");
    g.sample_size(10);
    g.bench_function("validate", |b| {
        b.iter_batched(
            || spec.clone(),
            |s| validate(s, &Limits::default()).unwrap(),
            BatchSize::LargeInput,
        )
    });
    let dag = Arc::new(validate(spec.clone(), &Limits::default()).unwrap());
    g.bench_function("drive_to_completion", |b| {
        b.iter_batched(
            || RunMachine::new(Arc::clone(&dag)),
            |mut m| drive(&mut m),
            BatchSize::LargeInput,
        )
    });
    let mut limited = spec.clone();
    limited.max_parallel = Some(200);
    let limited = Arc::new(validate(limited, &Limits::default()).unwrap());
    g.bench_function("drive_max_parallel_200", |b| {
        b.iter_batched(
            || RunMachine::new(Arc::clone(&limited)),
            |mut m| drive(&mut m),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("validate_and_drive", |b| {
        b.iter_batched(
            || spec.clone(),
            |s| {
                let mut m = RunMachine::new(Arc::new(validate(s, &Limits::default()).unwrap()));
                drive(&mut m);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
