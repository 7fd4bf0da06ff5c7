//! Options every "common options" command accepts after its name, and argument parsing.

use clap::Parser;

use crate::click::{self, CliError, Usage};

/// `-h/--help`, `--no-color`, `--log-to-console`, `--debug`.
#[derive(Debug, clap::Args)]
pub struct CommonOptions {
    /// Show this message and exit.
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    /// Do not colorize the (console) log lines
    #[arg(long)]
    pub no_color: bool,
    /// Emit log lines to console as well as log
    #[arg(long)]
    pub log_to_console: bool,
    /// Emit extra information generally only helpful for developers
    #[arg(long)]
    pub debug: bool,
}

impl CommonOptions {
    /// Apply the logging flags; `true` when help was asked for (and printed).
    pub fn apply(&self, help_text: &str) -> bool {
        crate::console::set_debug(self.debug, self.no_color);
        if self.help {
            click::print_help(help_text);
        }
        self.help
    }
}

/// Parse a sub-command's words with clap, reporting errors as Click would.
pub fn parse<T: Parser>(args: &[String], usage: Usage) -> Result<T, CliError> {
    let cmd = T::command();
    let long = click::long_options(&cmd);
    T::try_parse_from(args).map_err(|e| click::from_clap(&e, usage, &long, args))
}

/// The only option of `login`, `logout`, `whoami`, `enable-on-boot`, `disable-on-boot`:
/// `--help` (no `-h`).
#[derive(Debug, clap::Args)]
pub struct HelpOnly {
    /// Show this message and exit.
    #[arg(long = "help")]
    pub help: bool,
}

impl HelpOnly {
    /// `true` when help was asked for (and printed).
    pub fn apply(&self, help_text: &str) -> bool {
        if self.help {
            click::print_help(help_text);
        }
        self.help
    }
}

/// One extra positional argument is a usage error, as in Click.
pub fn single_name(names: &[String], usage: Usage) -> Result<String, CliError> {
    if names.len() > 1 {
        let extras = &names[1..];
        let word = if extras.len() == 1 {
            "argument"
        } else {
            "arguments"
        };
        return Err(CliError::Usage {
            usage,
            message: format!("Got unexpected extra {word} ({})", extras.join(" ")),
        });
    }
    Ok(names.first().cloned().unwrap_or_else(|| "default".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: Usage = Usage {
        command_path: "globus-compute-endpoint stop",
        pieces: "[OPTIONS] [NAME_OR_UUID]",
        help_hint: None,
    };

    #[test]
    fn one_name_at_most() {
        assert_eq!(single_name(&[], USAGE).unwrap(), "default");
        assert_eq!(single_name(&["a".into()], USAGE).unwrap(), "a");
        assert!(matches!(
            single_name(&["a".into(), "b".into()], USAGE),
            Err(CliError::Usage { .. })
        ));
    }
}
