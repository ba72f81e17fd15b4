//! The benchmark workloads, as DAG specs, with the answers they must produce.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use serde_json::{json, Value};

/// W1: `n` independent `noop` tasks in one run.
pub fn w1(n: usize) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("t{i}"), "handler": "noop"}))
        .collect();
    json!({"name": format!("w1-{n}"), "tasks": tasks})
}

/// Keyed: one `noop` task on concurrency key `bench`, one at a time across every run:
/// many such runs wait on the one key, for measuring what admission costs per run.
pub fn keyed() -> Value {
    json!({
        "name": "keyed",
        "tasks": [{"id": "t", "handler": "noop", "concurrency_key": "bench"}],
        "concurrency_limits": {"bench": {"max_concurrency": 1}},
    })
}

/// W3: one `noop` task, the smallest round trip.
pub fn w3() -> Value {
    json!({"name": "w3", "tasks": [{"id": "t", "handler": "noop"}]})
}

/// W4: `n` tasks that each sleep `seconds`, for measuring how fully the slots are used.
pub fn w4(n: usize, seconds: f64) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("s{i}"), "handler": "sleep", "input": {"seconds": seconds}}))
        .collect();
    json!({"name": format!("w4-{n}x{seconds}"), "tasks": tasks})
}

/// Scale: `n` `noop` tasks in layers of `width`, each task past the first layer
/// depending on the task `width` before it: at most `width` in flight at once.
pub fn scale(n: usize, width: usize) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| {
            if i < width {
                json!({"id": format!("t{i}"), "handler": "noop"})
            } else {
                json!({"id": format!("t{i}"), "handler": "noop", "depends_on": [format!("t{}", i - width)]})
            }
        })
        .collect();
    json!({"name": format!("scale-{n}x{width}"), "tasks": tasks})
}

/// Modulus of W2's sums, so 50 layers stay within 64-bit integers.
pub const W2_MODULUS: u64 = 1_000_003;

/// W2: `layers` × `width` `sum` tasks; each task past the first layer depends on 3
/// tasks of the previous layer chosen with a fixed seed. Returns the spec and each
/// task's expected output.
pub fn w2(layers: usize, width: usize, seed: u64) -> (Value, Vec<(String, u64)>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tasks = Vec::with_capacity(layers * width);
    let mut expected = Vec::with_capacity(layers * width);
    let mut prev: Vec<u64> = Vec::new();
    for layer in 0..layers {
        let mut this = Vec::with_capacity(width);
        for i in 0..width {
            let id = format!("l{layer}-{i}");
            let deps: Vec<usize> = if layer == 0 {
                vec![]
            } else {
                sample(&mut rng, width, 3.min(width)).into_vec()
            };
            // `sum`: input.value (0) + sum of upstream outputs + 1, modulo the modulus.
            let value = (deps.iter().map(|&d| prev[d]).sum::<u64>() + 1) % W2_MODULUS;
            let depends_on: Vec<String> =
                deps.iter().map(|d| format!("l{}-{d}", layer - 1)).collect();
            tasks.push(json!({"id": id, "handler": "sum", "input": {"modulus": W2_MODULUS}, "depends_on": depends_on}));
            expected.push((id, value));
            this.push(value);
        }
        prev = this;
    }
    (
        json!({"name": format!("w2-{layers}x{width}"), "tasks": tasks}),
        expected,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w2_is_deterministic_and_its_sums_follow_the_sum_handler() {
        let (a, ea) = w2(3, 4, 7);
        let (b, eb) = w2(3, 4, 7);
        assert_eq!(a, b);
        assert_eq!(ea, eb);
        // First layer: 0 + 1. Second: three 1s + 1 = 4. Third: three 4s + 1 = 13.
        assert_eq!(ea[0].1, 1);
        assert_eq!(ea[4].1, 4);
        assert_eq!(ea[8].1, 13);
        assert_eq!(a["tasks"][4]["depends_on"].as_array().unwrap().len(), 3);
    }
}
