//! Fuzz identity mapping (`gc_idmap`): parse a mapping configuration from JSON and map an
//! identity set with it.
//!
//! Input layout: `<mapping file JSON>\0<identity set JSON>` (without the separator, a fixed
//! identity set is used). External-program configurations are parsed but removed before mapping:
//! running arbitrary argv from a fuzzer is not something to do.
//!
//! * Never panics; mapping with the same file twice gives the same outcome (no hidden state).
//! * A `Mapped` outcome has a non-empty user name.
#![no_main]

use gc_idmap::json::{self, Json};
use gc_idmap::{ConfigKind, ExternalContext, MappingFile, MappingOutcome};
use libfuzzer_sys::fuzz_target;

const IDENTITIES: &str = r#"[{"id": "8b6ae3d2-0c4c-4f57-9b3e-6a1c2b8e3f10", "sub": "8b6ae3d2-0c4c-4f57-9b3e-6a1c2b8e3f10", "username": "alice@example.org", "email": "alice@example.org", "identity_provider": "6b1e3c4a-1111-4b2c-9d3e-000000000001", "organization": "Example"}]"#;

fuzz_target!(|data: &[u8]| {
    let (config, identities) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, IDENTITIES.as_bytes()),
    };
    let Ok(mut file) = MappingFile::from_bytes(config) else {
        return;
    };
    file.configurations
        .retain(|c| matches!(c.kind, ConfigKind::Expression(_)));
    let identities = match json::parse_bytes(identities) {
        Ok(Json::Array(items)) => items,
        Ok(one) => vec![one],
        Err(_) => return,
    };
    let ctx = ExternalContext::for_endpoint("00000000-0000-0000-0000-000000000000");
    let first = file.map_identities(&identities, &ctx);
    if let MappingOutcome::Mapped { username, .. } = &first {
        assert!(!username.is_empty(), "mapped to an empty user name");
    }
    let (again, _report) = file.explain(&identities, &ctx);
    assert_eq!(first, again, "mapping is not deterministic");
});
