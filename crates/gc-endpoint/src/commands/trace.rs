//! `trace TASK_ID` (ours, not upstream's): the path of one task with timestamps, from the
//! service's records and the log lines of the endpoints in the Compute directory.
//!
//! Every log line about a task carries its id (the service, the core endpoint and the user
//! endpoint log `task_id=<id>`), so the endpoint side is found by reading `endpoint.log.1` and
//! `endpoint.log` of every directory in the Compute directory (core endpoints and `uep.*`
//! user endpoints). The service side comes from `GET /admin/tasks/{id}` when
//! `GCRS_ADMIN_TOKEN` is set (submit time, result time, forwarded), else from the task status
//! route with the caller's login (status and result time only; the service answers only the
//! task's submitter). Lines are printed in time order.

use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{Local, NaiveDateTime, TimeZone};
use serde_json::Value;

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{HelpOnly, parse};
use crate::compute_dir;
use crate::service::{self, Session};

const USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint trace",
    pieces: "[OPTIONS] TASK_ID",
    help_hint: Some("--help"),
};

const HELP: &str = "Usage: globus-compute-endpoint trace [OPTIONS] TASK_ID

  Show the path of a task with timestamps: submitted and result recorded at the
  service (set GCRS_ADMIN_TOKEN for the service's admin route), received,
  started, finished and result sent in the endpoint logs of the Compute
  directory.

Options:
  --help  Show this message and exit.
";

click_args! {
    struct Args {
        task_id: Option<String>,
        #[command(flatten)]
        help: HelpOnly,
    }
}

/// One step of the path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    /// Local time.
    pub at: NaiveDateTime,
    /// `service`, or the directory whose log has the line.
    pub component: String,
    /// What happened.
    pub what: String,
}

/// The time and message of a log line in the file format (ENDPOINT.md §1.5):
/// `<date> <time,usec> <LEVEL> <process> <thread> <logger>:<line> <function> <message>`.
pub fn parse_log_line(line: &str) -> Option<(NaiveDateTime, String)> {
    let plain = strip_ansi(line);
    let line = plain.as_str();
    let stamp = line.get(..26)?;
    let at = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S,%6f").ok()?;
    let mut fields = line.splitn(8, ' ');
    let level = fields.nth(2)?;
    let message = fields.nth(4)?;
    Some((at, format!("{level} {message}")))
}

/// `text` without ANSI SGR sequences (`ESC [ … m`), which older log files have around field
/// names.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of `dir`'s logs (older file first) that mention `task_id`.
fn log_events(dir: &Path, task_id: &str) -> Vec<Event> {
    let component = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    for name in ["endpoint.log.1", "endpoint.log"] {
        let Ok(f) = std::fs::File::open(dir.join(name)) else {
            continue;
        };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            if !line.contains(task_id) {
                continue;
            }
            if let Some((at, what)) = parse_log_line(&line) {
                out.push(Event {
                    at,
                    component: component.clone(),
                    what,
                });
            }
        }
    }
    out
}

fn local_time(unix: f64) -> Option<NaiveDateTime> {
    let secs = unix.floor() as i64;
    let nanos = ((unix - unix.floor()) * 1e9) as u32;
    Local
        .timestamp_opt(secs, nanos)
        .single()
        .map(|t| t.naive_local())
}

fn service_event(at: Option<f64>, what: String) -> Option<Event> {
    Some(Event {
        at: local_time(at?)?,
        component: "service".into(),
        what,
    })
}

/// What the service says: events plus a closing summary line.
fn service_side(task_id: &str) -> (Vec<Event>, String) {
    let env = service::environment_name(false, None);
    let base = service::compute_base_url(&env);
    let http = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build();
    let Ok(http) = http else {
        return (Vec::new(), "service: no HTTP client".into());
    };
    if let Some(token) = std::env::var("GCRS_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        let url = format!("{base}/admin/tasks/{task_id}");
        return match http.get(&url).bearer_auth(token).send() {
            Ok(r) if r.status().is_success() => match r.json::<Value>() {
                Ok(v) => {
                    let events = [
                        service_event(
                            v["submitted_at"].as_f64(),
                            format!(
                                "Task submitted (endpoint {})",
                                v["endpoint_id"].as_str().unwrap_or("?")
                            ),
                        ),
                        service_event(
                            v["result_received_at"].as_f64(),
                            "Result received from the endpoint".into(),
                        ),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    let forwarded = if v["result_forwarded"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    };
                    (
                        events,
                        format!(
                            "service: status {}, result forwarded to the submitter: {forwarded}",
                            v["status"].as_str().unwrap_or("?")
                        ),
                    )
                }
                Err(e) => (Vec::new(), format!("service: unreadable answer: {e}")),
            },
            Ok(r) => (
                Vec::new(),
                format!("service: {url} answered HTTP {}", r.status()),
            ),
            Err(e) => (Vec::new(), format!("service: {url} failed: {e}")),
        };
    }
    let answer = Session::from_env(&env)
        .and_then(|s| s.compute())
        .and_then(|c| c.task(task_id));
    match answer {
        Ok(v) => {
            let done = v["completion_t"]
                .as_str()
                .and_then(|t| t.parse::<f64>().ok())
                .or_else(|| v["completion_t"].as_f64());
            (
                service_event(done, "Result received from the endpoint".into())
                    .into_iter()
                    .collect(),
                format!(
                    "service: status {} (set GCRS_ADMIN_TOKEN for the submit time)",
                    v["status"].as_str().unwrap_or("?")
                ),
            )
        }
        Err(e) => (
            Vec::new(),
            format!("service: task status not available ({e:?})"),
        ),
    }
}

/// Run `trace`.
pub fn run(argv: &[String]) -> CmdResult {
    let args: Args = parse(argv, USAGE)?;
    if args.help.apply(HELP) {
        return Ok(());
    }
    let Some(task_id) = args.task_id else {
        return Err(CliError::Usage {
            usage: USAGE,
            message: "Missing argument 'TASK_ID'.".into(),
        });
    };
    let Ok(task_id) = uuid::Uuid::parse_str(task_id.trim()).map(|u| u.to_string()) else {
        return Err(CliError::Usage {
            usage: USAGE,
            message: format!("Invalid value for 'TASK_ID': {task_id:?} is not a valid UUID."),
        });
    };
    let dir = compute_dir::compute_dir();
    let mut events: Vec<Event> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut dirs: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for d in dirs {
            events.extend(log_events(&d, &task_id));
        }
    }
    let (service_events, summary) = service_side(&task_id);
    events.extend(service_events);
    if events.is_empty() {
        println!("{summary}");
        return Err(CliError::Click(format!(
            "No trace of task {task_id} in the logs under {} or at the service",
            dir.display()
        )));
    }
    events.sort();
    let width = events.iter().map(|e| e.component.len()).max().unwrap_or(0);
    println!("Task {task_id}");
    for e in &events {
        println!(
            "  {}  {:<width$}  {}",
            e.at.format("%Y-%m-%d %H:%M:%S%.6f"),
            e.component,
            e.what
        );
    }
    println!("{summary}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_parse() {
        let line = "2026-11-23 12:56:24,123456 INFO MainProcess-7 MainThread-7 gc_uep.runtime:270 runtime Task received task_id=abc";
        let (at, what) = parse_log_line(line).unwrap();
        assert_eq!(at.format("%H:%M:%S%.6f").to_string(), "12:56:24.123456");
        assert_eq!(what, "INFO Task received task_id=abc");
        assert_eq!(parse_log_line("> Task received"), None);
        let coloured = "2026-11-23 12:56:24,123456 INFO P T m:1 f Task received \u{1b}[3mtask_id\u{1b}[0m\u{1b}[2m=\u{1b}[0mabc";
        assert_eq!(
            parse_log_line(coloured).unwrap().1,
            "INFO Task received task_id=abc"
        );
        assert_eq!(parse_log_line("2026-11-23 12:56:24,123456 INFO x"), None);
    }

    #[test]
    fn events_from_both_log_files_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("uep.a.b");
        std::fs::create_dir(&d).unwrap();
        let id = "6f1c1f3e-0000-4000-8000-000000000001";
        std::fs::write(
            d.join("endpoint.log.1"),
            format!(
                "2026-01-01 00:00:01,000000 INFO P T m:1 f Task received task_id={id}\nother\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("endpoint.log"),
            format!("2026-01-01 00:00:02,000000 INFO P T m:1 f Task finished task_id={id}\n2026-01-01 00:00:03,000000 INFO P T m:1 f unrelated\n"),
        )
        .unwrap();
        let ev = log_events(&d, id);
        assert_eq!(ev.len(), 2);
        assert!(ev[0].at < ev[1].at);
        assert_eq!(ev[0].component, "uep.a.b");
        assert!(ev[1].what.starts_with("INFO Task finished"));
    }
}
