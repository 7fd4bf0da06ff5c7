//! One task delivery, from AMQP headers to an engine request or a refusal (PROTOCOL-ENDPOINT
//! §7.1, §7.2, §7.4), and the book of deliveries not yet acknowledged ([`Unsettled`]). Pure:
//! no I/O here.

use std::collections::{HashMap, HashSet, VecDeque};

use gc_broker::{AMQPValue, FieldTable};
use gc_engine::TaskRequest;
use gc_wire::messagepack::{self, Message, ResultErrorDetails, TaskResult};
use serde_json::{Map, Value};
use uuid::Uuid;

const REMOTE_EXECUTION_ERROR: &str = "RemoteExecutionError";
const REMOTE_EXECUTION_MESSAGE: &str = "An error occurred during the execution of this task";

/// What to do with one delivery.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Hand this request to the engine.
    Run(TaskRequest),
    /// Answer at once with this (error) result; the engine never sees the task.
    Answer(TaskResult),
    /// The function is not in `allowed_functions`: answer with this result (audited as
    /// `FAILED`).
    Refused(TaskResult),
    /// No result can be produced (headers unusable); log and drop.
    Drop(String),
}

/// Reads a header that must be a string: `None` when absent, void or empty (upstream tests
/// truthiness), `Err` when it has another AMQP type.
fn string_header(headers: Option<&FieldTable>, key: &str) -> Result<Option<String>, String> {
    let Some(value) = headers.and_then(|h| h.inner().get(key)) else {
        return Ok(None);
    };
    let text = match value {
        AMQPValue::Void => return Ok(None),
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
            .map_err(|_| format!("header {key} is not UTF-8"))?
            .to_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => return Err(format!("header {key} has AMQP type {:?}", other.get_type())),
    };
    Ok(if text.is_empty() { None } else { Some(text) })
}

fn serializers_header(headers: Option<&FieldTable>) -> Result<Vec<String>, String> {
    let Some(value) = headers.and_then(|h| h.inner().get("result_serializers")) else {
        return Ok(Vec::new());
    };
    match value {
        AMQPValue::Void => Ok(Vec::new()),
        AMQPValue::FieldArray(items) => items
            .as_slice()
            .iter()
            .map(|item| match item {
                AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes())
                    .map(str::to_owned)
                    .map_err(|_| "result_serializers entry is not UTF-8".to_owned()),
                AMQPValue::ShortString(s) => Ok(s.as_str().to_owned()),
                other => Err(format!(
                    "result_serializers entry has AMQP type {:?}",
                    other.get_type()
                )),
            })
            .collect(),
        other => Err(format!(
            "header result_serializers has AMQP type {:?}",
            other.get_type()
        )),
    }
}

/// `resource_specification`: a JSON text; falsy values (`null`, `{}`, `0`, …) mean none.
fn resource_specification(text: Option<String>) -> Result<Map<String, Value>, String> {
    let Some(text) = text else {
        return Ok(Map::new());
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("resource_specification is not JSON: {e}"))?;
    Ok(match value {
        Value::Object(m) => m,
        Value::Null | Value::Bool(false) => Map::new(),
        Value::Array(a) if a.is_empty() => Map::new(),
        Value::String(s) if s.is_empty() => Map::new(),
        Value::Number(n) if n.as_f64() == Some(0.0) => Map::new(),
        // Truthy but not a mapping: the pool engines refuse any specification, so keep it
        // non-empty and let the engine produce upstream's "not supported" result.
        other => Map::from_iter([("value".to_owned(), other)]),
    })
}

/// `user_runtime` (ours: the service adds the submitter's runtime as JSON text): an object,
/// else none — a missing or unusable one only skips the worker's runtime check.
fn user_runtime(headers: Option<&FieldTable>) -> Option<Map<String, Value>> {
    let text = string_header(headers, "user_runtime").ok().flatten()?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) if !m.is_empty() => Some(m),
        _ => None,
    }
}

/// The function and task ids of a delivery's headers, for audit records (empty when absent or
/// unusable).
pub(crate) fn ids(headers: Option<&FieldTable>) -> (String, String) {
    let get = |key| {
        string_header(headers, key)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    (get("function_uuid"), get("task_uuid"))
}

/// Decides what happens to one delivery (§7.2 steps 1–4, before the engine).
pub(crate) fn decide(
    headers: Option<&FieldTable>,
    body: &[u8],
    uep_id: Uuid,
    allowed: Option<&HashSet<String>>,
) -> Decision {
    let parsed = (|| {
        let fid = string_header(headers, "function_uuid")?;
        let tid = string_header(headers, "task_uuid")?;
        let (Some(fid), Some(tid)) = (fid, tid) else {
            return Err("Task message missing function or task id in headers".to_owned());
        };
        let task_id = Uuid::parse_str(&tid).map_err(|e| format!("task_uuid {tid:?}: {e}"))?;
        let spec = resource_specification(string_header(headers, "resource_specification")?)?;
        let serializers = serializers_header(headers)?;
        Ok((fid, task_id, spec, serializers))
    })();
    let (fid, task_id, resource_specification, result_serializers) = match parsed {
        Ok(p) => p,
        Err(why) => return Decision::Drop(why),
    };
    if let Some(allowed) = allowed {
        if !allowed.contains(&fid) {
            return Decision::Refused(function_not_allowed(task_id, &fid, uep_id));
        }
    }
    let task_buffer = match messagepack::unpack(body) {
        Ok(Message::Task(task)) => task.task_buffer,
        Ok(other) => return Decision::Answer(not_a_task(task_id, &other, body)),
        Err(e) => {
            return Decision::Answer(error_result(
                task_id,
                format!("Unable to unpack the task message: {e}"),
                REMOTE_EXECUTION_ERROR,
                REMOTE_EXECUTION_MESSAGE.to_owned(),
            ));
        }
    };
    Decision::Run(TaskRequest {
        task_id,
        task_buffer,
        result_serializers,
        resource_specification,
        user_runtime: user_runtime(headers),
    })
}

fn error_result(task_id: Uuid, data: String, code: &str, user_message: String) -> TaskResult {
    TaskResult {
        task_id,
        data,
        details: None,
        error_details: Some(ResultErrorDetails {
            code: code.to_owned(),
            user_message,
        }),
        task_statuses: None,
    }
}

/// `FUNCTION_NOT_ALLOWED` (§7.3, VERIFIED text).
pub(crate) fn function_not_allowed(task_id: Uuid, fid: &str, uep_id: Uuid) -> TaskResult {
    let msg = format!("Function {fid} not permitted on endpoint {uep_id}");
    let mut details = Map::new();
    details.insert("fid".into(), fid.into());
    details.insert("eid".into(), uep_id.to_string().into());
    TaskResult {
        details: Some(details),
        ..error_result(task_id, msg.clone(), "FUNCTION_NOT_ALLOWED", msg)
    }
}

/// Python's class name of a message type, as upstream's worker names it.
fn class_name(message: &Message) -> &'static str {
    match message {
        Message::Task(_) => "Task",
        Message::Result(_) => "Result",
        Message::EpStatusReport(_) => "EPStatusReport",
        Message::TaskTransition(_) => "TaskTransition",
        Message::TaskCancel(_) => "TaskCancel",
        Message::ManagerStatusReport(_) => "ManagerStatusReport",
        Message::Container(_) => "Container",
        Message::ContainerImage(_) => "ContainerImage",
    }
}

/// `CouldNotExecuteUserTaskError` for a body that is a message but not a `Task` (§7.4).
fn not_a_task(task_id: Uuid, message: &Message, body: &[u8]) -> TaskResult {
    let head: String = body.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let msg = format!(
        "Non Task-type message received: {} (from: [{} bytes] 0x{head}...)",
        class_name(message),
        body.len()
    );
    error_result(
        task_id,
        format!("CouldNotExecuteUserTaskError('{msg}')"),
        "CouldNotExecuteUserTaskError",
        format!("remote error: {msg}"),
    )
}

/// The engine refused the task (`Failed to start task: <exc>`, §7.2 step 4).
pub(crate) fn failed_to_start(task_id: Uuid, why: &str) -> TaskResult {
    TaskResult {
        task_statuses: Some(Vec::new()),
        ..error_result(
            task_id,
            format!("Failed to start task: {why}"),
            REMOTE_EXECUTION_ERROR,
            REMOTE_EXECUTION_MESSAGE.to_owned(),
        )
    }
}

/// The engine lost the task without a result (`UNKNOWN_TASK_FAILURE`, §7.4).
pub(crate) fn unknown_failure(task_id: Uuid, kind: &str, why: &str) -> TaskResult {
    let msg = format!("Unknown task exception: ({kind}) {why}");
    TaskResult {
        task_statuses: Some(Vec::new()),
        ..error_result(task_id, msg.clone(), "UNKNOWN_TASK_FAILURE", msg)
    }
}

/// How many settled task ids [`Unsettled`] remembers, to recognise redeliveries of tasks whose
/// result is already safe but whose acknowledgement was lost with a channel.
const REMEMBERED_SETTLED: usize = 16_384;

/// What a delivery is, given the tasks this user endpoint already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Not held: decide and run it.
    New,
    /// Redelivered while it is still running or its result is on its way (the channel that
    /// delivered it first was lost): not run again; the new delivery is acknowledged when the
    /// result is safe.
    Running,
    /// Redelivered after its result was already confirmed or stored (the acknowledgement was
    /// lost with the channel): acknowledge at once, do not run again.
    Settled,
}

/// Deliveries taken from the task queue whose acknowledgement waits for the task's result to
/// be safe — confirmed by the broker, or written to the unacked-results store — by task id, so
/// that a user endpoint that dies leaves every unfinished task on the queue for the next one.
/// `T` is the delivery's hand-off token.
#[derive(Debug)]
pub(crate) struct Unsettled<T> {
    open: HashMap<Uuid, T>,
    settled: VecDeque<Uuid>,
    settled_set: HashSet<Uuid>,
    remember: usize,
}

impl<T: Copy> Default for Unsettled<T> {
    fn default() -> Self {
        Self::with_memory(REMEMBERED_SETTLED)
    }
}

impl<T: Copy> Unsettled<T> {
    fn with_memory(remember: usize) -> Self {
        Unsettled {
            open: HashMap::new(),
            settled: VecDeque::new(),
            settled_set: HashSet::new(),
            remember,
        }
    }

    /// Classifies a delivery of `task_id`. For [`Seen::Running`] the new token replaces the
    /// old one (whose channel is gone); for [`Seen::Settled`] the caller acknowledges `token`.
    pub(crate) fn seen(&mut self, task_id: Uuid, token: T) -> Seen {
        if let Some(held) = self.open.get_mut(&task_id) {
            *held = token;
            Seen::Running
        } else if self.settled_set.contains(&task_id) {
            Seen::Settled
        } else {
            Seen::New
        }
    }

    /// Holds a delivery until [`Unsettled::settle`].
    pub(crate) fn hold(&mut self, task_id: Uuid, token: T) {
        self.open.insert(task_id, token);
    }

    /// The task's result is safe: returns the token to acknowledge (none if the task was not
    /// held, e.g. a result re-published from the store after a restart).
    pub(crate) fn settle(&mut self, task_id: Uuid) -> Option<T> {
        let token = self.open.remove(&task_id)?;
        if self.settled_set.insert(task_id) {
            self.settled.push_back(task_id);
            while self.settled.len() > self.remember {
                if let Some(old) = self.settled.pop_front() {
                    self.settled_set.remove(&old);
                }
            }
        }
        Some(token)
    }

    /// Deliveries held.
    pub(crate) fn held(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_broker::AMQPValue;
    use gc_wire::messagepack::{Task, TaskCancel, pack};

    const UEP: &str = "22222222-3333-4444-8555-666666666666";
    const TID: &str = "2635043e-25b8-4577-8379-28791601e819";
    const FID: &str = "c11aa2a1-3803-4995-bbec-7d9f9a1d3e73";

    fn headers(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn s(v: &str) -> AMQPValue {
        AMQPValue::LongString(v.into())
    }

    fn task_body() -> Vec<u8> {
        pack(&Message::Task(Task {
            task_id: Uuid::parse_str(TID).unwrap(),
            container_id: None,
            container: None,
            task_buffer: "buffer".into(),
        }))
    }

    #[test]
    fn runs_a_task_with_its_header_id_and_serializers() {
        let h = headers(&[
            ("task_uuid", s(TID)),
            ("function_uuid", s(FID)),
            ("resource_specification", s("null")),
            (
                "result_serializers",
                AMQPValue::FieldArray(vec![s("globus_compute_sdk.serialize.JSONData")].into()),
            ),
        ]);
        let uep = Uuid::parse_str(UEP).unwrap();
        match decide(Some(&h), &task_body(), uep, None) {
            Decision::Run(r) => {
                assert_eq!(r.task_id.to_string(), TID);
                assert_eq!(r.task_buffer, "buffer");
                assert_eq!(
                    r.result_serializers,
                    ["globus_compute_sdk.serialize.JSONData"]
                );
                assert!(r.resource_specification.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_function_gives_the_verified_result() {
        let h = headers(&[("task_uuid", s(TID)), ("function_uuid", s(FID))]);
        let uep = Uuid::parse_str(UEP).unwrap();
        let allowed = HashSet::from(["0a0a0a0a-0000-4000-8000-00000000000a".to_owned()]);
        let Decision::Refused(r) = decide(Some(&h), &task_body(), uep, Some(&allowed)) else {
            panic!("not refused");
        };
        let expected = format!(
            r#"{{"message_type":"result","data":{{"task_id":"{TID}","data":"Function {FID} not permitted on endpoint {UEP}","details":{{"fid":"{FID}","eid":"{UEP}"}},"error_details":{{"code":"FUNCTION_NOT_ALLOWED","user_message":"Function {FID} not permitted on endpoint {UEP}"}},"task_statuses":null}}}}"#
        );
        assert_eq!(&pack(&Message::Result(r))[1..], expected.as_bytes());
    }

    #[test]
    fn missing_or_mistyped_headers_drop_the_task() {
        let uep = Uuid::parse_str(UEP).unwrap();
        let body = task_body();
        assert!(matches!(decide(None, &body, uep, None), Decision::Drop(_)));
        let only_task = headers(&[("task_uuid", s(TID))]);
        assert!(matches!(
            decide(Some(&only_task), &body, uep, None),
            Decision::Drop(_)
        ));
        let bytes = headers(&[
            ("task_uuid", s(TID)),
            ("function_uuid", s(FID)),
            (
                "resource_specification",
                AMQPValue::FieldTable(FieldTable::default()),
            ),
        ]);
        assert!(matches!(
            decide(Some(&bytes), &body, uep, None),
            Decision::Drop(_)
        ));
    }

    #[test]
    fn non_task_body_gives_could_not_execute() {
        let uep = Uuid::parse_str(UEP).unwrap();
        let h = headers(&[("task_uuid", s(TID)), ("function_uuid", s(FID))]);
        let body = pack(&Message::TaskCancel(TaskCancel {
            task_id: Uuid::parse_str(TID).unwrap(),
        }));
        let Decision::Answer(r) = decide(Some(&h), &body, uep, None) else {
            panic!("not answered");
        };
        let details = r.error_details.unwrap();
        assert_eq!(details.code, "CouldNotExecuteUserTaskError");
        assert!(
            r.data.starts_with(&format!(
                "CouldNotExecuteUserTaskError('Non Task-type message received: TaskCancel (from: [{} bytes] 0x017b226d65737361...)",
                body.len()
            )),
            "{}",
            r.data
        );
    }

    #[test]
    fn unsettled_holds_until_settled_and_recognises_redeliveries() {
        let a = Uuid::parse_str(TID).unwrap();
        let b = Uuid::parse_str(FID).unwrap();
        let mut u = Unsettled::with_memory(1);
        assert_eq!(u.seen(a, 1), Seen::New);
        u.hold(a, 1);
        // The channel was lost; the broker redelivers the running task with a new tag.
        assert_eq!(u.seen(a, 7), Seen::Running);
        assert_eq!(u.held(), 1);
        assert_eq!(
            u.settle(a),
            Some(7),
            "the newest delivery is the one to acknowledge"
        );
        assert_eq!(u.settle(a), None);
        assert_eq!(u.seen(a, 9), Seen::Settled);
        u.hold(b, 2);
        assert_eq!(u.settle(b), Some(2));
        // Memory of one: `a` is forgotten, a later redelivery runs it again.
        assert_eq!(u.seen(a, 10), Seen::New);
        assert_eq!(u.seen(b, 11), Seen::Settled);
        assert_eq!(u.held(), 0);
    }
}
