//! `login [--force]`, `logout [--force]`, `whoami [--linked-identities]` (ENDPOINT.md
//! §1.4.9) against the service, with the token store of upstream (`storage.db`, see
//! [`crate::token_store`]).
//!
//! * With `GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET` set (PROTOCOL-SDK §2), `login` obtains
//!   client-credentials tokens for the compute and Auth scopes and stores them under
//!   `clientprofile/<env>/<client id>`, as upstream's client login does.
//! * Without them, upstream runs the browser login flow. Our service issues tokens only to
//!   client identities, so `login` asks for a client ID and secret instead (on the terminal,
//!   the secret without echo; or two lines on standard input), checks them by obtaining
//!   tokens, and stores the identity and its tokens under `user/<env>`. Every later command
//!   (`start`, `stop --remote`, `delete`, `whoami`, ...) uses the stored login when the
//!   environment variables are unset.
//! * `logout` revokes the stored tokens at the service and removes them (and a stored
//!   identity) from the store.

use serde_json::Value;

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{HelpOnly, parse};
use crate::commands::list::endpoint_rows;
use crate::compute_dir;
use crate::console;
use crate::service::{self, AUTH_SCOPES, COMPUTE_SCOPE, ServiceError, Session};
use crate::texttable;
use crate::token_store;

const LOGIN_USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint login",
    pieces: "[OPTIONS]",
    help_hint: Some("--help"),
};
const LOGOUT_USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint logout",
    pieces: "[OPTIONS]",
    help_hint: Some("--help"),
};
const WHOAMI_USAGE: Usage = Usage {
    command_path: "globus-compute-endpoint whoami",
    pieces: "[OPTIONS]",
    help_hint: Some("--help"),
};

const LOGIN_HELP: &str = include_str!("../help/login.txt");
const LOGOUT_HELP: &str = include_str!("../help/logout.txt");
const WHOAMI_HELP: &str = include_str!("../help/whoami.txt");

const NOT_LOGGED_IN: &str = "Unable to retrieve user information. Please log in again.";

click_args! {
    struct ForceArgs {
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        help: HelpOnly,
    }
}

click_args! {
    struct WhoamiArgs {
        #[arg(long)]
        linked_identities: bool,
        #[command(flatten)]
        help: HelpOnly,
    }
}

/// The SDK's environment for CLI logins: `GLOBUS_SDK_ENVIRONMENT`, else production.
fn environment() -> String {
    service::environment_name(false, None)
}

/// Run `login`.
pub fn run_login(argv: &[String]) -> CmdResult {
    let args: ForceArgs = parse(argv, LOGIN_USAGE)?;
    if args.help.apply(LOGIN_HELP) {
        return Ok(());
    }
    let env = environment();
    match service::resolve_identity(&env) {
        Ok((id, secret, namespace)) => {
            let stored_login = namespace == token_store::namespace(&env, None);
            let session = Session::with_identity(&env, id, secret, namespace)
                .map_err(ServiceError::into_cli)?;
            if !args.force && !session.login_required(&[COMPUTE_SCOPE, AUTH_SCOPES]) {
                console::info("Already logged in. Use --force to run login flow anyway");
                return Ok(());
            }
            if !stored_login {
                session.login(false).map_err(ServiceError::into_cli)?;
                return Ok(());
            }
        }
        Err(e) if service::client_identity_half_set() => return Err(e.into_cli()),
        Err(_) => {}
    }
    let (id, secret) = prompt_identity()?;
    let session = Session::with_identity(&env, id, secret, token_store::namespace(&env, None))
        .map_err(ServiceError::into_cli)?;
    session.login(true).map_err(ServiceError::into_cli)?;
    console::info(&format!(
        "Logged in as client {}; credentials stored in {}",
        session.client_id(),
        compute_dir::compute_dir()
            .join(token_store::FILE_NAME)
            .display()
    ));
    Ok(())
}

/// One line of standard input without its line ending; `None` at end of input.
fn read_line() -> Result<Option<String>, CliError> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) => Ok(None),
        Ok(_) => Ok(Some(line.trim_end_matches(['\r', '\n']).to_string())),
        Err(e) => Err(CliError::Click(format!("reading standard input: {e}"))),
    }
}

/// Ask for a client ID and secret (the secret without echo on a terminal); end of input is
/// `Aborted!`, as at Click's prompts.
fn prompt_identity() -> Result<(String, String), CliError> {
    use std::io::{IsTerminal, Write};
    eprintln!(
        "This service issues tokens to client identities only; enter the ID and secret of one\n(an operator creates them with `gc-service client create`)."
    );
    let ask = |label: &str, hide: bool| -> Result<String, CliError> {
        loop {
            eprint!("{label}: ");
            let _ = std::io::stderr().flush();
            let stdin = std::io::stdin();
            let saved = if hide && stdin.is_terminal() {
                rustix::termios::tcgetattr(&stdin).ok()
            } else {
                None
            };
            if let Some(t) = &saved {
                let mut quiet = t.clone();
                quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
                let _ = rustix::termios::tcsetattr(
                    &stdin,
                    rustix::termios::OptionalActions::Now,
                    &quiet,
                );
            }
            let line = read_line();
            if let Some(t) = &saved {
                let _ =
                    rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, t);
                eprintln!();
            }
            match line? {
                None => {
                    eprintln!();
                    return Err(CliError::Aborted);
                }
                Some(v) if v.trim().is_empty() => continue,
                Some(v) => return Ok(v.trim().to_string()),
            }
        }
    };
    let id = ask("Client ID", false)?;
    let secret = ask("Client Secret", true)?;
    Ok((id, secret))
}

/// Run `logout`.
pub fn run_logout(argv: &[String]) -> CmdResult {
    let args: ForceArgs = parse(argv, LOGOUT_USAGE)?;
    if args.help.apply(LOGOUT_HELP) {
        return Ok(());
    }
    let running: Vec<String> = endpoint_rows(&compute_dir::compute_dir())
        .into_iter()
        .filter(|[_, status, _]| status == "Running")
        .map(|[_, _, name]| name)
        .collect();
    if !running.is_empty() && !args.force {
        console::info(&format!(
            "The following endpoints are currently running: {}\nPlease use logout --force to proceed",
            running.join(", ")
        ));
        return Ok(());
    }
    // Only a half-configured client identity is an error; without any identity nothing is
    // stored that could be revoked.
    let env = environment();
    match service::resolve_identity(&env) {
        Ok((id, secret, namespace)) => {
            Session::with_identity(&env, id, secret, namespace)
                .and_then(|s| s.logout())
                .map_err(ServiceError::into_cli)?;
        }
        Err(e) if service::client_identity_half_set() => return Err(e.into_cli()),
        Err(_) => {}
    }
    console::info("Logout succeeded and all cached credentials were revoked");
    Ok(())
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// `[username, name, id, email]` of one identity.
fn identity_row(client: &service::AuthClient, id: &str) -> Result<Vec<String>, ServiceError> {
    let answer = client.identity(id)?;
    let first = answer
        .get("identities")
        .and_then(|i| i.get(0))
        .ok_or_else(|| ServiceError::Api {
            text: format!("identity {id} not found"),
        })?;
    Ok(vec![
        text_of(&first["username"]),
        text_of(&first["name"]),
        id.to_string(),
        text_of(&first["email"]),
    ])
}

/// Run `whoami`.
pub fn run_whoami(argv: &[String]) -> CmdResult {
    let args: WhoamiArgs = parse(argv, WHOAMI_USAGE)?;
    if args.help.apply(WHOAMI_HELP) {
        return Ok(());
    }
    let session = match Session::from_env(&environment()) {
        Ok(s) => s,
        Err(e) if service::client_identity_half_set() => return Err(e.into_cli()),
        Err(_) => return Err(CliError::Click(NOT_LOGGED_IN.into())),
    };
    let rows = whoami_rows(&session, args.linked_identities)?;
    println!(
        "{}",
        texttable::table(
            &["Username", "Name", "ID", "Email"],
            &rows,
            texttable::terminal_columns()
        )
    );
    Ok(())
}

fn whoami_rows(session: &Session, linked: bool) -> Result<Vec<Vec<String>>, CliError> {
    let not_logged_in = |_| CliError::Click(NOT_LOGGED_IN.into());
    let client = session.auth().map_err(not_logged_in)?;
    let info = client.userinfo().map_err(not_logged_in)?;
    let main_id = info
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| CliError::Click(NOT_LOGGED_IN.into()))?;
    let mut rows = vec![identity_row(&client, main_id).map_err(not_logged_in)?];
    if linked {
        let Some(set) = info.get("identity_set").and_then(Value::as_array) else {
            return Err(CliError::Click(
                "Your current login does not have the consents required to view your full identity set. Please log in again to agree to the required consents.\n\n  Hint: use the --logout flag".into(),
            ));
        };
        let main = rows.remove(0);
        for ident in set {
            let Some(id) = ident.get("sub").and_then(Value::as_str) else {
                continue;
            };
            if id == main_id {
                rows.push(main.clone());
            } else {
                rows.push(identity_row(&client, id).map_err(not_logged_in)?);
            }
        }
    }
    Ok(rows)
}
