//! Every public conformance vector (IDENTITY-MAPPING.md §9) through the library.

use std::path::{Path, PathBuf};

use gc_idmap::json::{self, Json};
use gc_idmap::{ExternalContext, MappingFile, MappingOutcome};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn outcome_json(config: &Json, identities: &Json, endpoint_id: Option<&Json>) -> Json {
    let file = match MappingFile::from_json(config) {
        Ok(f) => f,
        Err(_) => return Json::Object(vec![("invalid".into(), Json::Bool(true))]),
    };
    let Json::Array(ids) = identities else {
        panic!("identities must be a list");
    };
    let mut ctx = ExternalContext::for_endpoint(
        endpoint_id
            .and_then(Json::as_str)
            .unwrap_or("00000000-0000-0000-0000-000000000000"),
    );
    ctx.cwd = Some(data_dir());
    match file.map_identities(ids, &ctx) {
        MappingOutcome::Mapped {
            identity_id,
            username,
        } => Json::Object(vec![
            ("id".into(), identity_id),
            ("username".into(), Json::Str(username)),
        ]),
        MappingOutcome::EmptyUsername { .. } | MappingOutcome::NoMapping => {
            Json::Object(vec![("none".into(), Json::Bool(true))])
        }
    }
}

#[test]
fn public_vectors() {
    let text = std::fs::read_to_string(data_dir().join("idmap-public-vectors.jsonl")).unwrap();
    let cases: Vec<Json> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| json::parse(l).unwrap())
        .collect();
    assert_eq!(cases.len(), 92);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| {
                s.spawn(move || {
                    let got = outcome_json(
                        case.get("config").unwrap(),
                        case.get("identities").unwrap(),
                        case.get("endpoint_id"),
                    );
                    let want = case.get("expect").unwrap();
                    (got != *want).then(|| {
                        format!(
                            "{}: want {} got {}",
                            case.get("name").unwrap().py_str(),
                            want.to_json_unicode(),
                            got.to_json_unicode()
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
