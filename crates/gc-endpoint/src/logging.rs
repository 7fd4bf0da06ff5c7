//! Log sinks of a running endpoint process (ENDPOINT.md §1.5): the log file
//! (`<endpoint dir>/endpoint.log`, or the UEP's log path) in the full line format, rotated at
//! 100 MiB with one backup (`endpoint.log.1`) as Python's `RotatingFileHandler(maxBytes=100 MiB,
//! backupCount=1)`, or plainly appended when the path is not a regular file (e.g.
//! `/dev/stdout`); and, with `--log-to-console`, stderr in the console format (INFO as
//! `> <message>`, other levels — and every level with `--debug` — in the full format).
//!
//! Full line: `<YYYY-MM-DD HH:MM:SS,ffffff> <LEVEL> MainProcess-<pid> <thread>-<thread id>
//! <logger>:<line> <function> <message>`, local time. Rust has no logger or function names
//! of Python's; the logger is the event's module path, the function its last segment.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// Rotate the log file when a record would take it to this size.
const MAX_BYTES: u64 = 100 * 1024 * 1024;

/// The thread part of a full line: `MainThread-<pid>` for the main thread, else
/// `<name>-<id>`.
fn thread_label() -> String {
    match std::thread::current().name() {
        Some("main") => format!("MainThread-{}", std::process::id()),
        Some(name) => format!("{name}-{}", thread_number()),
        None => format!("Thread-{}", thread_number()),
    }
}

/// A stable number for the current thread (`ThreadId(n)`'s n).
fn thread_number() -> String {
    let id = format!("{:?}", std::thread::current().id());
    id.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .to_string()
}

/// Everything of a full line before the message.
pub fn line_prefix(level: &str, logger: &str, line: u32) -> String {
    let function = logger.rsplit("::").next().unwrap_or(logger);
    format!(
        "{} {level} MainProcess-{} {} {}:{line} {function} ",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%6f"),
        std::process::id(),
        thread_label(),
        logger.replace("::", "."),
    )
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// ANSI colour of a level name on a colour console.
fn level_colour(level: &str) -> &'static str {
    match level {
        "CRITICAL" | "ERROR" => "\x1b[31m",
        "WARNING" => "\x1b[33m",
        "INFO" => "\x1b[32m",
        _ => "\x1b[36m",
    }
}

/// A level name in its console colour.
pub fn coloured(level: &str) -> String {
    format!("{}{level}\x1b[0m", level_colour(level))
}

/// The line formats of §1.5.
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    /// Console sink (INFO as `> …` unless `debug`).
    console: bool,
    /// `--debug` (console: every level in the full format).
    debug: bool,
    /// Colour the level names (console, `--debug`, stderr a terminal, no `--no-color`).
    colour: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let level = *meta.level();
        if self.console && !self.debug && level == Level::INFO {
            writer.write_str("> ")?;
        } else {
            let mut name = level_name(level).to_string();
            if self.colour {
                name = coloured(&name);
            }
            writer.write_str(&line_prefix(
                &name,
                meta.module_path().unwrap_or(meta.target()),
                meta.line().unwrap_or(0),
            ))?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The log file: size-rotating when it is a regular file, plain append otherwise.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file; `None` when the path is not a regular file (no rotation).
    size: Option<u64>,
    /// Rotate when a record would take the file to this size.
    limit: u64,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o666)
        .open(path)
}

impl LogFile {
    /// Open `path` for appending (created with the process umask).
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Self::open_with_limit(path, MAX_BYTES)
    }

    fn open_with_limit(path: &Path, limit: u64) -> io::Result<LogFile> {
        let file = open_append(path)?;
        let meta = file.metadata()?;
        Ok(LogFile {
            path: path.to_path_buf(),
            size: meta.is_file().then_some(meta.len()),
            file,
            limit,
        })
    }

    /// `endpoint.log` → `endpoint.log.1` (replacing it), then a fresh `endpoint.log`.
    fn rotate(&mut self) -> io::Result<()> {
        let mut backup = self.path.clone().into_os_string();
        backup.push(".1");
        std::fs::rename(&self.path, PathBuf::from(backup))?;
        self.file = open_append(&self.path)?;
        self.size = Some(0);
        Ok(())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.size
            && size > 0
            && size + buf.len() as u64 >= self.limit
        {
            // A failed rotation keeps appending to the current file.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        if let Some(size) = self.size.as_mut() {
            *size += n as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Send this process's log records to `log_path` (and to stderr with `to_console`). Records
/// of the endpoint's own crates are kept from DEBUG with `debug`, else from INFO; other
/// crates' from WARNING. A second call (e.g. `restart`) keeps the first set-up.
pub fn init(log_path: &Path, to_console: bool, debug: bool, no_color: bool) {
    let ours = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    // Targets match by prefix: `gc_` is every crate of this workspace.
    let filter = Targets::new()
        .with_default(LevelFilter::WARN)
        .with_target("gc_", ours)
        .with_target("globus_compute_endpoint", ours);
    let file = LogFile::open(log_path);
    let console = to_console || file.is_err();
    if let Err(e) = &file {
        eprintln!("Unable to open log file {}: {e}", log_path.display());
    }
    let file_layer = file.ok().map(|f| {
        tracing_subscriber::fmt::layer()
            .event_format(LineFormat {
                console: false,
                debug,
                colour: false,
            })
            // Field names and values plain in the file (`task_id=<id>`, greppable).
            .with_ansi(false)
            .with_writer(Mutex::new(f))
    });
    let console_layer = console.then(|| {
        let colour = debug && !no_color && io::stderr().is_terminal();
        tracing_subscriber::fmt::layer()
            .event_format(LineFormat {
                console: true,
                debug,
                colour,
            })
            .with_ansi(colour)
            .with_writer(io::stderr)
    });
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(console_layer)
        .with(filter)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_prefix_has_the_python_shape() {
        let p = line_prefix("INFO", "gc_mep::runtime", 42);
        let re = regex::Regex::new(
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{6} INFO MainProcess-\d+ \S+-\d+ gc_mep\.runtime:42 runtime $",
        )
        .unwrap();
        assert!(re.is_match(&p), "{p}");
    }

    #[test]
    fn the_file_rotates_at_the_limit_keeping_one_backup() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("endpoint.log");
        std::fs::write(&path, vec![b'a'; 90]).unwrap();
        let mut log = LogFile::open_with_limit(&path, 100).unwrap();
        log.write_all(b"short\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 96);
        log.write_all(b"this one does not fit\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"this one does not fit\n");
        let backup = d.path().join("endpoint.log.1");
        assert_eq!(std::fs::metadata(&backup).unwrap().len(), 96);
        log.write_all(b"more\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "this one does not fit\nmore\n"
        );
    }

    #[test]
    fn a_non_file_is_appended_without_rotation() {
        let log = LogFile::open(Path::new("/dev/null")).unwrap();
        assert_eq!(log.size, None);
    }
}
