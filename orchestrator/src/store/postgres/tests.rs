//! Tests of the Postgres store that need no schema: text sanitising and row decoding.

use super::super::text::{json_text, without_nul as pg_text};
use super::decode;
use crate::store::StoreError;
use serde_json::json;

/// A row that does not fit the domain (a column of the wrong type, null where a
/// value is required, missing, out of range, or a state this version does not
/// know) is a `Corrupt` error naming the column, never a panic.
#[tokio::test]
async fn a_malformed_row_is_a_corrupt_error_not_a_panic() {
    let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("postgres");
    let columns = [
        ("id", "'r1'::text"),
        ("name", "'n'::text"),
        ("queue", "'default'::text"),
        ("state", "'running'::text"),
        ("task_count", "2::int4"),
        ("counts", "'{}'::jsonb"),
        ("error", "null::text"),
        ("created_at_ms", "1::int8"),
        ("finished_at_ms", "null::int8"),
        ("last_seq", "3::int8"),
        ("options", "null::jsonb"),
        ("usage", "null::jsonb"),
        ("created_by", "null::text"),
    ];
    let select = |replace: &str, with: Option<&str>| {
        let list: Vec<String> = columns
            .iter()
            .filter_map(|(c, v)| match (*c == replace, with) {
                (true, None) => None,
                (true, Some(w)) => Some(format!("{w} as {c}")),
                (false, _) => Some(format!("{v} as {c}")),
            })
            .collect();
        format!("select {}", list.join(", "))
    };
    let row = sqlx::query(&select("", None))
        .fetch_one(&pool)
        .await
        .unwrap();
    let run = decode::run(&row).expect("a well-formed row decodes");
    assert_eq!(
        (run.id.as_str(), run.task_count, run.last_seq),
        ("r1", 2, 3)
    );

    for (column, with, named) in [
        ("id", Some("7::int4"), "id"),
        ("name", Some("null::text"), "name"),
        ("state", Some("'exploded'::text"), "run state"),
        ("task_count", Some("(-1)::int4"), "task_count"),
        ("created_at_ms", Some("'soon'::text"), "created_at_ms"),
        (
            "options",
            Some(r#"'{"max_parallel": "many"}'::jsonb"#),
            "run options",
        ),
        ("queue", None, "queue"),
    ] {
        let row = sqlx::query(&select(column, with))
            .fetch_one(&pool)
            .await
            .unwrap();
        match decode::run(&row) {
            Err(StoreError::Corrupt(why)) => {
                assert!(why.starts_with(named), "{column}: {why}")
            }
            other => panic!("{column}: expected a corrupt row, got {other:?}"),
        }
    }
}

#[test]
fn nul_never_reaches_postgres_and_literal_escapes_survive() {
    let v = json!({"out\u{0}put": "a\u{0}b", "literal": "\\u0000", "n": [1, "\u{0}"]});
    let text = json_text(&v);
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(!back.to_string().contains('\u{0}'), "{text}");
    assert_eq!(back["out\u{fffd}put"], "a\u{fffd}b");
    assert_eq!(
        back["literal"], "\\u0000",
        "a backslash followed by u0000 is not a NUL"
    );
    assert_eq!(back["n"][1], "\u{fffd}");
    assert_eq!(pg_text("w\u{0}1"), "w\u{fffd}1");
}
