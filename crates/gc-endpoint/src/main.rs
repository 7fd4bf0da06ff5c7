//! `globus-compute-endpoint`: the endpoint command line, compatible with upstream 4.19.0.
//!
//! `main` only hands the arguments to [`cli::run`], which parses them the way upstream's Click
//! application does and dispatches to one module per sub-command under `commands/`.
#![forbid(unsafe_code)]

mod cli;
mod click;
mod commands;
mod compute_dir;
mod console;
mod logging;
mod pyfmt;
mod pyyaml;
mod service;
mod texttable;
mod token_store;

fn main() -> std::process::ExitCode {
    cli::run(std::env::args_os().skip(1).collect())
}
