//! What the service reads from and writes to the broker, on top of `gc_wire::messagepack`
//! (PROTOCOL-ENDPOINT §8).
//!
//! The service decodes only what routing needs: a `Result`'s task id and success flag, an
//! `EPStatusReport`'s endpoint id and `global_state`. A result is forwarded to the SDK as the
//! endpoint's original bytes.

use gc_wire::messagepack::{self, Message, ResultErrorDetails, Task, TaskResult};
use serde_json::Value;
use uuid::Uuid;

pub use gc_wire::messagepack::DecodeError;

/// A decoded incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Result(ResultInfo),
    Status(StatusInfo),
    /// A valid message of a type the service does not act on.
    Other(&'static str),
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
}

/// Decode a message body.
pub fn unpack(body: &[u8]) -> Result<Incoming, DecodeError> {
    Ok(match messagepack::unpack(body)? {
        Message::Result(r) => Incoming::Result(ResultInfo {
            task_id: r.task_id,
            success: r.error_details.is_none(),
            details: r.details.map(Value::Object),
            data: r.data,
        }),
        Message::EpStatusReport(s) => {
            let gs = &s.global_state;
            Incoming::Status(StatusInfo {
                endpoint_id: s.endpoint_id,
                heartbeat_period: gs.get("heartbeat_period").and_then(Value::as_f64),
                active: gs.get("active").and_then(Value::as_bool),
                error: gs.get("error").and_then(Value::as_str).map(str::to_string),
            })
        }
        other => Incoming::Other(other.message_type()),
    })
}

/// A `Task` message whose buffer is `function_code + payload` (PROTOCOL-SDK §5.3).
pub fn pack_task(task_id: &Uuid, task_buffer: &str) -> Vec<u8> {
    messagepack::pack(&Message::Task(Task {
        task_id: *task_id,
        container_id: None,
        container: None,
        task_buffer: task_buffer.to_string(),
    }))
}

/// A failed `Result` the service itself produces (e.g. the user endpoint could not start).
pub fn pack_failed_result(task_id: &Uuid, code: &str, text: &str) -> Vec<u8> {
    messagepack::pack(&Message::Result(TaskResult {
        task_id: *task_id,
        data: text.to_string(),
        details: None,
        error_details: Some(ResultErrorDetails {
            code: code.to_string(),
            user_message: text.to_string(),
        }),
        task_statuses: None,
    }))
}

/// The result message forwarded to an SDK result queue for a task of a high-assurance
/// endpoint: it names the task but carries no data (sent with the AMQP header
/// `high_assurance: true`, on which the SDK fetches the outcome over REST, where the
/// endpoint's authentication policy is checked).
pub fn pack_ha_result_notice(task_id: &Uuid) -> Vec<u8> {
    messagepack::pack(&Message::Result(TaskResult {
        task_id: *task_id,
        data: String::new(),
        details: None,
        error_details: None,
        task_statuses: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ha_notice_names_the_task_only() {
        let id = Uuid::parse_str("00000000-0000-4000-8000-000000000002").unwrap();
        match unpack(&pack_ha_result_notice(&id)).unwrap() {
            Incoming::Result(r) => {
                assert!(r.success);
                assert_eq!(r.task_id, id);
                assert_eq!(r.data, "");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

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
        assert!(unpack(b"").is_err());
        assert!(unpack(b"{}").is_err());
        assert!(unpack(b"\x01not json").is_err());
        assert!(unpack(b"\x01{\"message_type\":\"result\",\"data\":{\"task_id\":5}}").is_err());
        assert!(unpack(b"\x01{\"message_type\":\"nope\",\"data\":{}}").is_err());
    }
}
