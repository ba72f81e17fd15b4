//! Approval tasks: `{"handler": "approval", "input": {"prompt", "timeout_s",
//! "on_timeout"}}`. They never reach a worker; a person decides them.

use super::spec::TaskSpec;
use serde_json::Value;

/// The handler name that makes a task an approval step.
pub const APPROVAL_HANDLER: &str = "approval";

/// The longest an approval may wait: a year.
const MAX_TIMEOUT_S: f64 = 365.0 * 86_400.0;

/// What happens when nobody decides in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    Reject,
    Approve,
}

/// An approval task's settings, read from its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// How long the decision may take, from when the task starts waiting.
    pub timeout_ms: Option<i64>,
    pub on_timeout: OnTimeout,
}

/// True when `task` is an approval step.
pub fn is_approval(task: &TaskSpec) -> bool {
    task.handler == APPROVAL_HANDLER
}

/// Reads an approval task's settings, or says what is wrong with them.
pub fn parse(input: &Value) -> Result<Approval, String> {
    let obj = match input {
        Value::Null => {
            return Ok(Approval {
                timeout_ms: None,
                on_timeout: OnTimeout::Reject,
            })
        }
        Value::Object(o) => o,
        _ => return Err("an approval task's input must be an object".into()),
    };
    if let Some(p) = obj.get("prompt") {
        if !p.is_string() {
            return Err("an approval task's prompt must be a string".into());
        }
    }
    let timeout_ms = match obj.get("timeout_s") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(s) if s.is_finite() && s > 0.0 && s <= MAX_TIMEOUT_S => Some((s * 1000.0) as i64),
            _ => {
                return Err(format!(
                    "an approval task's timeout_s must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}"
                ))
            }
        },
    };
    let on_timeout = match obj.get("on_timeout").map(|v| v.as_str()) {
        None | Some(Some("reject")) => OnTimeout::Reject,
        Some(Some("approve")) => OnTimeout::Approve,
        _ => return Err("an approval task's on_timeout must be \"reject\" or \"approve\"".into()),
    };
    Ok(Approval {
        timeout_ms,
        on_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_read_and_bad_ones_named() {
        let a = parse(&json!({"prompt": "ok?", "timeout_s": 2, "on_timeout": "approve"})).unwrap();
        assert_eq!(a.timeout_ms, Some(2_000));
        assert_eq!(a.on_timeout, OnTimeout::Approve);
        let d = parse(&Value::Null).unwrap();
        assert_eq!((d.timeout_ms, d.on_timeout), (None, OnTimeout::Reject));
        for bad in [
            json!([1]),
            json!({"prompt": 3}),
            json!({"timeout_s": -1}),
            json!({"timeout_s": "1h"}),
            json!({"on_timeout": "retry"}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
