//! `endpoint_setup`: one shell command the user endpoint runs before it starts its engine
//! (ENDPOINT.md §5.2 step 9).
//!
//! Run with `/bin/sh -c` in the current directory, its output captured and logged as Python
//! bytes literals as upstream does; a non-zero status stops the UEP with exit status 78
//! (`EX_CONFIG`). The command runs in a child shell, so it cannot change the UEP's own
//! environment. `endpoint_teardown` is never run by a UEP (§5.5).

use std::path::Path;
use std::process::Stdio;

use crate::error::UepError;

/// Runs `command` (skipped when blank) with `GLOBUS_COMPUTE_ENDPOINT_DIR` = `endpoint_dir`.
pub(crate) async fn endpoint_setup(command: &str, endpoint_dir: &Path) -> Result<(), UepError> {
    if command.trim().is_empty() {
        return Ok(());
    }
    let output = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("GLOBUS_COMPUTE_ENDPOINT_DIR", endpoint_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(UepError::SetupSpawn)?;
    tracing::info!("running endpoint_setup command: {command}");
    tracing::info!("endpoint_setup stdout: {}", bytes_repr(&output.stdout));
    tracing::info!("endpoint_setup stderr: {}", bytes_repr(&output.stderr));
    if output.status.success() {
        return Ok(());
    }
    // Python's `returncode`: the exit status, or minus the signal number.
    let code = output.status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        -output.status.signal().unwrap_or(0)
    });
    tracing::error!("endpoint_setup failed with exit code {code}");
    Err(UepError::EndpointSetup(code))
}

/// Python's `repr()` of a `bytes` value (`b'a\nb'`, `b"it's"`, `b'\x00'`).
fn bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(quote);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ if char::from(b) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_repr_matches_python() {
        assert_eq!(bytes_repr(b""), "b''");
        assert_eq!(
            bytes_repr(b"custom-setup\nCWD=/x\n"),
            "b'custom-setup\\nCWD=/x\\n'"
        );
        assert_eq!(bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(bytes_repr(b"'\""), "b'\\'\"'");
        assert_eq!(bytes_repr(b"\x00\xff\\\t\r"), "b'\\x00\\xff\\\\\\t\\r'");
    }

    #[tokio::test]
    async fn runs_in_a_shell_with_the_endpoint_dir() {
        let dir = tempfile::tempdir().unwrap();
        endpoint_setup(
            "printf %s \"$GLOBUS_COMPUTE_ENDPOINT_DIR\" > \"$GLOBUS_COMPUTE_ENDPOINT_DIR/out\"",
            dir.path(),
        )
        .await
        .unwrap();
        let written = std::fs::read_to_string(dir.path().join("out")).unwrap();
        assert_eq!(Path::new(&written), dir.path());
    }

    #[tokio::test]
    async fn failure_gives_its_status_and_exit_78() {
        let dir = tempfile::tempdir().unwrap();
        let err = endpoint_setup("echo no >&2; exit 3", dir.path())
            .await
            .unwrap_err();
        assert!(matches!(err, UepError::EndpointSetup(3)), "{err:?}");
        assert_eq!(err.exit_code(), 78);
        assert!(endpoint_setup("   ", dir.path()).await.is_ok());
    }
}
