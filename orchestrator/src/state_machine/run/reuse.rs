//! A run that starts with some tasks already done: a re-run from chosen tasks keeps
//! the outputs of everything upstream of them.

use super::*;

impl RunMachine {
    /// A new run whose tasks in `reused` start `succeeded` with the given outputs
    /// (attempt 0, no usage: the run pays only for what it executes); the rest start
    /// pending as in [`RunMachine::new`]. Nothing is dispatched until
    /// [`RunMachine::start`].
    pub fn reusing(dag: Arc<Dag>, reused: Vec<(u32, Option<Value>)>) -> Self {
        let mut m = Self::new(dag);
        for (i, output) in reused {
            let t = &mut m.tasks[i as usize];
            if t.state != TaskState::Pending {
                continue;
            }
            t.state = TaskState::Succeeded;
            t.output = output;
            m.counts[TaskState::Pending as usize] -= 1;
            m.counts[TaskState::Succeeded as usize] += 1;
        }
        m.recompute_dependencies();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{validate, RunSpec};
    use serde_json::json;

    fn dag() -> Arc<Dag> {
        let spec: RunSpec = serde_json::from_value(json!({"tasks": [
            {"id": "a", "handler": "h"},
            {"id": "b", "handler": "h", "depends_on": ["a"]},
            {"id": "c", "handler": "h", "depends_on": ["b"]},
        ]}))
        .unwrap();
        Arc::new(validate(spec, &Limits::default()).unwrap())
    }

    #[test]
    fn only_tasks_after_the_reused_ones_are_dispatched() {
        let mut m = RunMachine::reusing(dag(), vec![(0, Some(json!({"x": 1})))]);
        let mut out = Output::default();
        m.start(0, &mut out);
        assert_eq!(m.task(0).state, TaskState::Succeeded);
        assert_eq!(m.task(0).attempt, 0);
        assert_eq!(m.task(0).output, Some(json!({"x": 1})));
        assert_ne!(
            m.task(1).state,
            TaskState::Pending,
            "b runs: its input is reused"
        );
        assert_eq!(m.task(2).state, TaskState::Pending);
        assert_eq!(m.counts()[TaskState::Succeeded as usize], 1);
        assert_eq!(m.usage(), Usage::default());
    }
}
