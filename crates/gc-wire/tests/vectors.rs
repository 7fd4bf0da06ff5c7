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

/// The VERIFIED failure-notice bytes of PROTOCOL-ENDPOINT §4.6, built with the constructor.
#[test]
fn failure_notice_matches_verified_bytes() {
    use gc_wire::messagepack::EpStatusReport;
    let message = "Ignoring start request for untrusted identity.\n  Globus effective identity: \
                   deadbeef-0000-4000-8000-000000000000\n  Globus username: me@example.org";
    let id = uuid::Uuid::parse_str("44444444-3333-4444-8555-666666666666").unwrap();
    let notice = EpStatusReport::failure_notice(id, message);
    let expected = concat!(
        "\x01{\"message_type\":\"ep_status_report\",\"data\":{\"endpoint_id\":\"44444444-3333-4444-8555-666666666666\",",
        "\"global_state\":{\"error\":\"Ignoring start request for untrusted identity.\\n  Globus effective identity: ",
        "deadbeef-0000-4000-8000-000000000000\\n  Globus username: me@example.org\",\"heartbeat_period\":3},",
        "\"task_statuses\":{}}}"
    );
    assert_eq!(
        String::from_utf8(messagepack::pack(&Message::EpStatusReport(notice.clone()))).unwrap(),
        expected
    );
    assert_eq!(notice.error(), Some(message));
    assert_eq!(notice.heartbeat_period(), Some(3.0));
    assert_eq!(notice.active(), None);
}

/// The VERIFIED UEP heartbeat of PROTOCOL-ENDPOINT §6.2 round-trips byte-identically, key order
/// and float spelling included.
#[test]
fn verified_uep_heartbeat_round_trips() {
    let bytes = concat!(
        "\x01{\"message_type\":\"ep_status_report\",\"data\":{\"endpoint_id\":\"22222222-3333-4444-8555-666666666666\",",
        "\"global_state\":{\"total_cores\":2,\"total_mem\":23.0,\"total_core_hrs\":0,\"total_workers\":2,",
        "\"pending_tasks\":0,\"outstanding_tasks\":0,\"scaling_enabled\":false,\"max_blocks\":1,\"min_blocks\":1,",
        "\"max_workers_per_node\":2,\"nodes_per_block\":1,\"engine_type\":\"ThreadPoolEngine\",\"posix_ppid\":24395,",
        "\"posix_username\":\"gcprobe\",\"posix_uid\":1001,\"posix_gid\":1001,\"posix_groups\":[1001],",
        "\"posix_pid\":24488,\"posix_sid\":24488,\"config_raw\":\"heartbeat_period: 5\\nidle_heartbeats_soft: 4\\n",
        "idle_heartbeats_hard: 8\\nengine:\\n  type: ThreadPoolEngine\\n  max_workers: 2\",",
        "\"start_iso\":\"2026-11-22T17:45:49.600955+00:00\",\"start_unix\":1795369549.600955,",
        "\"heartbeat_period\":5.0,\"active\":true},\"task_statuses\":{}}}"
    );
    let Message::EpStatusReport(report) = messagepack::unpack(bytes.as_bytes()).unwrap() else {
        panic!("a status report")
    };
    assert_eq!(report.heartbeat_period(), Some(5.0));
    assert_eq!(report.active(), Some(true));
    assert_eq!(
        String::from_utf8(messagepack::pack(&Message::EpStatusReport(report))).unwrap(),
        bytes
    );
}
