//! Checking one command-queue message (PROTOCOL-ENDPOINT §4.1–§4.4, ENDPOINT §4.3 steps 1–5).

use std::collections::BTreeSet;

use gc_wire::mep_command::{CommandError, MepCommand, StartEndpoint};
use serde_json::{Map, Value};

/// Largest accepted `|now − timestamp|`, seconds.
pub const MAX_CLOCK_SKEW_S: i64 = 180;

/// Text of the notice for unknown or malformed commands.
pub const INVALID_COMMAND_TEXT: &str = "(InvalidCommandError) unexpected error; this is due to \
either an endpoint misconfiguration or a programming error.  If you are able to recreate this \
error message at will, consider reaching out to the endpoint administrator or the Globus \
Compute team.";

/// Default notice text.
pub const GENERAL_FAILURE_TEXT: &str = "General or unknown failure starting user endpoint";

/// Why a message is not acted on.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// Undecodable: logged and dropped, no notice (§4.1).
    Drop(String),
    /// Refused with a failure notice to the UEP's heartbeat queue of `amqp_creds` (when the
    /// message carried usable credentials).
    Notice {
        /// The notice (and log) text.
        text: String,
        /// `kwargs.amqp_creds`, if the command had an object there.
        amqp_creds: Option<Map<String, Value>>,
    },
}

/// The parts of the AMQP properties the MEP checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `content_type`.
    pub content_type: Option<&'a str>,
    /// `timestamp` (seconds since the epoch).
    pub timestamp: Option<u64>,
}

/// A user name or identity as upstream formats it with `str()`: strings raw, others as JSON.
pub(crate) fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// C `ctime()` text (local time) of a Unix timestamp.
fn ctime(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%a %b %e %H:%M:%S %Y")
                .to_string()
        })
        .unwrap_or_else(|| ts.to_string())
}

/// Checks one message in upstream's order: envelope and JSON, clock skew, required keys and
/// command name, then the owner's identity set (`None` with identity mapping, where the
/// mapping decides instead, ENDPOINT §4.1). `now` is seconds since the epoch.
pub fn check(
    envelope: Envelope<'_>,
    body: &[u8],
    now: i64,
    owner_identities: Option<&BTreeSet<String>>,
) -> Result<StartEndpoint, Rejection> {
    if envelope.content_type != Some("application/json") {
        return Err(Rejection::Drop(format!(
            "Unable to deserialize Globus Compute services command.  (ValueError) unexpected \
             content type {:?}",
            envelope.content_type.unwrap_or("")
        )));
    }
    let Some(timestamp) = envelope.timestamp else {
        return Err(Rejection::Drop(
            "Unable to deserialize Globus Compute services command.  (TypeError) message has \
             no timestamp"
                .into(),
        ));
    };
    let cmd = MepCommand::from_slice(body).map_err(|e| {
        Rejection::Drop(format!(
            "Unable to deserialize Globus Compute services command.  (JSONDecodeError) {e}"
        ))
    })?;
    let amqp_creds = match cmd.kwargs.get("amqp_creds") {
        Some(Value::Object(c)) => Some(c.clone()),
        _ => None,
    };
    let notice = |text: String| Rejection::Notice {
        text,
        amqp_creds: amqp_creds.clone(),
    };
    let ts = i64::try_from(timestamp).unwrap_or(i64::MAX);
    if now.saturating_sub(ts).saturating_abs() > MAX_CLOCK_SKEW_S {
        return Err(notice(format!(
            "Ignoring command from server\nCommand too old or skew between system clocks is too \
             large.\n  Command timestamp:  {ts} ({})\n  Endpoint timestamp: {now} ({})",
            ctime(ts),
            ctime(now)
        )));
    }
    let username = cmd.globus_username.clone().unwrap_or(Value::Null);
    let identity = cmd.globus_effective_identity.clone().unwrap_or(Value::Null);
    let start = cmd.validate().map_err(|e| match e {
        CommandError::MissingKey(key) => {
            notice(format!("Invalid server command.  (KeyError) '{key}'"))
        }
        CommandError::UnknownCommand(_) | CommandError::MissingName => {
            notice(INVALID_COMMAND_TEXT.into())
        }
        _ => notice(GENERAL_FAILURE_TEXT.into()),
    })?;
    if let Some(owners) = owner_identities
        && !start.identity_subs().any(|s| owners.contains(s))
    {
        return Err(notice(format!(
            "Ignoring start request for untrusted identity.\n  Globus effective identity: {}\n  \
             Globus username: {}",
            display(&identity),
            display(&username)
        )));
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWNER: &str = "40322b9a-ccff-4e94-a6f6-4aa684bb3121";

    fn owners() -> BTreeSet<String> {
        [OWNER.to_string()].into()
    }

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn good() -> Value {
        json!({"command": "cmd_start_endpoint", "globus_username": "a@b",
               "globus_effective_identity": OWNER, "globus_identity_set": [{"sub": OWNER}],
               "kwargs": {"name": "uep.x.y", "amqp_creds": {"endpoint_id": "e"}}})
    }

    const JSON: Envelope<'static> = Envelope {
        content_type: Some("application/json"),
        timestamp: Some(1000),
    };

    #[test]
    fn accepts_a_valid_command() {
        let start = check(JSON, &body(good()), 1100, Some(&owners())).unwrap();
        assert_eq!(start.name, "uep.x.y");
    }

    #[test]
    fn wrong_content_type_or_missing_timestamp_is_dropped() {
        let e = Envelope {
            content_type: Some("text/plain"),
            ..JSON
        };
        assert!(matches!(
            check(e, &body(good()), 1000, Some(&owners())),
            Err(Rejection::Drop(_))
        ));
        let e = Envelope {
            timestamp: None,
            ..JSON
        };
        assert!(matches!(
            check(e, &body(good()), 1000, Some(&owners())),
            Err(Rejection::Drop(_))
        ));
        assert!(matches!(
            check(JSON, b"[1]", 1000, Some(&owners())),
            Err(Rejection::Drop(_))
        ));
    }

    #[test]
    fn skew_over_180_s_is_refused_with_notice() {
        assert!(check(JSON, &body(good()), 1180, Some(&owners())).is_ok());
        assert!(check(JSON, &body(good()), 820, Some(&owners())).is_ok());
        match check(JSON, &body(good()), 1181, Some(&owners())) {
            Err(Rejection::Notice { text, amqp_creds }) => {
                assert!(text.starts_with("Ignoring command from server\nCommand too old"));
                assert!(text.contains("Command timestamp:  1000 ("));
                assert_eq!(amqp_creds.unwrap()["endpoint_id"], "e");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_key_and_untrusted_identity() {
        let mut v = good();
        v.as_object_mut().unwrap().remove("globus_username");
        match check(JSON, &body(v), 1000, Some(&owners())) {
            Err(Rejection::Notice { text, .. }) => {
                assert_eq!(
                    text,
                    "Invalid server command.  (KeyError) 'globus_username'"
                )
            }
            other => panic!("{other:?}"),
        }
        let mut v = good();
        v["globus_identity_set"] = json!([{"sub": "someone-else"}]);
        match check(JSON, &body(v), 1000, Some(&owners())) {
            Err(Rejection::Notice { text, .. }) => assert_eq!(
                text,
                format!(
                    "Ignoring start request for untrusted identity.\n  Globus effective \
                     identity: {OWNER}\n  Globus username: a@b"
                )
            ),
            other => panic!("{other:?}"),
        }
        let mut v = good();
        v["command"] = json!("cmd_stop");
        assert!(matches!(check(JSON, &body(v), 1000, Some(&owners())),
            Err(Rejection::Notice { text, .. }) if text == INVALID_COMMAND_TEXT));
    }
}

/// The command body for a debug log line, with the password of every `connection_url`
/// replaced by `***` (ENDPOINT §4.3: "credentials redacted"). Non-JSON bodies are shown as
/// their length only.
pub fn redacted_dump(body: &[u8]) -> String {
    fn redact(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    match v {
                        Value::String(s) if k == "connection_url" => *s = redact_url(s),
                        other => redact(other),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(redact),
            _ => {}
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            redact(&mut v);
            v.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", body.len()),
    }
}

/// `scheme://user:secret@host…` → `scheme://user:***@host…`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    format!("{scheme}://{user}:***@{host}")
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn passwords_are_removed_everywhere() {
        let body = br#"{"kwargs": {"amqp_creds": {"task_queue_info": {"connection_url": "amqp://u:s3cret@h:5672/v"}, "x": [{"connection_url": "amqps://a:b@c/"}]}}}"#;
        let out = redacted_dump(body);
        assert!(!out.contains("s3cret") && !out.contains(":b@"), "{out}");
        assert!(out.contains("amqp://u:***@h:5672/v"), "{out}");
        assert!(out.contains("amqps://a:***@c/"), "{out}");
        assert_eq!(redacted_dump(b"\xff"), "<1 bytes, not JSON>");
    }
}
