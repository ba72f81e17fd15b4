//! The LLM providers the operator declared: the only ones a run or a registered agent
//! may name. Endpoints and credentials belong to the operator, never to a submitter: a
//! run picks a provider by name and nothing else about how it is reached.
//!
//! The same file (`--providers-file`, `APEX_PROVIDERS_FILE`) configures the workers,
//! which hold the keys and check every task again (python-workers/README.md):
//!
//! ```json
//! {"providers": {"fast": {"kind": "openai", "base_url": "https://api.groq.com/openai/v1",
//!                         "api_key_env": "GROQ_API_KEY"}}}
//! ```
//!
//! The server needs only the names; it still checks the whole file, so an operator's
//! typo fails at start rather than at the first task.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The providers that exist without a file: OpenAI and Anthropic at their public
/// endpoints with their usual key variables, and the offline mock.
pub const BUILT_IN: [&str; 3] = ["anthropic", "mock", "openai"];

/// The names runs may use.
pub type ProviderNames = Arc<BTreeSet<String>>;

/// The built-in names.
pub fn built_in() -> ProviderNames {
    Arc::new(BUILT_IN.iter().map(|s| (*s).to_owned()).collect())
}

/// Why the providers file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProvidersError {
    #[error("cannot read the providers file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the providers file {0} is not valid: {1}")]
    Invalid(PathBuf, String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    providers: BTreeMap<String, Provider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Provider {
    kind: Kind,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // read by the workers, who hold the keys
    api_key_env: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // read by the workers, who make the connections
    allow_private: bool,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Openai,
    Anthropic,
    Mock,
}

/// The names declared in `path`, plus `mock` (it sends nothing anywhere).
pub fn load(path: &Path) -> Result<ProviderNames, ProvidersError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProvidersError::Read(path.into(), e))?;
    parse(&text).map_err(|e| ProvidersError::Invalid(path.into(), e))
}

fn parse(text: &str) -> Result<ProviderNames, String> {
    let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut names = BTreeSet::from(["mock".to_owned()]);
    for (name, p) in file.providers {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid_name {
            return Err(format!(
                "provider name {name:?}: use 1 to 64 letters, digits or _ - ."
            ));
        }
        match (&p.kind, &p.base_url) {
            (Kind::Mock, _) => {}
            (_, None) => return Err(format!("provider {name:?} needs a base_url")),
            (_, Some(url)) => check_url(url).map_err(|e| format!("provider {name:?}: {e}"))?,
        }
        names.insert(name);
    }
    Ok(Arc::new(names))
}

fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("base_url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("base_url {url:?} must be http or https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("base_url must not carry credentials; use api_key_env".into());
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!(
            "base_url {url:?} must not have a query or fragment"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_declares_names_and_mock_is_always_there() {
        let names = parse(
            r#"{"providers": {"fast": {"kind": "openai", "base_url": "https://x.test/v1",
                "api_key_env": "FAST_KEY"}, "local": {"kind": "openai",
                "base_url": "http://127.0.0.1:9/v1", "allow_private": true}}}"#,
        )
        .unwrap();
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["fast", "local", "mock"]
        );
    }

    #[test]
    fn mistakes_in_the_file_are_named() {
        for (file, says) in [
            (
                r#"{"providers": {"x": {"kind": "openai"}}}"#,
                "needs a base_url",
            ),
            (
                r#"{"providers": {"x": {"kind": "openai", "base_url": "ftp://h"}}}"#,
                "http or https",
            ),
            (
                r#"{"providers": {"x": {"kind": "openai", "base_url": "http://u:p@h/v1"}}}"#,
                "credentials",
            ),
            (
                r#"{"providers": {"x": {"kind": "openai", "base_url": "http://h/v1?x="}}}"#,
                "query",
            ),
            (
                r#"{"providers": {"x": {"kind": "gpt"}}}"#,
                "unknown variant",
            ),
            (
                r#"{"providers": {"x": {"kind": "mock", "key": "k"}}}"#,
                "unknown field",
            ),
            (
                r#"{"providers": {"a b": {"kind": "mock"}}}"#,
                "provider name",
            ),
        ] {
            let e = parse(file).unwrap_err();
            assert!(e.contains(says), "{file}: {e}");
        }
    }
}
