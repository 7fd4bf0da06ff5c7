//! GlobusComputeEngine options (ENDPOINT.md §6.4), from gc-config's engine model.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gc_config::{EngineConfig, EngineType};
use gc_provider::Provider;
use serde_json::Value as Json;

use crate::HtexError;

/// The scaling strategy (`strategy` / `job_status_kwargs.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Scale out on backlog; scale in only when nothing is outstanding.
    Simple,
    /// As `Simple`, and also scale in idle blocks while other blocks are busy.
    HtexAutoScale,
    /// Start `init_blocks` and never change.
    None,
}

impl Strategy {
    fn parse(s: &str) -> Result<Self, HtexError> {
        match s {
            "simple" => Ok(Strategy::Simple),
            "htex_auto_scale" => Ok(Strategy::HtexAutoScale),
            "none" => Ok(Strategy::None),
            other => Err(HtexError::Config(format!(
                "unknown strategy {other:?}; valid strategies: simple, htex_auto_scale, none"
            ))),
        }
    }
}

/// How the interchange starts a manager on a node.
#[derive(Debug, Clone)]
pub struct ManagerCommand {
    /// The `gc-worker-manager` program (must be reachable from the batch nodes).
    pub program: PathBuf,
    /// The Python of the workers (resolved on the node, after `worker_init`).
    pub python: String,
}

impl ManagerCommand {
    /// `gc-worker-manager` beside the running executable, else on `PATH`; workers use
    /// `python3` (after `worker_init`, so an activated environment wins).
    pub fn default_for_this_host() -> Self {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("gc-worker-manager")))
            .filter(|p| p.is_file());
        Self {
            program: beside.unwrap_or_else(|| PathBuf::from("gc-worker-manager")),
            python: "python3".into(),
        }
    }
}

/// Everything the engine needs.
#[derive(Debug)]
pub struct HtexConfig {
    /// `label` (default `GlobusComputeEngine`).
    pub label: String,
    /// Where blocks run.
    pub provider: Provider,
    /// Addresses managers try, in order.
    pub addresses: Vec<String>,
    /// Fixed port (`worker_port`), else the first free one of `worker_port_range`.
    pub worker_port: Option<u16>,
    /// `worker_port_range`.
    pub worker_port_range: (u16, u16),
    /// Mutual TLS between interchange and managers.
    pub encrypted: bool,
    /// Workers per manager: at most this many …
    pub max_workers_per_node: Option<usize>,
    /// … and at most `cores / cores_per_worker`.
    pub cores_per_worker: f64,
    /// Tasks sent to a manager beyond its worker count.
    pub prefetch_capacity: usize,
    /// Interchange ↔ manager heartbeat period.
    pub heartbeat_period: Duration,
    /// Silence after which a manager (or the interchange, for a manager) is given up.
    pub heartbeat_threshold: Duration,
    /// Extra attempts when a task's manager (or worker) is lost.
    pub max_retries_on_system_failure: u32,
    /// Task working directory (relative: to the UEP directory).
    pub working_dir: PathBuf,
    /// `run_in_sandbox`.
    pub run_in_sandbox: bool,
    /// `allowed_serializers` (empty: all).
    pub allowed_deserializers: Vec<String>,
    /// Result size limit.
    pub result_size_limit: usize,
    /// Scaling strategy.
    pub strategy: Strategy,
    /// Idle time after which a block may be scaled in.
    pub max_idletime: Duration,
    /// Time between scaling decisions (and block status polls).
    pub strategy_period: Duration,
    /// How managers are started.
    pub manager: ManagerCommand,
    /// Run managers in a container (`container_type`, `container_uri`,
    /// `container_cmd_options`).
    pub container: Option<Container>,
    /// `GlobusMPIEngine`: the `mpi_launcher` ([`crate::mpi`]); `None` for
    /// `GlobusComputeEngine`.
    pub mpi_launcher: Option<crate::mpi::MpiLauncher>,
    /// `mem_per_worker` (GB): workers per node are at most available memory / this.
    pub mem_per_worker: Option<f64>,
    /// `cpu_affinity`: `none`, `block`, `block-reverse`, `alternating` or
    /// `list:<cpus of worker 0>:<cpus of worker 1>…`.
    pub cpu_affinity: String,
    /// `available_accelerators`: one per worker (at most this many workers), exported as
    /// `CUDA_VISIBLE_DEVICES` and friends.
    pub available_accelerators: Vec<String>,
    /// `drain_period`: a manager stops taking tasks this long after it started, finishes
    /// what it holds and exits.
    pub drain_period: Option<Duration>,
    /// `worker_debug`: managers log at DEBUG.
    pub worker_debug: bool,
    /// `worker_logdir_root`: managers also log to
    /// `<root>/<executor label>/block-<b>/<host>-<pid>/manager.log`.
    pub worker_logdir_root: Option<PathBuf>,
}

/// Checks a `cpu_affinity` value as Parsl's worker pool reads it.
pub(crate) fn check_cpu_affinity(value: &str) -> Result<(), String> {
    match value {
        "none" | "block" | "block-reverse" | "alternating" => Ok(()),
        list if list.starts_with("list") => {
            for ranks in list.split(':').skip(1) {
                for range in ranks.split(',') {
                    let bounds: Vec<&str> = range.split('-').collect();
                    if bounds.len() > 2 || bounds.iter().any(|b| b.trim().parse::<usize>().is_err())
                    {
                        return Err(format!("Affinity list formatting is not expected {value}"));
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("Affinity strategy {other} is not supported")),
    }
}

/// A container to run each manager in (ENDPOINT.md §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// `docker`, `podman`, `podman-hpc`, `apptainer`, `singularity` or `custom`.
    pub kind: String,
    /// The image (or `.sif` path).
    pub uri: String,
    /// Extra options; for `custom`, the whole command with `{EXECUTOR_RUNDIR}` and
    /// `{EXECUTOR_LAUNCH_CMD}` placeholders.
    pub options: String,
}

impl Container {
    /// `command` wrapped to run in the container, `run_dir` (the user endpoint directory,
    /// which holds the certificates and task directory) mounted at the same path for the
    /// Docker-like runtimes — upstream's templates (ENDPOINT.md §6.4):
    ///
    /// * docker / podman / podman-hpc: `<type> run <options> -v <run_dir>:<run_dir> -t <uri> <command>`
    /// * apptainer / singularity: `<type> run <options> <uri> <command>`
    /// * custom: the options with `{EXECUTOR_RUNDIR}` and then `{EXECUTOR_LAUNCH_CMD}` replaced.
    ///
    /// Upstream then splits the string with POSIX shell rules and joins the words with single
    /// spaces, which drops quotes (`--env 'A=b c'` becomes `--env A=b c`). We normalise the
    /// whitespace between words the same way but keep every word as written, quotes included,
    /// so the result equals upstream's whenever nothing is quoted and still means what the
    /// administrator wrote when something is. An unclosed quote is an error (upstream's
    /// `shlex.split` raises `No closing quotation` at start too).
    pub fn wrap(&self, command: &str, run_dir: &str) -> Result<String, HtexError> {
        let opts = self.options.as_str();
        let text = match self.kind.as_str() {
            "docker" | "podman" | "podman-hpc" => format!(
                "{} run {opts} -v {run_dir}:{run_dir} -t {} {command}",
                self.kind, self.uri
            ),
            "custom" => opts
                .replace("{EXECUTOR_RUNDIR}", run_dir)
                .replace("{EXECUTOR_LAUNCH_CMD}", command),
            // apptainer, singularity
            _ => format!("{} run {opts} {} {command}", self.kind, self.uri),
        };
        Ok(shell_words(&text)
            .map_err(|e| HtexError::Config(format!("container command {text:?}: {e}")))?
            .join(" "))
    }
}

/// The words of `text` split by POSIX shell rules (unquoted blanks separate words; single
/// quotes, double quotes and backslashes protect them), each returned as written.
fn shell_words(text: &str) -> Result<Vec<&str>, &'static str> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                words.push(&text[s..i]);
            }
            continue;
        }
        start.get_or_insert(i);
        match c {
            '\\' if chars.next().is_none() => return Err("No escaped character"),
            '\'' => loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some(_) => {}
                    None => return Err("No closing quotation"),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => {
                        chars.next();
                    }
                    Some(_) => {}
                    None => return Err("No closing quotation"),
                }
            },
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(&text[s..]);
    }
    Ok(words)
}

fn num(cfg: &EngineConfig, key: &str) -> Option<f64> {
    cfg.options.get(key).and_then(Json::as_f64)
}

fn secs(v: f64, key: &str) -> Result<Duration, HtexError> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| HtexError::Config(format!("`{key}` must be a non-negative number of seconds")))
}

impl HtexConfig {
    /// Build from a `GlobusComputeEngine` mapping. `uep_dir` is the user endpoint directory:
    /// job scripts go to `<uep_dir>/submit_scripts` (upstream's layout).
    pub fn from_engine_config(cfg: &EngineConfig, uep_dir: &Path) -> Result<Self, HtexError> {
        let mpi = cfg.engine_type == EngineType::GlobusMpi;
        if cfg.engine_type != EngineType::GlobusCompute && !mpi {
            return Err(HtexError::Config(format!(
                "{} is not a GlobusComputeEngine",
                cfg.engine_type.name()
            )));
        }
        let container = match cfg.container_type() {
            None => None,
            Some(kind) => {
                let text = |k: &str| {
                    cfg.options
                        .get(k)
                        .and_then(Json::as_str)
                        .map(str::to_string)
                };
                let uri = text("container_uri");
                let options = text("container_cmd_options").unwrap_or_default();
                if kind == "custom" && options.trim().is_empty() {
                    return Err(HtexError::Config(
                        "GCE.container_cmd_options is required for GCE.container_type=custom"
                            .into(),
                    ));
                }
                if kind != "custom" && uri.as_deref().is_none_or(str::is_empty) {
                    return Err(HtexError::Config(format!(
                        "container_uri is required when container_type is {kind}"
                    )));
                }
                Some(Container {
                    kind: kind.to_string(),
                    uri: uri.unwrap_or_default(),
                    options,
                })
            }
        };
        let opts = &cfg.options;
        let provider =
            Provider::from_config(cfg.provider.as_ref(), &uep_dir.join("submit_scripts"))?;
        let addresses = gc_provider::address::resolve(cfg.address.as_ref())?;
        let port_range = opts
            .get("worker_port_range")
            .and_then(Json::as_array)
            .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
            .unwrap_or((54000, 55000));
        let port = |v: u64| {
            u16::try_from(v).map_err(|_| HtexError::Config(format!("port {v} is out of range")))
        };
        let worker_port = match opts.get("worker_port").and_then(Json::as_u64) {
            Some(p) => Some(port(p)?),
            None => None,
        };
        let workers_key = if mpi {
            "max_workers_per_block"
        } else {
            "max_workers_per_node"
        };
        let max_workers_per_node = match num(cfg, workers_key) {
            Some(n) if n.is_finite() && n >= 1.0 => Some(n as usize),
            Some(n) if n.is_infinite() => None,
            Some(n) => {
                return Err(HtexError::Config(format!(
                    "{workers_key} must be at least 1 (got {n})"
                )));
            }
            None => None,
        };
        // MPIExecutor: as many workers as max_workers_per_block, whatever the cores.
        let cores_per_worker = if mpi {
            1e-9
        } else {
            num(cfg, "cores_per_worker").unwrap_or(1.0)
        };
        if cores_per_worker.is_nan() || cores_per_worker <= 0.0 {
            return Err(HtexError::Config(format!(
                "cores_per_worker must be positive (got {cores_per_worker})"
            )));
        }
        let kwargs = opts.get("job_status_kwargs").and_then(Json::as_object);
        let kw = |k: &str| kwargs.and_then(|m| m.get(k));
        let strategy = match kw("strategy").or_else(|| opts.get("strategy")) {
            None | Some(Json::Null) => Strategy::Simple,
            Some(Json::String(s)) => Strategy::parse(s)?,
            Some(other) => {
                return Err(HtexError::Config(format!(
                    "strategy must be a name, not {other}"
                )));
            }
        };
        let max_idletime = secs(
            kw("max_idletime").and_then(Json::as_f64).unwrap_or(120.0),
            "max_idletime",
        )?;
        let strategy_period = secs(
            kw("strategy_period").and_then(Json::as_f64).unwrap_or(5.0),
            "strategy_period",
        )?
        .max(Duration::from_millis(100));
        let cpu_affinity = opts
            .get("cpu_affinity")
            .and_then(Json::as_str)
            .unwrap_or("none")
            .to_string();
        check_cpu_affinity(&cpu_affinity).map_err(HtexError::Config)?;
        // Parsl: an integer N means accelerators "0" … "N-1"; a list is taken as is.
        let available_accelerators = match opts.get("available_accelerators") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Number(n)) => (0..n.as_u64().unwrap_or(0))
                .map(|i| i.to_string())
                .collect(),
            Some(Json::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(other) => {
                return Err(HtexError::Config(format!(
                    "available_accelerators must be a number or a list, not {other}"
                )));
            }
        };
        Ok(Self {
            label: cfg.label().to_string(),
            provider,
            addresses,
            worker_port,
            worker_port_range: (port(port_range.0)?, port(port_range.1)?),
            encrypted: cfg.encrypted().unwrap_or(true),
            max_workers_per_node,
            cores_per_worker,
            prefetch_capacity: num(cfg, "prefetch_capacity").unwrap_or(0.0).max(0.0) as usize,
            heartbeat_period: secs(
                num(cfg, "heartbeat_period").unwrap_or(30.0),
                "heartbeat_period",
            )?
            .max(Duration::from_millis(100)),
            heartbeat_threshold: secs(
                num(cfg, "heartbeat_threshold").unwrap_or(120.0),
                "heartbeat_threshold",
            )?
            .max(Duration::from_millis(200)),
            max_retries_on_system_failure: u32::try_from(cfg.max_retries_on_system_failure())
                .unwrap_or(u32::MAX),
            working_dir: PathBuf::from(cfg.working_dir()),
            run_in_sandbox: cfg.run_in_sandbox(),
            allowed_deserializers: cfg.allowed_serializers().unwrap_or_default(),
            result_size_limit: gc_engine::DEFAULT_RESULT_SIZE_LIMIT,
            strategy,
            max_idletime,
            strategy_period,
            manager: ManagerCommand::default_for_this_host(),
            container,
            mpi_launcher: crate::mpi::launcher_of(cfg)?,
            mem_per_worker: num(cfg, "mem_per_worker").filter(|m| *m > 0.0),
            cpu_affinity,
            available_accelerators,
            drain_period: match num(cfg, "drain_period") {
                Some(d) if d > 0.0 => Some(secs(d, "drain_period")?),
                _ => None,
            },
            worker_debug: opts
                .get("worker_debug")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            worker_logdir_root: opts
                .get("worker_logdir_root")
                .and_then(Json::as_str)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        })
    }

    /// Upstream's executor label, which names the engine's directory in the UEP directory:
    /// `<label>-HighThroughputExecutor`, or `<label>-MPIExecutor` for GlobusMPIEngine.
    pub fn executor_label(&self) -> String {
        match self.mpi_launcher {
            Some(_) => format!("{}-MPIExecutor", self.label),
            None => format!("{}-HighThroughputExecutor", self.label),
        }
    }

    /// Workers one manager runs on a node with `cores` cores and, when known, `mem_gb` GB
    /// of memory: at most `max_workers_per_node`, `cores / cores_per_worker`,
    /// `mem_gb / mem_per_worker` and the number of accelerators — at least one.
    pub fn workers_per_node(&self, cores: usize, mem_gb: Option<f64>) -> usize {
        crate::workers::slots(
            cores,
            mem_gb,
            self.cores_per_worker,
            self.max_workers_per_node,
            self.mem_per_worker,
            self.available_accelerators.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manager command of the comparisons below.
    const CMD: &str = "/opt/gc/bin/gc-worker-manager --addresses 10.0.0.1,127.0.0.1 --port 54000 \
                       --block-id {block_id} --cores-per-worker 1 --python python3";
    const RUN_DIR: &str = "/home/u/.globus_compute/uep.1.2";

    fn wrapped(yaml: &str, cmd: &str) -> String {
        config(yaml)
            .unwrap()
            .container
            .unwrap()
            .wrap(cmd, RUN_DIR)
            .unwrap()
    }

    /// Expected strings are what upstream 4.19.0's `GlobusComputeEngine.containerized_launch_cmd()`
    /// returns for the same type, image, options, run directory and launch command.
    #[test]
    fn containers_wrap_the_manager_command_as_upstream_does() {
        let m = "/opt/gc/bin/gc-worker-manager --addresses 10.0.0.1,127.0.0.1 --port 54000 \
                 --block-id {block_id} --cores-per-worker 1 --python python3";
        let v = "-v /home/u/.globus_compute/uep.1.2:/home/u/.globus_compute/uep.1.2";
        assert_eq!(
            wrapped(
                "  container_type: docker\n  container_uri: compute-worker:4.0\n",
                CMD
            ),
            format!("docker run {v} -t compute-worker:4.0 {m}")
        );
        assert_eq!(
            wrapped(
                "  container_type: podman\n  container_uri: docker.io/x/y:1\n  \
                 container_cmd_options: -e X=1\n",
                CMD
            ),
            format!("podman run -e X=1 {v} -t docker.io/x/y:1 {m}")
        );
        assert_eq!(
            wrapped("  container_type: podman-hpc\n  container_uri: img\n", CMD),
            format!("podman-hpc run {v} -t img {m}")
        );
        assert_eq!(
            wrapped(
                "  container_type: apptainer\n  container_uri: /img/w.sif\n",
                CMD
            ),
            format!("apptainer run /img/w.sif {m}")
        );
        // Runs of blanks become one, as upstream's split-and-join does.
        assert_eq!(
            wrapped(
                "  container_type: singularity\n  container_uri: /img/w.sif\n  \
                 container_cmd_options: \"--bind /scratch  --nv\"\n",
                CMD
            ),
            format!("singularity run --bind /scratch --nv /img/w.sif {m}")
        );
        assert_eq!(
            wrapped(
                "  container_type: custom\n  container_cmd_options: \
                 \"podman run -v {EXECUTOR_RUNDIR}:/r img {EXECUTOR_LAUNCH_CMD}\"\n",
                CMD
            ),
            format!("podman run -v {RUN_DIR}:/r img {m}")
        );
        assert!(config("").unwrap().container.is_none());
    }

    /// Where upstream loses quotes we keep them. Upstream 4.19.0 gives
    /// `docker run --network host --env A=b c -v … -t compute-worker:4.0 … --cert-dir /home/a b/certs`
    /// here: `c` becomes an image name and the certificate path breaks in two.
    #[test]
    fn quotes_survive_unlike_upstream() {
        let cmd = format!("{CMD} --cert-dir '/home/a b/certs'");
        assert_eq!(
            wrapped(
                "  container_type: docker\n  container_uri: compute-worker:4.0\n  \
                 container_cmd_options: \"--network host  --env 'A=b c' -e \\\"B=1 2\\\"\"\n",
                &cmd
            ),
            format!(
                "docker run --network host --env 'A=b c' -e \"B=1 2\" -v {RUN_DIR}:{RUN_DIR} \
                 -t compute-worker:4.0 {cmd}"
            )
        );
        assert_eq!(
            shell_words(r#"a  'b c'd "e \" f"\ g h\ "#).unwrap(),
            ["a", "'b c'd", r#""e \" f"\ g"#, "h\\ "]
        );
        let e = config(
            "  container_type: docker\n  container_uri: i\n  container_cmd_options: \"--env 'A\"\n",
        )
        .unwrap()
        .container
        .unwrap()
        .wrap("m", "/r")
        .unwrap_err();
        assert!(e.to_string().ends_with(": No closing quotation"), "{e}");
        let e = config("  container_type: custom\n  container_cmd_options: \" \"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "GCE.container_cmd_options is required for GCE.container_type=custom"
        );
    }

    fn config(yaml: &str) -> Result<HtexConfig, HtexError> {
        let text = format!("engine:\n  type: GlobusComputeEngine\n{yaml}");
        let cfg = gc_config::UserEndpointConfig::from_yaml(&text, "t.yaml").expect("config");
        HtexConfig::from_engine_config(&cfg.engine, Path::new("/uep"))
    }

    #[test]
    fn upstream_defaults() {
        let c = config("").unwrap();
        assert_eq!(c.label, "GlobusComputeEngine");
        assert!(c.encrypted);
        assert_eq!(c.strategy, Strategy::Simple);
        assert_eq!(c.max_idletime, Duration::from_secs(120));
        assert_eq!(c.strategy_period, Duration::from_secs(5));
        assert_eq!(c.heartbeat_period, Duration::from_secs(30));
        assert_eq!(c.heartbeat_threshold, Duration::from_secs(120));
        assert_eq!(c.worker_port_range, (54000, 55000));
        assert_eq!(c.provider.name(), "LocalProvider");
        assert_eq!(c.working_dir, PathBuf::from("tasks_working_dir"));
        assert_eq!(c.workers_per_node(8, None), 8);
        assert_eq!(c.cpu_affinity, "none");
        assert!(c.available_accelerators.is_empty());
        assert_eq!(c.mem_per_worker, None);
        assert_eq!(c.drain_period, None);
        assert!(!c.worker_debug);
        assert_eq!(c.worker_logdir_root, None);
    }

    #[test]
    fn options_are_read() {
        let c = config(
            "  max_workers_per_node: 2\n  cores_per_worker: 2\n  encrypted: false\n  \
             max_retries_on_system_failure: 1\n  job_status_kwargs:\n    max_idletime: 3\n    \
             strategy_period: 0.5\n    strategy: htex_auto_scale\n  address: 127.0.0.1\n",
        )
        .unwrap();
        assert!(!c.encrypted);
        assert_eq!(c.max_retries_on_system_failure, 1);
        assert_eq!(c.strategy, Strategy::HtexAutoScale);
        assert_eq!(c.max_idletime, Duration::from_secs(3));
        assert_eq!(c.strategy_period, Duration::from_millis(500));
        assert_eq!(c.addresses, ["127.0.0.1"]);
        assert_eq!(c.workers_per_node(16, None), 2);
        assert_eq!(c.workers_per_node(2, None), 1);
        let c = config(
            "  mem_per_worker: 1.5\n  available_accelerators: 3\n  cpu_affinity: block\n  \
             drain_period: 60\n  worker_debug: true\n  worker_logdir_root: /scratch/logs\n",
        )
        .unwrap();
        assert_eq!(c.available_accelerators, ["0", "1", "2"]);
        assert_eq!(c.workers_per_node(8, Some(4.0)), 2, "4 GB / 1.5 GB");
        assert_eq!(c.workers_per_node(8, None), 3, "three accelerators");
        assert_eq!(c.workers_per_node(8, Some(0.5)), 1, "at least one");
        assert_eq!(c.drain_period, Some(Duration::from_secs(60)));
        assert!(c.worker_debug);
        assert_eq!(c.worker_logdir_root, Some(PathBuf::from("/scratch/logs")));
        let c = config("  available_accelerators: [\"0\", 2]\n  cpu_affinity: \"list:0,1:2-3\"\n")
            .unwrap();
        assert_eq!(c.available_accelerators, ["0", "2"]);
    }

    #[test]
    fn refusals() {
        let e = config("  strategy: fancy\n").unwrap_err();
        assert!(e.to_string().starts_with("unknown strategy"), "{e}");
        let e = config("  cpu_affinity: spread\n").unwrap_err();
        assert_eq!(e.to_string(), "Affinity strategy spread is not supported");
        let e = config("  cpu_affinity: \"list:0:a\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Affinity list formatting is not expected list:0:a"
        );
        let e = config("  container_type: docker\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "container_uri is required when container_type is docker"
        );
    }
}
