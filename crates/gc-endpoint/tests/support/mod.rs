//! Shared helpers: run our binary (and, for cross-checks, upstream's 4.19.0 CLI from the
//! project venv) against a fresh Compute directory.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What a run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Path of the upstream CLI in the project venv.
pub fn upstream_exe() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/globus-compute-endpoint")
}

fn run_exe(
    exe: &Path,
    compute_dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("GLOBUS_COMPUTE_USER_DIR", compute_dir)
        .env_remove("GLOBUS_COMPUTE_ENDPOINT_DIR")
        .env_remove("GLOBUS_COMPUTE_CLIENT_ID")
        .env_remove("GLOBUS_COMPUTE_CLIENT_SECRET")
        .env_remove("GLOBUS_SDK_ENVIRONMENT")
        .env("COLUMNS", "80")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run our `globus-compute-endpoint`.
pub fn ours(compute_dir: &Path, args: &[&str]) -> Run {
    run_exe(
        Path::new(env!("CARGO_BIN_EXE_globus-compute-endpoint")),
        compute_dir,
        args,
        "",
        &[],
    )
}

/// Run ours with stdin text and extra environment.
pub fn ours_with(compute_dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    run_exe(
        Path::new(env!("CARGO_BIN_EXE_globus-compute-endpoint")),
        compute_dir,
        args,
        stdin,
        env,
    )
}

/// Run upstream's CLI (requires the project venv, set up by `scripts/setup.sh`).
pub fn upstream(compute_dir: &Path, args: &[&str]) -> Run {
    let exe = upstream_exe();
    assert!(
        exe.exists(),
        "upstream CLI not found at {} (run scripts/setup.sh)",
        exe.display()
    );
    run_exe(&exe, compute_dir, args, "", &[])
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// File mode bits.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}
