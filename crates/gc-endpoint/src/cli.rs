//! The command group: group options (`-c/--config-dir`, `--help`), the sub-command table and
//! dispatch. Parsing happens in two steps, as in upstream's Click group: first the group's own
//! options (which set up the Compute directory), then the sub-command's arguments.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Arg, ArgAction};

use crate::click::{self, CliError, Usage};
use crate::commands;
use crate::compute_dir;

const GROUP_USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint",
    pieces: "[OPTIONS] COMMAND [ARGS]...",
    help_hint: Some("--help"),
};

/// The sub-commands this build offers.
#[derive(Debug, Clone, Copy)]
enum Command {
    Configure,
    Delete,
    DisableOnBoot,
    EnableOnBoot,
    List,
    Login,
    Logout,
    MapIdentity,
    MigrateToTemplateCapable,
    PythonExec,
    RenderUserConfig,
    Restart,
    Start,
    BootstrapUserEndpoint,
    StartUserEndpoint,
    Stop,
    Trace,
    Version,
    Whoami,
}

impl Command {
    /// All commands in the order Click lists them (alphabetical).
    const ALL: [Command; 19] = [
        Command::Configure,
        Command::Delete,
        Command::DisableOnBoot,
        Command::EnableOnBoot,
        Command::List,
        Command::Login,
        Command::Logout,
        Command::MapIdentity,
        Command::MigrateToTemplateCapable,
        Command::PythonExec,
        Command::RenderUserConfig,
        Command::Restart,
        Command::Start,
        Command::BootstrapUserEndpoint,
        Command::StartUserEndpoint,
        Command::Stop,
        Command::Trace,
        Command::Version,
        Command::Whoami,
    ];

    /// Hidden commands run but are not listed in the group's help.
    fn hidden(self) -> bool {
        matches!(
            self,
            Command::StartUserEndpoint | Command::BootstrapUserEndpoint
        )
    }

    fn name(self) -> &'static str {
        match self {
            Command::Configure => "configure",
            Command::Delete => "delete",
            Command::DisableOnBoot => "disable-on-boot",
            Command::EnableOnBoot => "enable-on-boot",
            Command::List => "list",
            Command::Login => "login",
            Command::Logout => "logout",
            Command::MapIdentity => "map-identity",
            Command::MigrateToTemplateCapable => "migrate-to-template-capable",
            Command::PythonExec => "python-exec",
            Command::RenderUserConfig => "render-user-config",
            Command::Restart => "restart",
            Command::Start => "start",
            Command::BootstrapUserEndpoint => "_bootstrap-user-endpoint",
            Command::StartUserEndpoint => "_start-user-endpoint",
            Command::Stop => "stop",
            Command::Trace => "trace",
            Command::Version => "version",
            Command::Whoami => "whoami",
        }
    }

    /// The command's help text, from which Click derives the short help of the listing.
    fn help(self) -> &'static str {
        match self {
            Command::Configure => "Configure an endpoint",
            Command::Delete => "Deletes an endpoint and its config.",
            Command::DisableOnBoot => "Disable on-boot persistence.",
            Command::EnableOnBoot => {
                "Enable on-boot persistence; restarts the endpoint when the machine restarts."
            }
            Command::List => "List all available endpoints",
            Command::Login => "Manually log in with Globus",
            Command::Logout => "Logout from all endpoints",
            Command::MapIdentity => "Map an identity set to a local user",
            Command::MigrateToTemplateCapable => {
                "Add configuration templating to an existing endpoint"
            }
            Command::PythonExec => {
                "Run a Python module as a script via the Globus Compute endpoint CLI. This helps to minimize PATH issues when launching workers, etc."
            }
            Command::RenderUserConfig => "Render a user config template to stdout",
            Command::Restart => "Restarts an endpoint",
            Command::Start => "Start an endpoint",
            Command::BootstrapUserEndpoint => {
                "Start a user endpoint as a mapped user (run by a core endpoint)"
            }
            Command::StartUserEndpoint => "Start a user endpoint (run by a core endpoint)",
            Command::Stop => "Stops an endpoint using the pidfile",
            Command::Trace => "Show the path of a task with timestamps",
            Command::Version => "Show the version of globus-compute-endpoint",
            Command::Whoami => "Show the currently logged-in identity",
        }
    }

    fn run(self, args: &[String]) -> click::CmdResult {
        match self {
            Command::Configure => commands::configure::run(args),
            Command::Delete => commands::delete::run(args),
            Command::DisableOnBoot => commands::on_boot::run_disable(args),
            Command::EnableOnBoot => commands::on_boot::run_enable(args),
            Command::List => commands::list::run(args),
            Command::Login => commands::auth::run_login(args),
            Command::Logout => commands::auth::run_logout(args),
            Command::MapIdentity => run_map_identity(args),
            Command::MigrateToTemplateCapable => commands::migrate::run(args),
            Command::PythonExec => commands::python_exec::run(args),
            Command::RenderUserConfig => commands::render_user_config::run(args),
            Command::Restart => commands::restart::run(args),
            Command::Start => commands::start::run(args),
            Command::BootstrapUserEndpoint => commands::bootstrap_user_endpoint::run(args),
            Command::StartUserEndpoint => commands::start_user_endpoint::run(args),
            Command::Stop => commands::stop::run(args),
            Command::Trace => commands::trace::run(args),
            Command::Version => commands::version::run(args),
            Command::Whoami => commands::auth::run_whoami(args),
        }
    }
}

/// `map-identity` (not an upstream command): clap's own help and error texts.
fn run_map_identity(args: &[String]) -> click::CmdResult {
    #[derive(clap::Parser)]
    #[command(name = "globus-compute-endpoint map-identity", no_binary_name = true)]
    struct Cli {
        #[command(flatten)]
        args: commands::map_identity::MapIdentityArgs,
    }
    match <Cli as clap::Parser>::try_parse_from(args) {
        Ok(cli) => Err(CliError::Done(commands::map_identity::run(&cli.args))),
        Err(e) if e.exit_code() == 0 => {
            click::print_help(&e.render().to_string());
            Ok(())
        }
        Err(e) => {
            eprint!("{}", e.render());
            Err(CliError::Exit(2))
        }
    }
}

/// The group's `--help` text.
fn group_help() -> String {
    let width = click::help_width();
    let mut out = String::from(
        "Usage: globus-compute-endpoint [OPTIONS] COMMAND [ARGS]...\n\nOptions:\n  -c, --config-dir TEXT  override default config dir\n  --help                 Show this message and exit.\n\nCommands:\n",
    );
    let longest = Command::ALL
        .iter()
        .filter(|c| !c.hidden())
        .map(|c| c.name().len())
        .max()
        .unwrap_or(0);
    let limit = width.saturating_sub(6 + longest);
    let first_col = longest.min(30) + 2;
    for c in Command::ALL.into_iter().filter(|c| !c.hidden()) {
        let short = click::short_help(c.help(), limit);
        out.push_str(&format!("  {:<first_col$}{short}\n", c.name()));
    }
    out
}

fn group_parser() -> clap::Command {
    clap::Command::new("globus-compute-endpoint")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .allow_external_subcommands(true)
        .args_override_self(true)
        .arg(
            Arg::new("config-dir")
                .short('c')
                .long("config-dir")
                .num_args(1)
                .allow_hyphen_values(true),
        )
        .arg(Arg::new("help").long("help").action(ArgAction::SetTrue))
}

/// Parse and run one invocation; the exit status follows Click's conventions.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

fn dispatch(args: &[String]) -> click::CmdResult {
    if args.is_empty() {
        // Click's `no_args_is_help` for groups: the help, on stderr, as a usage error.
        eprint!("{}", group_help());
        return Err(CliError::Exit(2));
    }
    let parser = group_parser();
    let long = click::long_options(&parser);
    // The sub-command's own words start at the first word clap does not take as a group
    // option; find it by parsing.
    let matches = parser
        .try_get_matches_from(args)
        .map_err(|e| click::from_clap(&e, GROUP_USAGE, &long, args))?;
    if matches.get_flag("help") {
        click::print_help(&group_help());
        return Ok(());
    }
    if let Some(dir) = matches.get_one::<String>("config-dir") {
        compute_dir::set_override(dir);
    }
    compute_dir::ensure_compute_dir().map_err(CliError::Click)?;

    let Some((name, sub)) = matches.subcommand() else {
        return Err(CliError::Usage {
            usage: GROUP_USAGE,
            message: "Missing command.".into(),
        });
    };
    let sub_args: Vec<String> = sub
        .get_many::<OsString>("")
        .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let Some(cmd) = Command::ALL.into_iter().find(|c| c.name() == name) else {
        return Err(CliError::Usage {
            usage: GROUP_USAGE,
            message: format!("No such command '{name}'."),
        });
    };
    cmd.run(&sub_args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_help_lists_only_built_commands() {
        let help = group_help();
        assert!(help.contains("\n  configure                    Configure an endpoint\n"));
        assert!(help.contains(
            "\n  version                      Show the version of globus-compute-endpoint\n"
        ));
        assert!(help.contains("\n  start                        Start an endpoint\n"));
        assert!(!help.contains("_start-user-endpoint"));
    }
}
