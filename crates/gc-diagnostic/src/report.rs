//! The list of diagnostics and running them into one report.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::checks;
use crate::redact::Redactor;

/// How long one command may run (upstream's `DIAG_TIMEOUT_S`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Files of an endpoint directory that go into the report (upstream's list).
const ENDPOINT_FILE_SUFFIXES: [&str; 5] = [".yaml", ".log", ".py", ".j2", ".json"];

/// Environment variables shown in the report (values redacted like everything else).
const ENV_PREFIXES: [&str; 2] = ["GLOBUS_", "GCRS_"];

/// One diagnostic.
pub enum Diagnostic {
    /// Run a program (killed after `timeout`) and report its standard output and error.
    Command {
        display: String,
        program: String,
        args: Vec<String>,
        timeout: Duration,
    },
    /// Copy the last `max_bytes` of each file.
    Cat { files: Vec<PathBuf>, max_bytes: u64 },
    /// Anything computed in-process.
    Func {
        display: String,
        run: Box<dyn Fn() -> String>,
    },
}

impl Diagnostic {
    fn command(program: &str, args: &[&str]) -> Self {
        let display = std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        Diagnostic::Command {
            display,
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            timeout: COMMAND_TIMEOUT,
        }
    }

    fn func(display: impl Into<String>, run: impl Fn() -> String + 'static) -> Self {
        Diagnostic::Func {
            display: display.into(),
            run: Box::new(run),
        }
    }

    /// The name shown in the section header.
    pub fn display(&self) -> String {
        match self {
            Diagnostic::Command { display, .. } => display.clone(),
            Diagnostic::Cat { files, .. } => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                format!("cat({names:?})")
            }
            Diagnostic::Func { display, .. } => display.clone(),
        }
    }

    /// Run it; the text is not yet redacted.
    pub fn run(&self) -> String {
        match self {
            Diagnostic::Command {
                program,
                args,
                timeout,
                ..
            } => run_command(program, args, *timeout),
            Diagnostic::Cat { files, max_bytes } => cat(files, *max_bytes),
            Diagnostic::Func { run, .. } => run(),
        }
    }
}

/// `program` on `PATH` (or as given when it contains a slash).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn run_command(program: &str, args: &[String], timeout: Duration) -> String {
    let Some(exe) = which(program) else {
        return format!("{program} was not found in the PATH\n");
    };
    let child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("Command failed: {e}\n"),
    };
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                timed_out = true;
                break;
            }
        }
    }
    let mut out = String::new();
    for r in readers {
        let text = r.join().unwrap_or_default();
        if !text.is_empty() {
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    if timed_out {
        out.push_str("Command timed out\n");
    }
    out
}

/// The tail (`max_bytes`, 0 = whole file) of each file, in upstream's `cat` layout.
fn cat(files: &[PathBuf], max_bytes: u64) -> String {
    let mut out = String::new();
    for f in files {
        let title = format!("cat {}", f.display());
        let _ = writeln!(out, "{title}\n{}", "=".repeat(title.len()));
        match read_tail(f, max_bytes) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).replace('\u{fffd}', "#");
                let _ = writeln!(out, " | {}", text.replace('\n', "\n | "));
            }
            Err(e) => {
                let _ = writeln!(out, "Could not read {}: {e}\n", f.display());
            }
        }
        let _ = writeln!(out, "{}\n", "-".repeat(title.len()));
    }
    out
}

fn read_tail(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if max_bytes > 0 && len > max_bytes {
        f.seek(SeekFrom::Start(len - max_bytes))?;
    }
    let mut buf = Vec::new();
    f.take(if max_bytes > 0 { max_bytes } else { u64::MAX })
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Directories of the Compute directory, most recently active first (the newest mtime of the
/// directory and its entries), limited to `names` when given.
pub fn recent_endpoint_dirs(base: &Path, names: &[String]) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = if names.is_empty() {
        std::fs::read_dir(base)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        names
            .iter()
            .map(|n| base.join(n))
            .filter(|p| p.is_dir())
            .collect()
    };
    let mtime = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let mut stamped: Vec<(SystemTime, PathBuf)> = dirs
        .into_iter()
        .map(|d| {
            let newest = std::fs::read_dir(&d)
                .map(|rd| rd.flatten().map(|e| mtime(&e.path())).max())
                .ok()
                .flatten()
                .unwrap_or(SystemTime::UNIX_EPOCH)
                .max(mtime(&d));
            (newest, d)
        })
        .collect();
    stamped.sort_by(|a, b| b.cmp(a));
    stamped.into_iter().map(|(_, d)| d).collect()
}

/// The configuration and log files of the given endpoint directories, sorted.
pub fn endpoint_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| ENDPOINT_FILE_SUFFIXES.iter().any(|s| n.ends_with(s)))
        })
        .collect();
    files.sort();
    files
}

/// What to collect.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Compute directory whose endpoints are reported.
    pub compute_dir: PathBuf,
    /// Endpoint directories whose files are copied.
    pub endpoint_dirs: Vec<PathBuf>,
    /// Bytes copied from the end of each file (0: no files are copied).
    pub log_bytes: u64,
    /// The `globus-compute-endpoint` to ask for `version`, `whoami` and `list`.
    pub endpoint_exe: Option<PathBuf>,
}

/// The diagnostics of a plan, in report order.
pub fn diagnostics(plan: &Plan) -> Vec<Diagnostic> {
    let env = |k: &str| std::env::var(k).ok();
    let mut d = vec![
        Diagnostic::command("uname", &["-a"]),
        Diagnostic::Cat {
            files: vec![PathBuf::from("/etc/os-release")],
            max_bytes: 0,
        },
        Diagnostic::command("whoami", &[]),
        Diagnostic::command("lscpu", &[]),
        Diagnostic::command("nproc", &[]),
        Diagnostic::command("free", &["-h"]),
        Diagnostic::command("df", &["-h"]),
    ];
    let mut du_args = vec!["-sh".to_string()];
    du_args.extend(
        std::fs::read_dir(&plan.compute_dir)
            .map(|rd| {
                let mut v: Vec<String> = rd
                    .flatten()
                    .map(|e| e.path().display().to_string())
                    .collect();
                v.sort();
                v
            })
            .unwrap_or_default(),
    );
    if du_args.len() > 1 {
        d.push(Diagnostic::Command {
            display: format!("du -sh {}/*", plan.compute_dir.display()),
            program: "du".into(),
            args: du_args,
            timeout: COMMAND_TIMEOUT,
        });
    }
    d.extend([
        Diagnostic::command("pip", &["freeze"]),
        Diagnostic::command("openssl", &["version"]),
        Diagnostic::command("ip", &["addr"]),
        Diagnostic::command("ip", &["route"]),
        Diagnostic::func("environment()", || {
            let mut vars: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
                .collect();
            vars.sort();
            vars.into_iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect()
        }),
    ]);

    let web = checks::web_service_url(&env);
    let amqp_host = checks::amqp_host(&env);
    if let Some((host, port)) = checks::host_port(&web) {
        d.push(Diagnostic::func(
            format!("test_conn({host}, {port})"),
            move || checks::tcp(&host, port),
        ));
    }
    for port in [5671u16, 5672] {
        let h = amqp_host.clone();
        d.push(Diagnostic::func(
            format!("test_conn({h}, {port})"),
            move || checks::tcp(&h, port),
        ));
    }
    let h = amqp_host.clone();
    d.push(Diagnostic::func(
        format!("test_amqp_handshake({h}, 5672)"),
        move || checks::amqp(&h, 5672),
    ));
    let base = web.clone();
    d.push(Diagnostic::func(
        format!("get_service_versions({web})"),
        move || checks::service_version(&base),
    ));

    if let Some(exe) = &plan.endpoint_exe {
        let exe_s = exe.display().to_string();
        let dir = plan.compute_dir.display().to_string();
        d.push(Diagnostic::func("endpoint_install_dir()", {
            let exe_s = exe_s.clone();
            move || format!("globus-compute-endpoint is installed at {exe_s}\n")
        }));
        for sub in ["version", "whoami", "list"] {
            d.push(Diagnostic::Command {
                display: format!("globus-compute-endpoint {sub}"),
                program: exe_s.clone(),
                args: vec!["-c".into(), dir.clone(), sub.into()],
                timeout: COMMAND_TIMEOUT,
            });
        }
    }
    if plan.log_bytes > 0 {
        let files = endpoint_files(&plan.endpoint_dirs);
        if !files.is_empty() {
            d.push(Diagnostic::Cat {
                files,
                max_bytes: plan.log_bytes,
            });
        }
    }
    d
}

/// The `== Diagnostic: … ==` header of a section.
pub fn header(display: &str) -> String {
    format!("== Diagnostic: {display} ==")
}

/// Run one diagnostic and return its redacted section (header and output).
pub fn section(diag: &Diagnostic, redactor: &Redactor) -> (String, String) {
    let head = redactor.redact(&header(&diag.display()));
    let body = redactor.redact(&diag.run());
    (head, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("endpoint.log");
        std::fs::write(&f, "line one\nline two\n").unwrap();
        let out = cat(std::slice::from_ref(&f), 9);
        assert!(out.contains(" | line two\n | \n"), "{out}");
        assert!(!out.contains("one"), "{out}");
        let out = cat(&[dir.path().join("missing.log")], 0);
        assert!(out.contains("Could not read"), "{out}");
    }

    #[test]
    fn recent_dirs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a", "b"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
            std::fs::write(dir.path().join(n).join("config.yaml"), "x: 1\n").unwrap();
            std::fs::write(dir.path().join(n).join("storage.db"), "no").unwrap();
        }
        std::fs::write(dir.path().join("storage.db"), "no").unwrap();
        let all = recent_endpoint_dirs(dir.path(), &[]);
        assert_eq!(all.len(), 2);
        let only_b = recent_endpoint_dirs(dir.path(), &["b".into(), "nope".into()]);
        assert_eq!(only_b, vec![dir.path().join("b")]);
        let files = endpoint_files(&all);
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.ends_with("config.yaml")));
    }

    #[test]
    fn commands_run_with_output_and_missing_programs_are_reported() {
        let out = run_command(
            "sh",
            &["-c".into(), "echo out; echo err >&2".into()],
            COMMAND_TIMEOUT,
        );
        assert!(out.contains("out\n") && out.contains("err\n"), "{out}");
        let out = run_command("gcrs-no-such-program", &[], COMMAND_TIMEOUT);
        assert_eq!(out, "gcrs-no-such-program was not found in the PATH\n");
        let out = run_command("sleep", &["5".into()], Duration::from_millis(200));
        assert_eq!(out, "Command timed out\n");
    }
}
