//! `start [--endpoint-uuid UUID] [NAME_OR_UUID]` (ENDPOINT.md §1.4.3, §4.2, §4.8): run the
//! unprivileged core endpoint (MEP) in the foreground — load `config.yaml`, check the PID
//! file, register, write `daemon.pid`, print the banner and run gc-mep's event loop until a
//! signal (or the PID file's removal) stops it.
//!
//! Not offered yet: `--detach` and privileged (multi-user) operation.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse};
use crate::compute_dir;
use crate::console;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint start",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/start.txt");

/// `EX_CANTCREAT`: another instance holds a fresh PID file.
const EX_CANTCREAT: u8 = 73;
/// How often a running process touches its PID file (§4.8).
const PID_TOUCH: Duration = Duration::from_secs(15);

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
    #[arg(long)]
    endpoint_uuid: Option<String>,
    #[command(flatten)]
    common: CommonOptions,
}

/// One extra positional argument is a usage error, as in Click.
pub fn single_name(names: &[String], usage: Usage) -> Result<String, CliError> {
    if names.len() > 1 {
        let extras = &names[1..];
        let word = if extras.len() == 1 {
            "argument"
        } else {
            "arguments"
        };
        return Err(CliError::Usage {
            usage,
            message: format!("Got unexpected extra {word} ({})", extras.join(" ")),
        });
    }
    Ok(names.first().cloned().unwrap_or_else(|| "default".into()))
}

/// The endpoint directory for `NAME_OR_UUID`, which must exist locally.
pub fn endpoint_dir(value: &str) -> Result<PathBuf, CliError> {
    let resolved = compute_dir::resolve_endpoint(value, true).map_err(CliError::Click)?;
    match resolved.dir {
        Some(d) => Ok(d),
        None => Err(CliError::Click(format!(
            "Endpoint '{value}' is not configured!\n1. Please create a configuration template with:\n\tglobus-compute-endpoint configure {value}"
        ))),
    }
}

/// Age of `path`'s mtime in seconds (absolute difference to now), if it exists.
pub fn pidfile_age(path: &Path) -> Option<f64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(match SystemTime::now().duration_since(modified) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => e.duration().as_secs_f64(),
    })
}

/// Why a PID file could not be taken.
#[derive(Debug)]
pub enum PidFileError {
    /// A fresh PID file exists (another instance runs).
    Live,
    /// The file could not be created or written.
    Io(std::io::Error),
}

/// `daemon.pid` held by this process: created exclusively (mode 0600, `<pid>\n`), touched
/// every 15 s by [`PidFile::keep_alive`], removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Take the PID file in `dir`; an existing one younger than `stale_after` seconds means
    /// another instance runs, an older one is removed with a warning.
    pub fn take(dir: &Path, stale_after: f64) -> Result<PidFile, PidFileError> {
        let path = dir.join("daemon.pid");
        if let Some(age) = pidfile_age(&path) {
            if age < stale_after {
                return Err(PidFileError::Live);
            }
            console::warning(
                "Previous endpoint instance failed to shutdown cleanly.  Removing PID file.",
            );
            std::fs::remove_file(&path).map_err(PidFileError::Io)?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(PidFileError::Io)?;
        f.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(PidFileError::Io)?;
        Ok(PidFile { path })
    }

    /// Touches the file every 15 s; completes when the file has disappeared (another process
    /// removed it, which asks this one to stop).
    pub async fn keep_alive(path: PathBuf) {
        loop {
            tokio::time::sleep(PID_TOUCH).await;
            match OpenOptions::new().write(true).open(&path) {
                Ok(f) => {
                    if let Err(e) = f.set_modified(SystemTime::now()) {
                        tracing::warn!("Unable to touch PID file {}: {e}", path.display());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!("PID file removed by another process; initiating shutdown");
                    return;
                }
                Err(e) => tracing::warn!("Unable to touch PID file {}: {e}", path.display()),
            }
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Log to `log_path` (appending), and to stderr as well with `--log-to-console`.
pub fn init_logging(log_path: &Path, to_console: bool, debug: bool) {
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let level = if debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path);
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false);
    // A second initialisation (restart) keeps the first subscriber.
    let _ = match (file, to_console) {
        (Ok(f), true) => builder
            .with_writer(
                std::sync::Mutex::new(f)
                    .and(std::io::stderr)
                    .with_max_level(level),
            )
            .try_init(),
        (Ok(f), false) => builder
            .with_writer(std::sync::Mutex::new(f).with_max_level(level))
            .try_init(),
        (Err(_), _) => builder
            .with_writer(std::io::stderr.with_max_level(level))
            .try_init(),
    };
}

/// `metadata.python_version`: the version of the `python3` the workers will use.
fn python_version() -> String {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.trim().strip_prefix("Python ").map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The console banner stream: stdout if it is a terminal, else stderr if it is, else none.
fn banner_stream() -> Option<Box<dyn Write>> {
    if std::io::stdout().is_terminal() {
        Some(Box::new(std::io::stdout()))
    } else if std::io::stderr().is_terminal() {
        Some(Box::new(std::io::stderr()))
    } else {
        None
    }
}

/// Run `start`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let name = single_name(&args.names, USAGE)?;
    start_endpoint(
        &name,
        args.endpoint_uuid.as_deref(),
        args.common.log_to_console,
        args.common.debug,
    )
}

/// The start sequence of §4.2 for an unprivileged MEP; also `restart`'s second half.
pub fn start_endpoint(
    value: &str,
    endpoint_uuid: Option<&str>,
    log_to_console: bool,
    debug: bool,
) -> CmdResult {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let dir = endpoint_dir(value)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| value.to_string());
    init_logging(&dir.join("endpoint.log"), log_to_console, debug);

    let config = gc_config::CoreEndpointConfig::from_file(
        &dir.join("config.yaml"),
        gc_config::LoadOptions::default(),
    )
    .map_err(|e| CliError::Click(e.to_string()))?;
    if nix::unistd::geteuid().is_root() && config.identity_mapping_config_path.is_none() {
        return Err(CliError::Click(
            "A root endpoint needs identity mapping (identity_mapping_config_path); see \
             docs/multi-user.md."
                .into(),
        ));
    }

    let stale_after = 3.0 * config.base.heartbeat_period.as_f64();
    if let Some(age) = pidfile_age(&dir.join("daemon.pid"))
        && age < stale_after
    {
        tracing::info!(
            "Endpoint {name} has a PID file {age:.0}s old (younger than {stale_after}s)"
        );
        console::error(
            "Another instance of this endpoint is running.  (Perhaps on another login node?)  Refusing to start.  If this is not correct, then remove the PID file before starting again.",
        );
        return Err(CliError::Exit(EX_CANTCREAT));
    }

    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Click(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_mep(dir, name, config, endpoint_uuid, stale_after))
}

async fn run_mep(
    dir: PathBuf,
    name: String,
    config: gc_config::CoreEndpointConfig,
    endpoint_uuid: Option<&str>,
    stale_after: f64,
) -> CmdResult {
    let fail = |code: i32, msg: String| {
        tracing::error!("{msg}");
        console::critical(&msg);
        CliError::Exit(u8::try_from(code).unwrap_or(1))
    };
    let urls =
        gc_mep::ServiceUrls::for_config(&config).map_err(|e| fail(e.exit_code(), e.to_string()))?;
    let credentials =
        gc_mep::ClientCredentials::from_env().map_err(|e| fail(e.exit_code(), e.to_string()))?;
    let python = python_version();
    let registration = gc_mep::register(&gc_mep::RegisterInputs {
        endpoint_dir: &dir,
        name: &name,
        config: &config,
        endpoint_uuid,
        urls: &urls,
        credentials: &credentials,
        python_version: &python,
    })
    .await
    .map_err(|e| {
        if matches!(
            e,
            gc_mep::RegisterError::Blocked { .. } | gc_mep::RegisterError::Invalid { .. }
        ) {
            println!("{e}");
        }
        fail(e.exit_code(), e.to_string())
    })?;

    let pid_file = match PidFile::take(&dir, stale_after) {
        Ok(p) => p,
        Err(PidFileError::Live) => {
            console::error(
                "Another instance of this endpoint is running.  (Perhaps on another login node?)  Refusing to start.  If this is not correct, then remove the PID file before starting again.",
            );
            return Err(CliError::Exit(EX_CANTCREAT));
        }
        Err(PidFileError::Io(e)) => {
            return Err(fail(1, format!("cannot create the PID file: {e}")));
        }
    };

    let endpoint_id = registration.endpoint_id.clone();
    let mut options = gc_mep::MepOptions::new(name.as_str(), dir.clone(), config)
        .map_err(|e| fail(e.exit_code(), e.to_string()))?;
    options.compute_dir = compute_dir::compute_dir();

    let mut banner = banner_stream();
    if let Some(out) = banner.as_mut() {
        let _ = writeln!(
            out,
            "\x1b[?25l        >>> Endpoint ID: \x1b[104m{endpoint_id}\x1b[m <<<"
        );
        let _ = out.flush();
    }
    let keep_alive = PidFile::keep_alive(pid_file.path().to_path_buf());
    let shutdown = async move {
        tokio::select! {
            () = gc_mep::shutdown_signal() => {}
            () = keep_alive => {}
        }
    };
    let outcome = gc_mep::run(options, registration, shutdown).await;
    if let Some(out) = banner.as_mut() {
        let _ = write!(out, "\x1b[?25h");
        let _ = out.flush();
    }
    drop(pid_file);
    match outcome {
        Ok(cause) => {
            tracing::info!(
                "Shutdown complete ({cause:?}).\n---------- Core Endpoint ends: {endpoint_id}\n\n"
            );
            Ok(())
        }
        Err(e) => Err(fail(e.exit_code(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_is_exclusive_private_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.pid");
        let held = PidFile::take(dir.path(), 90.0).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(
            PidFile::take(dir.path(), 90.0),
            Err(PidFileError::Live)
        ));
        drop(held);
        assert!(!path.exists());
    }

    #[test]
    fn stale_pid_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.pid");
        std::fs::write(&path, "1\n").unwrap();
        let old = SystemTime::now() - Duration::from_secs(100);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let held = PidFile::take(dir.path(), 90.0).unwrap();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn one_name_at_most() {
        assert_eq!(single_name(&[], USAGE).unwrap(), "default");
        assert_eq!(single_name(&["a".into()], USAGE).unwrap(), "a");
        assert!(matches!(
            single_name(&["a".into(), "b".into()], USAGE),
            Err(CliError::Usage { .. })
        ));
    }
}
