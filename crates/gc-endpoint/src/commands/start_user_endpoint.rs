//! Hidden `_start-user-endpoint [NAME_OR_UUID]` (ENDPOINT.md §1.4.4, §5): the user endpoint
//! (UEP) process a core endpoint execs. Reads the stdin document (PROTOCOL-ENDPOINT §5.4),
//! holds `daemon.pid` in the UEP directory (§4.8) and runs gc-uep until the UEP stops.
//!
//! The UEP directory is `$GLOBUS_COMPUTE_ENDPOINT_DIR` (set by the MEP), else
//! `<compute dir>/<NAME>`; the log goes to `$GLOBUS_COMPUTE_LOG_PATH`, else
//! `<dir>/endpoint.log`. Workers run the first `python3` on `PATH` (which must have the
//! Globus Compute SDK installed, as for an upstream endpoint).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use gc_engine::WorkerCommand;
use gc_mep::pidfile::{self, PidFile};

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse, single_name};
use crate::compute_dir;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint _start-user-endpoint",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/_start-user-endpoint.txt");

/// Default `heartbeat_period` of a user endpoint, for the PID file's staleness window.
const DEFAULT_HEARTBEAT: f64 = 30.0;

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// The stdin document's `heartbeat_period`, if it can be read at all (the full validation is
/// gc-uep's).
fn heartbeat_period(stdin: &[u8]) -> f64 {
    gc_wire::uep_stdin::UepStdin::from_slice(stdin)
        .ok()
        .and_then(|doc| gc_config::UserEndpointConfig::from_yaml(&doc.config, "<stdin>").ok())
        .map(|c| c.base.heartbeat_period.as_f64())
        .filter(|p| p.is_finite() && *p > 0.0)
        .unwrap_or(DEFAULT_HEARTBEAT)
}

/// Run `_start-user-endpoint`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let name = single_name(&args.names, USAGE)?;
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(CliError::Click(
            "User endpoints must have a parent Core endpoint".into(),
        ));
    }
    let mut document = Vec::new();
    stdin
        .read_to_end(&mut document)
        .map_err(|e| CliError::Click(format!("cannot read stdin: {e}")))?;

    let env_path = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = env_path("GLOBUS_COMPUTE_ENDPOINT_DIR")
        .unwrap_or_else(|| compute_dir::compute_dir().join(&name));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::Click(format!("cannot create {}: {e}", dir.display())))?;
    let log = env_path("GLOBUS_COMPUTE_LOG_PATH").unwrap_or_else(|| dir.join("endpoint.log"));
    crate::logging::init(
        &log,
        args.common.log_to_console,
        args.common.debug,
        args.common.no_color,
    );

    let stale_after = Duration::from_secs_f64(3.0 * heartbeat_period(&document));
    let pid_file = PidFile::acquire(&dir, stale_after).map_err(|e| {
        tracing::error!("{e}");
        CliError::status(e.exit_code())
    })?;
    // Keep the PID file fresh while the UEP runs (the thread ends with the process).
    let touched = pid_file.path().to_path_buf();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(pidfile::TOUCH_PERIOD);
            if !pidfile::touch_path(&touched) {
                return;
            }
        }
    });

    let status = gc_uep::run_from_stdin(&document, dir, WorkerCommand::embedded("python3"));
    drop(pid_file);
    match status {
        0 => Ok(()),
        s => Err(CliError::Exit(u8::try_from(s).unwrap_or(1))),
    }
}
