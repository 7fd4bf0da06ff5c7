//! Launchers: how a block's job script starts the worker command on its nodes.
//!
//! A launcher turns "the command that starts one worker manager" into the lines of the job
//! script that start `tasks_per_node` copies on each of the block's `nodes_per_block` nodes
//! (ENDPOINT.md §6.6). For GlobusComputeEngine `tasks_per_node` is 1: one manager per node,
//! which starts the workers itself.

use gc_config::engine::{LauncherConfig, LauncherType};
use serde_json::Value as Json;

use crate::ProviderError;

/// A configured launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// Start every copy on the node the job script runs on (the default).
    SingleNode {
        /// Trace the script (`set -x`).
        debug: bool,
        /// Fail the job when any copy fails (otherwise only when all do).
        fail_on_any: bool,
    },
    /// Run the command once, as is.
    Simple {
        /// Trace the script.
        debug: bool,
    },
    /// `srun` the copies across the allocation.
    Srun {
        /// Trace the script.
        debug: bool,
        /// Extra `srun` options.
        overrides: String,
    },
    /// `mpiexec` the copies across the allocation.
    MpiExec {
        /// Trace the script.
        debug: bool,
        /// The binding option (`--bind-to`), given `none`.
        bind_cmd: String,
        /// Extra `mpiexec` options.
        overrides: String,
    },
    /// Put `prepend` in front of the command (e.g. a container runner).
    Wrapped {
        /// Trace the script.
        debug: bool,
        /// The prefix.
        prepend: String,
    },
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher::SingleNode {
            debug: true,
            fail_on_any: false,
        }
    }
}

fn opt_bool(cfg: &LauncherConfig, name: &str, default: bool) -> bool {
    cfg.options
        .get(name)
        .and_then(Json::as_bool)
        .unwrap_or(default)
}

fn opt_str(cfg: &LauncherConfig, name: &str) -> String {
    cfg.options
        .get(name)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Launcher {
    /// The launcher of a provider configuration (`None`: [`Launcher::default`]).
    pub fn from_config(config: Option<&LauncherConfig>) -> Result<Self, ProviderError> {
        let Some(cfg) = config else {
            return Ok(Launcher::default());
        };
        let debug = opt_bool(cfg, "debug", true);
        Ok(match cfg.launcher_type {
            LauncherType::SingleNode => Launcher::SingleNode {
                debug,
                fail_on_any: opt_bool(cfg, "fail_on_any", false),
            },
            LauncherType::Simple => Launcher::Simple { debug },
            LauncherType::Srun => Launcher::Srun {
                debug,
                overrides: opt_str(cfg, "overrides"),
            },
            LauncherType::MpiExec => Launcher::MpiExec {
                debug,
                bind_cmd: cfg
                    .options
                    .get("bind_cmd")
                    .and_then(Json::as_str)
                    .unwrap_or("--bind-to")
                    .to_string(),
                overrides: opt_str(cfg, "overrides"),
            },
            LauncherType::Wrapped => {
                let prepend = opt_str(cfg, "prepend");
                if prepend.trim().is_empty() {
                    return Err(ProviderError::Config(
                        "WrappedLauncher needs a non-empty `prepend`".into(),
                    ));
                }
                Launcher::Wrapped { debug, prepend }
            }
            other => {
                return Err(ProviderError::Config(format!(
                    "{} is not supported by this endpoint; supported launchers: \
                     SingleNodeLauncher, SimpleLauncher, SrunLauncher, MpiExecLauncher, \
                     WrappedLauncher",
                    other.name()
                )));
            }
        })
    }

    /// The `type` name.
    pub fn name(&self) -> &'static str {
        match self {
            Launcher::SingleNode { .. } => "SingleNodeLauncher",
            Launcher::Simple { .. } => "SimpleLauncher",
            Launcher::Srun { .. } => "SrunLauncher",
            Launcher::MpiExec { .. } => "MpiExecLauncher",
            Launcher::Wrapped { .. } => "WrappedLauncher",
        }
    }

    /// The job-script lines that start `command` `tasks_per_node` times on each of
    /// `nodes_per_block` nodes.
    pub fn wrap(&self, command: &str, tasks_per_node: usize, nodes_per_block: usize) -> String {
        let total = tasks_per_node.max(1) * nodes_per_block.max(1);
        let trace = |debug: bool| if debug { "set -x\n" } else { "" };
        match self {
            Launcher::SingleNode { debug, fail_on_any } => {
                // Every copy on this node; the job ends when they all have.
                let rule = if *fail_on_any {
                    "[ \"$failed\" -eq 0 ]"
                } else {
                    "[ \"$failed\" -lt \"$copies\" ]"
                };
                format!(
                    "{trace}export CORES=$(getconf _NPROCESSORS_ONLN)\n\
                     copies={total}\n\
                     pids=\"\"\n\
                     for _ in $(seq 1 \"$copies\"); do\n\
                     \x20   {command} &\n\
                     \x20   pids=\"$pids $!\"\n\
                     done\n\
                     failed=0\n\
                     for pid in $pids; do\n\
                     \x20   wait \"$pid\" || failed=$((failed + 1))\n\
                     done\n\
                     {rule}\n",
                    trace = trace(*debug),
                )
            }
            Launcher::Simple { debug } => format!("{}{command}\n", trace(*debug)),
            Launcher::Srun { debug, overrides } => format!(
                "{}srun --ntasks={total} --ntasks-per-node={tpn} {overrides} /bin/bash -c {cmd}\n",
                trace(*debug),
                tpn = tasks_per_node.max(1),
                overrides = overrides.trim(),
                cmd = shell_quote(command),
            )
            .replace("  ", " "),
            Launcher::MpiExec {
                debug,
                bind_cmd,
                overrides,
            } => format!(
                "{}hostfile_args=\"\"\n\
                 if [ -n \"${{PBS_NODEFILE:-}}\" ]; then\n\
                 \x20   sort -u \"$PBS_NODEFILE\" > \"hosts.$$\"\n\
                 \x20   hostfile_args=\"--hostfile hosts.$$\"\n\
                 fi\n\
                 mpiexec -n {total} -ppn {tpn} $hostfile_args {bind_cmd} none {overrides} /bin/bash -c {cmd}\n",
                trace(*debug),
                tpn = tasks_per_node.max(1),
                overrides = overrides.trim(),
                cmd = shell_quote(command),
            )
            .replace("  ", " "),
            Launcher::Wrapped { debug, prepend } => {
                format!("{}{} {command}\n", trace(*debug), prepend.trim())
            }
        }
    }
}

/// `'…'` with embedded single quotes escaped, for `sh -c` arguments.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launcher(yaml_type: &str, opts: &str) -> Result<Launcher, ProviderError> {
        let text = format!(
            "engine:\n  type: GlobusComputeEngine\n  provider:\n    type: LocalProvider\n    \
             launcher:\n      type: {yaml_type}\n{opts}"
        );
        let cfg = gc_config::UserEndpointConfig::from_yaml(&text, "t.yaml").expect("config");
        let provider = cfg.engine.provider.expect("provider");
        Launcher::from_config(provider.launcher.as_ref())
    }

    #[test]
    fn single_node_starts_every_copy_and_waits() {
        let l = launcher("SingleNodeLauncher", "      debug: false\n").unwrap();
        let s = l.wrap("manager --block-id=0", 2, 2);
        assert!(s.starts_with("export CORES="), "{s}");
        assert!(s.contains("copies=4\n"));
        assert!(s.contains("    manager --block-id=0 &\n"));
        assert!(s.ends_with("[ \"$failed\" -lt \"$copies\" ]\n"));
    }

    #[test]
    fn single_node_fail_on_any() {
        let l = launcher("SingleNodeLauncher", "      fail_on_any: true\n").unwrap();
        let s = l.wrap("m", 1, 1);
        assert!(s.starts_with("set -x\n"));
        assert!(s.ends_with("[ \"$failed\" -eq 0 ]\n"));
    }

    #[test]
    fn srun_quotes_the_command() {
        let l = launcher(
            "SrunLauncher",
            "      debug: false\n      overrides: --mpi=none\n",
        )
        .unwrap();
        assert_eq!(
            l.wrap("echo 'a b'", 1, 3),
            "srun --ntasks=3 --ntasks-per-node=1 --mpi=none /bin/bash -c 'echo '\\''a b'\\'''\n"
        );
    }

    #[test]
    fn mpiexec_binds_to_none() {
        let l = launcher("MpiExecLauncher", "      debug: false\n").unwrap();
        let s = l.wrap("m", 2, 2);
        assert!(
            s.contains("mpiexec -n 4 -ppn 2 $hostfile_args --bind-to none /bin/bash -c 'm'\n"),
            "{s}"
        );
    }

    #[test]
    fn simple_and_wrapped() {
        let l = launcher("SimpleLauncher", "      debug: false\n").unwrap();
        assert_eq!(l.wrap("m", 4, 4), "m\n");
        let l = launcher(
            "WrappedLauncher",
            "      debug: false\n      prepend: time\n",
        )
        .unwrap();
        assert_eq!(l.wrap("m", 1, 1), "time m\n");
        assert!(launcher("WrappedLauncher", "      prepend: \"  \"\n").is_err());
    }

    #[test]
    fn unsupported_launchers_are_named() {
        let e = launcher("AprunLauncher", "").unwrap_err();
        assert!(
            e.to_string().starts_with("AprunLauncher is not supported"),
            "{e}"
        );
    }
}
