//! Who may do what through the API: the scopes a token can hold, the principal a request
//! acts as, and API token secrets. Pure: the HTTP side is `api::auth`, storage is
//! `store`.
//!
//! Scopes are ordered, each including those before it:
//!
//! ```text
//! read ⊂ submit ⊂ operate ⊂ admin
//! read     every GET, and the WebSocket
//! submit   + submit and validate runs
//! operate  + cancel and retry runs
//! admin    + the agent registry and API tokens
//! ```
//!
//! A token's secret is 256 random bits, shown once when it is made and stored only as its
//! SHA-256: a guess cannot be checked against a stolen table faster than against the
//! server, and 2^256 guesses are out of reach either way, so no slow hash is needed.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What a token may do; each scope includes every one below it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Submit,
    Operate,
    Admin,
}

impl Scope {
    /// Every scope, weakest first.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Submit, Scope::Operate, Scope::Admin];

    /// The scope's name, as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }

    /// The scope a name stands for, as stored and as the API spells it.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub fn includes(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of the token set by `APEX_API_TOKEN`; no stored token may take it.
pub const ADMIN_TOKEN_NAME: &str = "admin";
/// Who acts when the server runs without authentication (`--no-auth`).
pub const ANONYMOUS: &str = "anonymous";

/// Who a request acts as: the name of the token it presented, and that token's scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, recorded as `by` on what the request changes.
    pub name: Arc<str>,
    /// What the token may do.
    pub scope: Scope,
}

impl Principal {
    /// The holder of the token from the environment (`APEX_API_TOKEN`).
    pub fn admin() -> Self {
        Self {
            name: Arc::from(ADMIN_TOKEN_NAME),
            scope: Scope::Admin,
        }
    }

    /// Anyone, on a server without authentication: allowed everything.
    pub fn anonymous() -> Self {
        Self {
            name: Arc::from(ANONYMOUS),
            scope: Scope::Admin,
        }
    }
}

/// How every generated secret starts, so one is recognisable in a config file or a leak
/// scanner, and so other strings are not looked up at all.
pub const TOKEN_PREFIX: &str = "apex_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// A new secret: [`TOKEN_PREFIX`] and 256 random bits in hex.
pub fn generate_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex(&bytes))
}

/// Whether `s` has the shape of a generated secret (and so may be a stored token).
pub fn looks_like_secret(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX).is_some_and(|h| {
        h.len() == SECRET_BYTES * 2 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// SHA-256 of a presented token.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lowercase hex, as digests are stored.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Longest token name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a token name cannot be used, or `None` when it can: 1–64 characters of
/// `A-Za-z0-9._-`, and not a name the server gives principals itself.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Some(format!(
            "a token name must be 1 to {MAX_NAME_LEN} characters long, not {}",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "a token name may hold only letters, digits, '.', '_' and '-', not {bad:?}"
        ));
    }
    if name == ADMIN_TOKEN_NAME || name == ANONYMOUS {
        return Some(format!(
            "{name:?} is reserved: it names the {} in audit records",
            if name == ADMIN_TOKEN_NAME {
                "token from APEX_API_TOKEN"
            } else {
                "caller of a server without authentication"
            }
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_includes_the_weaker_ones_only() {
        assert!(Scope::Admin.includes(Scope::Read));
        assert!(Scope::Operate.includes(Scope::Submit));
        assert!(Scope::Submit.includes(Scope::Submit));
        assert!(!Scope::Read.includes(Scope::Submit));
        assert!(!Scope::Operate.includes(Scope::Admin));
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Scope::parse("root"), None);
    }

    #[test]
    fn secrets_are_random_prefixed_hex_and_recognised() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(looks_like_secret(&a), "{a}");
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert!(!looks_like_secret("apex_1234"));
        assert!(!looks_like_secret(&a.to_uppercase()));
        assert!(!looks_like_secret(&a[1..]));
        assert_eq!(
            hex(&digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names_are_short_plain_and_not_reserved() {
        for ok in ["ci", "deploy-bot.prod_2", &"x".repeat(64)] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "a b",
            "ci/prod",
            "naïve",
            &"x".repeat(65),
            "admin",
            "anonymous",
        ] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        assert!(name_problem("admin").unwrap().contains("APEX_API_TOKEN"));
    }
}
