//! Budgets in tokens and dollars: what a task is expected to spend before it runs,
//! whether a budget can cover it, and what each attempt is charged once it has run.
//!
//! Every attempt is charged once: the highest cumulative usage any report of it stated
//! (progress, result, a duplicate or a stale one alike), or, for an attempt that ended
//! without its worker's account (lost, timed out, cancelled) and reported nothing, the
//! reservation it was dispatched with, since its call may have been billed.

use crate::dag::{json_size, Budget, Dag, KeyLimit};
use serde::{Deserialize, Serialize};
use worker_protocol::Usage;

/// Output tokens reserved for an agent that sets no `max_output_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 1_024;

/// Roughly how many bytes of prompt make a token, for the input estimate.
const BYTES_PER_TOKEN: usize = 4;

/// Tokens counted against `max_tokens`: input and output alike.
pub fn tokens(u: &Usage) -> u64 {
    u.input_tokens + u.output_tokens
}

/// Adds `more` to `total`.
pub fn add(total: &mut Usage, more: &Usage) {
    total.input_tokens += more.input_tokens;
    total.output_tokens += more.output_tokens;
    total.cost_usd += more.cost_usd;
}

/// `total` with `before` taken out and `after` put in (an attempt's charge changed).
fn replace(total: &mut Usage, before: &Usage, after: &Usage) {
    total.input_tokens =
        total.input_tokens.saturating_sub(before.input_tokens) + after.input_tokens;
    total.output_tokens =
        total.output_tokens.saturating_sub(before.output_tokens) + after.output_tokens;
    total.cost_usd = (total.cost_usd - before.cost_usd + after.cost_usd).max(0.0);
}

/// What is left of `reservation` once `charged` of it has been counted as spent. Budgets
/// count tokens in and out together, so the tokens left are one figure (given as input).
pub fn outstanding(reservation: &Usage, charged: &Usage) -> Usage {
    Usage {
        input_tokens: tokens(reservation).saturating_sub(tokens(charged)),
        output_tokens: 0,
        cost_usd: (reservation.cost_usd - charged.cost_usd).max(0.0),
    }
}

/// Failure kinds that end an attempt without its worker's account of what it spent: a
/// call in flight may have been billed, so such an attempt is charged its reservation
/// unless it reported usage.
const UNACCOUNTED_ENDINGS: [&str; 4] = ["timeout", "idle_timeout", "cancelled", "worker_lost"];

/// True when an attempt that failed with `kind` ended without its worker's account.
pub fn ends_unaccounted(kind: &str) -> bool {
    UNACCOUNTED_ENDINGS.contains(&kind)
}

/// What one attempt counts against budgets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub attempt: u32,
    pub usage: Usage,
    /// False while the figure is the reservation kept for an attempt that ended
    /// without a report; its first report replaces it.
    pub reported: bool,
}

/// How one attempt's charge changed, to be carried into the totals that add it up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub before: Usage,
    pub after: Usage,
}

impl Change {
    /// True when the charge did not move.
    pub fn is_none(&self) -> bool {
        self.before == self.after
    }

    /// Carries the change into `total`.
    pub fn apply(&self, total: &mut Usage) {
        replace(total, &self.before, &self.after);
    }
}

/// Every charged attempt of one task, in attempt order (tasks that never spend keep
/// it empty). A task's `usage` adds these up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Charges(Vec<Charge>);

impl Charges {
    /// The charge of `attempt`, if it has one.
    pub fn of(&self, attempt: u32) -> Option<&Charge> {
        self.find(attempt).ok().map(|k| &self.0[k])
    }

    /// True when no attempt was charged.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `attempt` reported using `cumulative` so far. Counts only grow, so its charge
    /// becomes the highest figure reported for each of tokens in, tokens out and cost:
    /// a duplicate or an earlier report changes nothing, and a report replaces a kept
    /// reservation.
    pub fn report(&mut self, attempt: u32, cumulative: &Usage) -> Change {
        let k = self.slot(attempt);
        let c = &mut self.0[k];
        let before = c.usage;
        c.usage = if c.reported {
            Usage {
                input_tokens: before.input_tokens.max(cumulative.input_tokens),
                output_tokens: before.output_tokens.max(cumulative.output_tokens),
                cost_usd: before.cost_usd.max(cumulative.cost_usd),
            }
        } else {
            *cumulative
        };
        c.reported = true;
        Change {
            before,
            after: c.usage,
        }
    }

    /// `attempt` ended without its worker's account: unless it reported usage, it is
    /// charged `reservation`.
    pub fn keep_reservation(&mut self, attempt: u32, reservation: &Usage) -> Change {
        let k = self.slot(attempt);
        let c = &mut self.0[k];
        let before = c.usage;
        if !c.reported {
            c.usage = *reservation;
        }
        Change {
            before,
            after: c.usage,
        }
    }

    fn find(&self, attempt: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&attempt, |c| c.attempt)
    }

    /// The index of `attempt`'s charge, inserted at nothing if it had none.
    fn slot(&mut self, attempt: u32) -> usize {
        self.find(attempt).unwrap_or_else(|k| {
            let none = Charge {
                attempt,
                usage: Usage::default(),
                reported: false,
            };
            self.0.insert(k, none);
            k
        })
    }
}

/// What one attempt of task `i` is expected to spend, at most: its prompt (input and
/// upstream outputs) at about four bytes a token, plus the agent's whole output
/// allowance, priced by the agent's price when it has one. Tasks without an agent are
/// expected to spend nothing; what they report still counts once they finish.
pub fn estimate(dag: &Dag, i: u32, upstream_bytes: usize) -> Usage {
    let spec = dag.task(i);
    let Some(agent) = spec.agent.as_ref().and_then(|a| dag.options.agents.get(a)) else {
        return Usage::default();
    };
    let prompt = json_size(&spec.input)
        + upstream_bytes
        + agent.system_prompt.as_ref().map_or(0, String::len);
    let input_tokens = prompt.div_ceil(BYTES_PER_TOKEN) as u64;
    let output_tokens = agent
        .max_output_tokens
        .map_or(DEFAULT_OUTPUT_TOKENS, u64::from);
    let cost_usd = agent.price.map_or(0.0, |p| {
        (input_tokens as f64 * p.input_per_mtok + output_tokens as f64 * p.output_per_mtok) / 1e6
    });
    Usage {
        input_tokens,
        output_tokens,
        cost_usd,
    }
}

/// Why `budget` cannot cover `used` plus `extra`, or `None` when it can.
pub fn shortfall(budget: &Budget, used: &Usage, extra: &Usage) -> Option<String> {
    if let Some(max) = budget.max_tokens {
        let (have, need) = (tokens(used), tokens(extra));
        if have + need > max {
            return Some(format!(
                "max_tokens {max}: {have} used, about {need} more needed"
            ));
        }
    }
    if let Some(max) = budget.max_cost_usd {
        // A hair of slack: sums of float prices must not fail a budget met exactly.
        if used.cost_usd + extra.cost_usd > max + 1e-9 {
            return Some(format!(
                "max_cost_usd {max}: ${:.6} spent, about ${:.6} more needed",
                used.cost_usd, extra.cost_usd
            ));
        }
    }
    None
}

/// The keys a task counts against while it is in flight, with its run's limits for
/// them: its agent (key `agent:NAME`, shared by every run, limited by the agent's
/// `max_concurrency`) and its `concurrency_key` K (key `key:K`, limited by the run's
/// `concurrency_limits[K]`). Parts the run leaves unset do not limit; the operator's
/// ceilings on the same keys apply whatever the run says (see [`crate::ceilings`]).
pub fn limit_keys(dag: &Dag, i: u32) -> Vec<(String, KeyLimit)> {
    let spec = dag.task(i);
    let mut keys = Vec::new();
    if let Some(name) = &spec.agent {
        let limit = KeyLimit {
            max_concurrency: dag.options.agents.get(name).and_then(|a| a.max_concurrency),
            ..KeyLimit::default()
        };
        keys.push((format!("agent:{name}"), limit));
    }
    if let Some(key) = &spec.concurrency_key {
        let limit = dag
            .options
            .concurrency_limits
            .get(key)
            .copied()
            .unwrap_or_default();
        keys.push((format!("key:{key}"), limit));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tokens: u64, cost: f64) -> Usage {
        Usage {
            input_tokens: tokens,
            output_tokens: 0,
            cost_usd: cost,
        }
    }

    fn used(input: u64, output: u64, cost: f64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cost_usd: cost,
        }
    }

    /// Applies each change to a running total, as the machine does.
    fn total_of(changes: &[Change]) -> Usage {
        let mut total = Usage::default();
        changes.iter().for_each(|c| c.apply(&mut total));
        total
    }

    #[test]
    fn an_attempt_is_charged_the_highest_figure_it_reported_never_the_sum() {
        let mut c = Charges::default();
        let changes = [
            c.report(1, &used(500, 0, 0.01)),  // progress: the prompt is billed
            c.report(1, &used(500, 0, 0.01)),  // the same report again
            c.report(1, &used(500, 20, 0.02)), // the result
            c.report(1, &used(500, 20, 0.02)), // the result again
            c.report(1, &used(400, 0, 0.0)),   // an older report, late
        ];
        assert!(changes[1].is_none() && changes[3].is_none() && changes[4].is_none());
        assert_eq!(c.of(1).unwrap().usage, used(500, 20, 0.02));
        assert_eq!(total_of(&changes), used(500, 20, 0.02));
    }

    #[test]
    fn a_kept_reservation_gives_way_to_a_late_report_but_not_the_reverse() {
        let reservation = used(1_000, 1_024, 0.5);
        let mut c = Charges::default();
        let mut changes = vec![c.keep_reservation(2, &reservation)];
        assert_eq!(total_of(&changes), reservation);
        assert!(!c.of(2).unwrap().reported);
        // The worker's account arrives after all: it replaces the guess, even downwards.
        changes.push(c.report(2, &used(300, 5, 0.1)));
        assert_eq!(total_of(&changes), used(300, 5, 0.1));
        // Once reported, keeping the reservation changes nothing.
        changes.push(c.keep_reservation(2, &reservation));
        assert!(changes[2].is_none());
        // Attempts are charged separately and kept in order, whatever order they came in.
        changes.push(c.report(1, &used(7, 0, 0.0)));
        assert_eq!(total_of(&changes), used(307, 5, 0.1));
        let attempts: Vec<u32> = c.0.iter().map(|k| k.attempt).collect();
        assert_eq!(attempts, [1, 2]);
    }

    #[test]
    fn only_endings_without_the_workers_account_keep_the_reservation() {
        for kind in ["timeout", "idle_timeout", "cancelled", "worker_lost"] {
            assert!(ends_unaccounted(kind), "{kind}");
        }
        for kind in [
            "exception",
            "unknown_handler",
            "invalid_output",
            "input_too_large",
        ] {
            assert!(!ends_unaccounted(kind), "{kind}");
        }
        assert_eq!(
            outstanding(&used(100, 100, 1.0), &used(150, 10, 0.25)),
            used(40, 0, 0.75)
        );
        assert_eq!(
            outstanding(&used(1, 100, 0.0), &used(500, 20, 0.0)),
            Usage::default()
        );
    }

    #[test]
    fn a_budget_names_the_limit_it_cannot_cover() {
        let b = Budget {
            max_tokens: Some(1_000),
            max_cost_usd: Some(0.5),
            on_exceeded: None,
        };
        assert_eq!(shortfall(&b, &usage(400, 0.1), &usage(600, 0.4)), None);
        let why = shortfall(&b, &usage(401, 0.1), &usage(600, 0.0)).unwrap();
        assert!(
            why.contains("max_tokens 1000") && why.contains("401 used"),
            "{why}"
        );
        let why = shortfall(&b, &usage(0, 0.3), &usage(0, 0.3)).unwrap();
        assert!(why.contains("max_cost_usd 0.5"), "{why}");
        assert_eq!(
            shortfall(
                &Budget::default(),
                &usage(u64::MAX / 4, 1e9),
                &usage(1, 1.0)
            ),
            None
        );
    }
}
