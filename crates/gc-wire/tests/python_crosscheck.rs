//! Cross-check against the reference implementation, globus-compute-common 1.0.0 (in the
//! project's Python venv): messages packed by Python re-pack byte-identically here, and
//! arbitrary messages packed here are accepted by Python and re-packed to the same bytes.
//!
//! The interpreter is `$GC_PYTHON`, else `<workspace>/.venv/bin/python`.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use gc_wire::messagepack::{pack, unpack};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRng, TestRunner};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GC_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        p.exists(),
        "the reference implementation is needed: {} is missing (set GC_PYTHON)",
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
