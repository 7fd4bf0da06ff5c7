//! Behaviours spelled out in IDENTITY-MAPPING.md that the public vectors do not pin.

use gc_idmap::json::{self, Json};
use gc_idmap::{ExternalContext, MappingFile, MappingOutcome};

fn map(config: &str, identities: &str) -> Option<MappingOutcome> {
    let file = MappingFile::from_bytes(config.as_bytes()).ok()?;
    let Json::Array(ids) = json::parse(identities).unwrap() else {
        panic!("identities must be a list");
    };
    Some(file.map_identities(&ids, &ExternalContext::for_endpoint("e")))
}

fn mapped(id: Json, name: &str) -> Option<MappingOutcome> {
    Some(MappingOutcome::Mapped {
        identity_id: id,
        username: name.into(),
    })
}

fn expr(rules: &str) -> String {
    format!(r#"[{{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{rules}]}}]"#)
}

#[test]
fn anchoring_quirks() {
    let ids = r#"[{"id": "1", "username": "alice@evil.example", "status": "used"}]"#;
    let rule = |m: &str| {
        expr(&format!(
            r#"{{"source": "{{username}}", "match": "{m}", "output": "m"}}"#
        ))
    };
    assert_eq!(
        map(&rule("alice|bob"), ids),
        mapped(Json::Str("1".into()), "m")
    );
    assert_eq!(
        map(&rule("(alice|bob)"), ids),
        Some(MappingOutcome::NoMapping)
    );
    let dollar = r#"[{"id": "1", "username": "alice$tail", "status": "used"}]"#;
    assert_eq!(
        map(&rule("alice\\\\"), dollar),
        mapped(Json::Str("1".into()), "m")
    );
}

#[test]
fn entry_order_beats_identity_order_and_empty_name_stops() {
    let ids = r#"[{"id": "1", "username": "a", "status": "used"}, {"id": "2", "username": "b", "status": "private"}]"#;
    let cfg = expr(
        r#"{"source": "{username}", "match": "b", "output": "B"}, {"source": "{username}", "match": "a", "output": "A"}"#,
    );
    assert_eq!(map(&cfg, ids), mapped(Json::Str("2".into()), "B"));
    let empty_first = format!(
        "[{}, {}]",
        expr(r#"{"source": "{username}", "match": "(.*)", "output": ""}"#).trim_matches(['[', ']']),
        expr(r#"{"source": "{username}", "match": "(.*)", "output": "x"}"#)
            .trim_matches(['[', ']'])
    );
    assert!(matches!(
        map(&empty_first, ids),
        Some(MappingOutcome::EmptyUsername { .. })
    ));
}

#[test]
fn null_id_and_final_newline() {
    let cfg = expr(r#"{"source": "{username}", "match": "(.*)", "output": "{0}"}"#);
    let ids = r#"[{"id": null, "username": "bob\n", "status": "used"}]"#;
    assert_eq!(map(&cfg, ids), mapped(Json::Null, "bob"));
}

#[test]
fn python_case_rules() {
    let rule = |m: &str| {
        expr(&format!(
            r#"{{"source": "{{username}}", "match": "{m}", "output": "{{0}}", "ignore_case": "false"}}"#
        ))
    };
    let user = |u: &str| format!(r#"[{{"id": "1", "username": "{u}", "status": "used"}}]"#);
    assert_eq!(
        map(&rule("(ı)"), &user("I")),
        mapped(Json::Str("1".into()), "I")
    );
    assert_eq!(
        map(&rule("(ß)"), &user("SS")),
        Some(MappingOutcome::NoMapping)
    );
    assert_eq!(
        map(&rule("(.*)@example\\\\.org"), &user("Alice@EXAMPLE.org")),
        mapped(Json::Str("1".into()), "Alice")
    );
}

#[test]
fn lenient_top_level_values() {
    for top in ["null", "{}", "0", "false", "\"\""] {
        assert_eq!(map(top, "[]"), Some(MappingOutcome::NoMapping), "{top}");
    }
    assert_eq!(map("[1]", "[]"), None);
}
