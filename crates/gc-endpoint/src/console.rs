//! Console log lines as upstream's CLI prints them on stderr (ENDPOINT.md §1.5): INFO as
//! `> <message>`, other levels in the full log format
//! (`<date> <time>,<µs> <LEVEL> MainProcess-<pid> MainThread-<pid> <where> <message>`).
//! `--debug` prints every level, INFO included, in the full format.

use std::io::Write;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);
static COLOUR: AtomicBool = AtomicBool::new(false);

/// Switch to debug console output (`--debug`); with `--debug`, level names are coloured
/// when stderr is a terminal, unless `no_color` (`--no-color`).
pub fn set_debug(on: bool, no_color: bool) {
    DEBUG.store(on, Ordering::Relaxed);
    COLOUR.store(
        on && !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        Ordering::Relaxed,
    );
}

fn full_line(level: &str, loc: &Location<'_>, msg: &str) -> String {
    let level = if COLOUR.load(Ordering::Relaxed) {
        crate::logging::coloured(level)
    } else {
        level.to_string()
    };
    let level = level.as_str();
    let file = loc.file().rsplit('/').next().unwrap_or("");
    let module = format!("globus_compute_endpoint::{}", file.trim_end_matches(".rs"));
    format!(
        "{}{msg}\n",
        crate::logging::line_prefix(level, &module, loc.line())
    )
}

fn emit(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// An INFO line.
#[track_caller]
pub fn info(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        emit(&full_line("INFO", Location::caller(), msg));
    } else {
        emit(&format!("> {msg}\n"));
    }
}

/// A DEBUG line (only with `--debug`).
#[track_caller]
pub fn debug(msg: &str) {
    if DEBUG.load(Ordering::Relaxed) {
        emit(&full_line("DEBUG", Location::caller(), msg));
    }
}

/// A WARNING line.
#[track_caller]
pub fn warning(msg: &str) {
    emit(&full_line("WARNING", Location::caller(), msg));
}

/// An ERROR line.
#[track_caller]
pub fn error(msg: &str) {
    emit(&full_line("ERROR", Location::caller(), msg));
}

/// A CRITICAL line.
#[track_caller]
pub fn critical(msg: &str) {
    emit(&full_line("CRITICAL", Location::caller(), msg));
}
