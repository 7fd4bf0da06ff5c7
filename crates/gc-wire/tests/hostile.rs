//! Hostile and malformed inputs produce typed errors (never panics).

use gc_wire::messagepack::{DecodeError, Message, unpack};

fn msg(json: &str) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(json.as_bytes());
    v
}

const T: &str = "00000000-0000-4000-8000-000000000001";

#[test]
fn empty_input() {
    assert!(matches!(unpack(b""), Err(DecodeError::Empty)));
}

#[test]
fn wrong_protocol_versions() {
    for v in [0u8, 2, 0x7b, 0xff] {
        let mut b = msg(r#"{"message_type":"task_cancel","data":{}}"#);
        b[0] = v;
        assert!(
            matches!(unpack(&b), Err(DecodeError::UnsupportedVersion(x)) if x == v),
            "version {v}"
        );
    }
    // A bare JSON message without the version byte starts with `{` = 123.
    let bare = br#"{"message_type":"task_cancel","data":{"task_id":"00000000-0000-4000-8000-000000000001"}}"#;
    assert!(matches!(
        unpack(bare),
        Err(DecodeError::UnsupportedVersion(123))
    ));
}

#[test]
fn truncated_messages() {
    let full = msg(&format!(
        r#"{{"message_type":"task","data":{{"task_id":"{T}","task_buffer":"abc"}}}}"#
    ));
    assert!(unpack(&full).is_ok());
    for len in 1..full.len() {
        let err = unpack(&full[..len]).expect_err("a strict prefix is never a message");
        assert!(matches!(err, DecodeError::Json(_)), "prefix {len}: {err}");
    }
}

#[test]
fn not_json_and_not_utf8() {
    for body in [
        &b"\x01"[..],
        b"\x01null",
        b"\x01[]",
        b"\x01\"x\"",
        b"\x01{",
        b"\x01\xff\xfe",
    ] {
        let err = unpack(body).expect_err("not a message");
        assert!(
            matches!(err, DecodeError::Json(_) | DecodeError::Invalid { .. }),
            "{body:?}: {err}"
        );
    }
    // Invalid UTF-8 inside a string.
    let mut b = msg(r#"{"message_type":"result","data":{"task_id":""#);
    b.extend_from_slice(b"\xc3\x28\"}}");
    assert!(matches!(unpack(&b), Err(DecodeError::Json(_))));
    // Trailing data (e.g. two messages in one AMQP body).
    let one = format!(r#"{{"message_type":"task_cancel","data":{{"task_id":"{T}"}}}}"#);
    assert!(matches!(
        unpack(&msg(&format!("{one}\n{one}"))),
        Err(DecodeError::Json(_))
    ));
}

#[test]
fn unknown_message_type() {
    let err = unpack(&msg(r#"{"message_type":"heartbeat_req","data":{}}"#)).unwrap_err();
    assert!(matches!(err, DecodeError::UnknownMessageType(ref t) if t == "heartbeat_req"));
    // A huge type name is not echoed in full.
    let long = "x".repeat(100_000);
    let err = unpack(&msg(&format!(r#"{{"message_type":"{long}","data":{{}}}}"#))).unwrap_err();
    assert!(err.to_string().len() < 200);
}

#[test]
fn envelope_shape() {
    let cases = [
        (r#"{"data":{}}"#, "message_type"),
        (r#"{"message_type":"task_cancel"}"#, "data"),
        (r#"{"message_type":5,"data":{}}"#, "message_type"),
        (r#"{"message_type":"task_cancel","data":[]}"#, "data"),
        (r#"{"message_type":"task_cancel","data":null}"#, "data"),
    ];
    for (json, path) in cases {
        match unpack(&msg(json)) {
            Err(DecodeError::Missing { path: p } | DecodeError::Invalid { path: p, .. }) => {
                assert_eq!(p, path, "{json}")
            }
            other => panic!("{json}: {other:?}"),
        }
    }
}

#[test]
fn unknown_keys_are_ignored() {
    let m = unpack(&msg(&format!(
        r#"{{"extra":1,"message_type":"task_cancel","data":{{"task_id":"{T}","more":[1,2]}}}}"#
    )))
    .unwrap();
    assert!(matches!(m, Message::TaskCancel(_)));
}

/// Each case: (message type, data object, path of the reported field).
#[test]
fn wrong_field_types_name_the_field() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("task", r#"{"task_buffer":"x"}"#.to_string(), "data.task_id"),
        ("task", format!(r#"{{"task_id":"{T}"}}"#), "data.task_buffer"),
        ("task", format!(r#"{{"task_id":"{T}","task_buffer":5}}"#), "data.task_buffer"),
        ("task", r#"{"task_id":5,"task_buffer":"x"}"#.to_string(), "data.task_id"),
        ("task", r#"{"task_id":"not-a-uuid","task_buffer":"x"}"#.to_string(), "data.task_id"),
        (
            "task",
            format!(r#"{{"task_id":"{T}","task_buffer":"x","container":{{"container_id":"{T}","name":"n","images":[{{"image_type":"d","location":"l","created_at":1,"modified_at":2,"build_status":null}}]}}}}"#),
            "data.container.images.0.build_stderr",
        ),
        ("result", format!(r#"{{"task_id":"{T}","data":"x","details":[]}}"#), "data.details"),
        ("result", format!(r#"{{"task_id":"{T}","data":"x","error_details":{{"code":"c"}}}}"#), "data.error_details.user_message"),
        (
            "result",
            format!(r#"{{"task_id":"{T}","data":"x","task_statuses":[{{"timestamp":1.5,"state":"running","actor":"worker"}}]}}"#),
            "data.task_statuses.0.timestamp",
        ),
        (
            "result",
            format!(r#"{{"task_id":"{T}","data":"x","task_statuses":[{{"timestamp":1,"state":"RUNNING","actor":"worker"}}]}}"#),
            "data.task_statuses.0.state",
        ),
        (
            "result",
            format!(r#"{{"task_id":"{T}","data":"x","task_statuses":[{{"timestamp":1,"state":"running","actor":"nobody"}}]}}"#),
            "data.task_statuses.0.actor",
        ),
        ("ep_status_report", format!(r#"{{"endpoint_id":"{T}","global_state":{{}}}}"#), "data.task_statuses"),
        ("ep_status_report", format!(r#"{{"endpoint_id":"{T}","task_statuses":{{}}}}"#), "data.global_state"),
        ("ep_status_report", format!(r#"{{"endpoint_id":"{T}","global_state":[],"task_statuses":{{}}}}"#), "data.global_state"),
        ("manager_status_report", r#"{"task_statuses":{"a":null}}"#.to_string(), "data.task_statuses.a"),
        ("task_transition", r#"{"timestamp":"1e3","state":"running","actor":"worker"}"#.to_string(), "data.timestamp"),
        ("task_transition", r#"{"timestamp":1e300,"state":"running","actor":"worker"}"#.to_string(), "data.timestamp"),
        ("task_transition", r#"{"timestamp":18446744073709551615,"state":"running","actor":"worker"}"#.to_string(), "data.timestamp"),
        ("containerimage", r#"{"image_type":1,"location":"l","created_at":1,"modified_at":2,"build_status":null,"build_stderr":null}"#.to_string(), "data.image_type"),
    ];
    for (mt, data, path) in cases {
        let json = format!(r#"{{"message_type":"{mt}","data":{data}}}"#);
        match unpack(&msg(&json)) {
            Err(DecodeError::Missing { path: p } | DecodeError::Invalid { path: p, .. }) => {
                assert_eq!(p, path, "{json}")
            }
            other => panic!("{json}: expected an error at {path}, got {other:?}"),
        }
    }
}

#[test]
fn lenient_reading_like_python() {
    // Upper-case / un-hyphenated UUIDs, numeric strings and integral floats for integers,
    // and the `ep_status_report` alias (which wins over `global_state`).
    let m = unpack(&msg(
        r#"{"message_type":"ep_status_report","data":{"endpoint_id":"00000000000040008000000000000001","global_state":{"x":1},"ep_status_report":{"y":2},"task_statuses":{"t":[{"timestamp":"1_000","state":"running","actor":"manager"},{"timestamp":2.0,"state":"success","actor":"worker"}]}}}"#,
    ))
    .unwrap();
    let Message::EpStatusReport(r) = m else {
        panic!("status report expected")
    };
    assert_eq!(r.endpoint_id.to_string(), T);
    assert_eq!(
        r.global_state,
        serde_json::json!({"y": 2}).as_object().unwrap().clone()
    );
    assert_eq!(r.task_statuses["t"][0].timestamp, 1000);
    assert_eq!(r.task_statuses["t"][1].timestamp, 2);

    let m = unpack(&msg(&format!(
        r#"{{"message_type":"task_cancel","data":{{"task_id":"{}"}}}}"#,
        T.to_uppercase()
    )))
    .unwrap();
    assert!(matches!(m, Message::TaskCancel(c) if c.task_id.to_string() == T));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let json = format!(
        r#"{{"message_type":"ep_status_report","data":{{"endpoint_id":"{T}","global_state":{{"x":{}{}}},"task_statuses":{{}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(matches!(unpack(&msg(&json)), Err(DecodeError::Json(_))));
}
