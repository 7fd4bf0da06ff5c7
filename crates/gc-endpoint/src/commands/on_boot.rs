//! `enable-on-boot [NAME_OR_UUID]` / `disable-on-boot [NAME_OR_UUID]` (ENDPOINT.md §1.4.10):
//! write (or explain how to remove) a systemd unit that starts the endpoint at boot.
//!
//! The unit directory is `/etc/systemd/system`; `GCRS_SYSTEMD_UNIT_DIR` names another one
//! (for packaging into a staging root, and for tests).

use std::io::Write;
use std::path::{Path, PathBuf};

use gc_mep::pidfile::{self, PidState};

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{HelpOnly, parse, single_name};
use crate::commands::start::endpoint_dir;
use crate::service::{self, Session};

const ENABLE_USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint enable-on-boot",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: Some("--help"),
};
const DISABLE_USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint disable-on-boot",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: Some("--help"),
};

const ENABLE_HELP: &str = include_str!("../help/enable-on-boot.txt");
const DISABLE_HELP: &str = include_str!("../help/disable-on-boot.txt");

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        #[command(flatten)]
        help: HelpOnly,
    }
}

/// Where systemd units live.
fn unit_dir() -> PathBuf {
    std::env::var_os("GCRS_SYSTEMD_UNIT_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/etc/systemd/system"), PathBuf::from)
}

fn service_name(ep_name: &str) -> String {
    format!("globus-compute-endpoint-{ep_name}")
}

/// Refuse unless systemd's unit directory exists.
fn require_systemd(dir: &Path) -> CmdResult {
    if dir.exists() {
        Ok(())
    } else {
        Err(CliError::Click(
            "Systemd not found. On-boot persistence is currently only implemented for systemd; check this machine's init system documentation for alternatives.".into(),
        ))
    }
}

/// Python's `getpass.getuser()`: `LOGNAME`, `USER`, `LNAME`, `USERNAME`, else the passwd
/// entry of the real uid.
fn login_name() -> String {
    for var in ["LOGNAME", "USER", "LNAME", "USERNAME"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return v;
        }
    }
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::getuid().to_string(), |u| u.name)
}

/// Python's `shutil.which(name)` (the first executable file on `PATH`), shown as `None`
/// when there is none.
fn which(name: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| {
                    std::fs::metadata(p)
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
        })
        .map_or_else(|| "None".to_string(), |p| p.display().to_string())
}

/// The unit file text (ENDPOINT.md §1.4.10).
pub fn unit_text(ep_name: &str, gce_exe: &str, user: &str) -> String {
    format!(
        "[Unit]\nDescription=Globus Compute Endpoint \"{ep_name}\"\nAfter=network.target\nStartLimitIntervalSec=0\n\n[Service]\nExecStart={gce_exe} start {ep_name}\nUser={user}\nType=simple\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

fn ep_name_of(dir: &Path, value: &str) -> String {
    dir.file_name()
        .map_or_else(|| value.to_string(), |n| n.to_string_lossy().into_owned())
}

/// Run `enable-on-boot`.
pub fn run_enable(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, ENABLE_USAGE)?;
    if args.help.apply(ENABLE_HELP) {
        return Ok(());
    }
    let value = single_name(&args.names, ENABLE_USAGE)?;
    let dir = endpoint_dir(&value)?;
    let units = unit_dir();
    require_systemd(&units)?;
    let ep_name = ep_name_of(&dir, &value);
    if pidfile::state(&dir) == PidState::Fresh {
        return Err(CliError::Click(format!(
            "Cannot enable on-boot persistence for an endpoint that is currently running. Stop endpoint {ep_name} and try again."
        )));
    }
    // Make sure credentials work now rather than when systemd starts the endpoint.
    let env = service::environment_name(false, None);
    Session::from_env(&env)
        .and_then(|s| s.compute())
        .map_err(service::ServiceError::into_cli)?;

    let service = service_name(&ep_name);
    let path = units.join(format!("{service}.service"));
    let text = unit_text(&ep_name, &which("globus-compute-endpoint"), &login_name());
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match created {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::Click(format!(
                "Cannot create systemd unit file - a file with the name {} already exists",
                path.display()
            )));
        }
        Err(e) => {
            return Err(CliError::Click(format!(
                "{}\n\nUnable to create systemd unit file.  (Do you need to be root?)\n\n----- Systemd unit file content -----\n{text}",
                crate::pyfmt::os_error(&e, &path)
            )));
        }
    }
    println!(
        "Systemd service installed at {}. Run\n\tsudo systemctl enable {service} --now\nto enable the service and start the endpoint.",
        path.display()
    );
    Ok(())
}

/// Run `disable-on-boot`.
pub fn run_disable(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, DISABLE_USAGE)?;
    if args.help.apply(DISABLE_HELP) {
        return Ok(());
    }
    let value = single_name(&args.names, DISABLE_USAGE)?;
    let dir = endpoint_dir(&value)?;
    let units = unit_dir();
    require_systemd(&units)?;
    let ep_name = ep_name_of(&dir, &value);
    let service = service_name(&ep_name);
    let path = units.join(format!("{service}.service"));
    if !path.exists() {
        return Err(CliError::Click(format!(
            "There does not appear to be an existing systemd unit for endpoint {ep_name} (unit file {} not found)",
            path.display()
        )));
    }
    println!(
        "Run the following to disable on-boot-persistence:\n\tsystemctl stop {service}\n\tsystemctl disable {service}\n\trm {}",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_text_is_upstreams() {
        assert_eq!(
            unit_text("ep1", "/usr/bin/globus-compute-endpoint", "alice"),
            "[Unit]\nDescription=Globus Compute Endpoint \"ep1\"\nAfter=network.target\nStartLimitIntervalSec=0\n\n[Service]\nExecStart=/usr/bin/globus-compute-endpoint start ep1\nUser=alice\nType=simple\nRestart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n"
        );
    }
}
