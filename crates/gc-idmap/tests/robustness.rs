//! Property tests: arbitrary files, patterns, templates and identity sets never panic, and
//! pathological inputs are bounded.

use gc_idmap::json::{self, Json};
use gc_idmap::pyre::{MatchOutcome, PyRegex};
use gc_idmap::{ConfigKind, ExternalContext, MappingFile, dialect, template};
use proptest::prelude::*;

fn leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| Json::Int(n.to_string())),
        any::<f64>().prop_map(Json::Float),
        interesting_text().prop_map(Json::Str),
        prop_oneof![
            Just("expression_identity_mapping#1.0.0"),
            Just("external_identity_mapping#1.0.0"),
            Just("used"),
            Just("private"),
            Just("{username}"),
            Just("(.*)@example\\.org"),
            Just("{0}"),
        ]
        .prop_map(|s| Json::Str(s.to_string())),
    ]
}

fn interesting_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('@'),
            Just('.'),
            Just('\\'),
            Just('('),
            Just(')'),
            Just('|'),
            Just('*'),
            Just('?'),
            Just('{'),
            Just('}'),
            Just('['),
            Just(']'),
            Just('^'),
            Just('$'),
            Just('+'),
            Just('1'),
            Just('0'),
            Just('-'),
            Just('<'),
            Just('='),
            Just('!'),
            Just('P'),
            Just('i'),
            Just('\n'),
            Just('é'),
            Just('\u{212a}'),
            any::<char>(),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn json_value() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("DATA_TYPE".to_string()),
            Just("mappings".to_string()),
            Just("source".to_string()),
            Just("match".to_string()),
            Just("output".to_string()),
            Just("literal".to_string()),
            Just("ignore_case".to_string()),
            Just("command".to_string()),
            Just("id".to_string()),
            Just("status".to_string()),
            Just("username".to_string()),
            interesting_text(),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            proptest::collection::vec((key, inner), 0..6).prop_map(|members| {
                let mut out: Vec<(String, Json)> = Vec::new();
                for (k, v) in members {
                    if !out.iter().any(|(e, _)| *e == k) {
                        out.push((k, v));
                    }
                }
                Json::Object(out)
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_files_and_identities_never_panic(config in json_value(), ids in proptest::collection::vec(json_value(), 0..4)) {
        if let Ok(file) = MappingFile::from_json(&config) {
            // Never run programs named by random data.
            let runs_programs = file
                .configurations
                .iter()
                .any(|c| matches!(c.kind, ConfigKind::External(_)));
            if !runs_programs {
                let ctx = ExternalContext::for_endpoint("00000000-0000-0000-0000-000000000000");
                let _ = file.map_identities(&ids, &ctx);
                let _ = file.explain(&ids, &ctx);
            }
        }
    }

    #[test]
    fn arbitrary_patterns_never_panic(text in interesting_text(), literal in any::<bool>(), ic in any::<bool>(), src in interesting_text()) {
        if let Ok(re) = dialect::compile(&text, literal, ic) {
            let _ = re.match_start(&src);
            let _ = re.match_start(&text);
        }
    }

    #[test]
    fn arbitrary_templates_never_panic(t in interesting_text(), ident in json_value(), g in proptest::collection::vec(proptest::option::of(interesting_text()), 0..3)) {
        let _ = template::expand(&t, &ident, &g);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = json::parse_bytes(&bytes);
        let _ = MappingFile::from_bytes(&bytes);
    }

    #[test]
    fn printed_json_parses_back(v in json_value()) {
        let text = v.to_python_json();
        let back = json::parse(&text).unwrap();
        // NaN never equals itself; compare the printed forms instead.
        prop_assert_eq!(back.to_python_json(), text);
    }
}

#[test]
fn deep_nesting_is_rejected_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(json::parse(&deep).is_err());
    let pattern = "(".repeat(10_000) + &")".repeat(10_000);
    assert!(PyRegex::compile(&pattern, false).is_err());
}

#[test]
fn huge_files_are_refused_unparsed() {
    let big = vec![b' '; gc_idmap::config::MAX_FILE_BYTES + 1];
    assert_eq!(
        MappingFile::from_bytes(&big).unwrap_err(),
        gc_idmap::LoadError::TooLarge
    );
}

#[test]
fn catastrophic_backtracking_counts_as_no_match() {
    let file = MappingFile::from_bytes(
        br#"[{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [
            {"source": "{username}", "match": "(a*)*(a|aa)*b", "output": "never"},
            {"source": "{username}", "match": "(a*)", "output": "fine"}]}]"#,
    )
    .unwrap();
    let ids = json::parse(&format!(
        r#"[{{"id": "x", "username": "{}", "status": "used"}}]"#,
        "a".repeat(64)
    ))
    .unwrap();
    let Json::Array(ids) = ids else {
        unreachable!()
    };
    let ctx = ExternalContext::for_endpoint("e");
    assert_eq!(
        file.map_identities(&ids, &ctx),
        gc_idmap::MappingOutcome::Mapped {
            identity_id: Json::Str("x".into()),
            username: "fine".into()
        }
    );
    let re = dialect::compile("(a*)*(a|aa)*b", false, false).unwrap();
    assert_eq!(re.match_start(&"a".repeat(64)), MatchOutcome::Exhausted);
}
