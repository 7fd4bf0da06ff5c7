//! `delete`: local deletion, the confirmation prompt, and the web-service part against a
//! scripted HTTP service (Auth token route + compute status/delete routes), including the
//! service-refusal, network-error and Auth-error exits of ENDPOINT.md §1.4.8.

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use support::{ours, ours_with, tempdir, upstream};

const EP_ID: &str = "aaaaaaaa-1111-4222-8333-444444444444";

/// One recorded request: method, path, Authorization header.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// A scripted service: route "METHOD path" → (status, body). Unlisted routes answer 404.
fn serve(routes: &[(&str, u16, &str)]) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let table: HashMap<String, (u16, String)> = routes
        .iter()
        .map(|(k, c, b)| (k.to_string(), (*c, b.to_string())))
        .collect();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut auth = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
                if lower.starts_with("content-length:") {
                    length = line["content-length:".len()..].trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            record
                .lock()
                .expect("lock")
                .push((method.clone(), path.clone(), auth));
            let (code, text) = table
                .get(&format!("{method} {path}"))
                .cloned()
                .unwrap_or((404, r#"{"code": "NOT_FOUND"}"#.to_string()));
            let resp = format!(
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(resp.as_bytes());
        }
    });
    (format!("http://{addr}"), seen)
}

const TOKEN: &str = r#"{"access_token": "tok-123", "scope": "x", "resource_server": "funcx_service", "expires_in": 3600, "token_type": "Bearer", "other_tokens": []}"#;

fn env_for(base: &str) -> Vec<(String, String)> {
    vec![
        ("GLOBUS_SDK_SERVICE_URL_COMPUTE".into(), base.to_string()),
        (
            "GLOBUS_SDK_SERVICE_URL_AUTH".into(),
            format!("{base}/auth/"),
        ),
        ("GLOBUS_COMPUTE_CLIENT_ID".into(), "cid".into()),
        ("GLOBUS_COMPUTE_CLIENT_SECRET".into(), "csecret".into()),
    ]
}

fn run(dir: &Path, args: &[&str], stdin: &str, env: &[(String, String)]) -> support::Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ours_with(dir, args, stdin, &env)
}

/// A configured endpoint, optionally registered (with `endpoint.json`).
fn endpoint(root: &Path, name: &str, registered: bool) -> std::path::PathBuf {
    let r = ours(root, &["configure", "--multi-user", "false", name]);
    assert_eq!(r.code, 0, "{r:?}");
    let dir = root.join(name);
    if registered {
        fs::write(
            dir.join("endpoint.json"),
            format!(r#"{{"endpoint_id": "{EP_ID}"}}"#),
        )
        .unwrap();
    }
    dir
}

#[test]
fn local_only_endpoint_is_removed_like_upstream() {
    let d = tempdir();
    let dir = endpoint(d.path(), "loc", false);
    let r = ours(d.path(), &["delete", "--yes", "loc"]);
    assert_eq!(r.code, 0, "{r:?}");
    let p = dir.display();
    assert_eq!(
        r.stderr,
        format!("> Endpoint {p} has been deleted from {p}\n")
    );
    assert!(!dir.exists());

    let u = tempdir();
    let udir = u.path().join("loc");
    assert_eq!(
        upstream(u.path(), &["configure", "--multi-user", "false", "loc"]).code,
        0
    );
    let ur = upstream(u.path(), &["delete", "--yes", "loc"]);
    let up = udir.display();
    assert_eq!(
        (ur.code, ur.stderr),
        (0, format!("> Endpoint {up} has been deleted from {up}\n"))
    );
}

#[test]
fn confirmation_prompt() {
    let d = tempdir();
    let dir = endpoint(d.path(), "p1", false);
    let no = run(d.path(), &["delete", "p1"], "n\n", &[]);
    assert_eq!(no.code, 1);
    assert_eq!(
        no.stdout,
        "Are you sure you want to delete endpoint < p1 >? [y/N]: "
    );
    assert_eq!(no.stderr, "Aborted!\n");
    assert!(dir.exists());
    let eof = run(d.path(), &["delete", "p1"], "", &[]);
    assert_eq!((eof.code, eof.stderr.as_str()), (1, "Aborted!\n"));
    let yes = run(d.path(), &["delete", "p1"], "y\n", &[]);
    assert_eq!(yes.code, 0, "{yes:?}");
    assert!(!dir.exists());
}

#[test]
fn registered_endpoint_is_deleted_remotely_then_locally() {
    let (base, seen) = serve(&[
        ("POST /auth/v2/oauth2/token", 200, TOKEN),
        (
            &format!("GET /v2/endpoints/{EP_ID}/status"),
            200,
            r#"{"status": "offline", "details": {}}"#,
        ),
        (
            &format!("DELETE /v2/endpoints/{EP_ID}"),
            200,
            r#"{"result": 302}"#,
        ),
    ]);
    let d = tempdir();
    let dir = endpoint(d.path(), "reg", true);
    let r = run(d.path(), &["delete", "--yes", "reg"], "", &env_for(&base));
    assert_eq!(r.code, 0, "{r:?}");
    let p = dir.display();
    assert_eq!(
        r.stderr,
        format!(
            "> Endpoint {EP_ID} has been deleted from the web service\n> Endpoint {p} has been deleted from {p}\n"
        )
    );
    assert!(!dir.exists());
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<(String, String)> = seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(
        methods,
        vec![
            ("POST".into(), "/auth/v2/oauth2/token".into()),
            ("GET".into(), format!("/v2/endpoints/{EP_ID}/status")),
            ("DELETE".into(), format!("/v2/endpoints/{EP_ID}")),
        ]
    );
    // Basic client credentials for Auth, the issued bearer token for compute.
    assert_eq!(seen[0].2, "Basic Y2lkOmNzZWNyZXQ=");
    assert_eq!(seen[1].2, "Bearer tok-123");
}

#[test]
fn online_endpoint_needs_force() {
    let (base, seen) = serve(&[
        ("POST /auth/v2/oauth2/token", 200, TOKEN),
        (
            &format!("GET /v2/endpoints/{EP_ID}/status"),
            200,
            r#"{"status": "online"}"#,
        ),
        (
            &format!("DELETE /v2/endpoints/{EP_ID}"),
            200,
            r#"{"result": 302}"#,
        ),
    ]);
    let d = tempdir();
    let dir = endpoint(d.path(), "on", true);
    let r = run(d.path(), &["delete", "--yes", "on"], "", &env_for(&base));
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains(" WARNING MainProcess-"));
    assert!(r.stderr.contains(&format!(
        "Endpoint {EP_ID} is currently running.  To proceed with deletion, first stop the endpoint, or ignore the current status with `delete --force`\n"
    )));
    assert!(dir.exists());
    assert!(!seen.lock().unwrap().iter().any(|(m, _, _)| m == "DELETE"));

    let forced = run(
        d.path(),
        &["delete", "--yes", "--force", "on"],
        "",
        &env_for(&base),
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(!dir.exists());
}

#[test]
fn service_refusal_keeps_the_local_endpoint_unless_forced() {
    let body = r#"{"code": "INTERNAL", "message": "nope"}"#;
    let (base, _seen) = serve(&[
        ("POST /auth/v2/oauth2/token", 200, TOKEN),
        (
            &format!("GET /v2/endpoints/{EP_ID}/status"),
            200,
            r#"{"status": "offline"}"#,
        ),
        (&format!("DELETE /v2/endpoints/{EP_ID}"), 403, body),
    ]);
    let d = tempdir();
    let dir = endpoint(d.path(), "ref", true);
    let r = run(d.path(), &["delete", "--yes", "ref"], "", &env_for(&base));
    assert_eq!(r.code, 69, "{r:?}");
    assert!(r.stderr.contains(&format!(
        "Endpoint {EP_ID} could not be deleted from the web service: [{body}]\n"
    )));
    assert!(r.stderr.contains(" CRITICAL "));
    assert!(
        r.stderr
            .contains("Exiting without deleting the local endpoint\n")
    );
    assert!(dir.exists());

    let forced = run(
        d.path(),
        &["delete", "--yes", "--force", "ref"],
        "",
        &env_for(&base),
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    assert!(!dir.exists());
}

#[test]
fn network_error_exits_tempfail() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let d = tempdir();
    let dir = endpoint(d.path(), "net", true);
    let r = run(d.path(), &["delete", "--yes", "net"], "", &env_for(&base));
    assert_eq!(r.code, 75, "{r:?}");
    assert_eq!(
        r.stdout,
        "globus-compute-endpoint is unable to reach the Globus Compute service due to a network error.\nPlease ensure the Globus Compute service address is reachable, then attempt to delete the endpoint again.\n"
    );
    assert!(r.stderr.contains(&format!(
        "Endpoint {EP_ID} could not be deleted from the web service:   ["
    )));
    assert!(dir.exists());
}

#[test]
fn auth_error_exits_noperm() {
    let body = r#"{"error": "invalid_client"}"#;
    let (base, _seen) = serve(&[("POST /auth/v2/oauth2/token", 401, body)]);
    let d = tempdir();
    let dir = endpoint(d.path(), "au", true);
    let r = run(d.path(), &["delete", "--yes", "au"], "", &env_for(&base));
    assert_eq!(r.code, 77, "{r:?}");
    assert_eq!(
        r.stdout,
        format!(
            "\nCompute CLI Error: An Auth API error occurred.\nHTTP status:       401\ncode:              invalid_client\nmessage:           {body}\n\n"
        )
    );
    assert!(dir.exists());
}

#[test]
fn unknown_uuid_is_remote_only_and_needs_force() {
    let (base, seen) = serve(&[
        ("POST /auth/v2/oauth2/token", 200, TOKEN),
        (
            &format!("GET /v2/endpoints/{EP_ID}/status"),
            200,
            r#"{"status": "offline"}"#,
        ),
        (
            &format!("DELETE /v2/endpoints/{EP_ID}"),
            200,
            r#"{"result": 302}"#,
        ),
    ]);
    let d = tempdir();
    let r = run(d.path(), &["delete", "--yes", EP_ID], "", &env_for(&base));
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "Error: No local endpoint configuration available for {EP_ID}\n\nPlease add the --force flag if you wish to proceed with attempting to delete the endpoint both locally and from the Globus Compute web services.\n"
        )
    );
    assert!(seen.lock().unwrap().is_empty());

    let forced = run(
        d.path(),
        &["delete", "--yes", "--force", EP_ID],
        "",
        &env_for(&base),
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(
        forced.stderr,
        format!(
            "> No local endpoint configuration available for {EP_ID}, proceeding to remote deletion by --force ...\n> Endpoint {EP_ID} has been deleted from the web service\n"
        )
    );

    // The prompt names the UUID with upstream's spacing.
    let no = run(d.path(), &["delete", EP_ID], "n\n", &env_for(&base));
    assert_eq!(
        no.stdout,
        format!("Are you sure you want to delete endpoint  ( {EP_ID} )? [y/N]: ")
    );
}

#[test]
fn a_registered_endpoint_found_by_uuid() {
    let (base, _seen) = serve(&[
        ("POST /auth/v2/oauth2/token", 200, TOKEN),
        (
            &format!("GET /v2/endpoints/{EP_ID}/status"),
            200,
            r#"{"status": "offline"}"#,
        ),
        (
            &format!("DELETE /v2/endpoints/{EP_ID}"),
            200,
            r#"{"result": 302}"#,
        ),
    ]);
    let d = tempdir();
    let dir = endpoint(d.path(), "byid", true);
    let no = run(d.path(), &["delete", EP_ID], "n\n", &env_for(&base));
    assert_eq!(
        no.stdout,
        format!("Are you sure you want to delete endpoint < byid > ( {EP_ID} )? [y/N]: ")
    );
    let r = run(d.path(), &["delete", "--yes", EP_ID], "", &env_for(&base));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!dir.exists());
}

#[test]
fn missing_client_secret_is_explained() {
    let d = tempdir();
    let dir = endpoint(d.path(), "cs", true);
    let env = vec![("GLOBUS_COMPUTE_CLIENT_SECRET".to_string(), "s".to_string())];
    let r = run(d.path(), &["delete", "--yes", "cs"], "", &env);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "Error: Both GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET must be set to use a client identity. Either set both environment variables, or unset them to use a normal login.\n"
    );
    assert!(dir.exists());
}

#[test]
fn unreadable_config_needs_force() {
    let d = tempdir();
    let dir = endpoint(d.path(), "bad", false);
    fs::write(dir.join("config.yaml"), "- not\n- a mapping\n").unwrap();
    let r = ours(d.path(), &["delete", "--yes", "bad"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "Error: Failed to read configuration from {}/ \n\nPlease add the --force flag if you wish to proceed with attempting to delete the endpoint both locally and from the Globus Compute web services.\n",
            dir.display()
        )
    );
    let f = ours(d.path(), &["delete", "--yes", "--force", "bad"]);
    assert_eq!(f.code, 0, "{f:?}");
    assert!(!dir.exists());
}
