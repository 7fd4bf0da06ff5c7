//! Every public identity-mapping vector through `globus-compute-endpoint map-identity`, run with
//! the working directory set to the vectors' folder, checking stdout and the exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

use gc_idmap::json::{self, Json};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gc-idmap/tests/data")
}

fn run_case(case: &Json, scratch: &Path) -> Result<(), String> {
    let name = case.get("name").map(Json::py_str).unwrap_or_default();
    let config = scratch.join(format!("{name}.config.json"));
    let identities = scratch.join(format!("{name}.identities.json"));
    std::fs::write(&config, case.get("config").unwrap().to_python_json()).unwrap();
    std::fs::write(
        &identities,
        case.get("identities").unwrap().to_python_json(),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_globus-compute-endpoint"));
    cmd.current_dir(data_dir())
        .env("GLOBUS_COMPUTE_USER_DIR", scratch.join("gc-home"))
        .arg("map-identity")
        .arg("--config")
        .arg(&config)
        .arg("--identities")
        .arg(&identities);
    if let Some(ep) = case.get("endpoint_id").and_then(Json::as_str) {
        cmd.arg("--endpoint-id").arg(ep);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("{name}: cannot run: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    if lines.len() != 1 {
        return Err(format!(
            "{name}: expected one line on stdout, got {stdout:?}"
        ));
    }
    let mut got = json::parse(lines[0]).map_err(|e| format!("{name}: stdout not JSON: {e}"))?;
    let want = case.get("expect").unwrap();
    let want_code = if want.get("invalid").is_some() {
        // The contract adds a reason; compare the rest.
        if let Json::Object(m) = &mut got {
            let has_reason = m
                .iter()
                .any(|(k, v)| k == "error" && matches!(v, Json::Str(s) if !s.is_empty()));
            if !has_reason {
                return Err(format!("{name}: invalid without an error reason: {stdout}"));
            }
            m.retain(|(k, _)| k != "error");
        }
        2
    } else if want.get("none").is_some() {
        1
    } else {
        0
    };
    if got != *want {
        return Err(format!(
            "{name}: want {} got {}",
            want.to_json_unicode(),
            got.to_json_unicode()
        ));
    }
    if out.status.code() != Some(want_code) {
        return Err(format!(
            "{name}: want exit {want_code}, got {:?}",
            out.status.code()
        ));
    }
    Ok(())
}

#[test]
fn public_vectors_through_the_cli() {
    let text = std::fs::read_to_string(data_dir().join("idmap-public-vectors.jsonl")).unwrap();
    let cases: Vec<Json> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json::parse(l).unwrap())
        .collect();
    assert_eq!(cases.len(), 92);
    let scratch = tempfile::tempdir().unwrap();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(12)
            .map(|chunk| {
                let scratch = scratch.path();
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|c| run_case(c, scratch).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn explain_says_why() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("c.json");
    let identities = scratch.path().join("i.json");
    std::fs::write(
        &config,
        r#"[{"DATA_TYPE": "ldap_identity_mapping#1.0.0"},
            {"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [
              {"source": "{username}", "match": "(.*)@example\\.org", "output": "{0}"}]}]"#,
    )
    .unwrap();
    std::fs::write(
        &identities,
        r#"[{"id": "a", "username": "x@elsewhere.org", "status": "used"},
            {"id": "b", "username": "bob@example.org", "status": "used"},
            {"id": "c", "username": "carl@example.org", "status": "unused"}]"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_globus-compute-endpoint"))
        .env("GLOBUS_COMPUTE_USER_DIR", scratch.path().join("gc-home"))
        .args(["map-identity", "--explain", "--config"])
        .arg(&config)
        .arg("--identities")
        .arg(&identities)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"id": "b", "username": "bob"}"#
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "configuration 0: DATA_TYPE \"ldap_identity_mapping#1.0.0\" is not a known mapping type; skipped",
        "identity \"a\": source value \"x@elsewhere.org\" does not match",
        "identity \"b\": source value \"bob@example.org\" matches with {0}=\"bob\" -> output \"bob\"",
        "identity \"c\": skipped, status is \"unused\"",
        "decision:",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}
