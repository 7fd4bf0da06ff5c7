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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let a = Args::parse();
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
    };
    match gc_htex::manager::run(opts).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
