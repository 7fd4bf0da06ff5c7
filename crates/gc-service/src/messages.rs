//! The few messagepack messages the service reads or writes (PROTOCOL-ENDPOINT §8): one
//! version byte `0x01` followed by a JSON envelope `{"message_type", "data"}`.
//!
//! The service decodes only what routing needs: a `Result`'s task id and success flag, an
//! `EPStatusReport`'s endpoint id and `global_state`. A result is forwarded to the SDK as the
//! endpoint's original bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

const PROTOCOL_V1: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("empty message")]
    Empty,
    #[error("unrecognized protocol version {0}")]
    Version(u8),
    #[error("invalid message JSON: {0}")]
    Json(String),
    #[error("invalid message: {0}")]
    Invalid(String),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    message_type: String,
    data: T,
}

/// A decoded incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Result(ResultInfo),
    Status(StatusInfo),
    /// A valid message of a type the service does not act on.
    Other(String),
}

/// What the service needs from a `Result`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultInfo {
    pub task_id: Uuid,
    pub data: String,
    pub success: bool,
    pub details: Option<Value>,
}

/// What the service needs from an `EPStatusReport`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusInfo {
    pub endpoint_id: Uuid,
    pub heartbeat_period: Option<f64>,
    pub active: Option<bool>,
    pub error: Option<String>,
    pub global_state: Value,
}

fn lenient_uuid(v: &Value, field: &str) -> Result<Uuid, MessageError> {
    v.as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| MessageError::Invalid(format!("{field} is not a UUID")))
}

/// Decode a message body.
pub fn unpack(body: &[u8]) -> Result<Incoming, MessageError> {
    let (&version, json) = body.split_first().ok_or(MessageError::Empty)?;
    if version != PROTOCOL_V1 {
        return Err(MessageError::Version(version));
    }
    let env: Envelope<Value> =
        serde_json::from_slice(json).map_err(|e| MessageError::Json(e.to_string()))?;
    let data = env.data;
    if !data.is_object() {
        return Err(MessageError::Invalid("data is not an object".into()));
    }
    match env.message_type.as_str() {
        "result" => {
            let task_id = lenient_uuid(&data["task_id"], "task_id")?;
            let payload = data["data"]
                .as_str()
                .ok_or_else(|| MessageError::Invalid("result data is not a string".into()))?
                .to_string();
            let success = data.get("error_details").is_none_or(Value::is_null);
            let details = data.get("details").filter(|d| !d.is_null()).cloned();
            Ok(Incoming::Result(ResultInfo {
                task_id,
                data: payload,
                success,
                details,
            }))
        }
        "ep_status_report" => {
            let endpoint_id = lenient_uuid(&data["endpoint_id"], "endpoint_id")?;
            let gs = data
                .get("global_state")
                .or_else(|| data.get("ep_status_report"))
                .cloned()
                .unwrap_or(Value::Null);
            Ok(Incoming::Status(StatusInfo {
                endpoint_id,
                heartbeat_period: gs.get("heartbeat_period").and_then(Value::as_f64),
                active: gs.get("active").and_then(Value::as_bool),
                error: gs.get("error").and_then(Value::as_str).map(str::to_string),
                global_state: gs,
            }))
        }
        "task"
        | "task_transition"
        | "task_cancel"
        | "manager_status_report"
        | "container"
        | "containerimage" => Ok(Incoming::Other(env.message_type)),
        other => Err(MessageError::Invalid(format!(
            "unknown message_type {other:?}"
        ))),
    }
}

#[derive(Serialize)]
struct TaskData<'a> {
    task_id: String,
    container_id: Option<()>,
    container: Option<()>,
    task_buffer: &'a str,
}

fn pack<T: Serialize>(message_type: &str, data: T) -> Vec<u8> {
    let env = Envelope {
        message_type: message_type.to_string(),
        data,
    };
    let mut out = vec![PROTOCOL_V1];
    // Serializing plain structs of strings into a Vec cannot fail.
    serde_json::to_writer(&mut out, &env).unwrap_or_default();
    out
}

/// A `Task` message whose buffer is `function_code + payload` (PROTOCOL-SDK §5.3).
pub fn pack_task(task_id: &Uuid, task_buffer: &str) -> Vec<u8> {
    pack(
        "task",
        TaskData {
            task_id: task_id.to_string(),
            container_id: None,
            container: None,
            task_buffer,
        },
    )
}

#[derive(Serialize)]
struct ResultData<'a> {
    task_id: String,
    data: &'a str,
    details: Option<()>,
    error_details: ErrorDetails<'a>,
    task_statuses: Option<()>,
}

#[derive(Serialize)]
struct ErrorDetails<'a> {
    code: &'a str,
    user_message: &'a str,
}

/// A failed `Result` the service itself produces (e.g. the user endpoint could not start).
pub fn pack_failed_result(task_id: &Uuid, code: &str, text: &str) -> Vec<u8> {
    pack(
        "result",
        ResultData {
            task_id: task_id.to_string(),
            data: text,
            details: None,
            error_details: ErrorDetails {
                code,
                user_message: text,
            },
            task_statuses: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_message_matches_upstream_layout() {
        let id = Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
        let body = pack_task(&id, "buf");
        assert_eq!(
            body,
            b"\x01{\"message_type\":\"task\",\"data\":{\"task_id\":\"00000000-0000-4000-8000-000000000001\",\"container_id\":null,\"container\":null,\"task_buffer\":\"buf\"}}"
        );
    }

    #[test]
    fn result_success_and_failure_are_told_apart() {
        let ok = b"\x01{\"message_type\":\"result\",\"data\":{\"task_id\":\"2B195715F2D143EE83C03B44FF9FEA67\",\"data\":\"00\\ngARLKi4=\\n\",\"details\":null,\"error_details\":null,\"task_statuses\":null}}";
        match unpack(ok).unwrap() {
            Incoming::Result(r) => {
                assert!(r.success);
                assert_eq!(
                    r.task_id.to_string(),
                    "2b195715-f2d1-43ee-83c0-3b44ff9fea67"
                );
                assert_eq!(r.data, "00\ngARLKi4=\n");
            }
            other => panic!("unexpected {other:?}"),
        }
        let id = Uuid::new_v4();
        match unpack(&pack_failed_result(&id, "X", "boom")).unwrap() {
            Incoming::Result(r) => {
                assert!(!r.success);
                assert_eq!(r.task_id, id);
                assert_eq!(r.data, "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn status_report_failure_notice_is_read() {
        let body = b"\x01{\"message_type\":\"ep_status_report\",\"data\":{\"endpoint_id\":\"00000000-0000-4000-8000-0000000000e1\",\"global_state\":{\"error\":\"boom\",\"heartbeat_period\":3},\"task_statuses\":{}}}";
        match unpack(body).unwrap() {
            Incoming::Status(s) => {
                assert_eq!(s.error.as_deref(), Some("boom"));
                assert_eq!(s.heartbeat_period, Some(3.0));
                assert_eq!(s.active, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        assert_eq!(unpack(b""), Err(MessageError::Empty));
        assert_eq!(unpack(b"{}"), Err(MessageError::Version(b'{')));
        assert!(unpack(b"\x01not json").is_err());
        assert!(unpack(b"\x01{\"message_type\":\"result\",\"data\":{\"task_id\":5}}").is_err());
        assert!(unpack(b"\x01{\"message_type\":\"nope\",\"data\":{}}").is_err());
    }
}
