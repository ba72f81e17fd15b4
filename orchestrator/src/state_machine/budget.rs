//! Budgets in tokens and dollars: what a task is expected to spend before it runs, and
//! whether a budget can cover it.

use crate::dag::{json_size, Budget, Dag, KeyLimit};
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

/// The keys a task counts against while it is in flight, with their limits: its
/// agent's `max_concurrency` (key `agent:NAME`, shared by every run) and its
/// `concurrency_key` with the run's limit for it (none: counted, not limited).
pub fn limit_keys(dag: &Dag, i: u32) -> Vec<(String, KeyLimit)> {
    let spec = dag.task(i);
    let mut keys = Vec::new();
    if let Some(name) = &spec.agent {
        if let Some(max) = dag.options.agents.get(name).and_then(|a| a.max_concurrency) {
            let limit = KeyLimit {
                max_concurrency: Some(max),
                ..KeyLimit::default()
            };
            keys.push((format!("agent:{name}"), limit));
        }
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

    #[test]
    fn a_budget_names_the_limit_it_cannot_cover() {
        let b = Budget {
            max_tokens: Some(1_000),
            max_cost_usd: Some(0.5),
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
