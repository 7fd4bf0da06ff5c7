//! The messagepack test vectors of PROTOCOL-ENDPOINT §8.4 (generated with
//! globus-compute-common 1.0.0) decode to the expected content and re-encode byte-identically.

use gc_wire::messagepack::{self, Message};
use serde_json::Value;

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn vectors() -> Vec<Value> {
    include_str!("data/messagepack_vectors.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("vector line is JSON"))
        .collect()
}

#[test]
fn all_vectors_round_trip_byte_identically() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 8);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let bytes = hex_decode(v["hex"].as_str().unwrap());
        let message = messagepack::unpack(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(message.message_type(), v["message_type"], "{name}");
        assert_eq!(messagepack::pack(&message), bytes, "{name}");

        // The decoded content matches the "decoded" column (the JSON after the version byte).
        let ours: Value = serde_json::from_slice(&messagepack::pack(&message)[1..]).unwrap();
        assert_eq!(ours, v["decoded"], "{name}");
    }
}

#[test]
fn vector_contents_are_typed_as_expected() {
    let vectors = vectors();
    let by_name = |n: &str| {
        let v = vectors.iter().find(|v| v["name"] == n).unwrap();
        messagepack::unpack(&hex_decode(v["hex"].as_str().unwrap())).unwrap()
    };
    let Message::Result(r) = by_name("V2") else {
        panic!("V2 is a result")
    };
    assert!(!r.is_error());
    let statuses = r.task_statuses.unwrap();
    assert_eq!(statuses[1].timestamp, 1_700_000_000_000_000_001);
    assert_eq!(statuses[0].state, messagepack::TaskState::ExecutionStart);

    let Message::Result(r) = by_name("V3") else {
        panic!("V3 is a result")
    };
    assert_eq!(r.error_details.unwrap().code, "FUNCTION_NOT_ALLOWED");

    let Message::EpStatusReport(s) = by_name("V5") else {
        panic!("V5 is a status report")
    };
    assert_eq!(s.global_state["error"], "boom");
    assert!(s.task_statuses.is_empty());

    let Message::Result(r) = by_name("V8") else {
        panic!("V8 is a result")
    };
    assert_eq!(r.data, "\u{e9}\u{2713}\u{0}\n\"");
}
