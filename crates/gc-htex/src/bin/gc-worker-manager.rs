//! `gc-worker-manager`: started by a block's job script on each node; see `gc_htex::manager`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Run Globus Compute tasks from a GlobusComputeEngine interchange on this node.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Interchange addresses to try, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    addresses: Vec<String>,
    /// Interchange port.
    #[arg(long)]
    port: u16,
    /// Directory with ca.pem, manager.pem, manager.key (mutual TLS); plain TCP without it.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// The block this manager belongs to.
    #[arg(long)]
    block_id: String,
    /// At most this many workers.
    #[arg(long)]
    max_workers: Option<usize>,
    /// Cores per worker (workers ≤ cores / this).
    #[arg(long, default_value_t = 1.0)]
    cores_per_worker: f64,
    /// Python of the workers (needs globus-compute-sdk).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Seconds to keep trying to reach the interchange.
    #[arg(long, default_value_t = 120.0)]
    connect_timeout: f64,
    /// GlobusMPIEngine block: lend whole nodes to tasks and export the PARSL_* variables
    /// for this MPI launcher (mpiexec, srun, aprun).
    #[arg(long, value_parser = parse_mpi_launcher)]
    mpi_launcher: Option<gc_htex::mpi::MpiLauncher>,
    /// GB of memory per worker (workers ≤ available memory / this).
    #[arg(long)]
    mem_per_worker: Option<f64>,
    /// CPU pinning of the workers: none, block, block-reverse, alternating, list:….
    #[arg(long, default_value = "none")]
    cpu_affinity: String,
    /// Accelerators, comma-separated: one per worker (at most this many workers).
    #[arg(long, value_delimiter = ',')]
    available_accelerators: Vec<String>,
    /// Seconds after start at which to stop taking tasks, finish, and exit.
    #[arg(long)]
    drain_period: Option<f64>,
    /// Log at DEBUG (`worker_debug`).
    #[arg(long)]
    debug: bool,
    /// Also log to `<logdir>/block-<block id>/<host>-<pid>/manager.log`.
    #[arg(long)]
    logdir: Option<PathBuf>,
}

/// Logging to stderr (the block's `.submit.stderr`) and, with `--logdir`, to a file.
fn init_logging(a: &Args) -> Result<Option<PathBuf>, String> {
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if a.debug { "debug" } else { "info" })
    });
    let mut file_path = None;
    let writer = match &a.logdir {
        None => BoxMakeWriter::new(std::io::stderr),
        Some(root) => {
            let host = hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into());
            let dir = root
                .join(format!("block-{}", a.block_id))
                .join(format!("{host}-{}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
            let path = dir.join("manager.log");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            file_path = Some(path);
            BoxMakeWriter::new(std::io::stderr.and(std::sync::Arc::new(file)))
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .init();
    Ok(file_path)
}

fn parse_mpi_launcher(name: &str) -> Result<gc_htex::mpi::MpiLauncher, String> {
    gc_htex::mpi::MpiLauncher::parse(name).ok_or_else(|| {
        format!(
            "unknown MPI launcher {name:?}; expected one of {}",
            gc_htex::mpi::MpiLauncher::NAMES.join(", ")
        )
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    match init_logging(&a) {
        Ok(Some(path)) => tracing::info!("logging to {}", path.display()),
        Ok(None) => {}
        Err(e) => {
            eprintln!("gc-worker-manager: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    tracing::debug!("DEBUG logging enabled (worker_debug)");
    let opts = gc_htex::manager::ManagerOptions {
        addresses: a.addresses,
        port: a.port,
        cert_dir: a.cert_dir,
        block_id: a.block_id,
        max_workers: a.max_workers,
        cores_per_worker: a.cores_per_worker,
        python: a.python,
        connect_timeout: Duration::try_from_secs_f64(a.connect_timeout)
            .unwrap_or(Duration::from_secs(120)),
        mpi_launcher: a.mpi_launcher,
        mem_per_worker: a.mem_per_worker.filter(|m| *m > 0.0),
        cpu_affinity: a.cpu_affinity,
        accelerators: a.available_accelerators,
        drain_period: a
            .drain_period
            .and_then(|d| Duration::try_from_secs_f64(d).ok()),
    };
    match gc_htex::manager::run(opts).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
