//! `login [--force]`, `logout [--force]`, `whoami [--linked-identities]` (ENDPOINT.md
//! §1.4.9) with a client identity (`GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET`, PROTOCOL-SDK §2).
//!
//! This build keeps no token store: every command that needs the service fetches fresh
//! client-credentials tokens. So `login` checks that the identity can obtain tokens for the
//! compute and Auth scopes, and `logout` has nothing cached to revoke. Interactive (browser)
//! logins are not offered.

use serde_json::Value;

use crate::click::{CliError, CmdResult, Usage};
use crate::commands::common::{HelpOnly, parse};
use crate::commands::list::endpoint_rows;
use crate::compute_dir;
use crate::console;
use crate::service::{self, ServiceError, Session};
use crate::texttable;

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
    let session = Session::from_env(&environment()).map_err(ServiceError::into_cli)?;
    session
        .compute()
        .and_then(|_| session.auth())
        .map_err(ServiceError::into_cli)?;
    Ok(())
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
    // Only a half-configured client identity is an error; there are no cached tokens.
    match Session::from_env(&environment()) {
        Err(e @ ServiceError::Setup(_)) if service::client_identity_half_set() => {
            return Err(e.into_cli());
        }
        _ => {}
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
