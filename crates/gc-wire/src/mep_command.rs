//! The JSON body of a message on the MEP command queue (PROTOCOL-ENDPOINT §4.2).
//!
//! [`MepCommand`] is the body parsed as typed, every key optional so that a missing one can be
//! named; [`MepCommand::validate`] turns it into the [`StartEndpoint`] the MEP acts on. A
//! service builds a [`StartEndpoint`] and serializes it to get the wire body.
//!
//! ```
//! use gc_wire::mep_command::MepCommand;
//! let body = br#"{"command": "cmd_start_endpoint", "globus_username": "alice@example.edu",
//!     "globus_effective_identity": "40322b9a-ccff-4e94-a6f6-4aa684bb3121",
//!     "globus_identity_set": [{"sub": "40322b9a-ccff-4e94-a6f6-4aa684bb3121", "status": "used"}],
//!     "kwargs": {"name": "uep.a.b", "amqp_creds": {"endpoint_id": "..."}}}"#;
//! let start = MepCommand::from_slice(body).unwrap().validate().unwrap();
//! assert_eq!(start.name, "uep.a.b");
//! assert_eq!(start.identity_subs().collect::<Vec<_>>(), ["40322b9a-ccff-4e94-a6f6-4aa684bb3121"]);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only command a MEP implements.
pub const START_ENDPOINT: &str = "cmd_start_endpoint";

/// Why a command body cannot be acted on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Not a JSON object of the expected shape (the MEP drops such bodies without a notice).
    #[error("command body is not a valid JSON command: {0}")]
    Json(#[source] serde_json::Error),
    /// One of the three `globus_*` keys is absent (upstream: `(KeyError) '<key>'`).
    #[error("required key {0:?} is missing")]
    MissingKey(&'static str),
    /// `command` is absent, malformed or names no MEP method (upstream: InvalidCommandError).
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// `kwargs.name` is absent or empty (upstream: InvalidCommandError).
    #[error("kwargs.name is missing or empty")]
    MissingName,
    /// `kwargs.name` is not a safe single path component. Upstream does not check this; it is
    /// used as a directory name, so accepting `..` or `/` would let the sender pick paths.
    #[error("kwargs.name {0:?} is not a single, safe path component")]
    UnsafeName(String),
    /// `kwargs.amqp_creds` is absent or not an object (no failure notice can be sent then).
    #[error("kwargs.amqp_creds is missing or not an object")]
    MissingAmqpCreds,
    /// An identity record without a string `sub`.
    #[error("globus_identity_set[{0}] has no string \"sub\"")]
    IdentityWithoutSub(usize),
    /// A `kwargs` member of the wrong type.
    #[error("kwargs.{key} should be {expected}")]
    InvalidKwarg {
        key: &'static str,
        expected: &'static str,
    },
}

/// A command body as parsed. Unknown keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MepCommand {
    pub command: Option<String>,
    /// Used only in log and failure messages; any JSON value (`null` too) is accepted, as
    /// upstream.
    #[serde(default, deserialize_with = "present")]
    pub globus_username: Option<Value>,
    /// Used only in log and failure messages; any JSON value (`null` too) is accepted, as
    /// upstream.
    #[serde(default, deserialize_with = "present")]
    pub globus_effective_identity: Option<Value>,
    pub globus_identity_set: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub kwargs: Map<String, Value>,
}

/// `Some` for any present value, `null` included (absent keys get the `None` default).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl MepCommand {
    /// Parse a command body (UTF-8 JSON object).
    pub fn from_slice(body: &[u8]) -> Result<MepCommand, CommandError> {
        serde_json::from_slice(body).map_err(CommandError::Json)
    }

    /// Check the command the way the MEP must before starting anything, in upstream's order:
    /// the `globus_*` keys, then the command name, then the start arguments.
    pub fn validate(self) -> Result<StartEndpoint, CommandError> {
        let globus_effective_identity = self
            .globus_effective_identity
            .ok_or(CommandError::MissingKey("globus_effective_identity"))?;
        let globus_identity_set = self
            .globus_identity_set
            .ok_or(CommandError::MissingKey("globus_identity_set"))?;
        let globus_username = self
            .globus_username
            .ok_or(CommandError::MissingKey("globus_username"))?;
        let command = self.command.unwrap_or_default();
        if command != START_ENDPOINT {
            return Err(CommandError::UnknownCommand(
                command.chars().take(100).collect(),
            ));
        }
        if let Some(i) = globus_identity_set
            .iter()
            .position(|identity| !matches!(identity.get("sub"), Some(Value::String(_))))
        {
            return Err(CommandError::IdentityWithoutSub(i));
        }

        let mut kwargs = self.kwargs;
        let name = match kwargs.remove("name") {
            Some(Value::String(name)) if !name.is_empty() => name,
            Some(Value::String(_)) | Some(Value::Null) | None => {
                return Err(CommandError::MissingName);
            }
            Some(_) => {
                return Err(CommandError::InvalidKwarg {
                    key: "name",
                    expected: "a string",
                });
            }
        };
        if !is_safe_name(&name) {
            return Err(CommandError::UnsafeName(name.chars().take(100).collect()));
        }
        let amqp_creds = match kwargs.remove("amqp_creds") {
            Some(Value::Object(creds)) => creds,
            _ => return Err(CommandError::MissingAmqpCreds),
        };
        let object = |kwargs: &mut Map<String, Value>, key: &'static str| match kwargs.remove(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(CommandError::InvalidKwarg {
                key,
                expected: "an object",
            }),
        };
        let user_opts = object(&mut kwargs, "user_opts")?;
        let user_runtime = object(&mut kwargs, "user_runtime")?;

        Ok(StartEndpoint {
            globus_username,
            globus_effective_identity,
            globus_identity_set,
            args: self.args,
            name,
            user_opts,
            user_runtime,
            amqp_creds,
        })
    }
}

/// Whether `name` can be used as one directory name under `~/.globus_compute/`.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && name.len() <= 255
}

/// A validated `cmd_start_endpoint` command. Serializes to the wire body of §4.2.
#[derive(Debug, Clone, PartialEq)]
pub struct StartEndpoint {
    pub globus_username: Value,
    pub globus_effective_identity: Value,
    /// Identity records, verbatim (identity mapping reads `id`, `username`, `status`, ...);
    /// each has a string `sub`.
    pub globus_identity_set: Vec<Map<String, Value>>,
    /// Appended to the UEP's argv.
    pub args: Vec<String>,
    /// The UEP name: a safe single path component.
    pub name: String,
    /// Template variables for the user config.
    pub user_opts: Map<String, Value>,
    /// The SDK's `user_runtime` (`_GC.user_runtime` in the template).
    pub user_runtime: Map<String, Value>,
    /// Verbatim `kwargs.amqp_creds`; see [`crate::amqp_creds::AmqpCreds`] for the typed view.
    pub amqp_creds: Map<String, Value>,
}

impl StartEndpoint {
    /// The `sub` of every identity (the MEP authorizes on these).
    pub fn identity_subs(&self) -> impl Iterator<Item = &str> {
        self.globus_identity_set
            .iter()
            .filter_map(|identity| identity.get("sub").and_then(Value::as_str))
    }
}

impl Serialize for StartEndpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Body<'a> {
            command: &'static str,
            globus_username: &'a Value,
            globus_effective_identity: &'a Value,
            globus_identity_set: &'a [Map<String, Value>],
            args: &'a [String],
            kwargs: Kwargs<'a>,
        }
        #[derive(Serialize)]
        struct Kwargs<'a> {
            name: &'a str,
            user_opts: &'a Map<String, Value>,
            user_runtime: &'a Map<String, Value>,
            amqp_creds: &'a Map<String, Value>,
        }
        Body {
            command: START_ENDPOINT,
            globus_username: &self.globus_username,
            globus_effective_identity: &self.globus_effective_identity,
            globus_identity_set: &self.globus_identity_set,
            args: &self.args,
            kwargs: Kwargs {
                name: &self.name,
                user_opts: &self.user_opts,
                user_runtime: &self.user_runtime,
                amqp_creds: &self.amqp_creds,
            },
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({
            "command": "cmd_start_endpoint",
            "globus_username": "alice@example.edu",
            "globus_effective_identity": "40322b9a-ccff-4e94-a6f6-4aa684bb3121",
            "globus_identity_set": [{"sub": "40322b9a-ccff-4e94-a6f6-4aa684bb3121",
                "id": "40322b9a-ccff-4e94-a6f6-4aa684bb3121", "username": "alice@example.edu",
                "status": "used", "identity_type": "login", "last_authentication": 1775771457}],
            "args": [],
            "kwargs": {
                "name": "uep.4ade2ce0-9c00-4d8c-b996-4dff8fbb4bd0.e9097f8f-dcfc-3bc0-1b42-0b4ad5e3922a",
                "user_opts": {"worker_init": "module load x"},
                "user_runtime": {"python": {"version": "3.11.2"}, "globus_compute_sdk_version": "4.19.0"},
                "amqp_creds": {"endpoint_id": "e9097f8f-dcfc-3bc0-1b42-0b4ad5e3922a"}
            }
        })
    }

    fn validate(v: &Value) -> Result<StartEndpoint, CommandError> {
        MepCommand::from_slice(v.to_string().as_bytes())?.validate()
    }

    #[test]
    fn start_command_validates_and_serializes_back() {
        let start = validate(&body()).unwrap();
        assert_eq!(start.user_runtime["globus_compute_sdk_version"], "4.19.0");
        assert_eq!(start.globus_identity_set[0]["status"], "used");
        assert_eq!(serde_json::to_value(&start).unwrap(), body());
    }

    #[test]
    fn defaults_for_optional_keys() {
        let mut b = body();
        b.as_object_mut().unwrap().remove("args");
        let kwargs = b["kwargs"].as_object_mut().unwrap();
        kwargs.remove("user_opts");
        kwargs.insert("user_runtime".into(), Value::Null);
        let start = validate(&b).unwrap();
        assert!(start.args.is_empty() && start.user_opts.is_empty());
        assert!(start.user_runtime.is_empty());
    }

    #[test]
    fn null_identity_strings_count_as_present() {
        let mut b = body();
        b["globus_username"] = Value::Null;
        b["globus_effective_identity"] = Value::Null;
        let start = validate(&b).unwrap();
        assert_eq!(start.globus_username, Value::Null);
        assert_eq!(serde_json::to_value(&start).unwrap(), b);
    }

    #[test]
    fn missing_globus_keys_are_named() {
        for key in [
            "globus_effective_identity",
            "globus_identity_set",
            "globus_username",
        ] {
            let mut b = body();
            b.as_object_mut().unwrap().remove(key);
            assert!(
                matches!(validate(&b), Err(CommandError::MissingKey(k)) if k == key),
                "{key}"
            );
        }
    }

    #[test]
    fn invalid_commands_are_rejected() {
        let reject = |edit: &dyn Fn(&mut Value)| {
            let mut b = body();
            edit(&mut b);
            validate(&b).expect_err("should be rejected")
        };
        assert!(matches!(
            reject(&|b| b["command"] = json!("cmd_stop_endpoint")),
            CommandError::UnknownCommand(_)
        ));
        assert!(matches!(
            reject(&|b| {
                b.as_object_mut().unwrap().remove("command");
            }),
            CommandError::UnknownCommand(_)
        ));
        assert!(matches!(
            reject(&|b| b["command"] = json!(5)),
            CommandError::Json(_)
        ));
        assert!(matches!(
            reject(&|b| b["kwargs"]["name"] = json!("")),
            CommandError::MissingName
        ));
        for unsafe_name in ["..", ".", "a/b", "/etc", "a\u{0}b"] {
            assert!(matches!(
                reject(&|b| b["kwargs"]["name"] = json!(unsafe_name)),
                CommandError::UnsafeName(_)
            ));
        }
        assert!(matches!(
            reject(&|b| {
                b["kwargs"].as_object_mut().unwrap().remove("amqp_creds");
            }),
            CommandError::MissingAmqpCreds
        ));
        assert!(matches!(
            reject(&|b| b["kwargs"]["user_opts"] = json!([1])),
            CommandError::InvalidKwarg {
                key: "user_opts",
                ..
            }
        ));
        assert!(matches!(
            reject(&|b| b["globus_identity_set"] = json!([{"id": "x"}])),
            CommandError::IdentityWithoutSub(0)
        ));
        assert!(matches!(
            reject(&|b| b["args"] = json!([1])),
            CommandError::Json(_)
        ));
        assert!(matches!(
            MepCommand::from_slice(b"[]"),
            Err(CommandError::Json(_))
        ));
    }
}
