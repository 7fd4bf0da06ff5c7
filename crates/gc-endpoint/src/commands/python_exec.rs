//! `python-exec MODULE [ARGS...]` (ENDPOINT.md §1.4.13): replace this process with
//! `python3 -m MODULE ARGS...` (the first `python3` on `PATH`, the interpreter the workers
//! use), environment unchanged. Options other than `-h/--help` pass through to the module.

use std::os::unix::process::CommandExt;

use crate::click::{self, CliError, CmdResult, Usage};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint python-exec",
    pieces: "[OPTIONS] MODULE",
    help_hint: None,
};

const HELP: &str = include_str!("../help/python-exec.txt");

/// The interpreter the module runs under.
const PYTHON: &str = "python3";

/// `(module, args)` as Click splits them with `ignore_unknown_options`: the first word
/// that is not an option is the module; every other word is passed on, in order.
fn split(argv: &[String]) -> (Option<&str>, Vec<&str>) {
    let mut module = None;
    let mut rest = Vec::new();
    for word in argv {
        if module.is_none() && !word.starts_with('-') {
            module = Some(word.as_str());
        } else {
            rest.push(word.as_str());
        }
    }
    (module, rest)
}

/// Run `python-exec`; returns only if the interpreter cannot be started.
pub fn run(argv: &[String]) -> CmdResult {
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        click::print_help(HELP);
        return Ok(());
    }
    let (Some(module), args) = split(argv) else {
        return Err(CliError::Usage {
            usage: USAGE,
            message: "Missing argument 'MODULE'.".into(),
        });
    };
    let err = std::process::Command::new(PYTHON)
        .arg("-m")
        .arg(module)
        .args(args)
        .exec();
    Err(CliError::Click(format!("cannot run {PYTHON}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_is_the_first_non_option_word() {
        let words: Vec<String> = ["--foo", "pkg.mod", "--ahoy", "matey", "x"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        assert_eq!(
            split(&words),
            (Some("pkg.mod"), vec!["--foo", "--ahoy", "matey", "x"])
        );
        assert_eq!(split(&[]), (None, vec![]));
    }
}
