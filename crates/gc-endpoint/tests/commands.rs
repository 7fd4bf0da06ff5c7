//! The group conventions, `version`, `list` and `render-user-config`, run as a user runs them.

mod support;

use std::fs;
use std::path::Path;

use support::{mode, ours, ours_with, tempdir, upstream};

#[test]
fn version_prints_ours_in_upstream_format() {
    let d = tempdir();
    let r = ours(d.path(), &["version"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        format!(
            "Globus Compute endpoint version: {}\n",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn help_texts_match_upstream() {
    let d = tempdir();
    for cmd in [
        "version",
        "configure",
        "list",
        "delete",
        "render-user-config",
        "start",
        "restart",
        "stop",
        "login",
        "logout",
        "whoami",
        "enable-on-boot",
        "disable-on-boot",
        "migrate-to-template-capable",
        "python-exec",
    ] {
        let o = ours(d.path(), &[cmd, "--help"]);
        let u = upstream(d.path(), &[cmd, "--help"]);
        assert_eq!((o.code, &o.stdout), (u.code, &u.stdout), "{cmd} --help");
    }
    let o = ours(d.path(), &["list", "-h"]);
    assert_eq!(o.code, 0);
    assert!(
        o.stdout
            .starts_with("Usage: globus-compute-endpoint list [OPTIONS]\n")
    );
    // Group help: upstream's, with `map-identity` and `trace` (ours only).
    let g = ours(d.path(), &["--help"]);
    let u = upstream(d.path(), &["--help"]);
    assert_eq!(g.code, 0);
    let expected: String = u
        .stdout
        .lines()
        .flat_map(|l| {
            let extra = if l.starts_with("  migrate-to-template-capable ") {
                Some("  map-identity                 Map an identity set to a local user\n")
            } else if l.starts_with("  version ") {
                Some("  trace                        Show the path of a task with timestamps\n")
            } else {
                None
            };
            extra
                .into_iter()
                .map(String::from)
                .chain([format!("{l}\n")])
        })
        .collect();
    assert_eq!(g.stdout, expected);
}

#[test]
fn group_usage_errors_match_upstream() {
    let d = tempdir();
    for args in [
        &["nosuch"][..],
        &["--bogus"],
        &["-c"],
        &["list", "--debu"],
        &["list", "extra"],
        &["render-user-config", "-h"],
        &["whoami", "-h"],
        &["python-exec"],
        &["login", "extra"],
        &["version", "--no-color=1"],
    ] {
        let o = ours(d.path(), args);
        let u = upstream(d.path(), args);
        assert_eq!((o.code, &o.stderr), (u.code, &u.stderr), "{args:?}");
        assert_eq!(o.code, 2, "{args:?}");
    }
    let none = ours(d.path(), &[]);
    assert_eq!(none.code, 2);
    assert!(
        none.stderr
            .starts_with("Usage: globus-compute-endpoint [OPTIONS] COMMAND [ARGS]...\n")
    );
    let missing = ours(d.path(), &["-c", d.path().to_str().unwrap()]);
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (
            2,
            "Usage: globus-compute-endpoint [OPTIONS] COMMAND [ARGS]...\nTry 'globus-compute-endpoint --help' for help.\n\nError: Missing command.\n"
        )
    );
}

#[test]
fn config_dir_option_creates_private_dir_and_refuses_a_file() {
    let d = tempdir();
    let target = d.path().join("a/b/gc");
    let r = ours(d.path(), &["-c", target.to_str().unwrap(), "list"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(mode(&target), 0o700);
    assert!(r.stdout.starts_with("No endpoints configured!"));

    // Even `<sub-command> --help` ensures the directory; plain `--help` does not.
    let h = d.path().join("h");
    assert_eq!(
        ours(d.path(), &["-c", h.to_str().unwrap(), "version", "--help"]).code,
        0
    );
    assert!(h.is_dir());
    let h2 = d.path().join("h2");
    assert_eq!(
        ours(d.path(), &["-c", h2.to_str().unwrap(), "--help"]).code,
        0
    );
    assert!(!h2.exists());

    let file = d.path().join("afile");
    fs::write(&file, "").unwrap();
    let r = ours(d.path(), &["-c", file.to_str().unwrap(), "list"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "Error: Error creating directory {}, please remove or rename the conflicting file\n",
            file.display()
        )
    );
}

fn endpoint(root: &Path, name: &str, id: Option<&str>, pid_age_s: Option<u64>) {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.yaml"), "display_name: null\n").unwrap();
    if let Some(id) = id {
        fs::write(dir.join("endpoint.json"), id).unwrap();
    }
    if let Some(age) = pid_age_s {
        let pid = dir.join("daemon.pid");
        fs::write(&pid, "12345\n").unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        fs::File::options()
            .write(true)
            .open(&pid)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
}

#[test]
fn list_shows_every_state() {
    let d = tempdir();
    let empty = ours(d.path(), &["list"]);
    assert_eq!(
        empty.stdout,
        "No endpoints configured!\n\n (Hint: globus-compute-endpoint configure)\n"
    );

    let one = tempdir();
    endpoint(
        one.path(),
        "ha1",
        Some(r#"{"endpoint_id": "bbbbbbbb-2222-3333-4444-555555555555"}"#),
        Some(0),
    );
    let r = ours(one.path(), &["list"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        "+--------------------------------------+---------+---------------+\n|             Endpoint ID              | Status  | Endpoint Name |\n+======================================+=========+===============+\n| bbbbbbbb-2222-3333-4444-555555555555 | Running | ha1           |\n+--------------------------------------+---------+---------------+\n"
    );

    let many = tempdir();
    let root = many.path();
    endpoint(root, "init", None, Some(0));
    endpoint(root, "nullid", Some(r#"{"endpoint_id": null}"#), None);
    endpoint(
        root,
        "stale",
        Some(r#"{"endpoint_id": "cccccccc-2222-3333-4444-555555555555"}"#),
        Some(120),
    );
    endpoint(
        root,
        "stopped",
        Some(r#"{"endpoint_id": "dddddddd-2222-3333-4444-555555555555"}"#),
        None,
    );
    endpoint(root, "broken", Some("{bad"), None);
    endpoint(
        root,
        "a-rather-long-endpoint-name-that-must-wrap",
        Some(r#"{"endpoint_id": "eeeeeeee-2222-3333-4444-555555555555"}"#),
        None,
    );
    fs::create_dir_all(root.join("uep.x.y")).unwrap();
    let r = ours(root, &["list"]);
    assert_eq!(r.code, 0);
    let expect_rows = [
        ("None", "Initialized", "init"),
        ("None", "Initialized", "nullid"),
        (
            "cccccccc-2222-3333-4444-555555555555",
            "Disconnected",
            "stale",
        ),
        ("dddddddd-2222-3333-4444-555555555555", "Stopped", "stopped"),
        ("[failed to read endpoint id]", "Stopped", "broken"),
    ];
    for (id, status, name) in expect_rows {
        let line = format!("| {id:<36} | {status:<12} | {name:<22} |");
        assert!(
            r.stdout.contains(&line),
            "missing {line:?} in\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains(
        "| eeeeeeee-2222-3333-4444-555555555555 | Stopped      | a-rather-long-         |\n|                                      |              | endpoint-name-that-    |\n|                                      |              | must-wrap              |\n"
    ));
    assert!(!r.stdout.contains("uep.x.y"));
    assert!(r.stderr.contains(" WARNING "), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Failed to read endpoint id: [JSONDecodeError] ")
    );
    assert!(
        r.stderr
            .trim_end()
            .ends_with(&format!("({})", root.join("broken").display()))
    );
}

const RUNTIME: &str = r#"{"python": {"version": "3.11.7", "version_tuple": [3,11,7]}, "globus_compute_sdk_version": "4.19.0"}"#;

#[test]
fn render_user_config_renders_an_endpoint_template_like_upstream() {
    let d = tempdir();
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "r1"]).code,
        0
    );
    let rt = d.path().join("rt.json");
    fs::write(&rt, RUNTIME).unwrap();
    let r = ours(
        d.path(),
        &[
            "render-user-config",
            "-e",
            "r1",
            "--user-runtime",
            rt.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stderr, "> Rendered user config:\n");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gc-config/tests/fixtures/default_rt_noopts.out");
    assert_eq!(r.stdout, fs::read_to_string(fixture).unwrap());

    // Same inputs through upstream's CLI (its own copy of the endpoint).
    let u_dir = tempdir();
    assert_eq!(
        upstream(u_dir.path(), &["configure", "--multi-user", "false", "r1"]).code,
        0
    );
    let u = upstream(
        u_dir.path(),
        &[
            "render-user-config",
            "-e",
            "r1",
            "--user-runtime",
            rt.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (u.code, &u.stdout, &u.stderr),
        (r.code, &r.stdout, &r.stderr)
    );
}

#[test]
fn render_user_config_options_from_stdin_and_errors() {
    let d = tempdir();
    let t = d.path().join("t.j2");
    fs::write(&t, "x: {{ x }}\n").unwrap();
    let tp = t.to_str().unwrap();
    let r = ours_with(
        d.path(),
        &["render-user-config", "-t", tp, "-o", "-"],
        r#"{"x": "hi"}"#,
        &[],
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "x: \"hi\"\n"));

    let cases: &[(&[&str], &str, i32, &str)] = &[
        (
            &["render-user-config"],
            "",
            1,
            "Error: Must provide at least one of --endpoint or --template.\n",
        ),
        (
            &["render-user-config", "-t", tp],
            "",
            1,
            "Error: Failed to render user configuration template.\n\t(jinja2.exceptions.UndefinedError) 'x' is undefined\n",
        ),
        (
            &["render-user-config", "-t", tp, "-o", "-"],
            "[1]",
            1,
            "Error: Invalid user options data in <stdin>: must be a JSON dictionary.\n",
        ),
        (
            &["render-user-config", "-t", tp, "-o", "-"],
            r#"{"_GC": 1}"#,
            1,
            "Error: Failed to render user configuration template.\n\t(builtins.ValueError) '_GC' is a reserved word and cannot be passed in via user config\n",
        ),
        (&["render-user-config", "-e", "nosuch"], "", 1, ""),
        (
            &["render-user-config", "-t", "/nonexistent"],
            "",
            2,
            "Usage: globus-compute-endpoint render-user-config [OPTIONS]\nTry 'globus-compute-endpoint render-user-config --help' for help.\n\nError: Invalid value for '--template' / '-t': '/nonexistent': No such file or directory\n",
        ),
        (
            &["render-user-config", "-t", "-", "--user-runtime", "-"],
            "",
            1,
            "Error: At most one input may be read from stdin across all options.\n",
        ),
    ];
    for (args, stdin, code, stderr) in cases {
        let r = ours_with(d.path(), args, stdin, &[]);
        assert_eq!(r.code, *code, "{args:?}: {r:?}");
        if stderr.is_empty() {
            assert_eq!(
                r.stderr,
                format!(
                    "Error: Failed to find endpoint configuration ({})\n",
                    d.path().join("nosuch").display()
                )
            );
        } else {
            assert_eq!(r.stderr, *stderr, "{args:?}");
        }
    }
}

#[test]
fn endpoint_dir_env_redirects_every_endpoint_argument() {
    let d = tempdir();
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "real"]).code,
        0
    );
    let real = d.path().join("real");
    let r = ours_with(
        d.path(),
        &[
            "render-user-config",
            "-e",
            "whatever",
            "--user-runtime",
            "-",
        ],
        "{}",
        &[("GLOBUS_COMPUTE_ENDPOINT_DIR", real.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("idle_heartbeats_soft: 10"));
}

#[test]
fn debug_console_lines_are_coloured_on_a_terminal_unless_no_color() {
    let d = tempdir();
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "c1"]).code,
        0
    );
    std::fs::write(d.path().join("c1/endpoint.json"), "not json").unwrap();
    let on_terminal = |extra: &str| {
        let out = std::process::Command::new("script")
            .args(["-q", "-e", "-c"])
            .arg(format!(
                "{} list --debug {extra}",
                env!("CARGO_BIN_EXE_globus-compute-endpoint")
            ))
            .arg("/dev/null")
            .env("GLOBUS_COMPUTE_USER_DIR", d.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_terminal("");
    assert!(
        coloured.contains(" \x1b[33mWARNING\x1b[0m MainProcess-"),
        "{coloured:?}"
    );
    let plain = on_terminal("--no-color");
    assert!(plain.contains(" WARNING MainProcess-"), "{plain:?}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

#[test]
fn operations_messages_match_upstream() {
    let d = tempdir();
    let name = format!("conf{}", std::process::id());
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", &name]).code,
        0
    );
    let dir = d.path().join(&name);
    let pid = dir.join("daemon.pid");
    let stale = || {
        std::fs::write(&pid, "1\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&pid)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
            .unwrap();
    };
    let same = |args: &[&str]| {
        let o = ours(d.path(), args);
        let u = upstream(d.path(), args);
        assert_eq!(
            (o.code, &o.stdout, &o.stderr),
            (u.code, &u.stdout, &u.stderr),
            "{args:?}"
        );
    };
    // No unit file for this endpoint (or no systemd at all: the same refusal either way).
    same(&["disable-on-boot", &name]);
    same(&["whoami"]);
    same(&["stop", &name]);
    // A fresh PID file: enable-on-boot refuses before logging in; logout lists the endpoint
    // once it has an id. (The PID is never signalled here.)
    std::fs::write(&pid, "1\n").unwrap();
    same(&["enable-on-boot", &name]);
    std::fs::write(
        dir.join("endpoint.json"),
        r#"{"endpoint_id": "00000000-0000-4000-8000-000000000002"}"#,
    )
    .unwrap();
    same(&["logout"]);
    // A stale PID file is only removed, by both.
    stale();
    let o = ours(d.path(), &["stop", &name]);
    stale();
    let u = upstream(d.path(), &["stop", &name]);
    assert_eq!((o.code, &o.stderr), (u.code, &u.stderr));
    assert_eq!(
        o.stderr,
        format!("> Endpoint <{name}> has been cleaned up.\n")
    );
    assert!(!pid.exists());
}

/// A PyYAML block-style document's top-level entries (key line plus its indented or `- `
/// lines), sorted: upstream builds the key lists from sets, so their order varies.
fn yaml_blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        match blocks.last_mut() {
            Some(b) if line.starts_with(' ') || line.starts_with("- ") => {
                b.push('\n');
                b.push_str(line);
            }
            _ => blocks.push(line.to_string()),
        }
    }
    blocks.sort();
    blocks
}

#[test]
fn migrate_to_template_capable_matches_upstream() {
    let legacy = "display_name: Legacy EP\nheartbeat_period: 10\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2\nidle_heartbeats_soft: 3\nallowed_functions:\n  - 0a0a0a0a-0000-4000-8000-00000000000a\nlocal_compute_services: true\n";
    let mut results = Vec::new();
    for upstream_run in [false, true] {
        let d = tempdir();
        let run = |args: &[&str]| {
            if upstream_run {
                upstream(d.path(), args)
            } else {
                ours(d.path(), args)
            }
        };
        assert_eq!(run(&["configure", "--multi-user", "false", "mig"]).code, 0);
        let dir = d.path().join("mig");
        // A core configuration is already template capable.
        let already = run(&["migrate-to-template-capable", "--yes", "mig"]);
        std::fs::write(dir.join("config.yaml"), legacy).unwrap();
        // Running endpoints are refused.
        std::fs::write(dir.join("daemon.pid"), "1\n").unwrap();
        let running = run(&["migrate-to-template-capable", "--yes", "mig"]);
        std::fs::remove_file(dir.join("daemon.pid")).unwrap();
        // Declining the prompt changes nothing.
        let declined = run(&["migrate-to-template-capable", "mig"]);
        let migrated = run(&["migrate-to-template-capable", "--yes", "mig"]);
        let config = std::fs::read_to_string(dir.join("config.yaml")).unwrap();
        let template = std::fs::read_to_string(dir.join("user_config_template.yaml.j2")).unwrap();
        let backup = std::fs::read_to_string(dir.join("config.yaml.backup")).unwrap();
        // A second migration finds the backup in the way (the new config is core anyway).
        std::fs::write(dir.join("config.yaml"), legacy).unwrap();
        let blocked = run(&["migrate-to-template-capable", "--yes", "mig"]);
        let p = d.path().display().to_string();
        let show = |r: support::Run| {
            (
                r.code,
                r.stdout.replace(&p, "<D>"),
                r.stderr.replace(&p, "<D>"),
            )
        };
        results.push((
            show(already),
            show(running),
            show(declined),
            show(migrated),
            yaml_blocks(&config),
            yaml_blocks(&template),
            backup,
            show(blocked),
        ));
    }
    assert_eq!(results[0], results[1]);
    let ours = &results[0];
    assert_eq!(
        ours.3,
        (
            0,
            String::new(),
            "> Endpoint mig successfully migrated to template capable.\n".to_string()
        )
    );
    assert!(
        ours.5.iter().any(|b| b.starts_with("engine:")),
        "{:?}",
        ours.5
    );
}

#[test]
fn python_exec_runs_the_module_with_the_remaining_words() {
    let d = tempdir();
    let r = ours(d.path(), &["python-exec", "platform", "--terse"]);
    let want = std::process::Command::new("python3")
        .args(["-m", "platform", "--terse"])
        .output()
        .expect("python3");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, String::from_utf8_lossy(&want.stdout));
}
