//! Click's conventions, which upstream's CLI gets from its framework and users see:
//! how usage errors and handled errors are printed, their exit statuses, value conversions
//! (`BOOLEAN`, `INTEGER RANGE`, `FILE`), "did you mean" suggestions, and `[y/N]` prompts.
//!
//! Errors here are values; [`CliError::report`] is the one place that prints them.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::pyfmt::py_repr_str;

/// The usage line of a (sub-)command and whether Click adds a "Try ... for help." hint.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// `globus-compute-endpoint configure`
    pub command_path: &'static str,
    /// `[OPTIONS] [NAME]`
    pub pieces: &'static str,
    /// The help option named in the hint, when Click prints one.
    pub help_hint: Option<&'static str>,
}

impl Usage {
    fn render(&self) -> String {
        let mut out = format!("Usage: {} {}\n", self.command_path, self.pieces);
        if let Some(opt) = self.help_hint {
            out.push_str(&format!("Try '{} {opt}' for help.\n", self.command_path));
        }
        out
    }
}

/// How a command invocation ends when it does not succeed.
#[derive(Debug)]
pub enum CliError {
    /// A usage error with context: usage line, optional hint, `Error: <msg>`; exit 2.
    Usage { usage: Usage, message: String },
    /// A usage error Click raises without context (e.g. a missing option value): exit 2.
    BareUsage(String),
    /// A handled error (`ClickException`): `Error: <msg>`; exit 1.
    Click(String),
    /// A declined confirmation: `Aborted!`; exit 1.
    Aborted,
    /// Everything was already said; just exit with this status.
    Exit(u8),
    /// A command that computes its own exit status finished.
    Done(ExitCode),
}

impl CliError {
    /// An exit status computed elsewhere (a library's `exit_code()`); statuses outside
    /// 0–255 become 1.
    pub fn status(code: i32) -> CliError {
        CliError::Exit(u8::try_from(code).unwrap_or(1))
    }

    /// Print the error the way Click does and return the exit status.
    pub fn report(self) -> ExitCode {
        if let CliError::Done(code) = self {
            return code;
        }
        let mut err = std::io::stderr().lock();
        // Nothing sensible is left to do if stderr is gone; the exit status still tells.
        let (text, code) = match self {
            CliError::Usage { usage, message } => {
                (format!("{}\nError: {message}\n", usage.render()), 2)
            }
            CliError::BareUsage(message) => (format!("Error: {message}\n"), 2),
            CliError::Click(message) => (format!("Error: {message}\n"), 1),
            CliError::Aborted => ("Aborted!\n".to_string(), 1),
            CliError::Exit(code) => (String::new(), code),
            CliError::Done(_) => (String::new(), 0),
        };
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
        ExitCode::from(code)
    }
}

/// Result of a command.
pub type CmdResult = Result<(), CliError>;

/// Print help text (already formatted) to stdout.
pub fn print_help(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// The long option names (`--x`) of a clap command, as Click's parser knows them.
pub fn long_options(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect()
}

/// Translate a clap parse error into the message Click would print for the same input.
pub fn from_clap(
    err: &clap::Error,
    usage: Usage,
    long_opts: &[String],
    argv: &[String],
) -> CliError {
    let invalid_arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match err.kind() {
        ErrorKind::UnknownArgument => {
            let raw = invalid_arg.unwrap_or_default();
            if raw.starts_with('-') && raw.len() > 1 {
                let opt = raw.split('=').next().unwrap_or(&raw).to_string();
                CliError::Usage {
                    usage,
                    message: no_such_option(&opt, long_opts),
                }
            } else {
                let extras = extra_positionals(&raw, argv);
                let (word, list) = if extras.len() == 1 {
                    ("argument", extras[0].clone())
                } else {
                    ("arguments", extras.join(" "))
                };
                CliError::Usage {
                    usage,
                    message: format!("Got unexpected extra {word} ({list})"),
                }
            }
        }
        ErrorKind::InvalidValue | ErrorKind::NoEquals => {
            // The only way to reach this with our string-typed options: an option given as
            // the last word, without its value.
            let opt = argv
                .last()
                .filter(|a| a.starts_with('-'))
                .cloned()
                .or_else(|| invalid_arg.map(|s| s.split(' ').next().unwrap_or("").to_string()))
                .unwrap_or_default();
            CliError::BareUsage(format!("Option '{opt}' requires an argument."))
        }
        ErrorKind::TooManyValues => {
            let opt = invalid_arg
                .map(|s| s.split(' ').next().unwrap_or("").to_string())
                .unwrap_or_default();
            CliError::BareUsage(format!("Option '{opt}' does not take a value."))
        }
        _ => {
            // Any other clap complaint: keep its first line, Click-style.
            let text = err.render().to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ")
                .to_string();
            CliError::Usage {
                usage,
                message: line,
            }
        }
    }
}

/// The positional words following (and including) the first unexpected one.
fn extra_positionals(first: &str, argv: &[String]) -> Vec<String> {
    let start = argv.iter().position(|a| a == first);
    match start {
        Some(i) => argv[i..]
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect(),
        None => vec![first.to_string()],
    }
}

/// `No such option: --x` plus Click's suggestions (difflib close matches).
pub fn no_such_option(opt: &str, long_opts: &[String]) -> String {
    let mut msg = format!("No such option: {opt}");
    if opt.starts_with("--") {
        let mut matches = close_matches(opt, long_opts, 3, 0.6);
        matches.sort();
        if matches.len() == 1 {
            msg.push_str(&format!(" Did you mean {}?", matches[0]));
        } else if !matches.is_empty() {
            msg.push_str(&format!(" (Possible options: {})", matches.join(", ")));
        }
    }
    msg
}

/// Python's `difflib.get_close_matches`: the best `n` candidates whose similarity ratio to
/// `word` is at least `cutoff`, best first (ties: the larger string first).
pub fn close_matches(word: &str, candidates: &[String], n: usize, cutoff: f64) -> Vec<String> {
    let b: Vec<char> = word.chars().collect();
    let mut scored: Vec<(f64, &String)> = candidates
        .iter()
        .filter_map(|c| {
            let a: Vec<char> = c.chars().collect();
            let r = ratio(&a, &b);
            (r >= cutoff).then_some((r, c))
        })
        .collect();
    scored.sort_by(|x, y| {
        y.0.partial_cmp(&x.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| y.1.cmp(x.1))
    });
    scored.into_iter().take(n).map(|(_, c)| c.clone()).collect()
}

/// `SequenceMatcher(None, a, b).ratio()` (no junk heuristics: only used on short strings).
fn ratio(a: &[char], b: &[char]) -> f64 {
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let mut matched = 0;
    let mut queue = vec![(0, a.len(), 0, b.len())];
    while let Some((alo, ahi, blo, bhi)) = queue.pop() {
        let (i, j, k) = longest_match(a, b, alo, ahi, blo, bhi);
        if k > 0 {
            matched += k;
            if alo < i && blo < j {
                queue.push((alo, i, blo, j));
            }
            if i + k < ahi && j + k < bhi {
                queue.push((i + k, ahi, j + k, bhi));
            }
        }
    }
    2.0 * matched as f64 / total as f64
}

/// `SequenceMatcher.find_longest_match` without junk: the earliest longest common block.
fn longest_match(
    a: &[char],
    b: &[char],
    alo: usize,
    ahi: usize,
    blo: usize,
    bhi: usize,
) -> (usize, usize, usize) {
    let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
    let mut prev: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, &ca) in a.iter().enumerate().take(ahi).skip(alo) {
        let mut cur = std::collections::HashMap::new();
        for (j, &cb) in b.iter().enumerate().take(bhi).skip(blo) {
            if cb != ca {
                continue;
            }
            let k = j
                .checked_sub(1)
                .and_then(|p| prev.get(&p))
                .copied()
                .unwrap_or(0)
                + 1;
            cur.insert(j, k);
            if k > bestsize {
                besti = i + 1 - k;
                bestj = j + 1 - k;
                bestsize = k;
            }
        }
        prev = cur;
    }
    (besti, bestj, bestsize)
}

/// Click's `BOOL` conversion.
pub fn parse_bool(param: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "f" | "no" | "n" | "off" | "" => Ok(false),
        _ => Err(format!(
            "Invalid value for '{param}': {} is not a valid boolean. Recognized values: , 0, 1, f, false, n, no, off, on, t, true, y, yes",
            py_repr_str(value)
        )),
    }
}

/// Click's `IntRange(min=0)` conversion (Python `int()` syntax).
pub fn parse_int_min0(param: &str, value: &str) -> Result<i128, String> {
    let parsed = crate::pyfmt::py_int(value).ok_or_else(|| {
        format!(
            "Invalid value for '{param}': {} is not a valid integer range.",
            py_repr_str(value)
        )
    })?;
    if parsed < 0 {
        return Err(format!(
            "Invalid value for '{param}': {parsed} is not in the range x>=0."
        ));
    }
    Ok(parsed)
}

/// Click's `Path(exists=True, dir_okay=False)` check.
pub fn existing_file(param: &str, value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    let shown = py_repr_str(value);
    match std::fs::metadata(&path) {
        Err(_) => Err(format!(
            "Invalid value for '{param}': File {shown} does not exist."
        )),
        Ok(m) if m.is_dir() => Err(format!(
            "Invalid value for '{param}': File {shown} is a directory."
        )),
        Ok(_) => {
            if std::fs::File::open(&path).is_err() {
                Err(format!(
                    "Invalid value for '{param}': File {shown} is not readable."
                ))
            } else {
                Ok(path)
            }
        }
    }
}

/// `click.confirm(text, abort=True)`: `<text> [y/N]: ` on stdout, read a line from stdin.
pub fn confirm(text: &str) -> CmdResult {
    let stdin = std::io::stdin();
    loop {
        {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{text} [y/N]: ");
            let _ = out.flush();
        }
        let mut line = String::new();
        let n = stdin.lock().read_line(&mut line).unwrap_or(0);
        if n == 0 {
            return Err(CliError::Aborted);
        }
        match line.trim_end_matches(['\n', '\r']).to_lowercase().as_str() {
            "y" | "yes" => return Ok(()),
            "n" | "no" | "" => return Err(CliError::Aborted),
            _ => {
                println!("Error: invalid input");
            }
        }
    }
}

/// Click's `make_default_short_help`: the first sentence of a help text, cut to `max` columns.
pub fn short_help(help: &str, max: usize) -> String {
    let first = help.split("\n\n").next().unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().collect();
    if words.is_empty() {
        return String::new();
    }
    let mut total = 0;
    let mut cut_at = None;
    for (i, word) in words.iter().enumerate() {
        total += word.chars().count() + usize::from(i > 0);
        if total > max {
            cut_at = Some(i);
            break;
        }
        if word.ends_with('.') {
            return words[..=i].join(" ");
        }
        if total == max && i != words.len() - 1 {
            cut_at = Some(i);
            break;
        }
    }
    let Some(mut i) = cut_at else {
        return words.join(" ");
    };
    total += 3;
    while i > 0 {
        total -= words[i].chars().count() + usize::from(i > 0);
        if total <= max {
            break;
        }
        i -= 1;
    }
    format!("{}...", words[..i].join(" "))
}

/// Click's help width: terminal columns (at most 80) minus 2, at least 50.
pub fn help_width() -> usize {
    let columns = crate::texttable::terminal_columns();
    columns.min(80).saturating_sub(2).max(50)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suggestions_match_click() {
        let configure = opts(&[
            "--multi-user",
            "--high-assurance",
            "--display-name",
            "--auth-policy",
            "--contact-email",
            "--manager-config",
            "--core-config",
            "--template-config",
            "--schema-config",
            "--user-env-config",
            "--id-mapping-config",
            "--auth-policy-project-id",
            "--auth-policy-display-name",
            "--auth-policy-mfa-required",
            "--auth-policy-description",
            "--allowed-domains",
            "--excluded-domains",
            "--auth-timeout",
            "--subscription-id",
            "--help",
            "--no-color",
            "--log-to-console",
            "--debug",
        ]);
        assert_eq!(
            no_such_option("--core-confi", &configure),
            "No such option: --core-confi (Possible options: --core-config, --manager-config, --schema-config)"
        );
        assert_eq!(
            no_such_option("--endpoint-config", &configure),
            "No such option: --endpoint-config (Possible options: --core-config, --id-mapping-config, --user-env-config)"
        );
        let list = opts(&["--help", "--no-color", "--log-to-console", "--debug"]);
        assert_eq!(
            no_such_option("--debu", &list),
            "No such option: --debu Did you mean --debug?"
        );
        assert_eq!(
            no_such_option("--zzzzzz", &list),
            "No such option: --zzzzzz"
        );
        assert_eq!(no_such_option("-x", &list), "No such option: -x");
    }

    #[test]
    fn ratio_matches_difflib() {
        let r = ratio(
            &"abcd".chars().collect::<Vec<_>>(),
            &"bcde".chars().collect::<Vec<_>>(),
        );
        assert!((r - 0.75).abs() < 1e-9);
    }

    #[test]
    fn short_help_truncates_like_click() {
        assert_eq!(
            short_help(
                "Enable on-boot persistence; restarts the endpoint when the machine restarts.",
                45
            ),
            "Enable on-boot persistence; restarts the..."
        );
        assert_eq!(
            short_help("Deletes an endpoint and its config.", 45),
            "Deletes an endpoint and its config."
        );
        assert_eq!(
            short_help("List all available endpoints", 45),
            "List all available endpoints"
        );
    }

    #[test]
    fn bool_and_int_conversions() {
        assert_eq!(parse_bool("--m", " YES "), Ok(true));
        assert_eq!(parse_bool("--m", ""), Ok(false));
        assert!(
            parse_bool("--m", "maybe")
                .unwrap_err()
                .contains("'maybe' is not a valid boolean")
        );
        assert_eq!(parse_int_min0("--t", "1_0"), Ok(10));
        assert_eq!(
            parse_int_min0("--t", "-1").unwrap_err(),
            "Invalid value for '--t': -1 is not in the range x>=0."
        );
        assert_eq!(
            parse_int_min0("--t", "x").unwrap_err(),
            "Invalid value for '--t': 'x' is not a valid integer range."
        );
    }
}
