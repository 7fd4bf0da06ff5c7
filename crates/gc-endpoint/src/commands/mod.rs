//! One module per sub-command; each offers `run(args) -> CmdResult`.

/// A sub-command's argument struct, parsed the way Click parses: the words after the
/// sub-command's name (no binary name), no automatic `--help`/`--version` (the commands
/// declare their own), and a repeated option overriding the earlier one.
macro_rules! click_args {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(Debug, clap::Parser)]
        #[command(
            no_binary_name = true,
            disable_help_flag = true,
            disable_version_flag = true,
            args_override_self = true
        )]
        $vis struct $name { $($body)* }
    };
}

pub mod auth;
pub mod bootstrap_user_endpoint;
pub mod common;
pub mod configure;
pub mod delete;
pub mod list;
pub mod map_identity;
pub mod migrate;
pub mod on_boot;
pub mod python_exec;
pub mod render_user_config;
pub mod restart;
pub mod start;
pub mod start_user_endpoint;
pub mod stop;
pub mod trace;
pub mod version;
