//! A run's state folded from its snapshot and events: which transitions are worth a
//! line, the counts the progress bar shows, the closing summary. Pure: no I/O.

use super::super::output;
use super::super::shapes::{Event, Run, TaskError};
use std::collections::HashMap;

/// Runs with more tasks than this show only failures, retries, skips and cancellations
/// as lines; the progress bar tells the rest.
const VERBOSE_TASK_LIMIT: usize = 50;

/// One task as the watch knows it.
#[derive(Debug, Clone)]
struct Tracked {
    state: String,
    attempt: u32,
    attempts_allowed: u32,
    started_at_ms: Option<i64>,
    error: Option<TaskError>,
}

/// A transition worth a line.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Started {
        task: String,
        attempt: u32,
    },
    Succeeded {
        task: String,
        took_ms: Option<i64>,
    },
    Retrying {
        task: String,
        attempt: u32,
        error: String,
    },
    Failed {
        task: String,
        attempt: u32,
        error: String,
    },
    Skipped {
        task: String,
    },
    Cancelled {
        task: String,
    },
    RunFinished {
        state: String,
    },
}

/// A run's state folded from its snapshot and events. Pure: no I/O.
#[derive(Debug, Clone)]
pub struct Tracker {
    run_id: String,
    run_state: String,
    created_at_ms: Option<i64>,
    /// Task ids in submission order, for stable summaries.
    order: Vec<String>,
    tasks: HashMap<String, Tracked>,
    /// The last stored event applied; a reconnect resumes after it.
    last_seq: u64,
    /// Kept as events arrive: recounting every task per event would make a large run
    /// quadratic.
    counts: Counts,
}

/// Done, running and failed task counts, for the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub done: u64,
    pub running: u64,
    pub failed: u64,
}

impl Counts {
    /// Counts a task in `state` in (`true`) or out (`false`).
    fn count(&mut self, state: &str, add: bool) {
        let field = match state {
            "running" => &mut self.running,
            "failed" => {
                // A failed task is done too.
                self.done = if add {
                    self.done + 1
                } else {
                    self.done.saturating_sub(1)
                };
                &mut self.failed
            }
            "succeeded" | "cancelled" | "skipped" => &mut self.done,
            _ => return,
        };
        *field = if add {
            *field + 1
        } else {
            field.saturating_sub(1)
        };
    }
}

/// Whether events of this `kind` are stored ones (with a `seq`) that the tracker
/// applies; the others on a run's stream are live-only (`progress`, `answer`).
pub fn is_stored(kind: &str) -> bool {
    matches!(kind, "task" | "run" | "log")
}

impl Tracker {
    /// The state a snapshot (`{"run": Run, "seq": N}`) shows.
    pub fn from_snapshot(run: &Run, seq: u64) -> Self {
        let run_tasks = run.tasks.as_deref().unwrap_or_default();
        let mut counts = Counts {
            total: run_tasks.len() as u64,
            done: 0,
            running: 0,
            failed: 0,
        };
        for t in run_tasks {
            counts.count(t.state.as_str(), true);
        }
        let tasks = run_tasks
            .iter()
            .map(|t| {
                let tracked = Tracked {
                    state: t.state.as_str().to_owned(),
                    attempt: t.attempt,
                    attempts_allowed: t.retries + 1,
                    started_at_ms: t.started_at_ms,
                    error: t.error.clone(),
                };
                (t.id.clone(), tracked)
            })
            .collect();
        Self {
            run_id: run.summary.id.clone(),
            run_state: run.summary.state.as_str().to_owned(),
            created_at_ms: Some(run.summary.created_at_ms),
            order: run_tasks.iter().map(|t| t.id.clone()).collect(),
            tasks,
            last_seq: seq,
            counts,
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The sequence number of the last stored event applied.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// How many attempts `task` may make (1 for a task this tracker does not know).
    pub fn attempts_allowed(&self, task: &str) -> u32 {
        self.tasks.get(task).map_or(1, |t| t.attempts_allowed)
    }

    /// Whether the run has finished, and how.
    pub fn outcome(&self) -> Option<&str> {
        (self.run_state != "running").then_some(self.run_state.as_str())
    }

    /// Whether `e` was already applied (a replay overlapping what was seen).
    pub fn seen(&self, e: &Event) -> bool {
        e.seq <= self.last_seq
    }

    /// Applies one event; answers the transition it makes, if it is worth a line.
    pub fn apply(&mut self, e: &Event) -> Option<Transition> {
        if self.seen(e) {
            return None;
        }
        self.last_seq = e.seq;
        let state = e.state.clone()?;
        match e.kind.as_str() {
            "run" => {
                self.run_state = state.clone();
                (state != "running").then_some(Transition::RunFinished { state })
            }
            "task" => {
                let id = e.task_id.clone()?;
                let t = self.tasks.get_mut(&id)?;
                self.counts.count(&t.state, false);
                self.counts.count(&state, true);
                t.state = state.clone();
                if e.attempt > 0 {
                    t.attempt = e.attempt;
                }
                let error = e.error.clone();
                let line = error.as_ref().map_or_else(String::new, TaskError::one_line);
                let attempt = t.attempt;
                match state.as_str() {
                    "running" => {
                        t.started_at_ms = Some(e.at_ms);
                        Some(Transition::Started { task: id, attempt })
                    }
                    "succeeded" => {
                        let took_ms = t.started_at_ms.map(|s| e.at_ms - s);
                        Some(Transition::Succeeded { task: id, took_ms })
                    }
                    // `ready` with an error: a failed attempt waiting out its backoff.
                    "ready" if error.is_some() => {
                        t.error = error;
                        Some(Transition::Retrying {
                            task: id,
                            attempt,
                            error: line,
                        })
                    }
                    "failed" => {
                        t.error = error;
                        Some(Transition::Failed {
                            task: id,
                            attempt,
                            error: line,
                        })
                    }
                    "skipped" => Some(Transition::Skipped { task: id }),
                    "cancelled" => Some(Transition::Cancelled { task: id }),
                    "queued" => {
                        t.started_at_ms = None;
                        None
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The transitions that happened between `earlier` and this state, for a fresh
    /// snapshot after a resync: the events in between were never seen, but a task that
    /// failed, was skipped or was cancelled meanwhile is still worth its line.
    pub fn changes_since(&self, earlier: &Tracker) -> Vec<Transition> {
        let mut out = Vec::new();
        for id in &self.order {
            let now = &self.tasks[id];
            if earlier.tasks.get(id).is_some_and(|t| t.state == now.state) {
                continue;
            }
            let task = id.clone();
            let error = now
                .error
                .as_ref()
                .map_or_else(String::new, TaskError::one_line);
            out.push(match now.state.as_str() {
                "succeeded" => Transition::Succeeded {
                    task,
                    took_ms: None,
                },
                "failed" => Transition::Failed {
                    task,
                    attempt: now.attempt,
                    error,
                },
                "skipped" => Transition::Skipped { task },
                "cancelled" => Transition::Cancelled { task },
                _ => continue,
            });
        }
        out
    }

    /// Task counts by what the progress bar shows.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether lines for ordinary starts and successes are worth printing.
    pub fn verbose(&self) -> bool {
        self.tasks.len() <= VERBOSE_TASK_LIMIT
    }

    /// The closing lines: the outcome, the counts, and each failure with its error.
    pub fn summary(&self, now_ms: i64) -> Vec<String> {
        let state = self.outcome().unwrap_or("running");
        let mut by_state: Vec<(&str, usize)> = Vec::new();
        for s in ["succeeded", "failed", "skipped", "cancelled"] {
            let n = self.tasks.values().filter(|t| t.state == s).count();
            if n > 0 {
                by_state.push((s, n));
            }
        }
        let counts: Vec<String> = by_state
            .iter()
            .map(|(s, n)| format!("{n} {}", output::state(s)))
            .collect();
        let took = self.created_at_ms.map_or(String::new(), |c| {
            format!(" in {}", output::duration(now_ms - c))
        });
        let mut lines = vec![format!(
            "run {} {}{took}: {}",
            output::bold(&self.run_id),
            output::state(state),
            counts.join(", ")
        )];
        for id in &self.order {
            let t = &self.tasks[id];
            if t.state == "failed" {
                let why = t
                    .error
                    .as_ref()
                    .map_or("no error recorded".into(), |e| e.one_line());
                lines.push(format!(
                    "  {} {}: {}",
                    output::paint(output::state_style("failed"), "✗"),
                    id,
                    why
                ));
            }
        }
        if state != "succeeded" {
            lines.push(output::dim(&format!(
                "details: apex run show {}",
                self.run_id
            )));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::shapes::fixtures;
    use super::*;
    use serde_json::{json, Value};

    fn tracker() -> Tracker {
        let run: Run = fixtures::run(json!({
            "id": "r1", "state": "running", "created_at_ms": 1000,
            "tasks": [
                {"id": "a", "state": "running", "attempt": 1, "started_at_ms": 1100},
                {"id": "b", "state": "pending", "depends_on": ["a"], "retries": 2},
                {"id": "c", "state": "pending", "depends_on": ["b"]},
            ]
        }));
        Tracker::from_snapshot(&run, 4)
    }

    fn event(v: Value) -> Event {
        fixtures::event(v)
    }

    #[test]
    fn events_move_tasks_and_name_the_transitions_worth_a_line() {
        let mut t = tracker();
        let e = event(
            json!({"seq": 5, "kind": "task", "task_id": "a", "state": "succeeded", "attempt": 1, "at_ms": 1350}),
        );
        assert_eq!(
            t.apply(&e),
            Some(Transition::Succeeded {
                task: "a".into(),
                took_ms: Some(250)
            })
        );
        let retry = event(
            json!({"seq": 6, "kind": "task", "task_id": "b", "state": "ready", "attempt": 1,
            "error": {"kind": "exception", "error_type": "ValueError", "message": "nope"}}),
        );
        assert_eq!(
            t.apply(&retry),
            Some(Transition::Retrying {
                task: "b".into(),
                attempt: 1,
                error: "ValueError: nope".into()
            })
        );
        let failed = event(
            json!({"seq": 7, "kind": "task", "task_id": "b", "state": "failed", "attempt": 3,
            "error": {"kind": "exception", "error_type": "ValueError", "message": "nope"}}),
        );
        assert!(matches!(
            t.apply(&failed),
            Some(Transition::Failed { attempt: 3, .. })
        ));
        let skipped = event(json!({"seq": 8, "kind": "task", "task_id": "c", "state": "skipped"}));
        assert_eq!(
            t.apply(&skipped),
            Some(Transition::Skipped { task: "c".into() })
        );
        assert_eq!(
            t.counts(),
            Counts {
                total: 3,
                done: 3,
                running: 0,
                failed: 1
            }
        );
        let end = event(json!({"seq": 9, "kind": "run", "state": "failed"}));
        assert_eq!(
            t.apply(&end),
            Some(Transition::RunFinished {
                state: "failed".into()
            })
        );
        assert_eq!(t.outcome(), Some("failed"));
    }

    #[test]
    fn a_replayed_event_is_applied_once() {
        let mut t = tracker();
        let old = event(json!({"seq": 3, "kind": "task", "task_id": "a", "state": "failed"}));
        assert_eq!(t.apply(&old), None, "seq 3 is in the snapshot already");
        assert_eq!(t.counts().failed, 0);
        let e = event(json!({"seq": 5, "kind": "task", "task_id": "a", "state": "succeeded"}));
        assert!(t.apply(&e).is_some());
        assert!(t.seen(&e));
        assert_eq!(t.apply(&e), None);
        assert_eq!(t.last_seq, 5);
    }

    #[test]
    fn a_fresh_snapshot_after_a_resync_names_what_finished_meanwhile() {
        let earlier = tracker();
        let run: Run = fixtures::run(json!({
            "id": "r1", "state": "running",
            "tasks": [
                {"id": "a", "state": "succeeded", "attempt": 1},
                {"id": "b", "state": "failed", "attempt": 3, "retries": 2,
                 "error": {"kind": "timeout", "message": "took too long"}},
                {"id": "c", "state": "pending"},
            ]
        }));
        let now = Tracker::from_snapshot(&run, 20);
        assert_eq!(
            now.changes_since(&earlier),
            vec![
                Transition::Succeeded {
                    task: "a".into(),
                    took_ms: None
                },
                Transition::Failed {
                    task: "b".into(),
                    attempt: 3,
                    error: "timeout: took too long".into()
                },
            ]
        );
    }

    #[test]
    fn live_only_kinds_are_not_applied_as_stored_events() {
        assert!(is_stored("task") && is_stored("run") && is_stored("log"));
        assert!(!is_stored("progress") && !is_stored("answer"));
    }
}
