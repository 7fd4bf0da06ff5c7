//! `stop [--remote] [NAME_OR_UUID]` (ENDPOINT.md §1.4.5): with `--remote`, ask the service to
//! lock the endpoint (PROTOCOL-ENDPOINT §2.8), which drops every connection of every process
//! registered with that id; then signal the local process named in `daemon.pid` and wait for
//! it (and the processes it started) to exit.

use std::path::Path;
use std::time::{Duration, Instant};

use gc_config::{EndpointConfig, LoadOptions};
use gc_mep::pidfile::{self, PidState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse, single_name};
use crate::commands::start::endpoint_dir;
use crate::compute_dir;
use crate::console;
use crate::service::{self, ComputeClient};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint stop",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/stop.txt");

/// `sys.exit(-1)`.
const EXIT_MINUS_ONE: u8 = 255;
/// `EX_CONFIG`: `endpoint_teardown` failed.
const EX_CONFIG: u8 = 78;
/// How long the endpoint, and then the processes it started, get to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// How long survivors of the second SIGTERM get before SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(1);

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        /// send stop signal to all endpoints with this UUID, local or elsewhere
        #[arg(long)]
        remote: bool,
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// Run `stop`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let value = single_name(&args.names, USAGE)?;
    stop_endpoint(&value, args.remote)
}

fn alive(pid: Pid) -> bool {
    kill(pid, None).is_ok() && !is_zombie(pid)
}

/// A zombie has exited; only its parent's wait is missing.
fn is_zombie(pid: Pid) -> bool {
    stat_fields(pid).is_some_and(|(state, _)| state == "Z")
}

/// `(state, ppid)` from `/proc/<pid>/stat`.
fn stat_fields(pid: Pid) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Every descendant of `root` (children, their children, …), from `/proc`.
fn descendants(root: Pid) -> Vec<Pid> {
    let parents: Vec<(Pid, i32)> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(|p| {
                    let pid = Pid::from_raw(p);
                    stat_fields(pid).map(|(_, ppid)| (pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid) in &parents {
            if *ppid == parent.as_raw() && !found.contains(pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Wait until none of `pids` is alive or `limit` has passed; returns the survivors.
fn wait_all(pids: &[Pid], limit: Duration) -> Vec<Pid> {
    let deadline = Instant::now() + limit;
    loop {
        let alive: Vec<Pid> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `stop [--remote] NAME_OR_UUID`; the local part is also `restart`'s first half.
pub fn stop_endpoint(value: &str, remote: bool) -> CmdResult {
    let dir = endpoint_dir(value)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| value.to_string());
    let config_path = dir.join("config.yaml");
    let text = std::fs::read_to_string(&config_path).map_err(|e| {
        CliError::Click(format!(
            "{}: {}",
            compute_dir::py_os_error_name(&e),
            crate::pyfmt::os_error(&e, &config_path)
        ))
    })?;
    let config = gc_config::load_config(
        &text,
        &config_path.to_string_lossy(),
        LoadOptions::default(),
    )
    .map_err(|e| CliError::Click(e.to_string()))?;
    if remote {
        lock_remote(&dir, &name, &config)?;
    }
    let teardown = match &config {
        EndpointConfig::User(c) => c.endpoint_teardown.as_deref(),
        EndpointConfig::Core(_) => None,
    };
    stop_dir(&dir, &name, teardown)
}

/// `stop --remote`: `POST /v3/endpoints/{id}/lock` for the id in `endpoint.json`.
fn lock_remote(dir: &Path, name: &str, config: &EndpointConfig) -> CmdResult {
    let id = match compute_dir::read_endpoint_id(dir) {
        Ok(Some(Value::String(s))) if !s.is_empty() => s,
        _ => {
            return Err(CliError::Click(format!(
                "Endpoint <{name}> could not be located"
            )));
        }
    };
    let base = match config {
        EndpointConfig::Core(c) => &c.base,
        EndpointConfig::User(c) => &c.base,
    };
    let env = service::environment_name(base.local_compute_services, base.environment.as_deref());
    let client = ComputeClient::login(&env).map_err(service::ServiceError::into_cli)?;
    let answer = client
        .lock_endpoint(&id)
        .map_err(service::ServiceError::into_cli)?;
    console::debug(&format!("Lock response: {answer}"));
    Ok(())
}

/// `endpoint_teardown` of a user endpoint configuration, through the shell.
fn run_teardown(command: &str) -> CmdResult {
    console::info(&format!("running endpoint_teardown command: {command}"));
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .output()
        .map_err(|e| CliError::Click(format!("cannot run endpoint_teardown: {e}")))?;
    console::info(&format!(
        "endpoint_teardown stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    ));
    console::info(&format!(
        "endpoint_teardown stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    ));
    if !out.status.success() {
        let code = out.status.code().unwrap_or(-1);
        console::error(&format!("endpoint_teardown failed with exit code {code}"));
        return Err(CliError::Exit(EX_CONFIG));
    }
    Ok(())
}

/// Stop the endpoint whose directory is `dir` (steps 3–8 of §1.4.5).
pub fn stop_dir(dir: &Path, name: &str, teardown: Option<&str>) -> CmdResult {
    let pid_path = dir.join(pidfile::PID_FILE);
    let pid = match (
        pidfile::state(dir),
        pidfile::read_pid(dir).map(Pid::from_raw),
    ) {
        (PidState::Absent, _) => {
            console::info("Endpoint not active.");
            return Ok(());
        }
        (PidState::Fresh, Some(p)) if alive(p) => p,
        // Stale, unreadable, or naming a process that is gone (upstream crashes on the
        // last; cleaning up is what the user wants).
        _ => {
            remove(&pid_path);
            console::info(&format!("Endpoint <{name}> has been cleaned up."));
            return Ok(());
        }
    };
    console::debug(&format!("{name} has a PID file ({})", pid_path.display()));
    if let Some(cmd) = teardown.filter(|c| !c.is_empty()) {
        run_teardown(cmd)?;
    }
    console::debug(&format!("Signaling process: {pid}"));
    let mut processes = descendants(pid);
    processes.push(pid);
    if kill(pid, Signal::SIGTERM).is_err() {
        console::warning(&format!("Endpoint <{name}> could not be terminated"));
        console::warning(&format!("Attempting Endpoint <{name}> cleanup"));
        remove(&pid_path);
        return Err(CliError::Exit(EXIT_MINUS_ONE));
    }
    if !wait_all(&[pid], STOP_WAIT).is_empty() {
        console::warning(&format!(
            "Encountered timeout attempting to stop endpoint {name}, Please try deleting the endpoint again with the --force flag"
        ));
        return Err(CliError::Exit(EXIT_MINUS_ONE));
    }
    let survivors = wait_all(&processes, STOP_WAIT);
    for p in &survivors {
        let _ = kill(*p, Signal::SIGTERM);
    }
    for p in wait_all(&survivors, KILL_WAIT) {
        let _ = kill(p, Signal::SIGKILL);
    }
    if pid_path.exists() {
        console::warning(&format!("Endpoint <{name}> did not gracefully shutdown"));
        remove(&pid_path);
    } else {
        console::info(&format!("Endpoint <{name}> is now stopped"));
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
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn signals_the_pid_file_process_and_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pid_path = dir.path().join("daemon.pid");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(&pid_path, format!("{}\n", child.id())).unwrap();
        stop_dir(dir.path(), "ep", None).unwrap();
        // The process ended by SIGTERM (it has no handler); the file is gone.
        assert_eq!(child.wait().unwrap().signal(), Some(15));
        assert!(!pid_path.exists());
    }

    #[test]
    fn children_outliving_their_parent_are_terminated() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("grandchild.pid");
        // A shell that starts a SIGTERM-ignoring grandchild and waits for it; the grandchild
        // records its PID. SIGTERM ends the shell (its `wait` is interrupted); the grandchild
        // survives it and must be killed after the grace period.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {m}; exec sleep 60' & wait",
            m = marker.display()
        );
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !marker.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let grandchild: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::write(dir.path().join("daemon.pid"), format!("{}\n", child.id())).unwrap();
        let started = Instant::now();
        stop_dir(dir.path(), "ep", None).unwrap();
        child.wait().unwrap();
        assert!(started.elapsed() >= STOP_WAIT);
        // SIGKILL has been sent; its delivery takes a moment.
        assert!(wait_all(&[Pid::from_raw(grandchild)], Duration::from_secs(2)).is_empty());
    }

    #[test]
    fn stale_or_dead_pid_file_is_only_removed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_path = dir.path().join("daemon.pid");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        std::fs::write(&pid_path, format!("{}\n", child.id())).unwrap();
        stop_dir(dir.path(), "ep", None).unwrap();
        assert!(!pid_path.exists());
        // No PID file at all: nothing to do.
        stop_dir(dir.path(), "ep", None).unwrap();
    }

    #[test]
    fn failing_teardown_exits_78_and_leaves_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(dir.path().join("daemon.pid"), format!("{}\n", child.id())).unwrap();
        assert!(matches!(
            stop_dir(dir.path(), "ep", Some("exit 3")),
            Err(CliError::Exit(EX_CONFIG))
        ));
        assert!(alive(Pid::from_raw(i32::try_from(child.id()).unwrap())));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
