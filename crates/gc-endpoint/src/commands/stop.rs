//! `stop [NAME_OR_UUID]` (ENDPOINT.md §1.4.5, local part): signal the process named in
//! `daemon.pid` and wait for it to exit. `--remote` is not offered by this build.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse};
use crate::commands::start::{endpoint_dir, pidfile_age, single_name};
use crate::console;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint stop",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/stop.txt");

/// `sys.exit(-1)`.
const EXIT_MINUS_ONE: u8 = 255;
/// A PID file older than this is left over from a dead process (§4.8).
const PID_FRESH_SECS: f64 = 30.0;
/// How long the endpoint gets to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Parser)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
struct Args {
    #[arg(value_name = "NAME_OR_UUID")]
    names: Vec<String>,
    #[command(flatten)]
    common: CommonOptions,
}

/// Run `stop`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let value = single_name(&args.names, USAGE)?;
    stop_endpoint(&value)
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok() && !is_zombie(pid)
}

/// A zombie has exited; only its parent's wait is missing.
fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}

/// The local stop of §1.4.5 (steps 3, 4, 6–8); also `restart`'s first half.
pub fn stop_endpoint(value: &str) -> CmdResult {
    let dir = endpoint_dir(value)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| value.to_string());
    stop_dir(&dir, &name)
}

/// Stop the endpoint whose directory is `dir`.
fn stop_dir(dir: &Path, name: &str) -> CmdResult {
    let pid_path = dir.join("daemon.pid");
    let Some(age) = pidfile_age(&pid_path) else {
        console::info("Endpoint not active.");
        return Ok(());
    };
    let pid = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
        .map(Pid::from_raw);
    let pid = match pid {
        Some(p) if age < PID_FRESH_SECS && alive(p) => p,
        _ => {
            remove(&pid_path);
            console::info(&format!("Endpoint {name} has been cleaned up."));
            return Ok(());
        }
    };
    if let Err(e) = kill(pid, Signal::SIGTERM) {
        console::warning(&format!("Endpoint {name} could not be terminated: {e}"));
        console::warning(&format!("Attempting Endpoint {name} cleanup"));
        remove(&pid_path);
        return Err(CliError::Exit(EXIT_MINUS_ONE));
    }
    let deadline = Instant::now() + STOP_WAIT;
    while alive(pid) {
        if Instant::now() >= deadline {
            console::warning(&format!(
                "Encountered timeout attempting to stop endpoint {name}, Please try deleting the endpoint again with the --force flag"
            ));
            return Err(CliError::Exit(EXIT_MINUS_ONE));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_path.exists() {
        console::warning(&format!("Endpoint {name} did not gracefully shutdown"));
        remove(&pid_path);
    } else {
        console::info(&format!("Endpoint {name} is now stopped"));
    }
    Ok(())
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        console::warning(&format!("cannot remove {}: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_the_pid_file_process_and_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pid_path = dir.path().join("daemon.pid");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(&pid_path, format!("{}\n", child.id())).unwrap();
        stop_dir(dir.path(), "ep").unwrap();
        // The process ended by SIGTERM (it has no handler); the file is gone.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(15));
        assert!(!pid_path.exists());
    }

    #[test]
    fn stale_or_dead_pid_file_is_only_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_path = dir.path().join("daemon.pid");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        std::fs::write(&pid_path, format!("{}\n", child.id())).unwrap();
        stop_dir(dir.path(), "ep").unwrap();
        assert!(!pid_path.exists());
        // No PID file at all: nothing to do.
        stop_dir(dir.path(), "ep").unwrap();
    }
}
