//! The worker manager: one per node of a block. Connects back to the interchange, runs
//! tasks in a local pool of Python workers (gc-engine's process pool over the
//! `globus_compute_rs_worker` package) and sends results back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gc_engine::{EngineKind, PoolConfig, TaskRequest, WorkerCommand};
use gc_wire::messagepack::{self, Message};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::proto::{self, FromManager, ToManager};
use crate::tls;
use crate::workers::{self, Workers};

/// What a manager is told on its command line.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Interchange addresses to try, in order.
    pub addresses: Vec<String>,
    /// Interchange port.
    pub port: u16,
    /// Certificates (`encrypted`); `None`: plain TCP.
    pub cert_dir: Option<PathBuf>,
    /// The block this manager belongs to.
    pub block_id: String,
    /// At most this many workers …
    pub max_workers: Option<usize>,
    /// … and at most `cores / cores_per_worker`.
    pub cores_per_worker: f64,
    /// Python of the workers.
    pub python: PathBuf,
    /// How long to keep trying to reach the interchange.
    pub connect_timeout: Duration,
    /// GlobusMPIEngine: hand tasks whole nodes of the block and launch with this launcher.
    pub mpi_launcher: Option<crate::mpi::MpiLauncher>,
    /// `mem_per_worker` (GB): at most available memory / this many workers.
    pub mem_per_worker: Option<f64>,
    /// `cpu_affinity` (`none`, `block`, `block-reverse`, `alternating`, `list:…`).
    pub cpu_affinity: String,
    /// `available_accelerators`: one per worker, at most this many workers.
    pub accelerators: Vec<String>,
    /// `drain_period`: stop taking tasks this long after start, finish, exit.
    pub drain_period: Option<Duration>,
}

/// Why a manager stopped other than by being told to.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No address answered.
    #[error("cannot reach the interchange at {addresses} port {port}: {last}")]
    Unreachable {
        /// Addresses tried.
        addresses: String,
        /// Port.
        port: u16,
        /// The last error.
        last: String,
    },
    /// TLS material missing or refused.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The channel broke.
    #[error("interchange channel: {0}")]
    Channel(#[from] proto::FrameError),
    /// The interchange refused or said something unexpected.
    #[error("interchange: {0}")]
    Protocol(String),
    /// The local worker pool could not start.
    #[error("worker pool: {0}")]
    Engine(#[from] gc_engine::EngineError),
    /// Silence.
    #[error("no word from the interchange for {0:.1} s (heartbeat_threshold); giving up")]
    Silent(f64),
    /// The nodes of an MPI block could not be found.
    #[error("MPI block: {0}")]
    Mpi(String),
}

/// Workers on this node (Parsl's rule, [`workers::slots`]).
pub fn worker_count(opts: &ManagerOptions) -> usize {
    let (cores, mem_gb) = workers::node_resources();
    workers::slots(
        cores,
        mem_gb,
        opts.cores_per_worker,
        opts.max_workers,
        opts.mem_per_worker,
        opts.accelerators.len(),
    )
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn connect(opts: &ManagerOptions) -> Result<Box<dyn Stream>, ManagerError> {
    let client = match &opts.cert_dir {
        Some(dir) => Some(tokio_rustls::TlsConnector::from(tls::load_client(dir)?)),
        None => None,
    };
    let deadline = Instant::now() + opts.connect_timeout;
    let mut last = String::from("no address given");
    loop {
        for addr in &opts.addresses {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                TcpStream::connect((addr.as_str(), opts.port)),
            )
            .await;
            let stream = match attempt {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = format!("{addr}: {e}");
                    continue;
                }
                Err(_) => {
                    last = format!("{addr}: timed out");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tracing::info!(%addr, port = opts.port, "connected to the interchange");
            return match &client {
                Some(c) => {
                    let tls = c
                        .connect(tls::server_name(), stream)
                        .await
                        .map_err(|e| ManagerError::Protocol(format!("TLS handshake: {e}")))?;
                    Ok(Box::new(tls))
                }
                None => Ok(Box::new(stream)),
            };
        }
        if Instant::now() >= deadline {
            return Err(ManagerError::Unreachable {
                addresses: opts.addresses.join(","),
                port: opts.port,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Start each task of `steps` on the pool (its result goes to `out`, then its id to
/// `done`), or send the answer a step already carries.
fn launch(
    engine: &Arc<Workers>,
    out: &mpsc::UnboundedSender<(FromManager, Vec<u8>)>,
    done: &mpsc::UnboundedSender<uuid::Uuid>,
    steps: Vec<crate::mpi::Step>,
) -> Result<(), ManagerError> {
    for step in steps {
        match step {
            crate::mpi::Step::Answer(result) => {
                let task_id = result.task_id;
                let packed = messagepack::pack(&Message::Result(result));
                let _ = out.send((FromManager::Result { task_id }, packed));
            }
            crate::mpi::Step::Run(request, environment) => {
                let task_id = request.task_id;
                let handle = engine.submit_with_environment(request, environment)?;
                let out = out.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    match handle.await {
                        Ok(result) => {
                            let packed = messagepack::pack(&Message::Result(result));
                            let _ = out.send((FromManager::Result { task_id }, packed));
                        }
                        Err(e) => tracing::error!(%task_id, "{e}"),
                    }
                    let _ = done.send(task_id);
                });
            }
        }
    }
    Ok(())
}

/// Run until the interchange says stop (Ok) or is lost (Err).
pub async fn run(opts: ManagerOptions) -> Result<(), ManagerError> {
    let started = Instant::now();
    let workers = worker_count(&opts);
    let (versions, stream) = tokio::join!(workers::probe_versions(&opts.python), connect(&opts));
    let stream = stream?;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let register = FromManager::Register {
        protocol: proto::PROTOCOL_VERSION,
        block_id: opts.block_id.clone(),
        hostname,
        pid: std::process::id(),
        workers,
        python_version: versions.0,
        sdk_version: versions.1,
    };
    proto::write_frame(&mut writer, &register, b"").await?;
    let settings = match proto::read_frame::<_, ToManager>(&mut reader).await? {
        (
            ToManager::Registered {
                manager_id,
                settings,
            },
            _,
        ) => {
            tracing::info!(%manager_id, workers, "registered");
            settings
        }
        (ToManager::Refused { reason }, _) => return Err(ManagerError::Protocol(reason)),
        (other, _) => {
            return Err(ManagerError::Protocol(format!(
                "expected registration, got {other:?}"
            )));
        }
    };
    let mut pool = PoolConfig::new(
        EngineKind::ProcessPool,
        WorkerCommand::embedded(&opts.python),
    );
    pool.working_dir = PathBuf::from(&settings.working_dir);
    pool.run_in_sandbox = settings.run_in_sandbox;
    pool.allowed_deserializers = settings.allowed_deserializers.clone();
    pool.result_size_limit = settings.result_size_limit;
    pool.max_retries_on_system_failure = settings.max_retries_on_system_failure;
    let engine = Arc::new(Workers::start(
        pool,
        workers,
        &opts.cpu_affinity,
        &opts.accelerators,
        settings.endpoint_id,
        Path::new(&settings.working_dir),
    )?);
    // `drain_period`: ask to drain once, then the interchange stops sending tasks and says
    // stop when this manager holds none.
    let drain_at = opts.drain_period.map(|d| started + d);
    let mut drain_requested = false;

    let mut mpi = match opts.mpi_launcher {
        Some(l) => Some(
            crate::mpi::MpiBlock::start(l, settings.max_retries_on_system_failure)
                .await
                .map_err(ManagerError::Mpi)?,
        ),
        None => None,
    };
    // Tasks whose result was sent (an MPI block then lends their nodes to waiting tasks).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<uuid::Uuid>();

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(FromManager, Vec<u8>)>();
    let writer_task = tokio::spawn(async move {
        while let Some((msg, blob)) = out_rx.recv().await {
            if let Err(e) = proto::write_frame(&mut writer, &msg, &blob).await {
                tracing::error!("writing to the interchange: {e}");
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    // Values from the wire: never panic on them (NaN, infinite, negative).
    let period = Duration::try_from_secs_f64(settings.heartbeat_period)
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_millis(100));
    let threshold = Duration::try_from_secs_f64(settings.heartbeat_threshold)
        .unwrap_or(Duration::from_secs(120))
        .max(period * 2);
    let mut beat = tokio::time::interval(period);
    let mut last_heard = Instant::now();
    let outcome = loop {
        tokio::select! {
            frame = proto::read_frame::<_, ToManager>(&mut reader) => {
                let (msg, blob) = match frame {
                    Ok(f) => f,
                    Err(e) => break Err(ManagerError::Channel(e)),
                };
                last_heard = Instant::now();
                match msg {
                    ToManager::Task { task_id, result_serializers, resource_specification, user_runtime } => {
                        let task_buffer = match String::from_utf8(blob) {
                            Ok(s) => s,
                            Err(_) => break Err(ManagerError::Protocol(format!("task {task_id} is not UTF-8"))),
                        };
                        let request = TaskRequest {
                            task_id,
                            task_buffer,
                            result_serializers,
                            resource_specification: Default::default(),
                            user_runtime,
                        };
                        let steps = match mpi.as_mut() {
                            Some(block) => block.accept(request, &resource_specification),
                            None => vec![crate::mpi::Step::Run(request, Default::default())],
                        };
                        if let Err(e) = launch(&engine, &out_tx, &done_tx, steps) {
                            break Err(e);
                        }
                    }
                    ToManager::Heartbeat => {}
                    ToManager::Shutdown => {
                        tracing::info!("the interchange asked this manager to stop");
                        break Ok(());
                    }
                    other => break Err(ManagerError::Protocol(format!("unexpected {other:?}"))),
                }
            }
            Some(task_id) = done_rx.recv() => {
                if let Some(block) = mpi.as_mut() {
                    let steps = block.finished(task_id);
                    if let Err(e) = launch(&engine, &out_tx, &done_tx, steps) {
                        break Err(e);
                    }
                }
            }
            () = sleep_until(drain_at), if !drain_requested => {
                drain_requested = true;
                tracing::info!("drain_period reached: requesting drain");
                let _ = out_tx.send((FromManager::Drain, Vec::new()));
            }
            _ = beat.tick() => {
                if last_heard.elapsed() > threshold {
                    break Err(ManagerError::Silent(last_heard.elapsed().as_secs_f64()));
                }
                let _ = out_tx.send((FromManager::Heartbeat, Vec::new()));
            }
        }
    };
    drop(out_tx);
    writer_task.abort();
    // Dropping the pool kills its workers.
    drop(engine);
    outcome
}

/// Sleeps until `at`, or forever when there is no such time.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
