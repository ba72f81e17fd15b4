//! How values are written as text: the same for every store, so stores answer alike.

use serde_json::Value;

/// JSON text without NUL characters. Postgres refuses the escape `\u0000` (one refused
/// row would fail every retry of its batch and stall all writes); SQLite takes it, but
/// the stores must answer alike. A NUL from a worker's output or error becomes U+FFFD.
pub fn json_text(v: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(v).expect("values from JSON serialise");
    if !text.contains("\\u0000") {
        return text;
    }
    // Rare: rewrite the strings themselves, so a literal backslash-u0000 is left alone.
    fn clean(v: &mut Value) {
        match v {
            Value::String(s) => *s = without_nul(s),
            Value::Array(items) => items.iter_mut().for_each(clean),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut item) in entries {
                    clean(&mut item);
                    map.insert(without_nul(&k), item);
                }
            }
            _ => {}
        }
    }
    let mut value = serde_json::to_value(v).expect("values from JSON serialise");
    clean(&mut value);
    value.to_string()
}

/// Text without NUL characters (Postgres's text type refuses them).
pub fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}
