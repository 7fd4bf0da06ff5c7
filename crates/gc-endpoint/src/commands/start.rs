//! `start [--endpoint-uuid UUID] [NAME_OR_UUID]` (ENDPOINT.md §1.4.3, §4.2, §4.8): run the
//! unprivileged core endpoint (MEP) in the foreground — load `config.yaml`, check the PID
//! file, register, write `daemon.pid`, print the banner and run gc-mep's event loop until a
//! signal (or the PID file's removal) stops it.
//!
//! `--detach` re-runs `start` in the background (see [`detach`]).
//!
//! `--takeover` (ours, not in upstream's help, docs/troubleshooting.md): register even when
//! the service says another host holds this endpoint. After registering, `start` checks that
//! the broker named by the registration answers and exits 75 saying why if it does not.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use gc_mep::pidfile::{self, PidFile};

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse, single_name};
use crate::compute_dir;
use crate::console;
use crate::logging;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint start",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/start.txt");

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        #[arg(long)]
        detach: bool,
        #[arg(long)]
        endpoint_uuid: Option<String>,
        #[arg(long)]
        takeover: bool,
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// How long `--detach` waits for the detached endpoint to register and take its PID file.
const DETACH_WAIT: Duration = Duration::from_secs(60);

/// `start --detach`: run `start` again as a child in its own process group with its
/// standard streams on `/dev/null` and the endpoint directory as working directory, and
/// return once it holds the PID file (it has registered). A child that exits before that
/// ends this command with its exit status; its reasons are in `endpoint.log`.
pub fn detach(value: &str, endpoint_uuid: Option<&str>, common: &CommonOptions) -> CmdResult {
    detach_with(value, endpoint_uuid, common, false)
}

/// [`detach`], passing `--takeover` on when `takeover` is set.
pub fn detach_with(
    value: &str,
    endpoint_uuid: Option<&str>,
    common: &CommonOptions,
    takeover: bool,
) -> CmdResult {
    let dir = endpoint_dir(value)?;
    let name = dir
        .file_name()
        .map_or_else(|| value.to_string(), |n| n.to_string_lossy().into_owned());
    println!("> Endpoint {name} starting in detached mode.");
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Click(format!("cannot find this program: {e}")))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("-c")
        .arg(compute_dir::compute_dir())
        .args(["start", value]);
    if let Some(id) = endpoint_uuid {
        cmd.args(["--endpoint-uuid", id]);
    }
    if common.debug {
        cmd.arg("--debug");
    }
    if takeover {
        cmd.arg("--takeover");
    }
    let mut child = {
        use std::os::unix::process::CommandExt;
        cmd.current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| CliError::Click(format!("cannot start the endpoint: {e}")))?
    };
    let child_pid = i32::try_from(child.id()).ok();
    let deadline = std::time::Instant::now() + DETACH_WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            console::error(&format!(
                "Endpoint {name} exited during start-up ({status}); see {}",
                dir.join("endpoint.log").display()
            ));
            return Err(CliError::status(status.code().unwrap_or(1)));
        }
        if pidfile::read_pid(&dir) == child_pid || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// One timer line: `  ----> <ctime>` and a carriage return (C `%c` in the C locale, local
/// time).
fn timer_line(now: chrono::DateTime<chrono::Local>) -> String {
    format!("  ----> {}\r", now.format("%a %b %e %H:%M:%S %Y"))
}

/// The console timer of §1.4.3: every second, while stderr is a terminal, the time on one
/// line that the next overwrites. Never completes.
async fn console_timer() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let err = std::io::stderr();
        if err.is_terminal() {
            let mut err = err.lock();
            let _ = err.write_all(timer_line(chrono::Local::now()).as_bytes());
            let _ = err.flush();
        }
    }
}

/// Run `start`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let name = single_name(&args.names, USAGE)?;
    if args.detach {
        return detach_with(
            &name,
            args.endpoint_uuid.as_deref(),
            &args.common,
            args.takeover,
        );
    }
    start_endpoint_with(
        &name,
        args.endpoint_uuid.as_deref(),
        &args.common,
        args.takeover,
    )
}

/// The start sequence of §4.2 for an unprivileged MEP; also `restart`'s second half.
pub fn start_endpoint(
    value: &str,
    endpoint_uuid: Option<&str>,
    common: &CommonOptions,
) -> CmdResult {
    start_endpoint_with(value, endpoint_uuid, common, false)
}

/// [`start_endpoint`] with `--takeover`.
pub fn start_endpoint_with(
    value: &str,
    endpoint_uuid: Option<&str>,
    common: &CommonOptions,
    takeover: bool,
) -> CmdResult {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let dir = endpoint_dir(value)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| value.to_string());
    let loaded = gc_config::CoreEndpointConfig::from_file(
        &dir.join("config.yaml"),
        gc_config::LoadOptions::default(),
    );
    // `debug: true` in config.yaml has the effect of `--debug` (§1.5).
    let debug = common.debug || loaded.as_ref().is_ok_and(|c| c.base.debug);
    logging::init(
        &dir.join("endpoint.log"),
        common.log_to_console,
        debug,
        common.no_color,
    );
    let config = loaded.map_err(|e| {
        tracing::error!(
            "Failed to find or parse endpoint configuration.  Endpoint will not start. {e}"
        );
        CliError::Click(e.to_string())
    })?;
    if nix::unistd::geteuid().is_root() && config.identity_mapping_config_path.is_none() {
        return Err(CliError::Click(
            "A root endpoint needs identity mapping (identity_mapping_config_path); see \
             docs/multi-user.md."
                .into(),
        ));
    }

    let stale_after = Duration::from_secs_f64(3.0 * config.base.heartbeat_period.as_f64());
    // Refuse before registering when another instance runs; the PID file itself is taken
    // after registration (§4.2 steps 3 and 7).
    if let Some(age) = pidfile::age(&dir)
        && age < stale_after
    {
        let e = gc_mep::pidfile::PidFileError::Running {
            path: dir.join(pidfile::PID_FILE),
            content: String::new(),
        };
        tracing::info!("Endpoint {name} has a PID file {age:?} old (younger than {stale_after:?})");
        console::error(&e.to_string());
        return Err(CliError::status(e.exit_code()));
    }

    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Click(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run_mep(
        dir,
        name,
        config,
        endpoint_uuid,
        stale_after,
        takeover,
    ))
}

/// How long `start` waits for the first broker connection before giving up.
const BROKER_CHECK_WAIT: Duration = Duration::from_secs(30);

/// Connects once to the broker of the registration's heartbeat queue (as the event loop will)
/// and reports why that fails: a `start` that cannot reach its broker exits non-zero instead of
/// running without ever receiving a command.
async fn check_broker(registration: &gc_mep::Registration) -> Result<(), String> {
    let target = gc_broker::PublishTarget::from_json(&registration.heartbeat_queue_info, None)
        .map_err(|e| format!("the registration's heartbeat queue info is unusable: {e}"))?;
    let publisher = gc_broker::Publisher::start(
        target,
        gc_broker::PublisherOptions {
            retry: gc_broker::RetryPolicy {
                max_attempts: 3,
                retry_sleep_min: Duration::from_millis(500),
                retry_sleep_max: Duration::from_secs(2),
                ..gc_broker::RetryPolicy::default()
            },
            ..gc_broker::PublisherOptions::default()
        },
    );
    let mut connected = publisher.connected();
    // Map the watch `Ref` away at once: a live `Ref` holds the watch's read lock, and the
    // publisher's worker takes the write lock (`connected = false`) while `close` awaits it.
    let outcome = tokio::time::timeout(BROKER_CHECK_WAIT, connected.wait_for(|up| *up))
        .await
        .map(|r| r.map(|_| ()));
    let result = match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(publisher.stop_reason().to_string()),
        Err(_) => Err(format!(
            "no connection within {} s",
            BROKER_CHECK_WAIT.as_secs()
        )),
    };
    publisher.close().await;
    result
}

async fn run_mep(
    dir: PathBuf,
    name: String,
    config: gc_config::CoreEndpointConfig,
    endpoint_uuid: Option<&str>,
    stale_after: Duration,
    takeover: bool,
) -> CmdResult {
    let fail = |code: i32, msg: String| {
        tracing::error!("{msg}");
        console::critical(&msg);
        CliError::status(code)
    };
    let urls =
        gc_mep::ServiceUrls::for_config(&config).map_err(|e| fail(e.exit_code(), e.to_string()))?;
    let credentials = gc_mep::ClientCredentials::from_env()
        .or_else(|e| crate::service::stored_mep_credentials(&config).ok_or(e))
        .map_err(|e| fail(e.exit_code(), e.to_string()))?;
    let python = python_version();
    let registration = gc_mep::register(&gc_mep::RegisterInputs {
        endpoint_dir: &dir,
        name: &name,
        config: &config,
        endpoint_uuid,
        urls: &urls,
        credentials: &credentials,
        python_version: &python,
        takeover,
    })
    .await
    .map_err(|e| {
        if matches!(
            e,
            gc_mep::RegisterError::Blocked { .. }
                | gc_mep::RegisterError::Invalid { .. }
                | gc_mep::RegisterError::HeldElsewhere { .. }
        ) {
            println!("{e}");
        }
        fail(e.exit_code(), e.to_string())
    })?;
    if let Err(why) = check_broker(&registration).await {
        return Err(fail(
            75,
            format!(
                "Endpoint {name} registered but cannot reach the message broker the service \
                 named ({why}); not starting. Check that the broker is up and reachable from \
                 this host (amqp_port in config.yaml overrides the port)."
            ),
        ));
    }

    let pid_file = PidFile::acquire(&dir, stale_after).map_err(|e| {
        console::error(&e.to_string());
        CliError::status(e.exit_code())
    })?;

    let endpoint_id = registration.endpoint_id.clone();
    let mut options = gc_mep::MepOptions::new(name.as_str(), dir.clone(), config)
        .map_err(|e| fail(e.exit_code(), e.to_string()))?;
    options.compute_dir = compute_dir::compute_dir();
    gc_mep::metrics::enable_from_env(&mut options)
        .await
        .map_err(|e| fail(1, e.to_string()))?;

    let mut banner = banner_stream();
    if let Some(out) = banner.as_mut() {
        let _ = writeln!(
            out,
            "\x1b[?25l        >>> Endpoint ID: \x1b[104m{endpoint_id}\x1b[m <<<"
        );
        let _ = out.flush();
    }
    let shutdown = async {
        tokio::select! {
            () = gc_mep::shutdown_signal() => {}
            () = pid_file.watch() => {}
            () = console_timer() => {}
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
            tracing::debug!("Stopped: {cause:?}");
            Ok(())
        }
        Err(e) => Err(fail(e.exit_code(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_lines_use_ctime() {
        use chrono::TimeZone;
        let t = chrono::Local
            .with_ymd_and_hms(2026, 11, 2, 8, 5, 9)
            .single()
            .unwrap();
        assert_eq!(timer_line(t), "  ----> Mon Nov  2 08:05:09 2026\r");
    }
}
