//! Fuzz user-endpoint template rendering (`gc_config::template::render_and_load`) with
//! arbitrary user options — the part of a start command any authenticated user controls.
//!
//! Input layout: `<selector byte><user options JSON>[\0<schema JSON>[\0<template>]]`.
//! The selector's low bit chooses the template: the shipped default template (admins' usual
//! case: only the options are hostile) or the template text of the input (admin-written text,
//! still must not crash the endpoint). Never panics; a rendered config that loads is a valid
//! `UserEndpointConfig`.
#![no_main]

use std::collections::BTreeMap;

use gc_config::CoreEndpointConfig;
use gc_config::defaults::{USER_CONFIG_SCHEMA_JSON, USER_CONFIG_TEMPLATE_J2};
use gc_config::template::{RenderInputs, render_and_load};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let opts_text = parts.next().unwrap_or("");
    let schema_text = parts.next();
    let template_text = parts.next();
    let Ok(user_opts) = serde_json::from_str::<Value>(opts_text) else {
        return;
    };
    let default_schema: Value =
        serde_json::from_str(USER_CONFIG_SCHEMA_JSON).expect("shipped schema is JSON");
    let schema = match schema_text.map(serde_json::from_str::<Value>) {
        Some(Ok(s)) => s,
        Some(Err(_)) => return,
        None => default_schema,
    };
    let template = match (selector & 1, template_text) {
        (1, Some(t)) => t,
        _ => USER_CONFIG_TEMPLATE_J2,
    };
    let parent = CoreEndpointConfig::default();
    let identity = json!({
        "local": {"uname": "alice", "uid": 1000, "gid": 1000, "gecos": "Alice",
                  "shell": "/bin/bash", "dir": "/home/alice", "groups": [1000]},
        "globus": {"id": "8b6ae3d2-0c4c-4f57-9b3e-6a1c2b8e3f10"}
    });
    let runtime = json!({"python": {"version": "3.11.2"}, "globus_compute_sdk_version": "4.19.0"});
    let env = BTreeMap::from([("HOME".to_string(), "/home/alice".to_string())]);
    let inputs = RenderInputs {
        template,
        template_dir: None,
        schema: if selector & 2 == 0 { Some(&schema) } else { None },
        user_opts: &user_opts,
        user_runtime: &runtime,
        parent_config: &parent,
        mapped_identity: &identity,
        env: &env,
    };
    let _ = render_and_load(&inputs, "fuzz");
});
