//! External programs (time limit kills the whole process group, output flood is cut off) and
//! live reload of the mapping file.

use std::path::Path;
use std::time::{Duration, Instant};

use gc_idmap::json::{self, Json};
use gc_idmap::reload::{EXIT_CONFIG, ReloadStatus, ReloadingMapping};
use gc_idmap::{ExternalContext, MappingOutcome};

fn ids(text: &str) -> Vec<Json> {
    match json::parse(text).unwrap() {
        Json::Array(v) => v,
        _ => panic!("not a list"),
    }
}

fn ctx(timeout: Duration) -> ExternalContext {
    let mut c = ExternalContext::for_endpoint("6f1d2c3b-4a59-4e8d-9c7b-0a1b2c3d4e5f");
    c.timeout = timeout;
    c
}

const ALICE: &str = r#"[{"id": "000000c9-0000-4000-8000-0000000000c9", "username": "alice@example.org", "status": "used"}]"#;

#[test]
fn time_out_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("survived");
    // The program forks a grandchild that would write the marker after 2 s; killing only the
    // direct child would leave it running (and holding stdout open).
    let script = format!("(sleep 2; touch '{}') & sleep 30", marker.display());
    let command = vec!["sh".to_string(), "-c".to_string(), script, "sh".to_string()];
    let started = Instant::now();
    let err = gc_idmap::external::run(
        &command,
        &ids(ALICE),
        &ctx(Duration::from_millis(500)),
        None,
    )
    .unwrap_err();
    assert!(
        matches!(err, gc_idmap::external::ExternalError::TimedOut(_)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !marker.exists(),
        "a process of the group outlived the time-out"
    );
}

#[test]
fn stdout_flood_is_cut_off() {
    let command = vec!["sh".to_string(), "-c".to_string(), "yes '{}'".to_string()];
    let err = gc_idmap::external::run(&command, &ids(ALICE), &ctx(Duration::from_secs(5)), None)
        .unwrap_err();
    assert_eq!(err, gc_idmap::external::ExternalError::OutputTooLarge);
}

#[test]
fn program_gets_argv_contract_and_stdin() {
    // Echo argv and stdin back inside the username to check both.
    let script = r#"input=$(cat); printf '{"result": [{"id": "000000c9-0000-4000-8000-0000000000c9", "output": "%s|%s"}]}' "$*" "$(printf %s "$input" | wc -c)""#;
    let command = vec![
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "prog".to_string(),
        "x".to_string(),
    ];
    let hits =
        gc_idmap::external::run(&command, &ids(ALICE), &ctx(Duration::from_secs(5)), None).unwrap();
    let doc_len = gc_idmap::external::input_document(&ids(ALICE)).len();
    assert_eq!(
        hits[0][0].1[0],
        format!(
            "x -c 145812c8-decc-41f1-83cf-bb2a85a2a70b -s 6f1d2c3b-4a59-4e8d-9c7b-0a1b2c3d4e5f -a|{doc_len}"
        )
    );
}

fn write(path: &Path, text: &str) {
    // Write-then-rename, as the documentation tells administrators to do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn mapping_to(name: &str) -> String {
    format!(
        r#"[{{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{{"source": "{{username}}", "match": ".*", "output": "{name}"}}]}}]"#
    )
}

fn username(m: &ReloadingMapping) -> String {
    match m
        .current()
        .map_identities(&ids(ALICE), &ctx(Duration::from_secs(5)))
    {
        MappingOutcome::Mapped { username, .. } => username,
        other => panic!("{other:?}"),
    }
}

#[test]
fn reload_swaps_valid_files_and_keeps_the_old_one_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idmap.json");
    write(&path, &mapping_to("first"));
    let m = ReloadingMapping::open(&path).unwrap();
    assert_eq!(username(&m), "first");
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Unchanged));

    write(&path, &mapping_to("second"));
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Reloaded));
    assert_eq!(username(&m), "second");

    // Invalid: logged, old configuration stays, not retried until the file changes again.
    write(
        &path,
        r#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{"source": "{username}", "match": "(", "output": "x"}]}]"#,
    );
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Kept(_)));
    assert_eq!(username(&m), "second");
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Unchanged));

    // Half-written (not JSON): same.
    write(&path, "[{\"DATA_TYPE\": ");
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Kept(_)));
    assert_eq!(username(&m), "second");

    // Deleted: reported at every poll, old configuration stays; re-created: loaded.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Kept(_)));
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Kept(_)));
    assert_eq!(username(&m), "second");
    write(&path, &mapping_to("third"));
    assert!(matches!(m.reload_if_changed(), ReloadStatus::Reloaded));
    assert_eq!(username(&m), "third");
}

#[test]
fn start_up_failures_carry_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ReloadingMapping::open(dir.path().join("nope.json")).unwrap_err();
    assert_eq!(missing.exit_code(), EXIT_CONFIG);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"DATA_TYPE\": \"x\"}").unwrap();
    assert_eq!(
        ReloadingMapping::open(&bad).unwrap_err().exit_code(),
        EXIT_CONFIG
    );
}
