//! `globus-compute-diagnostic`: see the library documentation. Options are upstream's
//! (`-p`, `-k`, `-v`, `-e`, `-c`, `-l`, `-r`).
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use gc_diagnostic::redact::Redactor;
use gc_diagnostic::report::{self, Diagnostic, Plan};

/// `EX_NOINPUT`: a named directory does not exist.
const EX_NOINPUT: u8 = 66;

#[derive(Debug, Parser)]
#[command(
    name = "globus-compute-diagnostic",
    about = "Run diagnostics for Globus Compute",
    after_help = "This utility gathers local hardware specifications, tests connectivity to the \
Globus Compute web services, and collates portions of local Compute Endpoint log files, if \
present, to a local compressed file. Secrets (passwords in URLs, client secrets, tokens, \
private keys) are replaced by *** before anything is written."
)]
struct Args {
    /// Do not generate a Gzip-compressed file. Print diagnostic results to the console instead.
    #[arg(short = 'p', long)]
    print_only: bool,
    /// Specify the number of kilobytes (KB) to read from log files. Defaults to 1024 KB (1 MB)
    /// per file.
    #[arg(short = 'k', long, value_name = "number", default_value_t = 1024)]
    log_kb: i64,
    /// When writing diagnostic output to local compressed file, also print the name of each
    /// test to stdout as they are being run, to help monitor diagnostic progress.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Test an endpoint by registering a sample function and sending a task to it using the
    /// newly registered function. An endpoint UUID is required (needs Python with the Globus
    /// Compute SDK as `python3`).
    #[arg(short = 'e', long, value_name = "ENDPOINT_UUID")]
    endpoint_uuid: Option<String>,
    /// Gather endpoint configuration and log info from the specified parent directory instead
    /// of the default ~/.globus_compute or what is set in $GLOBUS_COMPUTE_USER_DIR
    #[arg(short = 'c', long, value_name = "CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Gather endpoint configuration and log info only from the specified endpoints in the
    /// config directory, instead of all endpoints. Multiple directories can be specified in a
    /// comma separated list e.g. '-l ep_name' or '-l my_ep_1,my_ep_2'
    #[arg(short = 'l', long, value_name = "ENDPOINT_LOG_DIRS")]
    endpoint_log_dirs: Option<String>,
    /// Gather endpoint logs and configurations from only the most recently active endpoints
    /// (default 2), e.g. '-r 3'
    #[arg(
        short = 'r',
        long,
        value_name = "RECENT_ENDPOINTS",
        default_value_t = 2
    )]
    recent_endpoints: i64,
}

/// The default Compute directory, created (0700) when missing, as upstream's
/// `ensure_compute_dir` does.
fn default_compute_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("GLOBUS_COMPUTE_USER_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".globus_compute"),
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("Error creating directory {}", dir.display()))?;
    }
    Ok(dir)
}

/// `globus-compute-endpoint` beside this program, else on `PATH`.
fn endpoint_exe() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("globus-compute-endpoint")))
        .filter(|p| p.is_file())
        .or_else(|| report::which("globus-compute-endpoint"))
}

/// The sample-task diagnostic of `-e`: the SDK's Executor runs a hello-world function on the
/// endpoint, as upstream's diagnostic does in-process.
fn endpoint_test(uuid: &str) -> Diagnostic {
    let script = format!(
        "from globus_compute_sdk import Executor\n\
         def hello():\n    return 'Hello World!'\n\
         with Executor(endpoint_id={uuid:?}) as ex:\n\
         \x20   fut = ex.submit(hello)\n\
         \x20   try:\n\
         \x20       print('Endpoint simple function execution result:\\n ', fut.result(timeout=15))\n\
         \x20   except TimeoutError:\n\
         \x20       print('--> Timed out sending task, endpoint may be offline')\n\
         \x20   ex.shutdown(wait=False, cancel_futures=True)\n"
    );
    Diagnostic::Command {
        display: format!("Run sample function on endpoint {uuid} via Executor"),
        program: "python3".into(),
        args: vec!["-c".into(), script],
        // Importing the SDK, logging in and the 15 s result wait.
        timeout: std::time::Duration::from_secs(60),
    }
}

fn plan(args: &Args) -> Result<Plan, ExitCode> {
    let compute_dir = match &args.config_dir {
        Some(d) if d.is_dir() => d.clone(),
        Some(d) => {
            let abs = std::path::absolute(d).unwrap_or_else(|_| d.clone());
            eprintln!("{} is not a valid directory", abs.display());
            return Err(ExitCode::from(EX_NOINPUT));
        }
        None => match default_compute_dir() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("Error: {e:#}");
                return Err(ExitCode::FAILURE);
            }
        },
    };
    let names: Vec<String> = args
        .endpoint_log_dirs
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let endpoint_dirs = if args.recent_endpoints > 0 {
        let mut dirs = report::recent_endpoint_dirs(&compute_dir, &names);
        dirs.truncate(usize::try_from(args.recent_endpoints).unwrap_or(usize::MAX));
        dirs
    } else if !names.is_empty() {
        let mut dirs = Vec::new();
        for n in &names {
            let d = compute_dir.join(n);
            if !d.is_dir() {
                eprintln!(
                    "Could not locate endpoint {n} as {} is not a valid directory",
                    d.display()
                );
                return Err(ExitCode::from(EX_NOINPUT));
            }
            dirs.push(d);
        }
        dirs
    } else {
        report::recent_endpoint_dirs(&compute_dir, &[])
    };
    Ok(Plan {
        compute_dir,
        endpoint_dirs,
        log_bytes: u64::try_from(args.log_kb.saturating_mul(1024)).unwrap_or(0),
        endpoint_exe: endpoint_exe(),
    })
}

fn output_name() -> String {
    format!(
        "globus_compute_diagnostic_{}.txt.gz",
        chrono::Utc::now().format("%Y-%m-%d-%H-%M-%SZ")
    )
}

fn write_gzip(path: &Path, text: &str) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(text.as_bytes())
        .and_then(|_| gz.finish().map(|_| ()))
        .with_context(|| format!("writing {}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut redactor = Redactor::new();
    redactor.add_secret_env(std::env::vars());

    let mut diags = report::diagnostics(&plan);
    if let Some(uuid) = &args.endpoint_uuid {
        diags.push(endpoint_test(uuid));
    }
    let mut out = String::new();
    for d in &diags {
        let (head, body) = report::section(d, &redactor);
        if args.print_only || args.verbose {
            println!("{head}");
        }
        if args.print_only {
            println!("{body}");
        } else {
            out.push_str(&head);
            out.push('\n');
            out.push_str(&body);
            out.push('\n');
        }
    }
    if args.print_only {
        return ExitCode::SUCCESS;
    }
    let name = output_name();
    match write_gzip(Path::new(&name), &out) {
        Ok(()) => {
            println!("Compressed diagnostic output successfully written to {name}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
