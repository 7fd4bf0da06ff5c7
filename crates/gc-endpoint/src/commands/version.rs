//! `version` (ENDPOINT.md §1.4.1): print this build's version in upstream's format.

use crate::click::{CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint version",
    pieces: "[OPTIONS]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/version.txt");

click_args! {
    struct Args {
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// Run `version`.
pub fn run(args: &[String]) -> CmdResult {
    let args: Args = parse(args, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    println!(
        "Globus Compute endpoint version: {}",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
