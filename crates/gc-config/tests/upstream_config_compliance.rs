//! The same configuration texts loaded by upstream 4.19.0 (`load_config_yaml`, run in the
//! project's Python venv) and by this crate: both must accept or both reject, and accepted
//! texts must be the same kind (core or user endpoint configuration).
//!
//! The venv is `$GCRS_VENV`, else `<workspace root>/.venv` (made by `scripts/setup.sh`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use gc_config::{EndpointConfig, LoadOptions, load_config};

/// (text, deliberate deviation): a deviation is a text upstream rejects and we accept on
/// purpose (documented in the crate).
const CASES: &[(&str, bool)] = &[
    ("", false),
    ("display_name: null\n", false),
    ("display_name: None\npublic: yes\n", false),
    ("public: maybe\n", false),
    ("amqp_port: '5671'\nheartbeat_period: 2\n", false),
    ("foo: 1\n", false),
    ("idle_heartbeats_soft: 1\n", false),
    ("pam: {enable: true, foo: 2}\n", false),
    ("pam: {}\n", false),
    ("allowed_functions: [nope]\n", false),
    (
        "allowed_functions: ['{6D0BA55F-DE15-4AF2-827D-05C50C338AA7}']\nadmins: []\n",
        false,
    ),
    (
        "authentication_policy: 2340174a1a0e46d8a9587c3ddf2c834a\n",
        false,
    ),
    ("engine: null\n", false),
    ("- a\n- b\n", false),
    ("a: [1,\n", false),
    ("display_name: [1]\n", false),
    ("email: 5\n", false),
    ("mu_child_ep_grace_period_s: abc\n", false),
    (
        "mu_child_ep_grace_period_s: '12.5'\nlocal_compute_services: on\n",
        false,
    ),
    ("multi_user: true\n", true),
    ("engine: {type: ThreadPoolEngine}\n", false),
    ("engine: {type: ThreadPoolEngine, working_dir: x}\n", false),
    (
        "engine: {type: ThreadPoolEngine, max_retries_on_system_failure: 1}\n",
        false,
    ),
    (
        "engine: {type: ThreadPoolEngine, max_workers: 2, label: x}\n",
        false,
    ),
    (
        "engine: {type: ProcessPoolEngine, max_tasks_per_child: 100}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, max_workers_per_node: 2, encrypted: false}\n",
        false,
    ),
    ("engine: {type: GlobusComputeEngine, bogus: 1}\n", false),
    (
        "engine: {type: GlobusComputeEngine, worker_debug: null, max_retries_on_system_failure: 2}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, container_type: lxc}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, container_type: docker, container_uri: img, container_cmd_options: -v /tmp:/tmp}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, enable_mpi_mode: true}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, job_status_kwargs: {max_idletime: 60.0, strategy_period: 120.0}}\n",
        false,
    ),
    (
        "engine: {type: GlobusMPIEngine, mpi_launcher: srun, max_workers_per_block: 2}\n",
        false,
    ),
    (
        "engine: {type: GlobusMPIEngine, mpi_launcher: srun, provider: {type: SlurmProvider, launcher: {type: SimpleLauncher}}}\n",
        false,
    ),
    (
        "engine: {type: GlobusMPIEngine, mpi_launcher: mpirun, provider: {type: LocalProvider, launcher: {type: SimpleLauncher}}}\n",
        false,
    ),
    (
        "engine: {type: GlobusMPIEngine, provider: {type: LocalProvider, launcher: {type: SrunLauncher}}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, provider: {type: SlurmProvider, partition: p, walltime: '01:00:00', exclusive: no}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, provider: {type: LocalProvider, partition: p}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, provider: {type: PBSProProvider, account: a, launcher: {type: MpiExecLauncher, bind_cmd: --cpu-bind}}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, provider: {type: LocalProvider, launcher: {type: SrunLauncher, nope: 1}}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, provider: {type: NopeProvider}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, address: {type: address_by_interface, ifname: lo}}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, address: 127.0.0.1}\n",
        false,
    ),
    ("engine: {max_workers: 1}\n", false),
    ("engine: {type: Nope}\n", false),
    ("engine: {type: ThreadPoolEngine}\npublic: true\n", false),
    (
        "engine: {type: ThreadPoolEngine}\nidle_heartbeats_soft: -1\nheartbeat_threshold: 3\n",
        false,
    ),
    (
        "engine: {type: ThreadPoolEngine}\npaths: {endpoint_dir: ~/x, foo: 1}\n",
        false,
    ),
    (
        "engine: {type: ThreadPoolEngine}\nendpoint_setup: 5\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, allowed_serializers: [globus_compute_sdk.serialize.DillCodeSource]}\n",
        false,
    ),
    (
        "engine: {type: GlobusComputeEngine, allowed_serializers: [globus_compute_sdk.*Code, globus_compute_sdk.*Data]}\n",
        false,
    ),
    (
        "engine: {type: ThreadPoolEngine, allowed_serializers: [globus_compute_sdk.serialize.CombinedCode, globus_compute_sdk.serialize.JSONData]}\n",
        false,
    ),
];

const PROBE: &str = r#"
import json, sys, logging
logging.disable(logging.CRITICAL)
from globus_compute_endpoint.endpoint.config.utils import load_config_yaml
from globus_compute_endpoint.endpoint.config import UserEndpointConfig
for text in json.load(sys.stdin):
    try:
        c = load_config_yaml(text)
        kind = "user" if isinstance(c, UserEndpointConfig) else "core"
        print(json.dumps({"ok": True, "kind": kind}))
    except BaseException as e:
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
"#;

fn python() -> PathBuf {
    let venv = std::env::var_os("GCRS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "Python venv not found at {} — run scripts/setup.sh or set GCRS_VENV",
        venv.display()
    );
    python
}

#[test]
fn acceptance_matches_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(python())
        .arg("-c")
        .arg(PROBE)
        .env("HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the upstream probe");
    let texts: Vec<&str> = CASES.iter().map(|c| c.0).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let verdicts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        verdicts.len(),
        CASES.len(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut mismatches = Vec::new();
    for ((text, deviation), theirs) in CASES.iter().zip(&verdicts) {
        let ours = load_config(text, "<case>", LoadOptions::default());
        let our_kind = match &ours {
            Ok(EndpointConfig::Core(_)) => Some("core"),
            Ok(EndpointConfig::User(_)) => Some("user"),
            Err(_) => None,
        };
        let their_kind = theirs["ok"]
            .as_bool()
            .unwrap()
            .then(|| theirs["kind"].as_str().unwrap());
        let agree = if *deviation {
            their_kind.is_none() && our_kind.is_some()
        } else {
            our_kind == their_kind
        };
        if !agree {
            mismatches.push(format!(
                "{text:?}\n upstream: {theirs}\n ours:     {}",
                match &ours {
                    Ok(_) => format!("accepted as {}", our_kind.unwrap_or("?")),
                    Err(e) => format!("rejected: {e}"),
                }
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
