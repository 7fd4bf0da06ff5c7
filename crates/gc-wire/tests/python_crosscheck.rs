//! Cross-check against the reference implementation, globus-compute-common 1.0.0 (in the
//! project's Python venv): messages packed by Python re-pack byte-identically here, and
//! arbitrary messages packed here are accepted by Python and re-packed to the same bytes.
//!
//! The interpreter is `$GCRS_PYTHON`, else `<workspace>/.venv/bin/python`.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use gc_wire::messagepack::{pack, unpack};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRng, TestRunner};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GCRS_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "the reference implementation is needed: {} is missing (set GCRS_PYTHON)",
        p.display()
    );
    p
}

fn run_python(mode: &str, stdin: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/crosscheck.py");
    let mut child = Command::new(python())
        .arg(script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut sink = child.stdin.take().expect("stdin");
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || sink.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn python_packed_messages_repack_identically_here() {
    let lines = run_python("generate", "");
    assert!(
        lines.len() >= 20,
        "python generated {} messages",
        lines.len()
    );
    for line in lines {
        let bytes = from_hex(&line);
        let message =
            unpack(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(
            String::from_utf8_lossy(&pack(&message)),
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn messages_packed_here_repack_identically_in_python() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = common::message();
    let packed: Vec<Vec<u8>> = (0..400)
        .map(|_| pack(&strategy.new_tree(&mut runner).expect("generate").current()))
        .collect();
    let input: String = packed.iter().map(|b| to_hex(b) + "\n").collect();
    let lines = run_python("repack", &input);
    assert_eq!(lines.len(), packed.len());
    for (ours, theirs) in packed.iter().zip(lines) {
        assert!(
            !theirs.starts_with("ERR"),
            "python rejected {}: {theirs}",
            String::from_utf8_lossy(ours)
        );
        assert_eq!(
            String::from_utf8_lossy(&from_hex(&theirs)),
            String::from_utf8_lossy(ours)
        );
    }
}

/// Tricky inputs (lenient spellings, wrong types, missing keys, odd JSON) are accepted or
/// rejected exactly as the reference does, and accepted ones re-pack to the reference's bytes.
#[test]
fn reader_leniency_matches_python() {
    const T: &str = "00000000-0000-4000-8000-000000000001";
    let tt = |ts: &str| {
        format!(
            r#"{{"message_type":"task_transition","data":{{"timestamp":{ts},"state":"running","actor":"manager"}}}}"#
        )
    };
    let cancel =
        |id: &str| format!(r#"{{"message_type":"task_cancel","data":{{"task_id":{id}}}}}"#);
    let mut bodies: Vec<String> = vec![
        // Integers.
        tt("12"),
        tt("-5"),
        tt("1.0"),
        tt("1.5"),
        tt("true"),
        tt("false"),
        tt("null"),
        tt(r#""12""#),
        tt(r#"" 12 ""#),
        tt(r#""1_000""#),
        tt(r#""12.00""#),
        tt(r#""12.""#),
        tt(r#""1__0""#),
        tt(r#""_1""#),
        tt(r#""+5""#),
        tt(r#""-0""#),
        tt(r#""1e3""#),
        tt(r#""0x10""#),
        tt(r#""""#),
        tt("1e18"),
        tt("9.3e18"),
        tt("[1]"),
        tt("{}"),
        tt("9223372036854775807"),
        tt("-9223372036854775808"),
        // UUIDs.
        cancel(&format!("\"{T}\"")),
        cancel(&format!("\"{}\"", T.to_uppercase())),
        cancel(&format!("\"{}\"", T.replace('-', ""))),
        cancel(&format!("\"{{{T}}}\"")),
        cancel(&format!("\"urn:uuid:{T}\"")),
        cancel(&format!("\" {T}\"")),
        cancel("\"0000-0000\""),
        cancel("5"),
        cancel("null"),
        // Envelope.
        format!(r#"{{"extra":1,"message_type":"task_cancel","data":{{"task_id":"{T}","x":2}}}}"#),
        format!(r#" {{ "message_type" : "task_cancel" , "data" : {{ "task_id" : "{T}" }} }} "#),
        r#"{"message_type":"heartbeat_req","data":{}}"#.into(),
        r#"{"message_type":"TASK_CANCEL","data":{}}"#.into(),
        r#"{"data":{}}"#.into(),
        r#"{"message_type":"task_cancel"}"#.into(),
        r#"{"message_type":"task_cancel","data":[]}"#.into(),
        r#"[]"#.into(),
        // Duplicate keys: the last one wins.
        format!(r#"{{"message_type":"task_cancel","data":{{"task_id":"x","task_id":"{T}"}}}}"#),
        // Status reports: alias, missing task_statuses, odd global_state values.
        format!(
            r#"{{"message_type":"ep_status_report","data":{{"endpoint_id":"{T}","ep_status_report":{{"a":1}},"global_state":{{"b":2}},"task_statuses":{{}}}}}}"#
        ),
        format!(
            r#"{{"message_type":"ep_status_report","data":{{"endpoint_id":"{T}","global_state":{{}}}}}}"#
        ),
        format!(
            r#"{{"message_type":"ep_status_report","data":{{"endpoint_id":"{T}","global_state":{{"f":[1E5,1e-7,0.1,-0.0,1e300,12345678901234567890],"s":"\u00e9\ud83d\ude00\u007f"}},"task_statuses":{{"t":[]}}}}}}"#
        ),
        format!(
            r#"{{"message_type":"ep_status_report","data":{{"endpoint_id":"{T}","global_state":{{}},"task_statuses":{{"t":null}}}}}}"#
        ),
        // Results and tasks.
        format!(r#"{{"message_type":"result","data":{{"task_id":"{T}","data":"x"}}}}"#),
        format!(r#"{{"message_type":"result","data":{{"task_id":"{T}","data":5}}}}"#),
        format!(
            r#"{{"message_type":"result","data":{{"task_id":"{T}","data":"x","details":[]}}}}"#
        ),
        format!(
            r#"{{"message_type":"result","data":{{"task_id":"{T}","data":"x","error_details":{{"code":"c"}}}}}}"#
        ),
        format!(
            r#"{{"message_type":"result","data":{{"task_id":"{T}","data":"x","task_statuses":[{{"timestamp":1,"state":"RUNNING","actor":"worker"}}]}}}}"#
        ),
        format!(
            r#"{{"message_type":"task","data":{{"task_id":"{T}","task_buffer":"b","container_id":"{}"}}}}"#,
            T.to_uppercase()
        ),
        format!(
            r#"{{"message_type":"task","data":{{"task_id":"{T}","task_buffer":"b","container":{{"container_id":"{T}","name":"n","images":[{{"image_type":"d","location":"l","created_at":"3","modified_at":2.0,"build_status":null}}]}}}}}}"#
        ),
        format!(
            r#"{{"message_type":"containerimage","data":{{"image_type":"d","location":"l","created_at":1,"modified_at":2,"build_status":null,"build_stderr":"e"}}}}"#
        ),
        r#"{"message_type":"manager_status_report","data":{"task_statuses":{}}}"#.into(),
    ];
    bodies.push("not json".into());
    let inputs: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| [&[1u8][..], b.as_bytes()].concat())
        .collect();
    let stdin: String = inputs.iter().map(|b| to_hex(b) + "\n").collect();
    let answers = run_python("repack", &stdin);
    assert_eq!(answers.len(), inputs.len());
    let rejected = answers.iter().filter(|a| a.starts_with("ERR")).count();
    assert!(
        rejected >= 10 && answers.len() - rejected >= 10,
        "the corpus should exercise both outcomes"
    );
    for (input, theirs) in inputs.iter().zip(answers) {
        let shown = String::from_utf8_lossy(&input[1..]);
        match unpack(input) {
            Ok(m) if !theirs.starts_with("ERR") => assert_eq!(
                String::from_utf8_lossy(&pack(&m)),
                String::from_utf8_lossy(&from_hex(&theirs)),
                "{shown}"
            ),
            Err(_) if theirs.starts_with("ERR") => {}
            ours => panic!("{shown}: we say {ours:?}, the reference says {theirs}"),
        }
    }
}
