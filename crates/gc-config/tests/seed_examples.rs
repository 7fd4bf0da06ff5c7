//! Every YAML example in the user documentation (`shared/seeds/*.rst`, `*.md`) must load into
//! our models. Examples are enumerated from the files at test time, so a new example is
//! checked as soon as it is added.
//!
//! The shared directory is `$GCRS_SHARED_DIR`, else `<workspace root>/../shared`.
//!
//! Rules (applied to every `code-block:: yaml` / `code-block:: yaml+jinja` block of the rst
//! files and every ```` ```yaml ```` fence of the md files):
//!
//! 1. **Environment files.** A block whose top-level keys are all environment-variable names
//!    (`[A-Z_][A-Z0-9_]*`) is a `user_environment.yaml` example and must load as one, giving at
//!    least one variable.
//! 2. **Templates.** A `yaml+jinja` block, or one containing `{{` or `{%`, is rendered first,
//!    with a sample `user_runtime` (Python 3.12.1, SDK 4.19.0) and no options; each option the
//!    template insists on (strict undefined) is supplied as the string `sample-<NAME>`.
//! 3. **Fragments.** The docs elide with `...`: a block with an ellipsis line or an ellipsis
//!    value (`engine: ...`), or whose `engine` mapping has no `type`, illustrates a few keys
//!    only. Its ellipses are removed and it is deep-merged over a complete base: the default
//!    template rendered with the sample runtime if it has any user-endpoint key, else the
//!    default `config.yaml`. Keys it does set are still checked.
//!    A block without `engine` that sets user-endpoint keys (e.g. only `endpoint_setup`) is a
//!    fragment of a user endpoint configuration in the same way.
//! 4. **Counter-examples.** An rst block directly followed by a `console` block whose output
//!    shows `Error:` documents a rejected configuration: it must fail to load, and our error
//!    text must contain one of the reason lines shown after `Error:` (a trailing pydantic
//!    ` (type=…)` suffix removed).
//! 5. Everything else is a whole configuration and must load as it is (`engine` present ⇒ user
//!    endpoint configuration, else core configuration; paths are not required to exist on
//!    this machine).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gc_config::template::{RenderInputs, TemplateError, render_user_config};
use gc_config::user_env::load_user_environment;
use gc_config::yaml::{self, Node, Value};
use gc_config::{CoreEndpointConfig, LoadOptions, UserEndpointConfig, load_config};
use serde_json::{Value as Json, json};

struct Example {
    file: String,
    line: usize,
    lang: String,
    text: String,
    /// For counter-examples: reason lines of the documented error.
    expected_error: Option<Vec<String>>,
}

fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GCRS_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn dedent(lines: &[&str]) -> String {
    let min = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent_of(l))
        .min()
        .unwrap_or(0);
    let mut out: Vec<&str> = lines
        .iter()
        .map(|l| if l.len() >= min { &l[min..] } else { "" })
        .collect();
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    out.join("\n") + "\n"
}

fn rst_examples(file: &str, text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let lang = trimmed.strip_prefix(".. code-block::").map(str::trim);
        if let Some(lang @ ("yaml" | "yaml+jinja")) = lang {
            let base = indent_of(lines[i]);
            let start = i + 1;
            // Directive options (and their continuation lines) end at the first blank line.
            let mut j = start;
            while j < lines.len() && !lines[j].trim().is_empty() && indent_of(lines[j]) > base {
                j += 1;
            }
            let body_start = j;
            while j < lines.len() && (lines[j].trim().is_empty() || indent_of(lines[j]) > base) {
                j += 1;
            }
            out.push(Example {
                file: file.to_string(),
                line: i + 1,
                lang: lang.to_string(),
                text: dedent(&lines[body_start..j]),
                expected_error: documented_error(&lines[j..], base),
            });
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// If `rest` starts (after blank lines) with a `console` block showing `Error:`, the reason
/// lines after it.
fn documented_error(rest: &[&str], base: usize) -> Option<Vec<String>> {
    let mut k = 0;
    while k < rest.len() && rest[k].trim().is_empty() {
        k += 1;
    }
    let directive = rest.get(k)?;
    if indent_of(directive) != base || directive.trim() != ".. code-block:: console" {
        return None;
    }
    let body: Vec<&str> = rest[k + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > base)
        .copied()
        .collect();
    let error_at = body
        .iter()
        .position(|l| l.trim_start().starts_with("Error:"))?;
    let reasons = body[error_at..]
        .iter()
        .map(|l| {
            let l = l.trim().trim_start_matches("Error:").trim();
            match l.rfind(" (type=") {
                Some(pos) if l.ends_with(')') => l[..pos].to_string(),
                _ => l.to_string(),
            }
        })
        .filter(|l| !l.is_empty())
        .collect();
    Some(reasons)
}

fn md_examples(file: &str, text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if let Some(lang @ ("yaml" | "yaml+jinja")) = trimmed.strip_prefix("```") {
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim() != "```" {
                j += 1;
            }
            out.push(Example {
                file: file.to_string(),
                line: i + 1,
                lang: lang.to_string(),
                text: dedent(&lines[i + 1..j.min(lines.len())]),
                expected_error: None,
            });
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn sample_runtime() -> Json {
    json!({
        "globus_compute_sdk_version": "4.19.0",
        "globus_sdk_version": "3.60.0",
        "python_version": "3.12.1 (main, Dec  8 2023, 05:40:51) [GCC 11.4.0]",
        "python": {"version": "3.12.1", "version_tuple": [3, 12, 1], "implementation": "CPython"}
    })
}

/// Render a template, supplying `sample-<NAME>` for each option it requires.
fn render_with_samples(template: &str) -> Result<String, String> {
    let parent = CoreEndpointConfig::default();
    let runtime = sample_runtime();
    let identity = json!({"local": {"uname": "alice", "uid": 1000, "gid": 1000, "gecos": "", "shell": "/bin/bash", "dir": "/home/alice", "groups": [1000]}, "globus": {"id": null}});
    let env = BTreeMap::from([("HOME".to_string(), "/home/alice".to_string())]);
    let mut opts = serde_json::Map::new();
    for _ in 0..20 {
        let user_opts = Json::Object(opts.clone());
        let result = render_user_config(&RenderInputs {
            template,
            template_dir: None,
            schema: None,
            user_opts: &user_opts,
            user_runtime: &runtime,
            parent_config: &parent,
            mapped_identity: &identity,
            env: &env,
        });
        match result {
            Ok(text) => return Ok(text),
            Err(TemplateError::Undefined(msg)) => {
                let name = msg
                    .strip_prefix('\'')
                    .and_then(|m| m.strip_suffix("' is undefined"))
                    .ok_or_else(|| format!("(UndefinedError) {msg}"))?
                    .to_string();
                if opts.contains_key(&name) {
                    return Err(format!("(UndefinedError) {msg}"));
                }
                opts.insert(name.clone(), Json::String(format!("sample-{name}")));
            }
            Err(e) => return Err(format!("({}) {e}", e.python_type())),
        }
    }
    Err("too many undefined options".into())
}

fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

const USER_ONLY_KEYS: &[&str] = &[
    "engine",
    "idle_heartbeats_soft",
    "idle_heartbeats_hard",
    "heartbeat_threshold",
    "endpoint_setup",
    "endpoint_teardown",
    "paths",
];

/// Remove the documentation ellipses; reports whether there were any.
fn strip_ellipses(text: &str) -> (String, bool) {
    let mut found = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed == "..." {
            found = true;
            continue;
        }
        if let Some(key) = trimmed.strip_suffix(": ...") {
            found = true;
            out.push(format!("{}{key}:", &line[..indent_of(line)]));
            continue;
        }
        out.push(line.to_string());
    }
    (out.join("\n") + "\n", found)
}

/// Deep-merge `over` onto `base` (JSON); nulls in `over` (elided values) keep the base.
fn merge(base: &mut Json, over: &Json) {
    match (base, over) {
        (_, Json::Null) => {}
        (Json::Object(b), Json::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        if !v.is_null() {
                            b.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn check(example: &Example, default_uep: &Json) -> Result<&'static str, String> {
    let templated =
        example.lang == "yaml+jinja" || example.text.contains("{{") || example.text.contains("{%");
    let text = if templated {
        render_with_samples(&example.text)?
    } else {
        example.text.clone()
    };
    let (text, had_ellipsis) = strip_ellipses(&text);
    let node: Option<Node> = yaml::parse(&text).map_err(|e| format!("YAML: {e}"))?;
    let Some(node) = node else {
        return Err("empty example".into());
    };
    let Value::Map(entries) = &node.value else {
        return Err(format!("not a mapping but a {}", node.type_name()));
    };
    if !entries.is_empty() && entries.iter().all(|(k, _, _)| is_env_name(k)) {
        let vars = load_user_environment(&text, &example.file).map_err(|e| e.to_string())?;
        return if vars.is_empty() {
            Err("no variables".into())
        } else {
            Ok("user_environment.yaml")
        };
    }
    let engine = node.get("engine");
    let untyped_engine =
        engine.is_some_and(|e| matches!(&e.value, Value::Map(_)) && e.get("type").is_none());
    let user = entries
        .iter()
        .any(|(k, _, _)| USER_ONLY_KEYS.contains(&k.as_str()));
    if had_ellipsis || untyped_engine || (user && engine.is_none()) {
        let mut merged = if user {
            default_uep.clone()
        } else {
            json!({"display_name": null})
        };
        merge(&mut merged, &node.to_json());
        let merged_text = serde_json::to_string_pretty(&merged).map_err(|e| e.to_string())?;
        let label = format!("{} (fragment merged over the default)", example.file);
        return if user {
            UserEndpointConfig::from_yaml(&merged_text, &label)
                .map(|_| "user fragment")
                .map_err(|e| e.to_string())
        } else {
            CoreEndpointConfig::from_yaml(&merged_text, &label, LoadOptions { check_paths: false })
                .map(|_| "core fragment")
                .map_err(|e| e.to_string())
        };
    }
    let label = format!("{}:{}", example.file, example.line);
    match load_config(&text, &label, LoadOptions { check_paths: false })
        .map_err(|e| e.to_string())?
    {
        gc_config::EndpointConfig::Core(_) => {
            Ok(if templated { "core (template)" } else { "core" })
        }
        gc_config::EndpointConfig::User(_) => {
            Ok(if templated { "user (template)" } else { "user" })
        }
    }
}

#[test]
fn every_seed_yaml_example_loads() {
    let dir = shared_dir().join("seeds");
    assert!(
        dir.is_dir(),
        "seed docs not found at {} — set GCRS_SHARED_DIR to the shared/ directory (CI clones it beside the repository)",
        dir.display()
    );
    let mut examples = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        if name.ends_with(".rst") {
            examples.extend(rst_examples(&name, &text));
        } else if name.ends_with(".md") {
            examples.extend(md_examples(&name, &text));
        }
    }
    assert!(
        !examples.is_empty(),
        "no YAML examples found in {}",
        dir.display()
    );

    let default_uep = {
        let rendered = render_with_samples(gc_config::defaults::USER_CONFIG_TEMPLATE_J2).unwrap();
        yaml::parse(&rendered).unwrap().unwrap().to_json()
    };
    let mut failures = Vec::new();
    let mut summary = BTreeMap::<&str, usize>::new();
    for example in &examples {
        let result = check(example, &default_uep);
        let problem = match (&example.expected_error, result) {
            (None, Ok(kind)) => {
                *summary.entry(kind).or_default() += 1;
                continue;
            }
            (None, Err(e)) => e,
            (Some(reasons), Ok(_)) => format!("documented as rejected ({reasons:?}) but it loads"),
            (Some(reasons), Err(e)) if reasons.iter().any(|r| e.contains(r.as_str())) => {
                *summary.entry("rejected as documented").or_default() += 1;
                continue;
            }
            (Some(reasons), Err(e)) => {
                format!("rejected with `{e}`, documented reason {reasons:?}")
            }
        };
        failures.push(format!(
            "{}:{}: {problem}\n--- example ---\n{}",
            example.file, example.line, example.text
        ));
    }
    eprintln!("checked {} examples: {summary:?}", examples.len());
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n\n{}",
        failures.len(),
        examples.len(),
        failures.join("\n\n")
    );
}

#[test]
fn extraction_handles_options_and_indented_fences() {
    let rst = "Intro\n\n.. code-block:: yaml\n   :caption: ``config.yaml``\n     continued caption\n   :emphasize-lines: 2\n\n   a: 1\n   b:\n     c: 2\n\nAfter\n";
    let found = rst_examples("x.rst", rst);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].text, "a: 1\nb:\n  c: 2\n");
    let md = "1. step\n\n    ```yaml\n    A: b\n    ```\n";
    let found = md_examples("x.md", md);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].text, "A: b\n");
    assert_eq!(
        strip_ellipses("engine: ...\na: 1\n   ...\n"),
        ("engine:\na: 1\n".to_string(), true)
    );
}
