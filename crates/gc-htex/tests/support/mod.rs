//! Helpers shared by the integration tests: the venv's Python (or `GCRS_PYTHON`) and the SDK
//! helper script that makes task payloads and decodes results with the unmodified SDK.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use gc_engine::TaskRequest;
use gc_wire::messagepack::TaskResult;
use serde_json::{Value, json};
use uuid::Uuid;

pub fn python() -> PathBuf {
    std::env::var_os("GCRS_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    )
}

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sdk_helper.py")
}

pub fn payload(case: &str) -> String {
    static PAYLOADS: OnceLock<HashMap<String, String>> = OnceLock::new();
    let all = PAYLOADS.get_or_init(|| {
        let out = Command::new(python())
            .arg(helper())
            .arg("payloads")
            .output()
            .expect("run the SDK helper");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("payload JSON")
    });
    all[case].clone()
}

pub fn decode(result: &TaskResult) -> Value {
    let mut child = Command::new(python())
        .arg(helper())
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the SDK helper");
    let req = json!({"data": result.data, "error": result.is_error()});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("helper output");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("decode JSON")
}

pub fn request(case: &str) -> TaskRequest {
    TaskRequest {
        task_id: Uuid::new_v4(),
        task_buffer: payload(case),
        result_serializers: Vec::new(),
        resource_specification: Default::default(),
        user_runtime: None,
    }
}
