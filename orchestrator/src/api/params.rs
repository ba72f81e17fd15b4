//! The bytes a URI may carry, checked once for every route before any handler reads a
//! path or query parameter: no parameter may hold a control character (a NUL, which
//! Postgres cannot store and once turned `?before=a%00b` into a 500, or any other C0
//! character or DEL), bytes that are not UTF-8, or more than [`MAX_PARAM_BYTES`] bytes
//! once percent-decoded. Such a request is answered `400 bad_request` naming the
//! parameter; a URI longer than [`MAX_URI_BYTES`] in all is answered `414 uri_too_long`.

use super::error::ApiError;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

/// Longest value of one path segment or query parameter, in bytes once decoded. Run,
/// task and agent ids are at most 128 characters; tokens are far shorter than this.
pub const MAX_PARAM_BYTES: usize = 1024;
/// Longest request URI (path and query, as sent).
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// What is wrong with one parameter of a request URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadParam {
    #[error("parameter {name:?} contains the control character 0x{byte:02x}; ids and query values cannot contain control characters")]
    Control { name: String, byte: u8 },
    #[error("parameter {name:?} is not UTF-8 text once percent-decoded")]
    NotUtf8 { name: String },
    #[error("parameter {name:?} is {len} bytes long; the limit is {MAX_PARAM_BYTES} bytes")]
    TooLong { name: String, len: usize },
}

/// Refuses a request whose URI carries a bad parameter; see the module comment.
pub async fn check(req: Request, next: Next) -> Response {
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let uri = req.uri();
    let checked = check_path(uri.path(), pattern).and_then(|()| check_query(uri.query()));
    if let Err(bad) = checked {
        return ApiError::from(bad).into_response();
    }
    // Each parameter is in bounds; only many of them can make the whole URI too long.
    let len = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if len > MAX_URI_BYTES {
        return ApiError::UriTooLong(len, MAX_URI_BYTES).into_response();
    }
    next.run(req).await
}

/// Checks each segment of `path`, named after the route `pattern` it matched
/// (`/api/v1/runs/{id}` names the third segment `id`), or `path` when none matched.
fn check_path(path: &str, pattern: Option<&str>) -> Result<(), BadParam> {
    let mut names = pattern.unwrap_or_default().split('/');
    // A wildcard (`{*file}`) names every segment from its own on.
    let mut wildcard = None;
    for segment in path.split('/') {
        let name = match wildcard.or_else(|| names.next()) {
            Some(p) if p.starts_with("{*") => {
                wildcard = Some(p);
                p.trim_matches(['{', '}', '*'])
            }
            Some(p) if p.starts_with('{') => p.trim_matches(['{', '}']),
            _ => "path",
        };
        check_value(name, segment)?;
    }
    Ok(())
}

/// Checks every `key=value` pair of a query string, keys and values alike.
fn check_query(query: Option<&str>) -> Result<(), BadParam> {
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = display_name(key);
        check_value(&name, key)?;
        check_value(&name, value)?;
    }
    Ok(())
}

/// A parameter's name as a message shows it: decoded, and cut short when long.
fn display_name(raw: &str) -> String {
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    let mut name: String = decoded.chars().take(64).collect();
    if decoded.chars().nth(64).is_some() {
        name.push('…');
    }
    name
}

/// Checks one raw (percent-encoded) value.
fn check_value(name: &str, raw: &str) -> Result<(), BadParam> {
    let bytes: Cow<[u8]> = percent_decode_str(raw).into();
    let err_name = || name.to_owned();
    if bytes.len() > MAX_PARAM_BYTES {
        return Err(BadParam::TooLong {
            name: err_name(),
            len: bytes.len(),
        });
    }
    if let Some(&byte) = bytes.iter().find(|&&b| b < 0x20 || b == 0x7f) {
        return Err(BadParam::Control {
            name: err_name(),
            byte,
        });
    }
    if std::str::from_utf8(&bytes).is_err() {
        return Err(BadParam::NotUtf8 { name: err_name() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_named_after_the_route_they_matched() {
        let route = Some("/api/v1/runs/{id}/tasks/{task_id}");
        assert_eq!(check_path("/api/v1/runs/r_1/tasks/a.b", route), Ok(()));
        assert_eq!(
            check_path("/api/v1/runs/r_1/tasks/a%00b", route),
            Err(BadParam::Control {
                name: "task_id".into(),
                byte: 0
            })
        );
        assert_eq!(
            check_path("/api/v1/runs/r%FF/tasks/a", route),
            Err(BadParam::NotUtf8 { name: "id".into() })
        );
        let long = format!("/api/v1/runs/{}", "x".repeat(MAX_PARAM_BYTES + 1));
        assert_eq!(
            check_path(&long, Some("/api/v1/runs/{id}")),
            Err(BadParam::TooLong {
                name: "id".into(),
                len: MAX_PARAM_BYTES + 1
            })
        );
        assert_eq!(
            check_path("/runs/a%0Ab", None),
            Err(BadParam::Control {
                name: "path".into(),
                byte: b'\n'
            })
        );
        assert_eq!(
            check_path("/assets/js/%7F", Some("/assets/{*file}")),
            Err(BadParam::Control {
                name: "file".into(),
                byte: 0x7f
            })
        );
    }

    #[test]
    fn query_keys_and_values_are_checked_and_named() {
        assert_eq!(check_query(None), Ok(()));
        assert_eq!(
            check_query(Some("state=running&before=r_1&x=%E2%9C%93+y")),
            Ok(())
        );
        assert_eq!(
            check_query(Some("limit=5&before=A%00b")),
            Err(BadParam::Control {
                name: "before".into(),
                byte: 0
            })
        );
        assert_eq!(
            check_query(Some("a%01b=1")),
            Err(BadParam::Control {
                name: "a\u{1}b".into(),
                byte: 1
            })
        );
        let long = format!("since={}", "%41".repeat(MAX_PARAM_BYTES + 1));
        assert_eq!(
            check_query(Some(&long)),
            Err(BadParam::TooLong {
                name: "since".into(),
                len: MAX_PARAM_BYTES + 1
            })
        );
        // Exactly at the limit is fine, however it was encoded.
        let at = format!("before={}", "%41".repeat(MAX_PARAM_BYTES));
        assert_eq!(check_query(Some(&at)), Ok(()));
    }

    #[test]
    fn messages_escape_what_they_quote() {
        let e = BadParam::Control {
            name: "a\u{0}b".into(),
            byte: 0,
        };
        assert!(
            e.to_string().starts_with(r#"parameter "a\0b" contains"#),
            "{e}"
        );
    }
}
