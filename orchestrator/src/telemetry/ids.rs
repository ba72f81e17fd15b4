//! Deterministic trace and span ids: the trace of a run and the span of each of its
//! tasks and attempts are named by what they are, not drawn at random. So the engine
//! keeps no span handles, a `traceparent` can be written into a task message before the
//! attempt's span exists, and an orchestrator that restarts or takes over continues the
//! same trace. Pure.

use sha2::{Digest, Sha256};

/// A 16-byte trace id and an 8-byte span id, as W3C trace context writes them.
pub type TraceId = [u8; 16];
/// See [`TraceId`].
pub type SpanId = [u8; 8];

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") never collide.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// An all-zero id is invalid in W3C trace context; a digest that starts with one gets
/// its last byte set instead (a 2^-64 event, but it must not produce an invalid id).
fn nonzero<const N: usize>(d: &[u8; 32]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&d[..N]);
    if out.iter().all(|b| *b == 0) {
        out[N - 1] = 1;
    }
    out
}

/// The trace of a run.
pub fn trace_id(run: &str) -> TraceId {
    nonzero(&digest(&[b"apex.trace", run.as_bytes()]))
}

/// The span of a run: the root of its trace.
pub fn run_span(run: &str) -> SpanId {
    nonzero(&digest(&[b"apex.run", run.as_bytes()]))
}

/// The span of one task of a run, a child of the run's.
pub fn task_span(run: &str, task: &str) -> SpanId {
    nonzero(&digest(&[b"apex.task", run.as_bytes(), task.as_bytes()]))
}

/// The span of one attempt of a task, a child of the task's.
pub fn attempt_span(run: &str, task: &str, attempt: u32) -> SpanId {
    nonzero(&digest(&[
        b"apex.attempt",
        run.as_bytes(),
        task.as_bytes(),
        &attempt.to_be_bytes(),
    ]))
}

/// The W3C `traceparent` of an attempt (sampled): what its worker continues.
pub fn traceparent(run: &str, task: &str, attempt: u32) -> String {
    format!(
        "00-{}-{}-01",
        hex::encode(trace_id(run)),
        hex::encode(attempt_span(run, task, attempt))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(trace_id("r_1"), trace_id("r_1"));
        assert_ne!(trace_id("r_1"), trace_id("r_2"));
        assert_ne!(task_span("r_1", "a"), task_span("r_1", "b"));
        assert_ne!(attempt_span("r_1", "a", 1), attempt_span("r_1", "a", 2));
        assert_ne!(task_span("r_1", "ab"), task_span("r_1a", "b"));
        assert_ne!(run_span("r_1"), task_span("r_1", ""));
    }

    #[test]
    fn traceparent_is_w3c_shaped() {
        let tp = traceparent("r_1", "a", 3);
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!(parts[1], hex::encode(trace_id("r_1")));
        assert_eq!(parts[2], hex::encode(attempt_span("r_1", "a", 3)));
    }
}
