//! Preparing a user endpoint process for an accepted start command, unprivileged path
//! (PROTOCOL-ENDPOINT §5, ENDPOINT §4.5): environment, rendered configuration, argv, UEP
//! directory and the stdin document. Failures carry upstream's same-user exit-code rung.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gc_config::CoreEndpointConfig;
use gc_config::template::{self, RenderInputs};
use gc_wire::mep_command::StartEndpoint;
use gc_wire::uep_stdin::{EpInfo, MAX_LEN_DEFAULT_PIPE, UepStdin};
use serde_json::{Value, json};

/// Everything needed to exec the UEP.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// argv after the program (`_start-user-endpoint <name> <args…>` or the legacy form).
    pub args: Vec<String>,
    /// The complete environment of the child.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The UEP directory.
    pub uep_dir: PathBuf,
    /// `<uep dir>/endpoint.log`: the child's stdout and stderr.
    pub log_path: PathBuf,
    /// The stdin document (§5.4).
    pub stdin: Vec<u8>,
    /// The rendered configuration has `debug: true`: [`config_dump`] goes to the log first.
    pub debug: bool,
    /// The rendered configuration (the stdin document's `config`).
    pub config: String,
}

/// Is `key` (a YAML mapping key, possibly nested) the name of a secret?
fn secret_key(key: &str) -> bool {
    let k = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "private_key",
        "api_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `scheme://user:password@host` → `scheme://user:***@host`, everywhere in `line`.
fn redact_url_passwords(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => match authority[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                    out.push_str(&authority[at..]);
                }
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The debug dump of the rendered configuration the bootstrap writes to the UEP log before
/// exec when the configuration has `debug: true` (ENDPOINT §3.7 step 6), with secrets
/// redacted: the value of any key naming a password, secret, token, credential or private
/// key, and the password of any `scheme://user:password@host` URL, become `***`.
#[must_use]
pub fn config_dump(config: &str, now: chrono::DateTime<chrono::Local>) -> String {
    let lines: Vec<&str> = config.split('\n').collect();
    let n = lines.len();
    let count = {
        let digits = n.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        grouped
    };
    let mut out = format!(
        "{} DEBUG UserEndpointProcess_Bootstrap(PreExec) Endpoint Begin Compute endpoint \
         configuration ({count} lines):\n",
        now.format("%Y-%m-%d %H:%M:%S,%6f")
    );
    for line in lines {
        let shown = match line.split_once(':') {
            Some((key, value))
                if secret_key(key.trim_start_matches([' ', '-'])) && !value.trim().is_empty() =>
            {
                format!("{key}: ***")
            }
            _ => redact_url_passwords(line),
        };
        out.push_str("  | ");
        out.push_str(&shown);
        out.push('\n');
    }
    out.push_str("End Compute endpoint configuration\n");
    out
}

/// A failed preparation: the rung of §5.5 (same user) and the Python-style exception.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("[exit code: {code}; ({kind}) {message}]")]
pub struct PrepareError {
    /// Upstream's exit status for the failed step.
    pub code: i32,
    /// Exception class name shown to the user.
    pub kind: String,
    /// Exception text.
    pub message: String,
}

fn fail(code: i32, kind: &str, message: impl Into<String>) -> PrepareError {
    PrepareError {
        code,
        kind: kind.into(),
        message: message.into(),
    }
}

/// The MEP-side facts a preparation needs.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The MEP directory (template, schema, `user_environment.yaml`).
    pub endpoint_dir: &'a Path,
    /// The MEP configuration.
    pub config: &'a CoreEndpointConfig,
    /// Where UEP directories are created (`$GLOBUS_COMPUTE_USER_DIR` or `~/.globus_compute`).
    pub compute_dir: &'a Path,
    /// The MEP's environment (inherited whole by the UEP on the unprivileged path).
    pub base_env: &'a BTreeMap<String, String>,
    /// The MEP's pid (`ep_info.posix_ppid`).
    pub mep_pid: u32,
    /// A privileged MEP starts the UEP from an empty environment (§4.5 step 3).
    pub privileged: bool,
    /// Appended to the default `PATH` (upstream: the directory of the MEP's interpreter;
    /// here: the directory of the UEP program).
    pub program_dir: Option<&'a Path>,
    /// The UEP runs as another user than the MEP: failures use the uid-change column of the
    /// exit ladder (PROTOCOL-ENDPOINT §5.5; rungs above 70 move up by 4).
    pub uid_change: bool,
    /// `audit_fd` of the UEP document: the audit pipe's descriptor number in the UEP (HA with
    /// `audit_log_path` only; ENDPOINT §4.10).
    pub audit_fd: Option<i32>,
    /// `enckey` of the credential memfd at descriptor 3 ([`CREDENTIAL_FD`]). When set, the
    /// stdin document carries `mem_fd` and `enckey` and **no** `amqp_creds`: the credentials
    /// exist only encrypted, in the memfd (PROTOCOL-ENDPOINT §5.4).
    pub credential_key: Option<&'a str>,
}

/// The credential memfd's descriptor number in the UEP (`mem_fd`, 3 as upstream).
pub const CREDENTIAL_FD: i32 = 3;

/// The memfd's plain text: the compact JSON `{"amqp_creds": {...}}`.
#[must_use]
pub fn credential_plaintext(amqp_creds: &serde_json::Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "amqp_creds": amqp_creds })).unwrap_or_default()
}

impl Context<'_> {
    /// The exit status of a failed rung, given its same-user value.
    #[must_use]
    pub fn rung(&self, same_user: i32) -> i32 {
        if self.uid_change && same_user > 70 {
            same_user + 4
        } else {
            same_user
        }
    }
}

/// What is read from the MEP directory while still privileged (ENDPOINT §4.5 steps 2 and 4):
/// the template, the user-option schema and the `user_environment.yaml` variables.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sources {
    /// Template text.
    pub template: String,
    /// Where it was read from (its directory serves `{% include %}`).
    pub template_path: PathBuf,
    /// The schema, if there is one.
    pub schema: Option<Value>,
    /// `user_environment.yaml` (empty when absent or unusable).
    pub user_env: BTreeMap<String, String>,
}

/// Reads the [`Sources`] of a UEP start; failures are rung 70.
pub fn read_sources(
    endpoint_dir: &Path,
    cfg: &CoreEndpointConfig,
) -> Result<Sources, PrepareError> {
    let (template, template_path) =
        template::read_user_config_template(&cfg.template_path(endpoint_dir))
            .map_err(|e| fail(70, "FileNotFoundError", e.to_string()))?;
    let schema = template::read_user_config_schema(&cfg.schema_path(endpoint_dir))
        .map_err(|e| fail(70, "ValueError", e.to_string()))?;
    let mut user_env = BTreeMap::new();
    let env_file = endpoint_dir.join("user_environment.yaml");
    if let Ok(text) = std::fs::read_to_string(&env_file) {
        match gc_config::user_env::load_user_environment(&text, &env_file.display().to_string()) {
            Ok(vars) if vars.is_empty() => {
                tracing::info!("No variables parsed from: {}", env_file.display())
            }
            Ok(vars) => user_env = vars,
            Err(e) => tracing::warn!(
                "Using only default environment variables as no variables read from \
                 environment file.  Is it a valid YAML file?  (Hint: the `yq` command line \
                 utility may be helpful.)  {e}"
            ),
        }
    }
    Ok(Sources {
        template,
        template_path,
        schema,
        user_env,
    })
}

/// A local account as the UEP sees it (passwd entry and group list, looked up before any
/// fork).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalUser {
    /// `pw_name`.
    pub name: String,
    /// `pw_uid`.
    pub uid: u32,
    /// `pw_gid`.
    pub gid: u32,
    /// `getgrouplist(name, gid)`.
    pub groups: Vec<u32>,
    /// `pw_gecos`.
    pub gecos: String,
    /// `pw_shell`.
    pub shell: String,
    /// `pw_dir`.
    pub dir: PathBuf,
}

impl LocalUser {
    fn from_nix(user: nix::unistd::User) -> LocalUser {
        let groups: Vec<u32> = std::ffi::CString::new(user.name.clone())
            .ok()
            .and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok())
            .map(|g| g.iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![user.gid.as_raw()]);
        LocalUser {
            groups,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            gecos: user.gecos.to_string_lossy().into_owned(),
            shell: user.shell.to_string_lossy().into_owned(),
            dir: user.dir,
            name: user.name,
        }
    }

    /// `getpwnam(name)` and the group list; `Ok(None)` when there is no such account.
    pub fn by_name(name: &str) -> Result<Option<LocalUser>, nix::Error> {
        Ok(nix::unistd::User::from_name(name)?.map(LocalUser::from_nix))
    }

    /// The account of this process, if it has one.
    #[must_use]
    pub fn current() -> Option<LocalUser> {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(LocalUser::from_nix)
    }

    /// The home directory if it is a directory, else `/` (ENDPOINT §4.5 step 5).
    #[must_use]
    pub fn home(&self) -> PathBuf {
        if self.dir.is_dir() {
            self.dir.clone()
        } else {
            PathBuf::from("/")
        }
    }

    /// `_GC.mapped_identity` of the template.
    #[must_use]
    pub fn mapped_identity(&self, globus_id: Option<&str>) -> Value {
        json!({
            "local": {
                "uname": self.name, "uid": self.uid, "gid": self.gid, "gecos": self.gecos,
                "shell": self.shell, "dir": self.dir.to_string_lossy(), "groups": self.groups,
            },
            "globus": {"id": globus_id},
        })
    }
}

/// `release` of a PEP 440 version as numbers (`"4.9.0"` → `[4, 9, 0]`); `None` if it does
/// not start with a number.
fn release(version: &str) -> Option<Vec<u64>> {
    let v = version.trim().trim_start_matches(['v', 'V']);
    let mut out = Vec::new();
    for part in v.split('.') {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        out.push(digits.parse().ok()?);
        if digits.len() != part.len() {
            break;
        }
    }
    if out.is_empty() {
        return None;
    }
    // PEP 440 compares releases padded with zeros (4.10 == 4.10.0).
    while out.len() < 3 {
        out.push(0);
    }
    Some(out)
}

fn raw_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Does the work of the forked child up to `exec` for a UEP of the MEP's own user
/// (ENDPOINT §4.5 child steps 2–17).
pub fn prepare(ctx: &Context<'_>, start: &StartEndpoint) -> Result<Prepared, PrepareError> {
    let sources = read_sources(ctx.endpoint_dir, ctx.config)?;
    let user = LocalUser::current().unwrap_or(LocalUser {
        name: String::new(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        groups: vec![],
        gecos: String::new(),
        shell: String::new(),
        dir: PathBuf::from("/"),
    });
    prepare_with(ctx, start, &sources, &user, None)
}

/// [`prepare`] from [`Sources`] read earlier, for `user` (already the process's user when
/// this runs: rendering happens as the user), matched through `globus_id` if mapped.
pub fn prepare_with(
    ctx: &Context<'_>,
    start: &StartEndpoint,
    sources: &Sources,
    user: &LocalUser,
    globus_id: Option<&str>,
) -> Result<Prepared, PrepareError> {
    let cfg = ctx.config;
    // Steps 3 and 4: user_environment.yaml merged into the inherited (or empty) environment.
    let mut env = if ctx.privileged {
        BTreeMap::new()
    } else {
        ctx.base_env.clone()
    };
    env.extend(sources.user_env.clone());
    let mapped_identity = user.mapped_identity(globus_id);
    let home = user.home();
    let user = user.name.clone();

    // Steps 5 and 8: defaults, set only if absent.
    let mut set_default = |k: &str, v: String| {
        env.entry(k.to_string()).or_insert(v);
    };
    set_default("HOME", home.display().to_string());
    set_default("USER", user.clone());
    let mut path = "/usr/local/bin:/usr/bin:/bin".to_string();
    if let Some(dir) = ctx.program_dir {
        path = format!("{path}:{}", dir.display());
    }
    set_default("PATH", path);
    set_default("GLOBUS_COMPUTE_ENDPOINT_NAME", start.name.clone());

    // Step 9: render.
    let user_opts = Value::Object(start.user_opts.clone());
    let user_runtime = Value::Object(start.user_runtime.clone());
    let rendered = template::render_user_config(&RenderInputs {
        template: &sources.template,
        template_dir: sources.template_path.parent(),
        schema: sources.schema.as_ref(),
        user_opts: &user_opts,
        user_runtime: &user_runtime,
        parent_config: cfg,
        mapped_identity: &mapped_identity,
        env: &env,
    })
    .and_then(|text| template::apply_high_assurance(&text, cfg.base.high_assurance))
    .map_err(|e| fail(ctx.rung(73), e.python_type(), e.to_string()))?;
    if let Some(v) = start
        .user_runtime
        .get("python")
        .and_then(|p| p.get("version"))
    {
        env.entry("GC_USER_PYTHON_VERSION".into())
            .or_insert_with(|| raw_text(v));
    }
    let mut args = vec!["_start-user-endpoint".to_string(), start.name.clone()];
    args.extend(start.args.iter().cloned());
    if let Some(v) = start.user_runtime.get("globus_compute_sdk_version") {
        let text = raw_text(v);
        env.entry("GC_USER_SDK_VERSION".into())
            .or_insert_with(|| text.clone());
        let rel = release(&text).ok_or_else(|| {
            fail(
                ctx.rung(73),
                "InvalidVersion",
                format!("Invalid version: '{text}'"),
            )
        })?;
        if rel < vec![4, 10, 0] {
            args = vec!["start".to_string(), start.name.clone()];
            args.extend(start.args.iter().cloned());
            args.push("--die-with-parent".into());
        }
    }
    let cwd = env
        .get("CWD")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or(home);
    env.insert("CWD".into(), cwd.display().to_string());

    // Step 11: parse the rendered YAML, create the UEP directory, build stdin.
    let uep = gc_config::UserEndpointConfig::from_yaml(&rendered, "<rendered user config>")
        .map_err(|e| fail(ctx.rung(75), "ValueError", e.to_string()))?;
    let expand = |raw: &str| {
        PathBuf::from(gc_config::expand_path(
            raw,
            &env.get("HOME").cloned().unwrap_or_default(),
            |k| env.get(k).cloned(),
        ))
    };
    let paths = uep.paths.clone().unwrap_or_default();
    let uep_dir = paths
        .endpoint_dir
        .as_deref()
        .map(expand)
        .unwrap_or_else(|| ctx.compute_dir.join(&start.name));
    let log_path = paths
        .endpoint_log
        .as_deref()
        .map(expand)
        .unwrap_or_else(|| uep_dir.join("endpoint.log"));
    create_private_dir(&uep_dir).map_err(|e| fail(ctx.rung(75), "OSError", e.to_string()))?;
    env.insert(
        "GLOBUS_COMPUTE_ENDPOINT_DIR".into(),
        uep_dir.display().to_string(),
    );
    env.insert(
        "GLOBUS_COMPUTE_LOG_PATH".into(),
        log_path.display().to_string(),
    );
    let rendered_for_dump = rendered.clone();
    let stdin = UepStdin {
        amqp_creds: ctx
            .credential_key
            .is_none()
            .then(|| start.amqp_creds.clone()),
        config: rendered,
        ep_info: EpInfo {
            posix_ppid: i64::from(ctx.mep_pid),
            globus_candidate_identities: None,
            globus_matched_identity: globus_id.map(String::from),
            other: Default::default(),
        },
        mem_fd: ctx.credential_key.map(|_| CREDENTIAL_FD),
        enckey: ctx.credential_key.map(String::from),
        allowed_functions: cfg.base.allowed_functions.clone(),
        audit_fd: ctx.audit_fd,
    }
    .to_bytes();
    // Step 13: it must fit the pipe.
    if stdin.len() > MAX_LEN_DEFAULT_PIPE {
        return Err(fail(
            ctx.rung(77),
            "ValueError",
            format!(
                "Unable to write {} bytes of data to stdin; the maximum allowed is {} bytes",
                stdin.len(),
                MAX_LEN_DEFAULT_PIPE
            ),
        ));
    }
    Ok(Prepared {
        args,
        env,
        cwd,
        uep_dir,
        log_path,
        stdin,
        debug: uep.base.debug,
        config: rendered_for_dump,
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn start(user_opts: Value, user_runtime: Value) -> StartEndpoint {
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        StartEndpoint {
            globus_username: json!("u"),
            globus_effective_identity: json!("i"),
            globus_identity_set: vec![],
            args: vec!["--x".into()],
            name: "uep.a.b".into(),
            user_opts: obj(user_opts),
            user_runtime: obj(user_runtime),
            amqp_creds: Map::from_iter([("endpoint_id".to_string(), json!("e"))]),
        }
    }

    fn setup(config: &str) -> (tempfile::TempDir, CoreEndpointConfig) {
        let d = tempfile::tempdir().unwrap();
        let ep = d.path().join("ep");
        std::fs::create_dir_all(&ep).unwrap();
        std::fs::write(
            ep.join("user_config_template.yaml.j2"),
            "engine:\n  type: ThreadPoolEngine\n  max_workers: {{ n|default(1) }}\n",
        )
        .unwrap();
        let cfg = CoreEndpointConfig::from_yaml(config, "config.yaml", Default::default()).unwrap();
        (d, cfg)
    }

    fn run(
        d: &tempfile::TempDir,
        cfg: &CoreEndpointConfig,
        s: &StartEndpoint,
    ) -> Result<Prepared, PrepareError> {
        let env = BTreeMap::from([("PATH".to_string(), "/bin".to_string())]);
        prepare(
            &Context {
                endpoint_dir: &d.path().join("ep"),
                config: cfg,
                compute_dir: d.path(),
                base_env: &env,
                mep_pid: 42,
                privileged: false,
                program_dir: None,
                audit_fd: None,
                uid_change: false,
                credential_key: None,
            },
            s,
        )
    }

    #[test]
    fn argv_env_and_stdin() {
        let (d, cfg) = setup("allowed_functions: []\n");
        let p = run(
            &d,
            &cfg,
            &start(
                json!({"n": 2}),
                json!({"python": {"version": "3.11.2"}, "globus_compute_sdk_version": "4.19.0"}),
            ),
        )
        .unwrap();
        assert_eq!(p.args, ["_start-user-endpoint", "uep.a.b", "--x"]);
        assert_eq!(p.env["GC_USER_PYTHON_VERSION"], "3.11.2");
        assert_eq!(p.env["GLOBUS_COMPUTE_ENDPOINT_NAME"], "uep.a.b");
        assert_eq!(p.env["PATH"], "/bin");
        assert_eq!(p.uep_dir, d.path().join("uep.a.b"));
        let doc: Value = serde_json::from_slice(&p.stdin).unwrap();
        assert_eq!(
            doc,
            json!({"amqp_creds": {"endpoint_id": "e"},
                   "config": "engine:\n  type: ThreadPoolEngine\n  max_workers: 2",
                   "ep_info": {"posix_ppid": 42}, "allowed_functions": []})
        );
    }

    #[test]
    fn legacy_argv_for_old_sdks_and_version_errors() {
        let (d, cfg) = setup("{}\n");
        let p = run(
            &d,
            &cfg,
            &start(json!({}), json!({"globus_compute_sdk_version": "4.9.0"})),
        )
        .unwrap();
        assert_eq!(p.args, ["start", "uep.a.b", "--x", "--die-with-parent"]);
        let e = run(
            &d,
            &cfg,
            &start(json!({}), json!({"globus_compute_sdk_version": "abc"})),
        )
        .unwrap_err();
        assert_eq!((e.code, e.kind.as_str()), (73, "InvalidVersion"));
    }

    #[test]
    fn template_failures_are_rung_73_and_oversized_stdin_77() {
        let (d, cfg) = setup("{}\n");
        let e = run(&d, &cfg, &start(json!({"_GC": 1}), json!({}))).unwrap_err();
        assert_eq!(e.code, 73);
        assert!(e.message.contains("'_GC' is a reserved word"), "{e}");
        let big = "x".repeat(MAX_LEN_DEFAULT_PIPE);
        let mut s = start(json!({}), json!({}));
        s.amqp_creds.insert("pad".into(), json!(big));
        let e = run(&d, &cfg, &s).unwrap_err();
        assert_eq!(e.code, 77);
    }

    #[test]
    fn uid_change_moves_rungs_above_70_up_by_four() {
        let (d, cfg) = setup("{}\n");
        let env = BTreeMap::new();
        let ctx = |uid_change| Context {
            endpoint_dir: d.path(),
            config: &cfg,
            compute_dir: d.path(),
            base_env: &env,
            mep_pid: 1,
            privileged: true,
            program_dir: None,
            uid_change,
            audit_fd: None,
            credential_key: Some("k"),
        };
        assert_eq!((ctx(true).rung(70), ctx(true).rung(73)), (70, 77));
        assert_eq!(ctx(false).rung(79), 79);
        // Rendering for another user: the template sees that user, the environment starts
        // empty on a privileged MEP, and failures carry the uid-change rung.
        let user = LocalUser {
            name: "someone".into(),
            uid: 4242,
            gid: 4343,
            groups: vec![4343, 27],
            gecos: String::new(),
            shell: "/bin/sh".into(),
            dir: PathBuf::from("/nonexistent"),
        };
        let sources = Sources {
            template: "engine:\n  type: ThreadPoolEngine\n# {{ _GC.mapped_identity.local.uname }} \
                       {{ _GC.mapped_identity.local.groups }} {{ _GC.mapped_identity.globus.id }}"
                .into(),
            template_path: d.path().join("t.j2"),
            schema: None,
            user_env: BTreeMap::from([("SITE".to_string(), "1".to_string())]),
        };
        let p = prepare_with(
            &ctx(true),
            &start(json!({}), json!({})),
            &sources,
            &user,
            Some("gid-1"),
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&p.stdin).unwrap();
        assert_eq!(
            doc["config"],
            "engine:\n  type: ThreadPoolEngine\n# someone [4343, 27] gid-1"
        );
        assert_eq!(doc["ep_info"]["globus_matched_identity"], "gid-1");
        // With a credential memfd the document carries the key, not the credentials.
        assert_eq!((&doc["mem_fd"], &doc["enckey"]), (&json!(3), &json!("k")));
        assert!(doc.get("amqp_creds").is_none(), "{doc}");
        assert_eq!(p.env["HOME"], "/");
        assert_eq!(p.env["USER"], "someone");
        assert_eq!(p.env["SITE"], "1");
        assert!(!p.env.contains_key("PWD"));
        let e = prepare_with(
            &ctx(true),
            &start(json!({"_GC": 1}), json!({})),
            &sources,
            &user,
            None,
        )
        .unwrap_err();
        assert_eq!(e.code, 77);
    }

    #[test]
    fn config_dump_counts_lines_and_redacts_secrets() {
        let at = chrono::TimeZone::with_ymd_and_hms(&chrono::Local, 2026, 11, 22, 18, 12, 50)
            .single()
            .unwrap();
        let text = "high_assurance: true\ndebug: true\nengine:\n  type: ThreadPoolEngine\n  \
                    password: hunter2\n  api_token: abc\n  url: amqp://u:pw@h:5671/v\n  note: ok";
        let dump = config_dump(text, at);
        assert!(
            dump.starts_with(
                "2026-11-22 18:12:50,000000 DEBUG UserEndpointProcess_Bootstrap(PreExec) Endpoint \
                 Begin Compute endpoint configuration (8 lines):\n  | high_assurance: true\n"
            ),
            "{dump}"
        );
        assert!(dump.contains("  |   password: ***\n"), "{dump}");
        assert!(dump.contains("  |   api_token: ***\n"), "{dump}");
        assert!(
            dump.contains("  |   url: amqp://u:***@h:5671/v\n"),
            "{dump}"
        );
        assert!(dump.contains("  |   note: ok\n"), "{dump}");
        assert!(!dump.contains("hunter2") && !dump.contains("abc") && !dump.contains(":pw@"));
        assert!(dump.ends_with("End Compute endpoint configuration\n"));
        let long = "x\n".repeat(1233);
        assert!(config_dump(&long, at).contains("(1,234 lines)"));
    }

    #[test]
    fn passwd_lookups() {
        let root = LocalUser::by_name("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(LocalUser::by_name("no-such-user-gcmep").unwrap(), None);
    }

    #[test]
    fn release_parsing() {
        assert_eq!(release("4.9.0"), Some(vec![4, 9, 0]));
        assert_eq!(release("4.19.0rc1"), Some(vec![4, 19, 0]));
        assert_eq!(release("not a version"), None);
        assert!(release("4.9.0").unwrap() < vec![4, 10, 0]);
        assert_eq!(release("4.10"), Some(vec![4, 10, 0]));
    }
}
