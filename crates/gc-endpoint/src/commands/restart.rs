//! `restart [--endpoint-uuid UUID] [NAME_OR_UUID]` (ENDPOINT.md §1.4.6): the local `stop`
//! followed by `start`, in the same process.

use crate::click::{CmdResult, Usage};
use crate::commands::common::{CommonOptions, parse, single_name};
use crate::commands::start::{detach, start_endpoint};
use crate::commands::stop::stop_endpoint;

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint restart",
    pieces: "[OPTIONS] [NAME_OR_UUID]",
    help_hint: None,
};

const HELP: &str = include_str!("../help/restart.txt");

click_args! {
    struct Args {
        #[arg(value_name = "NAME_OR_UUID")]
        names: Vec<String>,
        #[arg(long)]
        endpoint_uuid: Option<String>,
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        common: CommonOptions,
    }
}

/// Run `restart`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.common.apply(HELP) {
        return Ok(());
    }
    let value = single_name(&args.names, USAGE)?;
    stop_endpoint(&value, false)?;
    if args.detach {
        return detach(&value, args.endpoint_uuid.as_deref(), &args.common);
    }
    start_endpoint(&value, args.endpoint_uuid.as_deref(), &args.common)
}
