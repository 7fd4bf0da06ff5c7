//! Cost of one mapping: an identity set of 10 identities against a file of 100 expression rules
//! (`cargo bench -p gc-idmap --bench mapping`). Every rule is evaluated against every considered
//! identity, as in the reference, so this is 1 000 template expansions and pattern matches.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use gc_idmap::json::{self, Json};
use gc_idmap::{ExternalContext, MappingFile, MappingOutcome};

fn config() -> String {
    let rules: Vec<String> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                format!(
                    r#"{{"source": "{{username}}", "match": "(.*)@dept{i}\\.example\\.org", "output": "{{0}}"}}"#
                )
            } else {
                format!(
                    r#"{{"source": "{{email}}", "match": "(dev-)?(.*)@(lab{i}|site{i})\\.example\\.edu", "output": "u_{{1}}", "ignore_case": true}}"#
                )
            }
        })
        .collect();
    format!(
        r#"[{{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{}]}}]"#,
        rules.join(", ")
    )
}

fn identities() -> Vec<Json> {
    let ids: Vec<String> = (0..10)
        .map(|i| {
            format!(
                r#"{{"id": "00000000-0000-4000-8000-0000000000{i:02}", "sub": "00000000-0000-4000-8000-0000000000{i:02}",
                    "username": "user{i}@dept{}.example.org", "email": "user{i}@site{}.example.edu",
                    "name": "User {i}", "identity_provider": "8a896088-a03f-4f1c-88cc-ca5c7e9144e8",
                    "organization": "Example", "status": "used"}}"#,
                i * 10 + 98, i * 10 + 99
            )
        })
        .collect();
    match json::parse(&format!("[{}]", ids.join(","))) {
        Ok(Json::Array(v)) => v,
        _ => Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let file = MappingFile::from_bytes(config().as_bytes()).expect("benchmark config is valid");
    let ids = identities();
    let ctx = ExternalContext::for_endpoint("00000000-0000-0000-0000-000000000000");
    // Identity 0's username matches rule 98 (dept98): a result exists but only late in the file.
    assert!(matches!(
        file.map_identities(&ids, &ctx),
        MappingOutcome::Mapped { .. }
    ));
    c.bench_function("map 10 identities x 100 expression rules", |b| {
        b.iter(|| file.map_identities(black_box(&ids), &ctx))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
