//! ACCEPTANCE: `configure` with the four option sets of ENDPOINT.md §1.6.2 writes files
//! byte-identical to the spec and to upstream 4.19.0 (whose CLI and packaged default files are
//! in the project venv), with the same modes and the same printed summary.

mod support;

use std::fs;
use std::path::Path;

use support::{mode, ours, tempdir, upstream, upstream_exe};

/// Upstream's packaged default file, the reference for what `configure` copies.
fn upstream_default(name: &str) -> Vec<u8> {
    let dir = upstream_exe()
        .parent()
        .and_then(Path::parent)
        .expect("venv")
        .join("lib");
    let python = fs::read_dir(&dir)
        .expect("venv lib")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .expect("python3.x in venv")
        .path();
    let path = python
        .join("site-packages/globus_compute_endpoint/endpoint/config")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "endpoint_setup": { "type": "string" },
    "worker_init": { "type": "string" },
    "requirements": { "type": "string", "minLength": 1 }
  },
  "additionalProperties": true
}
"#;

const IDMAP_EXAMPLE: &str = r#"[
  {
    "comment": "For more examples, see: https://docs.globus.org/globus-connect-server/v5.4/identity-mapping-guide/",
    "DATA_TYPE": "expression_identity_mapping#1.0.0",
    "mappings": [
      {
        "source": "{username}",
        "match": "(.*)@example.com",
        "output": "{0}"
      }
    ]
  }
]
"#;

/// Files of an endpoint directory, name → bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("endpoint dir")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read"),
                mode(&e.path()),
            )
        })
        .collect();
    out.sort();
    out
}

/// Run ours and upstream with the same arguments and compare everything visible.
fn cross_check(name: &str, args: &[&str]) -> (std::path::PathBuf, tempfile::TempDir) {
    let ours_dir = tempdir();
    let up_dir = tempdir();
    let mut full = vec!["configure"];
    full.extend_from_slice(args);
    full.push(name);
    let o = ours(ours_dir.path(), &full);
    let u = upstream(up_dir.path(), &full);
    assert_eq!(o.code, 0, "ours failed: {o:?}");
    assert_eq!(u.code, 0, "upstream failed: {u:?}");
    let up_prefix = up_dir.path().display().to_string();
    let our_prefix = ours_dir.path().display().to_string();
    assert_eq!(
        o.stdout,
        u.stdout.replace(&up_prefix, &our_prefix),
        "stdout"
    );
    let ours_files = files(&ours_dir.path().join(name));
    let up_files: Vec<_> = files(&up_dir.path().join(name))
        .into_iter()
        .map(|(n, b, m)| {
            let text = String::from_utf8(b).expect("utf8");
            (n, text.replace(&up_prefix, &our_prefix).into_bytes(), m)
        })
        .collect();
    assert_eq!(ours_files, up_files, "files differ from upstream");
    assert_eq!(mode(&ours_dir.path().join(name)), 0o700);
    (ours_dir.path().join(name), ours_dir)
}

fn read(dir: &Path, f: &str) -> String {
    fs::read_to_string(dir.join(f)).expect("read")
}

#[test]
fn plain_endpoint_matches_spec_and_upstream() {
    let (dir, _keep) = cross_check("su1", &["--multi-user", "false"]);
    assert_eq!(read(&dir, "config.yaml"), "display_name: null\n");
    assert_eq!(read(&dir, "user_config_schema.json"), SCHEMA);
    assert_eq!(
        fs::read(dir.join("user_config_template.yaml.j2")).unwrap(),
        upstream_default("user_config_template.yaml.j2")
    );
    assert_eq!(
        fs::read(dir.join("user_environment.yaml")).unwrap(),
        upstream_default("user_environment.yaml")
    );
    assert!(read(&dir, "user_environment.yaml").starts_with(
        "# Use this YAML file to specify environment variables to inject into the user\n"
    ));
    assert!(!dir.join("example_identity_mapping_config.json").exists());
    for f in [
        "config.yaml",
        "user_config_template.yaml.j2",
        "user_config_schema.json",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
}

#[test]
fn identity_mapping_endpoint_matches_spec_and_upstream() {
    let (dir, _keep) = cross_check("mu1", &["--multi-user", "true", "--contact-email", "a@b.c"]);
    let idmap = dir.join("example_identity_mapping_config.json");
    assert_eq!(
        read(&dir, "config.yaml"),
        format!(
            "display_name: null\nemail: a@b.c\nidentity_mapping_config_path: {}\npublic: true\n",
            idmap.display()
        )
    );
    assert_eq!(
        read(&dir, "example_identity_mapping_config.json"),
        IDMAP_EXAMPLE
    );
    assert_eq!(
        fs::read(&idmap).unwrap(),
        upstream_default("example_identity_mapping_config.json")
    );
    assert_eq!(mode(&idmap), 0o600);
    assert_eq!(mode(&dir.join("user_config_template.yaml.j2")), 0o644);
}

#[test]
fn high_assurance_endpoint_matches_spec_and_upstream() {
    let (dir, _keep) = cross_check(
        "ha1",
        &[
            "--multi-user",
            "false",
            "--high-assurance",
            "--subscription-id",
            "11111111-2222-3333-4444-555555555555",
            "--auth-policy",
            "22222222-2222-3333-4444-555555555555",
        ],
    );
    assert_eq!(
        read(&dir, "config.yaml"),
        format!(
            "display_name: null\nauthentication_policy: 22222222-2222-3333-4444-555555555555\nhigh_assurance: true\naudit_log_path: {}\nsubscription_id: 11111111-2222-3333-4444-555555555555\n",
            dir.join("audit.log").display()
        )
    );
}

#[test]
fn core_config_override_matches_spec_and_upstream() {
    let src = tempdir();
    let core = src.path().join("core.yaml");
    fs::write(
        &core,
        "engine:\n  type: ThreadPoolEngine\n  max_workers: 2\nheartbeat_period: 10\npublic: false\n",
    )
    .unwrap();
    let idm = src.path().join("idmap.json");
    fs::write(&idm, "[]\n").unwrap();
    let (dir, _keep) = cross_check(
        "cc1",
        &[
            "--core-config",
            core.to_str().unwrap(),
            "--id-mapping-config",
            idm.to_str().unwrap(),
            "--contact-email",
            "x@y.z",
            "--multi-user",
            "yes",
        ],
    );
    assert_eq!(
        read(&dir, "config.yaml"),
        format!(
            "heartbeat_period: 10\npublic: false\nemail: x@y.z\nidentity_mapping_config_path: {}\n",
            dir.join("identity_mapping_config.json").display()
        )
    );
    assert_eq!(read(&dir, "identity_mapping_config.json"), "[]\n");
    assert!(!dir.join("example_identity_mapping_config.json").exists());
}

#[test]
fn yaml_values_are_dumped_like_pyyaml() {
    let src = tempdir();
    let core = src.path().join("core.yaml");
    fs::write(
        &core,
        "display_name: 'yes'\ndebug: on\namqp_port: 0x1BB\nallowed_functions:\n  - 0a0a0a0a-0000-4000-8000-00000000000a\nenvironment: \"caf\u{e9}\"\nadmins: []\n",
    )
    .unwrap();
    let (dir, _keep) = cross_check(
        "y1",
        &[
            "--multi-user",
            "false",
            "--core-config",
            core.to_str().unwrap(),
            "--display-name",
            "My endpoint: #1",
        ],
    );
    assert!(
        read(&dir, "config.yaml")
            .starts_with("display_name: 'My endpoint: #1'\ndebug: true\namqp_port: 443\n")
    );
}

#[test]
fn summary_output_layout() {
    let d = tempdir();
    let r = ours(d.path(), &["configure", "--multi-user", "false", "ep1"]);
    let p = d.path().join("ep1");
    let p = p.display();
    assert_eq!(
        r.stdout,
        format!(
            "Created profile for endpoint named <ep1>\n\n\tConfiguration file: {p}/config.yaml\n\n\tUser endpoint configuration template: {p}/user_config_template.yaml.j2\n\tUser endpoint configuration schema: {p}/user_config_schema.json\n\tUser endpoint environment variables: {p}/user_environment.yaml\n\nUse the `start` subcommand to run it:\n\n\t$ globus-compute-endpoint start ep1\n"
        )
    );
}

#[test]
fn refusals_and_their_exit_statuses() {
    let d = tempdir();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["configure", "--multi-user", "true", "x"],
            1,
            "Error: Email must be specified via --contact-email for multi-user endpoints\n",
        ),
        (
            &[
                "configure",
                "--multi-user",
                "false",
                "--id-mapping-config",
                "/etc/hostname",
                "x",
            ],
            1,
            "Error: --id-mapping-config requires multi user support (hint: --multi-user true)\n",
        ),
        (
            &[
                "configure",
                "--multi-user",
                "false",
                "--high-assurance",
                "x",
            ],
            1,
            "Error: High Assurance(HA) endpoints require both a HA policy and a HA subscription id\n",
        ),
        (
            &[
                "configure",
                "--multi-user",
                "false",
                "--auth-policy-mfa-required",
                "x",
            ],
            1,
            "Error: MFA may only be specified when creating a policy\n",
        ),
        (
            &[
                "configure",
                "--multi-user",
                "false",
                "--allowed-domains",
                "a.org",
                "--auth-policy",
                "p",
                "x",
            ],
            1,
            "Error: Cannot specify an existing auth policy and create a new one at the same time\n",
        ),
        (
            &["configure", "--multi-user", "false", "a b"],
            1,
            "Error: Invalid endpoint name: no whitespace (spaces, newlines, tabs), slashes, or prefixed '.'\n  Requested:  a b\n  Reduced to: ab (*potentially* valid)\n",
        ),
        (
            &["configure", "--multi-user", "false", "../up"],
            1,
            "Error: Invalid endpoint name: no '..' or '/' characters\n  Requested:  ../up\n  Reduced to: up (*potentially* valid)\n",
        ),
        (
            &["configure", "12345678-1234-1234-1234-123456789abc"],
            2,
            "Usage: globus-compute-endpoint configure [OPTIONS] [NAME]\n\nError: Invalid value for '[NAME]': 'globus-compute-endpoint configure' requires an endpoint name that is not a UUID (got: '12345678-1234-1234-1234-123456789abc')\n",
        ),
        (
            &["configure", "--multi-user", "maybe"],
            2,
            "Usage: globus-compute-endpoint configure [OPTIONS] [NAME]\n\nError: Invalid value for '--multi-user': 'maybe' is not a valid boolean. Recognized values: , 0, 1, f, false, n, no, off, on, t, true, y, yes\n",
        ),
        (
            &["configure", "--auth-timeout", "-1"],
            2,
            "Usage: globus-compute-endpoint configure [OPTIONS] [NAME]\n\nError: Invalid value for '--auth-timeout': -1 is not in the range x>=0.\n",
        ),
        (
            &["configure", "--core-config", "/nonexistent.yaml"],
            2,
            "Usage: globus-compute-endpoint configure [OPTIONS] [NAME]\n\nError: Invalid value for '--core-config': File '/nonexistent.yaml' does not exist.\n",
        ),
        (
            &["configure", "--endpoint-config", "/x"],
            2,
            "Usage: globus-compute-endpoint configure [OPTIONS] [NAME]\n\nError: No such option: --endpoint-config (Possible options: --core-config, --id-mapping-config, --user-env-config)\n",
        ),
        (
            &["configure", "--display-name"],
            2,
            "Error: Option '--display-name' requires an argument.\n",
        ),
        (
            &["configure", "a", "b"],
            2,
            "Usage: globus-compute-endpoint configure [OPTIONS] [NAME]\n\nError: Got unexpected extra argument (b)\n",
        ),
    ];
    for (args, code, stderr) in cases {
        let r = ours(d.path(), args);
        assert_eq!((r.code, r.stderr.as_str()), (*code, *stderr), "{args:?}");
        let u = upstream(d.path(), args);
        assert_eq!(
            (u.code, u.stderr.as_str()),
            (*code, *stderr),
            "upstream {args:?}"
        );
    }
    // Nothing was created by any refusal.
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
}

#[test]
fn existing_endpoint_is_refused_and_bad_source_leaves_nothing() {
    let d = tempdir();
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "e"]).code,
        0
    );
    let again = ours(d.path(), &["configure", "--multi-user", "false", "e"]);
    assert_eq!(again.code, 1);
    assert_eq!(
        again.stdout,
        format!(
            "{}\nconfig dir <e> already exists\n",
            d.path().join("e").display()
        )
    );

    let src = tempdir();
    let list = src.path().join("list.yaml");
    fs::write(&list, "- a\n- b\n").unwrap();
    let r = ours(
        d.path(),
        &[
            "configure",
            "--multi-user",
            "false",
            "--core-config",
            list.to_str().unwrap(),
            "bad",
        ],
    );
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "Error: Source config file ({}) must be a valid YAML mapping (got a sequence)\n",
            list.display()
        )
    );
    assert!(!d.path().join("bad").exists());
}
