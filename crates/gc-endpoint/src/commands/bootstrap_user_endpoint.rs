//! Hidden `_bootstrap-user-endpoint NAME` (not an upstream command): what a privileged core
//! endpoint with identity mapping execs for a mapped user. It reads the bootstrap document on
//! stdin and hands it to [`gc_mep::bootstrap::run`], which (as that user) renders the user
//! endpoint configuration and execs `_start-user-endpoint`; it returns only on failure, after
//! writing the failure line the core endpoint turns into a notice.

use std::io::Read;

use crate::click::{CliError, CmdResult};

/// Run `_bootstrap-user-endpoint`.
pub fn run(_argv: &[String]) -> CmdResult {
    let mut document = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut document) {
        eprintln!("[exit code: 70; (OSError) cannot read the bootstrap document: {e}]");
        return Err(CliError::Exit(70));
    }
    let code = gc_mep::bootstrap::run(&document);
    Err(CliError::Exit(u8::try_from(code).unwrap_or(1)))
}
