//! The user-endpoint bootstrap of a privileged MEP with identity mapping (ENDPOINT §4.5 child
//! side, uid-change column): the program the MEP execs for a mapped user,
//! `globus-compute-endpoint _bootstrap-user-endpoint <name>`, with a [`Document`] on stdin.
//!
//! Why a separate program: the MEP is multithreaded, so between its fork and exec only
//! async-signal-safe calls are allowed. Everything that allocates or takes locks runs in this
//! freshly exec'd, single-threaded process instead:
//!
//! * PAM off: the MEP's `pre_exec` hook already made the process the user (groups, gid, uid,
//!   no capabilities, `no_new_privs`, new session, umask 077; [`gc_sys::drop_before_exec`]).
//! * PAM on: the process starts as root, opens the PAM account/session, switches to the user
//!   itself ([`gc_sys::drop_now`]: new session, umask 077, groups, gid, uid — no capability
//!   clearing and no `no_new_privs`, as upstream; the kernel empties the permitted and
//!   effective sets on the switch from uid 0) and closes the PAM session again before exec.
//!
//! Then, as the user: render the template with the user's options ([`crate::uep::prepare_with`]),
//! create the UEP directory and log, and exec `globus-compute-endpoint _start-user-endpoint
//! <name> …` with the UEP stdin document (PROTOCOL-ENDPOINT §5.4) on a pipe and the log as
//! stdout and stderr. Descriptors at exec: 0–2, the read-only credential memfd at 3 (placed
//! by the MEP, passed through), the audit pipe at 4 (HA only); everything else is closed.
//! Neither this program's document nor the UEP's stdin carries the broker credentials: they
//! exist only Fernet-encrypted in the memfd, and the document carries the key.
//!
//! Failures: the bootstrap's stderr is a pipe read by the MEP. Diagnostic lines go there, and
//! a failure ends with one line `[exit code: <N>; (<Type>) <message>]` and exit status `<N>`
//! (the ladder of §4.5). The MEP publishes `Unable to start user endpoint process for <user>
//! <that line>` as the failure notice — one AMQP connection (the MEP's) instead of a second one
//! in the child. Newlines in the message are sent as `\n` escapes on the line and restored by
//! the MEP ([`decode_failure`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gc_wire::mep_command::StartEndpoint;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::uep::{self, Context, LocalUser, PrepareError, Sources};

/// The hidden sub-command that runs [`run`].
pub const SUBCOMMAND: &str = "_bootstrap-user-endpoint";

/// Everything the bootstrap needs, read by the MEP while privileged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// `kwargs.name`.
    pub name: String,
    /// `kwargs.args`.
    pub args: Vec<String>,
    /// `kwargs.user_opts`.
    pub user_opts: Map<String, Value>,
    /// `kwargs.user_runtime`.
    pub user_runtime: Map<String, Value>,
    /// `enckey` of the credential memfd the MEP placed at descriptor 3 (the credentials
    /// themselves are never in this document).
    pub enckey: String,
    /// The MEP's `config.yaml` text (for `_GC.parent_config`; the file may be root-only).
    pub config_yaml: String,
    /// Where that text came from (for error messages).
    pub config_source: String,
    /// Template, schema, `user_environment.yaml`.
    pub sources: Sources,
    /// The mapped local user.
    pub user: LocalUser,
    /// The matched Globus identity id.
    pub globus_id: Option<String>,
    /// The MEP's pid (`ep_info.posix_ppid`).
    pub mep_pid: u32,
    /// The program to exec for the UEP (`globus-compute-endpoint`).
    pub program: PathBuf,
    /// `pam.service_name` when `pam.enable` is true.
    pub pam_service: Option<String>,
    /// The audit pipe's descriptor number (HA with `audit_log_path`); it is already open at
    /// that number and survives the exec of the UEP.
    #[serde(default)]
    pub audit_fd: Option<i32>,
}

fn fail(code: i32, kind: &str, message: impl Into<String>) -> PrepareError {
    PrepareError {
        code,
        kind: kind.into(),
        message: message.into(),
    }
}

/// The failure line the bootstrap writes last: the error's display with newlines escaped.
#[must_use]
pub fn encode_failure(e: &PrepareError) -> String {
    e.to_string().replace('\\', "\\\\").replace('\n', "\\n")
}

/// The last failure line in the bootstrap's stderr text, unescaped, if there is one.
#[must_use]
pub fn decode_failure(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("[exit code: "))?;
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Runs the bootstrap with the stdin `document`; returns only on failure, with the exit
/// status (the failure line is already written to stderr).
pub fn run(document: &[u8]) -> i32 {
    let e = match serde_json::from_slice::<Document>(document) {
        Ok(doc) => match bootstrap(&doc) {
            Ok(never) => match never {},
            Err(e) => e,
        },
        Err(e) => fail(70, "ValueError", format!("invalid bootstrap document: {e}")),
    };
    eprintln!("{}", encode_failure(&e));
    e.code
}

fn identity(user: &LocalUser) -> gc_sys::Identity {
    gc_sys::Identity {
        uid: gc_sys::Uid(user.uid),
        gid: gc_sys::Gid(user.gid),
        groups: user.groups.iter().copied().map(gc_sys::Gid).collect(),
    }
}

/// PAM path: account and session checks as root, the switch to the user, session closed.
fn pam_switch(service: &str, user: &LocalUser) -> Result<(), PrepareError> {
    let denied = |code: i32| fail(code, "PermissionError", "see your system administrator");
    let mut session = gc_sys::pam::Session::open(service, &user.name).map_err(|e| {
        eprintln!("PAM ({service}, user {}): {e}", user.name);
        denied(71)
    })?;
    let opts = gc_sys::DropOptions {
        clear_capabilities: false,
        no_new_privs: false,
        ..Default::default()
    };
    gc_sys::drop_now(&identity(user), opts).map_err(|e| {
        eprintln!("Unable to change to user {}: {e}", user.name);
        denied(e.step.ladder_exit_code())
    })?;
    let closing = session
        .establish_credentials()
        .and_then(|()| session.close());
    closing.map_err(|e| {
        eprintln!("PAM ({service}, user {}): {e}", user.name);
        denied(74)
    })
}

fn bootstrap(doc: &Document) -> Result<std::convert::Infallible, PrepareError> {
    if let Some(service) = &doc.pam_service {
        pam_switch(service, &doc.user)?;
    }
    // Whatever the path, from here on this process must be the user and unable to return.
    let uid = nix::unistd::getuid().as_raw();
    let euid = nix::unistd::geteuid().as_raw();
    if uid != doc.user.uid || euid != doc.user.uid || uid == 0 {
        eprintln!(
            "Unexpectedly running as uid {uid}/{euid} instead of {} ({})",
            doc.user.uid, doc.user.name
        );
        return Err(fail(74, "PermissionError", "failed to start endpoint"));
    }
    if nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
        eprintln!("Unexpectedly regained original privileges!");
        return Err(fail(74, "PermissionError", "failed to start endpoint"));
    }

    let config = gc_config::CoreEndpointConfig::from_yaml(
        &doc.config_yaml,
        &doc.config_source,
        // The files it names were checked by the MEP; the user may not be able to see them.
        gc_config::LoadOptions { check_paths: false },
    )
    .map_err(|e| fail(70, "ValueError", e.to_string()))?;
    let compute_dir = doc
        .sources
        .user_env
        .get("GLOBUS_COMPUTE_USER_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| doc.user.home().join(".globus_compute"));
    let program_dir = doc.program.parent().map(Path::to_path_buf);
    let empty = BTreeMap::new();
    let ctx = Context {
        endpoint_dir: Path::new("/"),
        config: &config,
        compute_dir: &compute_dir,
        base_env: &empty,
        mep_pid: doc.mep_pid,
        privileged: true,
        program_dir: program_dir.as_deref(),
        uid_change: true,
        audit_fd: doc.audit_fd,
        credential_key: Some(&doc.enckey),
    };
    let start = StartEndpoint {
        globus_username: Value::Null,
        globus_effective_identity: Value::Null,
        globus_identity_set: vec![],
        args: doc.args.clone(),
        name: doc.name.clone(),
        user_opts: doc.user_opts.clone(),
        user_runtime: doc.user_runtime.clone(),
        amqp_creds: Map::new(),
    };
    let prepared = uep::prepare_with(
        &ctx,
        &start,
        &doc.sources,
        &doc.user,
        doc.globus_id.as_deref(),
    )?;
    exec_uep(&ctx, doc, &prepared)
}

fn exec_uep(
    ctx: &Context<'_>,
    doc: &Document,
    prepared: &uep::Prepared,
) -> Result<std::convert::Infallible, PrepareError> {
    use std::os::unix::fs::OpenOptionsExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_SYNC.bits())
        .open(&prepared.log_path)
        .map_err(|e| fail(ctx.rung(79), "OSError", e.to_string()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| fail(ctx.rung(80), "OSError", e.to_string()))?;
    if prepared.debug {
        // Rung 17: the configuration dump (ENDPOINT §3.7 step 6), secrets redacted.
        (&log)
            .write_all(uep::config_dump(&prepared.config, chrono::Local::now()).as_bytes())
            .map_err(|e| fail(ctx.rung(81), "OSError", e.to_string()))?;
    }
    // Close-on-exec: only the copy at descriptor 0 may reach the UEP.
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| fail(ctx.rung(77), "OSError", e.to_string()))?;
    // The document fits the pipe (checked by prepare_with), so this cannot block.
    std::fs::File::from(write)
        .write_all(&prepared.stdin)
        .map_err(|e| fail(ctx.rung(81), "OSError", e.to_string()))?;
    let mut cmd = std::process::Command::new(&doc.program);
    // Rung 18: exactly 0–2, the credential memfd at 3 and the audit pipe at 4 (when on)
    // reach the UEP; whatever else this process or a PAM module left open does not.
    let keep: Vec<i32> = std::iter::once(uep::CREDENTIAL_FD)
        .chain(doc.audit_fd)
        .collect();
    gc_sys::keep_only_fds_before_exec(&mut cmd, &keep);
    let err = cmd
        .arg0("globus-compute-endpoint")
        .args(&prepared.args)
        .env_clear()
        .envs(&prepared.env)
        .current_dir(&prepared.cwd)
        .stdin(Stdio::from(read))
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .exec();
    Err(fail(
        ctx.rung(83),
        "FileNotFoundError",
        format!("{err}: {}", doc.program.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lines_round_trip() {
        let e = fail(77, "ValidationError", "a\nb\\c");
        let line = encode_failure(&e);
        assert!(!line.contains('\n'));
        let text = format!("PAM: noise\n{line}\n");
        assert_eq!(
            decode_failure(&text).as_deref(),
            Some("[exit code: 77; (ValidationError) a\nb\\c]")
        );
        assert_eq!(decode_failure("nothing here\n"), None);
    }

    #[test]
    fn a_bad_document_is_rung_70() {
        assert_eq!(run(b"{"), 70);
    }
}
