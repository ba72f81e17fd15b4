//! The operator's ceilings on the limits runs share: per key, attempts in flight,
//! requests and tokens per rolling minute (a provider's real limits, say). A run may set
//! a tighter limit for a key its tasks name, never a looser one, and a run that names a
//! key without limiting it is held to the ceiling all the same.
//!
//! `--concurrency-limits-file` (`APEX_CONCURRENCY_LIMITS_FILE`) is JSON in the shape of
//! a run's `concurrency_limits`:
//!
//! ```json
//! {"provider:openai": {"max_concurrency": 8, "rpm": 500, "tpm": 200000},
//!  "agent:researcher": {"max_concurrency": 4}}
//! ```
//!
//! A key `agent:NAME` caps the tasks of the agent of that name, in every run; any other
//! key caps the tasks whose `concurrency_key` it is.

use crate::dag::KeyLimit;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The prefix that makes an entry an agent's rather than a concurrency key's.
const AGENT_PREFIX: &str = "agent:";

/// Longest key accepted, as for keys runs name.
const MAX_KEY_LEN: usize = 128;

/// Why the concurrency limits file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CeilingsError {
    #[error("cannot read the concurrency limits file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the concurrency limits file {0} is not valid: {1}")]
    Invalid(PathBuf, String),
}

/// The operator's limit per key, by the limiter's name for the key (`agent:NAME`, or
/// `key:K` for concurrency key K).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ceilings(HashMap<String, KeyLimit>);

impl Ceilings {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, CeilingsError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| CeilingsError::Read(path.into(), e))?;
        Self::parse(&text).map_err(|e| CeilingsError::Invalid(path.into(), e))
    }

    /// Parses the file's JSON; every problem is named, so a typo fails at start.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: BTreeMap<String, KeyLimit> =
            serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut ceilings = HashMap::new();
        for (key, limit) in file {
            let agent = key.strip_prefix(AGENT_PREFIX);
            if !crate::dag::is_valid_id(&key, MAX_KEY_LEN) || agent == Some("") {
                problems.push(format!(
                    "key {key:?} is not valid: use letters, digits or _ - . : (`agent:NAME` for an agent)"
                ));
            }
            let zero = [
                ("max_concurrency", limit.max_concurrency == Some(0)),
                ("rpm", limit.rpm == Some(0)),
                ("tpm", limit.tpm == Some(0)),
            ];
            for (what, _) in zero.iter().filter(|(_, is_zero)| *is_zero) {
                problems.push(format!(
                    "key {key:?} sets {what} 0; its tasks could never run"
                ));
            }
            let name = match agent {
                Some(_) => key,
                None => format!("key:{key}"),
            };
            ceilings.insert(name, limit);
        }
        if problems.is_empty() {
            Ok(Self(ceilings))
        } else {
            Err(problems.join("; "))
        }
    }

    /// The limit on limiter key `key` (see [`crate::state_machine::budget::limit_keys`])
    /// for a run that asks for `run`: each part the tighter of the run's and the
    /// operator's, where unset is no limit.
    pub fn apply(&self, key: &str, run: KeyLimit) -> KeyLimit {
        let Some(ceiling) = self.0.get(key) else {
            return run;
        };
        KeyLimit {
            max_concurrency: tighter(run.max_concurrency, ceiling.max_concurrency),
            rpm: tighter(run.rpm, ceiling.rpm),
            tpm: tighter(run.tpm, ceiling.tpm),
        }
    }

    /// True when the operator set no ceiling.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The tighter of two limits, where `None` is no limit.
fn tighter<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: Option<u32>, rpm: Option<u32>, tpm: Option<u64>) -> KeyLimit {
        KeyLimit {
            max_concurrency: max,
            rpm,
            tpm,
        }
    }

    #[test]
    fn a_run_may_tighten_a_ceiling_but_never_loosen_or_escape_it() {
        let c = Ceilings::parse(
            r#"{"provider:openai": {"max_concurrency": 8, "rpm": 500},
                "agent:researcher": {"max_concurrency": 4}}"#,
        )
        .unwrap();
        let openai = "key:provider:openai";
        // Named without a limit: the ceiling applies.
        assert_eq!(
            c.apply(openai, KeyLimit::default()),
            limit(Some(8), Some(500), None)
        );
        // Looser: the ceiling wins; tighter: the run's wins; parts the operator leaves
        // open stay the run's.
        assert_eq!(
            c.apply(openai, limit(Some(50), Some(100), Some(9_000))),
            limit(Some(8), Some(100), Some(9_000))
        );
        assert_eq!(
            c.apply("agent:researcher", limit(Some(2), None, None)),
            limit(Some(2), None, None)
        );
        assert_eq!(
            c.apply("agent:researcher", KeyLimit::default()),
            limit(Some(4), None, None)
        );
        // Keys the operator does not cap are the run's business.
        assert_eq!(
            c.apply("key:other", limit(Some(3), None, None)),
            limit(Some(3), None, None)
        );
        // `researcher` as a concurrency key is not the agent.
        assert_eq!(
            c.apply("key:researcher", KeyLimit::default()),
            KeyLimit::default()
        );
    }

    #[test]
    fn a_bad_file_names_every_problem() {
        let why = Ceilings::parse(
            r#"{"bad key": {"max_concurrency": 1}, "agent:": {"rpm": 1},
                "k": {"max_concurrency": 0, "tpm": 0}}"#,
        )
        .unwrap_err();
        for needle in [
            "\"bad key\" is not valid",
            "\"agent:\" is not valid",
            "\"k\" sets max_concurrency 0",
            "\"k\" sets tpm 0",
        ] {
            assert!(why.contains(needle), "{needle} in {why}");
        }
        let why = Ceilings::parse(r#"{"k": {"max_concurency": 1}}"#).unwrap_err();
        assert!(why.contains("unknown field"), "{why}");
        assert!(Ceilings::parse("{}").unwrap().is_empty());
    }

    #[test]
    fn a_file_that_cannot_be_used_is_named() {
        let dir = std::env::temp_dir();
        let missing = dir.join(format!("apex-no-limits-{}.json", std::process::id()));
        let why = Ceilings::load(&missing).unwrap_err().to_string();
        assert!(
            why.starts_with("cannot read the concurrency limits file"),
            "{why}"
        );
        assert!(why.contains(&*missing.to_string_lossy()), "{why}");
        let bad = dir.join(format!("apex-bad-limits-{}.json", std::process::id()));
        std::fs::write(&bad, r#"{"k": {"rpm": 0}}"#).unwrap();
        let why = Ceilings::load(&bad).unwrap_err().to_string();
        let _ = std::fs::remove_file(&bad);
        assert!(
            why.contains(&*bad.to_string_lossy()) && why.contains("rpm 0"),
            "{why}"
        );
    }
}
