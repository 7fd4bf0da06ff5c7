//! GlobusMPIEngine (ENDPOINT.md §6.5): the parts that differ from GlobusComputeEngine.
//!
//! Upstream runs Parsl's `MPIExecutor`: one worker pool per block (the provider must use
//! `SimpleLauncher`), `max_workers_per_block` workers, and on the block's lead node a
//! scheduler that hands each task whole nodes of the batch job. Each task carries a
//! `resource_specification` (`num_nodes`, `num_ranks`, `ranks_per_node`,
//! `launcher_options`); the worker exports it as `PARSL_NUM_NODES`, `PARSL_NUM_RANKS`,
//! `PARSL_RANKS_PER_NODE`, `PARSL_LAUNCHER_OPTIONS` and `PARSL_MPI_NODELIST`, together with
//! launch prefixes for `mpiexec`, `srun` and `aprun` (`PARSL_MPIEXEC_PREFIX`,
//! `PARSL_SRUN_PREFIX`, `PARSL_APRUN_PREFIX`) and the configured one as `PARSL_MPI_PREFIX`,
//! which the SDK's `MPIFunction` puts in front of its command.
//!
//! This module holds that logic for gc-htex: [`validate`] (run by the interchange when a task
//! is submitted), [`batch_job_nodes`] and [`NodeScheduler`] (run by the manager of an MPI
//! block) and [`task_environment`]. Deliberate differences from upstream, all documented in
//! `docs/engines.md`:
//!
//! * a task without `num_nodes` gets `ceil(num_ranks / ranks_per_node)` nodes (one node when
//!   only one of the two is given); upstream sets no node list and no prefix then and its
//!   manager stops on an assertion (Parsl issue 3427);
//! * `ranks_per_node` derived from `num_ranks / num_nodes` is a rounded-up integer (upstream
//!   exports Python's float text, `2.0`);
//! * numbers must be positive integers (or their decimal text) and `launcher_options` a
//!   string, each refused with an error naming the key;
//! * `mpiexec` of Open MPI does not accept the `-ppn` / `-hosts` options of MPICH and Intel
//!   MPI that upstream composes; when `mpiexec --version` names Open MPI, the prefix uses
//!   `--map-by ppr:<ranks_per_node>:node --host <node>:<ranks_per_node>,…` instead;
//! * outside Slurm and PBS (e.g. `LocalProvider`) the block's only node is `localhost`
//!   (upstream refuses to run); PBS node files are read without repeated host names;
//! * a task asking for more nodes than the block has fails with `MPINodesUnavailable`
//!   (upstream keeps it waiting forever).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use gc_engine::TaskRequest;
use gc_wire::messagepack::TaskResult;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Keys a task's `resource_specification` may hold (Parsl's list).
pub const RESOURCE_KEYS: &[&str] = &[
    "launcher_options",
    "num_nodes",
    "num_ranks",
    "ranks_per_node",
];

/// How long `mpiexec --version` and `scontrol show hostnames` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// `mpi_launcher`: the MPI launcher whose prefix becomes `PARSL_MPI_PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpiLauncher {
    /// `mpiexec` (the default).
    Mpiexec,
    /// Slurm's `srun`.
    Srun,
    /// Cray's `aprun`.
    Aprun,
}

impl MpiLauncher {
    /// The accepted names, in upstream's order.
    pub const NAMES: &'static [&'static str] = &["srun", "aprun", "mpiexec"];

    /// Look up a name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mpiexec" => Some(MpiLauncher::Mpiexec),
            "srun" => Some(MpiLauncher::Srun),
            "aprun" => Some(MpiLauncher::Aprun),
            _ => None,
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            MpiLauncher::Mpiexec => "mpiexec",
            MpiLauncher::Srun => "srun",
            MpiLauncher::Aprun => "aprun",
        }
    }
}

/// The `mpi_launcher` of a `GlobusMPIEngine` configuration (`None` for other engines).
pub fn launcher_of(cfg: &gc_config::EngineConfig) -> Result<Option<MpiLauncher>, crate::HtexError> {
    if cfg.engine_type != gc_config::EngineType::GlobusMpi {
        return Ok(None);
    }
    let name = cfg
        .options
        .get("mpi_launcher")
        .and_then(Value::as_str)
        .unwrap_or("mpiexec");
    match MpiLauncher::parse(name) {
        Some(l) => Ok(Some(l)),
        None => Err(crate::HtexError::Config(format!(
            "mpi_launcher set to:{name} must be set to one of ('srun', 'aprun', 'mpiexec')"
        ))),
    }
}

/// Which `mpiexec` the node has: its options differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpiexecFlavour {
    /// MPICH, Intel MPI, Cray (Hydra-style `-n -ppn -hosts`; upstream's prefix). Also the
    /// answer when no `mpiexec` is found.
    Hydra,
    /// Open MPI (`-n --map-by ppr:N:node --host h:N,…`).
    OpenMpi,
}

impl MpiexecFlavour {
    /// From the output of `mpiexec --version`.
    pub fn from_version_text(text: &str) -> Self {
        if text.contains("Open MPI") || text.contains("OpenRTE") || text.contains("open-mpi.org") {
            MpiexecFlavour::OpenMpi
        } else {
            MpiexecFlavour::Hydra
        }
    }

    /// Ask `mpiexec --version` (on `PATH`, as the task will find it).
    pub async fn detect() -> Self {
        let run = tokio::process::Command::new("mpiexec")
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(PROBE_TIMEOUT, run).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                Self::from_version_text(&text)
            }
            Ok(Err(e)) => {
                tracing::info!("mpiexec --version: {e}; composing MPICH-style mpiexec prefixes");
                MpiexecFlavour::Hydra
            }
            Err(_) => {
                tracing::warn!("mpiexec --version did not answer; composing MPICH-style prefixes");
                MpiexecFlavour::Hydra
            }
        }
    }
}

/// A validated `resource_specification`, missing counts derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// Nodes the task gets.
    pub num_nodes: u32,
    /// Ranks in all.
    pub num_ranks: u32,
    /// Ranks on each node.
    pub ranks_per_node: u32,
    /// Extra launcher options, appended to every prefix.
    pub launcher_options: Option<String>,
}

/// Parsl's `InvalidResourceSpecification`: the offending keys and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid Resource Specification Supplied: {}. {message}", python_set(.keys))]
pub struct InvalidResourceSpecification {
    /// The keys at fault (sorted); empty when the specification is empty.
    pub keys: Vec<String>,
    /// Why.
    pub message: String,
}

fn python_set(keys: &[String]) -> String {
    if keys.is_empty() {
        return "set()".into();
    }
    let items: Vec<String> = keys.iter().map(|k| gc_pytext::repr_str(k)).collect();
    format!("{{{}}}", items.join(", "))
}

fn invalid(key: &str, message: String) -> InvalidResourceSpecification {
    InvalidResourceSpecification {
        keys: vec![key.to_string()],
        message,
    }
}

fn count(
    spec: &Map<String, Value>,
    key: &str,
) -> Result<Option<u32>, InvalidResourceSpecification> {
    let Some(value) = spec.get(key) else {
        return Ok(None);
    };
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n.and_then(|n| u32::try_from(n).ok()) {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => Err(invalid(
            key,
            format!("{key} must be a positive integer (got {value})"),
        )),
    }
}

/// Check a task's `resource_specification` as Parsl's `MPIExecutor` does (an empty one and
/// unknown keys are refused) and derive the missing counts.
pub fn validate(spec: &Map<String, Value>) -> Result<ResourceSpec, InvalidResourceSpecification> {
    if spec.is_empty() {
        return Err(InvalidResourceSpecification {
            keys: Vec::new(),
            message: "MPI mode requires optional parsl_resource_specification keyword argument \
                      to be configured"
                .into(),
        });
    }
    let mut unknown: Vec<String> = spec
        .keys()
        .filter(|k| !RESOURCE_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(InvalidResourceSpecification {
            keys: unknown,
            message: format!(
                "Task resource specification only accepts these types of resources: {}",
                RESOURCE_KEYS.join(", ")
            ),
        });
    }
    let nodes = count(spec, "num_nodes")?;
    let ranks = count(spec, "num_ranks")?;
    let per_node = count(spec, "ranks_per_node")?;
    let launcher_options = match spec.get("launcher_options") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid(
                "launcher_options",
                format!("launcher_options must be a string (got {other})"),
            ));
        }
    };
    let (num_nodes, num_ranks, ranks_per_node) = match (nodes, ranks, per_node) {
        (Some(n), Some(r), Some(p)) => (n, r, p),
        (Some(n), None, Some(p)) => (n, n.checked_mul(p).ok_or_else(too_many)?, p),
        (Some(n), Some(r), None) => (n, r, r.div_ceil(n)),
        (Some(_), None, None) => {
            return Err(invalid(
                "num_nodes",
                "num_nodes needs num_ranks or ranks_per_node as well".into(),
            ));
        }
        (None, Some(r), Some(p)) => (r.div_ceil(p), r, p),
        (None, Some(r), None) => (1, r, r),
        (None, None, Some(p)) => (1, p, p),
        (None, None, None) => {
            return Err(invalid(
                "launcher_options",
                "launcher_options needs num_ranks, ranks_per_node or num_nodes as well".into(),
            ));
        }
    };
    Ok(ResourceSpec {
        num_nodes,
        num_ranks,
        ranks_per_node,
        launcher_options,
    })
}

fn too_many() -> InvalidResourceSpecification {
    invalid(
        "num_ranks",
        "num_nodes × ranks_per_node is too large".into(),
    )
}

/// Nodes of the batch job this manager runs in: Slurm's `SLURM_NODELIST` (expanded with
/// `scontrol show hostnames`), PBS's `PBS_NODEFILE` (repeated names once), else `localhost`.
pub async fn batch_job_nodes() -> Result<Vec<String>, String> {
    nodes_from(
        std::env::var("SLURM_NODELIST").ok(),
        std::env::var_os("PBS_NODEFILE"),
    )
    .await
}

async fn nodes_from(
    slurm: Option<String>,
    pbs: Option<std::ffi::OsString>,
) -> Result<Vec<String>, String> {
    if let Some(list) = slurm.filter(|s| !s.is_empty()) {
        let run = tokio::process::Command::new("scontrol")
            .args(["show", "hostnames", &list])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(PROBE_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => out,
            Ok(Ok(out)) => {
                return Err(format!(
                    "scontrol show hostnames {list}: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(Err(e)) => return Err(format!("scontrol show hostnames {list}: {e}")),
            Err(_) => return Err(format!("scontrol show hostnames {list}: timed out")),
        };
        return Ok(distinct(
            String::from_utf8_lossy(&out.stdout).split_whitespace(),
        ));
    }
    if let Some(file) = pbs.filter(|s| !s.is_empty()) {
        let text = tokio::fs::read_to_string(&file)
            .await
            .map_err(|e| format!("PBS_NODEFILE {}: {e}", file.to_string_lossy()))?;
        return Ok(distinct(text.lines().map(str::trim)));
    }
    Ok(vec!["localhost".to_string()])
}

fn distinct<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names.filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// Upstream joins the prefix words with spaces, an empty `launcher_options` included.
fn join(words: &[String]) -> String {
    words.join(" ")
}

/// The variables a task runs with: `PARSL_NUM_NODES`, `PARSL_NUM_RANKS`,
/// `PARSL_RANKS_PER_NODE`, `PARSL_MPI_NODELIST` (comma-separated), `PARSL_LAUNCHER_OPTIONS`
/// (when given), the three launcher prefixes and `PARSL_MPI_PREFIX`.
pub fn task_environment(
    launcher: MpiLauncher,
    flavour: MpiexecFlavour,
    spec: &ResourceSpec,
    nodes: &[String],
) -> BTreeMap<String, String> {
    let ranks = spec.num_ranks.to_string();
    let per_node = spec.ranks_per_node.to_string();
    let node_list = nodes.join(",");
    let options = spec.launcher_options.clone().unwrap_or_default();
    let mpiexec = match flavour {
        MpiexecFlavour::Hydra => join(&[
            "mpiexec".into(),
            "-n".into(),
            ranks.clone(),
            "-ppn".into(),
            per_node.clone(),
            "-hosts".into(),
            node_list.clone(),
            options.clone(),
        ]),
        MpiexecFlavour::OpenMpi => {
            let hosts: Vec<String> = nodes.iter().map(|n| format!("{n}:{per_node}")).collect();
            join(&[
                "mpiexec".into(),
                "-n".into(),
                ranks.clone(),
                "--map-by".into(),
                format!("ppr:{per_node}:node"),
                "--host".into(),
                hosts.join(","),
                options.clone(),
            ])
        }
    };
    let srun = join(&[
        "srun".into(),
        "--ntasks".into(),
        ranks.clone(),
        "--ntasks-per-node".into(),
        per_node.clone(),
        "--nodelist".into(),
        node_list.clone(),
        "--nodes".into(),
        nodes.len().to_string(),
        options.clone(),
    ]);
    let aprun = join(&[
        "aprun".into(),
        "-n".into(),
        ranks.clone(),
        "-N".into(),
        per_node.clone(),
        "-node-list".into(),
        node_list.clone(),
        options,
    ]);
    let chosen = match launcher {
        MpiLauncher::Mpiexec => mpiexec.clone(),
        MpiLauncher::Srun => srun.clone(),
        MpiLauncher::Aprun => aprun.clone(),
    };
    let mut env = BTreeMap::new();
    env.insert("PARSL_NUM_NODES".into(), spec.num_nodes.to_string());
    env.insert("PARSL_NUM_RANKS".into(), ranks);
    env.insert("PARSL_RANKS_PER_NODE".into(), per_node);
    env.insert("PARSL_MPI_NODELIST".into(), node_list);
    if let Some(o) = &spec.launcher_options {
        env.insert("PARSL_LAUNCHER_OPTIONS".into(), o.clone());
    }
    env.insert("PARSL_MPIEXEC_PREFIX".into(), mpiexec);
    env.insert("PARSL_SRUN_PREFIX".into(), srun);
    env.insert("PARSL_APRUN_PREFIX".into(), aprun);
    env.insert("PARSL_MPI_PREFIX".into(), chosen);
    env
}

/// What [`NodeScheduler::offer`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Run now on these nodes.
    Run(T, Vec<String>),
    /// Waits until enough nodes are free.
    Waiting,
    /// More nodes than the block has: the task can never run here.
    Unavailable {
        /// The item back.
        item: T,
        /// Nodes asked for.
        requested: u32,
        /// Nodes of the block.
        available: usize,
    },
}

/// Whole nodes of one block, lent to one task at a time each (upstream's
/// `MPITaskScheduler`): a task runs as soon as enough nodes are free; tasks that do not fit
/// wait and, as nodes come back, start fewest nodes first, then in arrival order.
#[derive(Debug)]
pub struct NodeScheduler<T> {
    total: usize,
    free: VecDeque<String>,
    held: HashMap<Uuid, Vec<String>>,
    /// (nodes, arrival, task, item)
    waiting: Vec<(u32, u64, Uuid, T)>,
    arrivals: u64,
}

impl<T> NodeScheduler<T> {
    /// A scheduler over `nodes`.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            total: nodes.len(),
            free: nodes.into(),
            held: HashMap::new(),
            waiting: Vec::new(),
            arrivals: 0,
        }
    }

    /// Nodes of the block.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Tasks waiting for nodes.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// A task asking for `nodes` nodes.
    pub fn offer(&mut self, task_id: Uuid, nodes: u32, item: T) -> Offer<T> {
        if nodes as usize > self.total {
            return Offer::Unavailable {
                item,
                requested: nodes,
                available: self.total,
            };
        }
        if nodes as usize <= self.free.len() {
            let lent = self.lend(task_id, nodes);
            return Offer::Run(item, lent);
        }
        self.arrivals += 1;
        self.waiting.push((nodes, self.arrivals, task_id, item));
        Offer::Waiting
    }

    /// The task ended: its nodes are free again; returns the waiting tasks that now run.
    pub fn release(&mut self, task_id: Uuid) -> Vec<(T, Vec<String>)> {
        if let Some(nodes) = self.held.remove(&task_id) {
            self.free.extend(nodes);
        }
        let mut started = Vec::new();
        loop {
            let best = self
                .waiting
                .iter()
                .enumerate()
                .min_by_key(|(_, (n, arrival, _, _))| (*n, *arrival))
                .map(|(i, (n, _, _, _))| (i, *n));
            match best {
                Some((i, n)) if n as usize <= self.free.len() => {
                    let (n, _, id, item) = self.waiting.swap_remove(i);
                    let lent = self.lend(id, n);
                    started.push((item, lent));
                }
                _ => return started,
            }
        }
    }

    fn lend(&mut self, task_id: Uuid, nodes: u32) -> Vec<String> {
        let lent: Vec<String> = (0..nodes).filter_map(|_| self.free.pop_front()).collect();
        self.held.insert(task_id, lent.clone());
        lent
    }
}

/// What the manager of an MPI block does with a task next.
#[derive(Debug)]
pub enum Step {
    /// Run it with these variables.
    Run(TaskRequest, BTreeMap<String, String>),
    /// Answer with this result (it cannot run in this block).
    Answer(TaskResult),
}

/// The manager's side of an MPI block: its nodes, the launcher, and the tasks on them.
#[derive(Debug)]
pub struct MpiBlock {
    launcher: MpiLauncher,
    flavour: MpiexecFlavour,
    nodes: NodeScheduler<(TaskRequest, ResourceSpec)>,
    max_retries: u32,
}

impl MpiBlock {
    /// Find the block's nodes ([`batch_job_nodes`]) and which `mpiexec` is installed.
    /// `max_retries` repeats the failure text of a task that cannot run here once per
    /// attempt, as for other engine-level failures.
    pub async fn start(launcher: MpiLauncher, max_retries: u32) -> Result<Self, String> {
        let nodes = batch_job_nodes().await?;
        let flavour = MpiexecFlavour::detect().await;
        tracing::info!(
            launcher = launcher.name(),
            ?flavour,
            "MPI block with {} node(s): {}",
            nodes.len(),
            nodes.join(",")
        );
        Ok(Self {
            launcher,
            flavour,
            nodes: NodeScheduler::new(nodes),
            max_retries,
        })
    }

    /// A task arrived with its `resource_specification`: run it, let it wait for nodes, or
    /// answer it.
    pub fn accept(&mut self, request: TaskRequest, spec: &Map<String, Value>) -> Vec<Step> {
        let task_id = request.task_id;
        let spec = match validate(spec) {
            Ok(s) => s,
            Err(e) => {
                return vec![self.answer(task_id, format!("InvalidResourceSpecification: {e}\n"))];
            }
        };
        match self.nodes.offer(task_id, spec.num_nodes, (request, spec)) {
            Offer::Run((request, spec), nodes) => vec![self.run(request, &spec, &nodes)],
            Offer::Waiting => {
                tracing::info!(%task_id, "not enough free nodes; the task waits");
                Vec::new()
            }
            Offer::Unavailable {
                requested,
                available,
                ..
            } => vec![self.answer(
                task_id,
                format!(
                    "MPINodesUnavailable: MPINodesUnavailable(requested={requested} \
                     available={available}): the task asks for more nodes than its block has\n"
                ),
            )],
        }
    }

    /// A task finished: its nodes are free; returns the waiting tasks that can run now.
    pub fn finished(&mut self, task_id: Uuid) -> Vec<Step> {
        self.nodes
            .release(task_id)
            .into_iter()
            .map(|((request, spec), nodes)| self.run(request, &spec, &nodes))
            .collect()
    }

    fn run(&self, request: TaskRequest, spec: &ResourceSpec, nodes: &[String]) -> Step {
        tracing::info!(task_id = %request.task_id, "Launching task on provisioned nodes: {nodes:?}");
        let env = task_environment(self.launcher, self.flavour, spec, nodes);
        Step::Run(request, env)
    }

    fn answer(&self, task_id: Uuid, text: String) -> Step {
        let attempts = 1 + self.max_retries as usize;
        let result = crate::interchange::system_failure(task_id, &vec![text; attempts], now_ns());
        Step::Answer(result)
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> Result<ResourceSpec, InvalidResourceSpecification> {
        validate(v.as_object().expect("object"))
    }

    #[test]
    fn counts_are_derived() {
        let s = spec(json!({"num_ranks": 2})).unwrap();
        assert_eq!((s.num_nodes, s.num_ranks, s.ranks_per_node), (1, 2, 2));
        let s = spec(json!({"num_nodes": 2, "ranks_per_node": 3})).unwrap();
        assert_eq!((s.num_nodes, s.num_ranks, s.ranks_per_node), (2, 6, 3));
        let s = spec(json!({"num_nodes": 2, "num_ranks": 3})).unwrap();
        assert_eq!((s.num_nodes, s.num_ranks, s.ranks_per_node), (2, 3, 2));
        let s = spec(json!({"num_ranks": 5, "ranks_per_node": 2})).unwrap();
        assert_eq!((s.num_nodes, s.num_ranks, s.ranks_per_node), (3, 5, 2));
        let s = spec(json!({"ranks_per_node": "4", "launcher_options": "--bind-to core"})).unwrap();
        assert_eq!((s.num_nodes, s.num_ranks, s.ranks_per_node), (1, 4, 4));
        assert_eq!(s.launcher_options.as_deref(), Some("--bind-to core"));
    }

    #[test]
    fn refusals_name_the_key() {
        let e = spec(json!({})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid Resource Specification Supplied: set(). MPI mode requires optional \
             parsl_resource_specification keyword argument to be configured"
        );
        let e = spec(json!({"num_ranks": 2, "priority": 1, "gpus": 1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid Resource Specification Supplied: {'gpus', 'priority'}. Task resource \
             specification only accepts these types of resources: launcher_options, num_nodes, \
             num_ranks, ranks_per_node"
        );
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("two"),
            json!(null),
            json!([2]),
        ] {
            let e = spec(json!({"num_ranks": bad})).unwrap_err();
            assert_eq!(e.keys, ["num_ranks"], "{e}");
            assert!(
                e.to_string()
                    .contains("num_ranks must be a positive integer"),
                "{e}"
            );
        }
        let e = spec(json!({"num_nodes": 2})).unwrap_err();
        assert_eq!(e.keys, ["num_nodes"]);
        let e = spec(json!({"num_ranks": 2, "launcher_options": 7})).unwrap_err();
        assert_eq!(e.keys, ["launcher_options"]);
        let e = spec(json!({"launcher_options": "-v"})).unwrap_err();
        assert_eq!(e.keys, ["launcher_options"]);
    }

    #[test]
    fn prefixes_match_upstream_and_open_mpi() {
        let s = spec(json!({"num_nodes": 2, "ranks_per_node": 2})).unwrap();
        let nodes = vec!["n1".to_string(), "n2".to_string()];
        let env = task_environment(MpiLauncher::Mpiexec, MpiexecFlavour::Hydra, &s, &nodes);
        assert_eq!(env["PARSL_MPI_PREFIX"], "mpiexec -n 4 -ppn 2 -hosts n1,n2 ");
        assert_eq!(env["PARSL_MPIEXEC_PREFIX"], env["PARSL_MPI_PREFIX"]);
        assert_eq!(
            env["PARSL_SRUN_PREFIX"],
            "srun --ntasks 4 --ntasks-per-node 2 --nodelist n1,n2 --nodes 2 "
        );
        assert_eq!(
            env["PARSL_APRUN_PREFIX"],
            "aprun -n 4 -N 2 -node-list n1,n2 "
        );
        assert_eq!(env["PARSL_NUM_NODES"], "2");
        assert_eq!(env["PARSL_NUM_RANKS"], "4");
        assert_eq!(env["PARSL_RANKS_PER_NODE"], "2");
        assert_eq!(env["PARSL_MPI_NODELIST"], "n1,n2");
        assert!(!env.contains_key("PARSL_LAUNCHER_OPTIONS"));
        let env = task_environment(MpiLauncher::Srun, MpiexecFlavour::Hydra, &s, &nodes);
        assert_eq!(env["PARSL_MPI_PREFIX"], env["PARSL_SRUN_PREFIX"]);
        let env = task_environment(MpiLauncher::Aprun, MpiexecFlavour::Hydra, &s, &nodes);
        assert_eq!(env["PARSL_MPI_PREFIX"], env["PARSL_APRUN_PREFIX"]);

        let s = spec(json!({"num_ranks": 2, "launcher_options": "--bind-to none"})).unwrap();
        let env = task_environment(
            MpiLauncher::Mpiexec,
            MpiexecFlavour::OpenMpi,
            &s,
            &["localhost".into()],
        );
        assert_eq!(
            env["PARSL_MPI_PREFIX"],
            "mpiexec -n 2 --map-by ppr:2:node --host localhost:2 --bind-to none"
        );
        assert_eq!(env["PARSL_LAUNCHER_OPTIONS"], "--bind-to none");
    }

    #[test]
    fn flavour_from_version_text() {
        let open =
            "mpiexec (OpenRTE) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/\n";
        assert_eq!(
            MpiexecFlavour::from_version_text(open),
            MpiexecFlavour::OpenMpi
        );
        let five = "mpiexec (Open MPI) 5.0.3\n";
        assert_eq!(
            MpiexecFlavour::from_version_text(five),
            MpiexecFlavour::OpenMpi
        );
        let mpich = "HYDRA build details:\n    Version:                                 4.0.2\n";
        assert_eq!(
            MpiexecFlavour::from_version_text(mpich),
            MpiexecFlavour::Hydra
        );
    }

    fn engine(yaml: &str) -> Result<crate::HtexConfig, String> {
        let text = format!(
            "engine:\n  type: GlobusMPIEngine\n  provider:\n    type: LocalProvider\n    \
             launcher:\n      type: SimpleLauncher\n{yaml}"
        );
        let cfg =
            gc_config::UserEndpointConfig::from_yaml(&text, "t.yaml").map_err(|e| e.to_string())?;
        crate::HtexConfig::from_engine_config(&cfg.engine, std::path::Path::new("/uep"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn engine_options() {
        let c = engine("").unwrap();
        assert_eq!(c.mpi_launcher, Some(MpiLauncher::Mpiexec));
        assert_eq!(c.label, "GlobusMPIEngine");
        assert_eq!(c.executor_label(), "GlobusMPIEngine-MPIExecutor");
        assert!(c.encrypted);
        // max_workers_per_block (default 1) workers, whatever the cores.
        assert_eq!(c.max_workers_per_node, Some(1));
        assert!(c.cores_per_worker < 1e-6);
        let c = engine("  mpi_launcher: srun\n  max_workers_per_block: 3\n  label: m\n").unwrap();
        assert_eq!(c.mpi_launcher, Some(MpiLauncher::Srun));
        assert_eq!(c.executor_label(), "m-MPIExecutor");
        assert_eq!(c.max_workers_per_node, Some(3));
        let e = engine("  max_workers_per_node: 2\n").unwrap_err();
        assert!(e.contains("max_workers_per_node"), "{e}");
        assert!(
            e.contains("MPIExecutor.__init__() got an unexpected keyword argument"),
            "{e}"
        );
        let e = engine("  mpi_launcher: mpirun\n").unwrap_err();
        assert!(
            e.contains("mpi_launcher set to:mpirun must be set to one of"),
            "{e}"
        );
    }

    #[test]
    fn launcher_names() {
        for name in MpiLauncher::NAMES {
            assert_eq!(MpiLauncher::parse(name).map(MpiLauncher::name), Some(*name));
        }
        assert_eq!(MpiLauncher::parse("mpirun"), None);
    }

    #[test]
    fn nodes_are_lent_whole_and_waiting_tasks_start_smallest_first() {
        let nodes = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let mut s: NodeScheduler<&str> = NodeScheduler::new(nodes);
        let (t1, t2, t3, t4) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        assert_eq!(
            s.offer(t1, 2, "one"),
            Offer::Run("one", vec!["a".into(), "b".into()])
        );
        assert_eq!(s.offer(t2, 2, "two"), Offer::Waiting);
        assert_eq!(s.offer(t3, 2, "three"), Offer::Waiting);
        assert_eq!(s.waiting(), 2);
        assert_eq!(
            s.offer(t4, 4, "four"),
            Offer::Unavailable {
                item: "four",
                requested: 4,
                available: 3
            }
        );
        // A task that fits runs at once, even while bigger ones wait.
        let t5 = Uuid::new_v4();
        assert_eq!(s.offer(t5, 1, "five"), Offer::Run("five", vec!["c".into()]));
        // Two nodes back: the first waiting task of the fewest nodes starts.
        assert_eq!(
            s.release(t1),
            vec![("two", vec!["a".to_string(), "b".to_string()])]
        );
        assert_eq!(s.waiting(), 1);
        assert!(s.release(t5).is_empty());
        assert_eq!(
            s.release(t2),
            vec![("three", vec!["c".to_string(), "a".to_string()])]
        );
        assert!(s.release(t3).is_empty());
        assert!(s.release(Uuid::new_v4()).is_empty());
        assert_eq!(s.free.len(), 3);
    }

    #[tokio::test]
    async fn nodes_of_the_batch_job() {
        assert_eq!(nodes_from(None, None).await.unwrap(), ["localhost"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nodefile");
        std::fs::write(&file, "n1\nn2\nn1\n\nn3\n").unwrap();
        let pbs = Some(file.clone().into_os_string());
        assert_eq!(nodes_from(None, pbs).await.unwrap(), ["n1", "n2", "n3"]);
        let missing = Some(dir.path().join("none").into_os_string());
        let e = nodes_from(None, missing).await.unwrap_err();
        assert!(e.starts_with("PBS_NODEFILE "), "{e}");
    }
}
