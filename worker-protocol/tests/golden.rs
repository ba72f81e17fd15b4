//! Every golden example parses into its Rust type and serialises back to the same JSON.
//! The Python worker's tests read the same files, so both sides agree on the wire format.

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use worker_protocol::{ControlMessage, TaskMessage, WorkerMessage, PROTOCOL_VERSION};

fn examples() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read example");
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).expect("example is JSON"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn round_trip<T: DeserializeOwned + Serialize>(name: &str, json: &Value) {
    let parsed: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let back = serde_json::to_value(&parsed).expect("serialise");
    assert_eq!(&back, json, "{name} does not round-trip");
}

#[test]
fn every_golden_message_round_trips() {
    let all = examples();
    assert!(all.len() >= 13, "golden examples missing: {}", all.len());
    for (name, json) in &all {
        assert_eq!(json["v"], PROTOCOL_VERSION, "{name} has the wrong version");
        match json["type"].as_str().expect("type") {
            "task" => round_trip::<TaskMessage>(name, json),
            "cancel" | "drain" => round_trip::<ControlMessage>(name, json),
            _ => round_trip::<WorkerMessage>(name, json),
        }
    }
}

#[test]
fn a_result_names_its_attempt() {
    let (_, json) = examples()
        .into_iter()
        .find(|(n, _)| n == "result_failed")
        .unwrap();
    let WorkerMessage::Result(r) = serde_json::from_value(json).unwrap() else {
        panic!("not a result")
    };
    assert_eq!((r.attempt.task_id.as_str(), r.attempt.attempt), ("a", 1));
    let err = r.error.unwrap();
    assert!(err.retryable);
    assert_eq!(err.retry_after_s, Some(2.5));
}

#[test]
fn a_traced_task_carries_its_traceparent_and_an_untraced_one_none() {
    let all = examples();
    let traced = &all.iter().find(|(n, _)| n == "task_traced").unwrap().1;
    let t: TaskMessage = serde_json::from_value(traced.clone()).unwrap();
    assert_eq!(
        t.traceparent.as_deref(),
        Some("00-5f2c1ab0e3a94c1d8e7b6a5f4d3c2b1a-9a8b7c6d5e4f3a2b-01")
    );
    let plain = &all.iter().find(|(n, _)| n == "task").unwrap().1;
    let t: TaskMessage = serde_json::from_value(plain.clone()).unwrap();
    assert_eq!(t.traceparent, None);
    // Absent, not null: workers of older versions see the message they always saw.
    let back = serde_json::to_value(&t).unwrap();
    assert!(back.get("traceparent").is_none());
}

#[test]
fn an_unknown_message_type_is_an_error() {
    let bad = serde_json::json!({"v": 1, "type": "explode"});
    assert!(serde_json::from_value::<WorkerMessage>(bad).is_err());
}
