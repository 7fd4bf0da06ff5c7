//! The message types of protocol v1 (PROTOCOL-ENDPOINT §8.2).
//!
//! Field order in each struct is the order in which the Python writer emits the keys, and every
//! field is serialized (`None` becomes `null`), so `serde_json` output of these types is the
//! byte-exact `data` object of the Python implementation.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Per-task state transitions, keyed by task id string (as in `EPStatusReport.task_statuses`).
pub type TaskStatuses = IndexMap<String, Vec<TaskTransition>>;

/// Every message that can travel in a protocol-v1 envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `"task"`: service → user endpoint.
    Task(Task),
    /// `"result"`: user endpoint → service → SDK.
    Result(TaskResult),
    /// `"ep_status_report"`: heartbeats and failure notices of MEPs and UEPs.
    EpStatusReport(EpStatusReport),
    /// `"task_transition"`: defined, never sent alone in practice.
    TaskTransition(TaskTransition),
    /// `"task_cancel"`: defined, not consumed by the 4.x endpoint.
    TaskCancel(TaskCancel),
    /// `"manager_status_report"`: internal legacy message.
    ManagerStatusReport(ManagerStatusReport),
    /// `"container"`: legacy.
    Container(Container),
    /// `"containerimage"`: legacy.
    ContainerImage(ContainerImage),
}

impl Message {
    /// The `message_type` string of the envelope.
    pub fn message_type(&self) -> &'static str {
        match self {
            Message::Task(_) => "task",
            Message::Result(_) => "result",
            Message::EpStatusReport(_) => "ep_status_report",
            Message::TaskTransition(_) => "task_transition",
            Message::TaskCancel(_) => "task_cancel",
            Message::ManagerStatusReport(_) => "manager_status_report",
            Message::Container(_) => "container",
            Message::ContainerImage(_) => "containerimage",
        }
    }
}

macro_rules! impl_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(impl From<$ty> for Message {
            fn from(m: $ty) -> Self {
                Message::$variant(m)
            }
        })*
    };
}

impl_from!(
    Task(Task),
    Result(TaskResult),
    EpStatusReport(EpStatusReport),
    TaskTransition(TaskTransition),
    TaskCancel(TaskCancel),
    ManagerStatusReport(ManagerStatusReport),
    Container(Container),
    ContainerImage(ContainerImage),
);

/// A task to run (`message_type: "task"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// Informational for the endpoint: the AMQP header `task_uuid` wins.
    pub task_id: Uuid,
    /// Legacy, ignored.
    pub container_id: Option<Uuid>,
    /// Legacy, ignored.
    pub container: Option<Container>,
    /// The packed `function_code + payload` (PROTOCOL-SDK §5.2–5.3).
    pub task_buffer: String,
}

/// The outcome of a task (`message_type: "result"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskResult {
    pub task_id: Uuid,
    /// The serialized return value, or error text.
    pub data: String,
    /// Free-form information about the worker (PROTOCOL-ENDPOINT §7.3).
    pub details: Option<Map<String, Value>>,
    /// `Some` if and only if the task failed.
    pub error_details: Option<ResultErrorDetails>,
    pub task_statuses: Option<Vec<TaskTransition>>,
}

impl TaskResult {
    /// Whether this result reports a failure.
    pub fn is_error(&self) -> bool {
        self.error_details.is_some()
    }
}

/// Why a task failed (embedded in [`TaskResult`] only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultErrorDetails {
    /// e.g. `RemoteExecutionError`, `FUNCTION_NOT_ALLOWED` (PROTOCOL-ENDPOINT §7.4).
    pub code: String,
    /// Text shown to the SDK user.
    pub user_message: String,
}

/// One state change of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskTransition {
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    pub state: TaskState,
    pub actor: ActorName,
}

/// A heartbeat or failure notice of an endpoint (`message_type: "ep_status_report"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpStatusReport {
    pub endpoint_id: Uuid,
    /// Free-form status (PROTOCOL-ENDPOINT §6, §4.6). Read from `global_state` or its alias
    /// `ep_status_report`; always written as `global_state`.
    pub global_state: Map<String, Value>,
    /// Always empty from current endpoints, but required on the wire.
    pub task_statuses: TaskStatuses,
}

impl EpStatusReport {
    /// `global_state.heartbeat_period` of a failure notice (PROTOCOL-ENDPOINT §4.6).
    pub const FAILURE_NOTICE_PERIOD: i64 = 3;

    /// The failure notice a MEP or UEP sends when a user endpoint cannot start or dies
    /// (PROTOCOL-ENDPOINT §4.6): `global_state = {"error": message, "heartbeat_period": 3}`.
    pub fn failure_notice(endpoint_id: Uuid, message: impl Into<String>) -> EpStatusReport {
        let mut global_state = Map::new();
        global_state.insert("error".into(), Value::String(message.into()));
        global_state.insert(
            "heartbeat_period".into(),
            Value::from(Self::FAILURE_NOTICE_PERIOD),
        );
        EpStatusReport {
            endpoint_id,
            global_state,
            task_statuses: TaskStatuses::new(),
        }
    }

    /// `global_state.error`: present only in failure notices.
    pub fn error(&self) -> Option<&str> {
        self.global_state.get("error").and_then(Value::as_str)
    }

    /// `global_state.heartbeat_period` in seconds; `0` means the MEP is shutting down.
    pub fn heartbeat_period(&self) -> Option<f64> {
        self.global_state
            .get("heartbeat_period")
            .and_then(Value::as_f64)
    }

    /// `global_state.active` (UEP heartbeats only); `false` in the last report of a main-loop
    /// run.
    pub fn active(&self) -> Option<bool> {
        self.global_state.get("active").and_then(Value::as_bool)
    }
}

/// Cancellation of a task (`message_type: "task_cancel"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskCancel {
    pub task_id: Uuid,
}

/// Legacy manager → endpoint report (`message_type: "manager_status_report"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerStatusReport {
    pub task_statuses: TaskStatuses,
}

/// Legacy container description (`message_type: "container"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    pub container_id: Uuid,
    pub name: String,
    pub images: Vec<ContainerImage>,
}

/// Legacy container image description (`message_type: "containerimage"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerImage {
    pub image_type: String,
    pub location: String,
    pub created_at: i64,
    pub modified_at: i64,
    /// Required key, may be `null`.
    pub build_status: Option<String>,
    /// Required key, may be `null`.
    pub build_stderr: Option<String>,
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The string used on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }

            /// The value for a wire string (exact, case-sensitive match).
            pub fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// State of a task in a [`TaskTransition`].
    TaskState {
        Received = "received",
        WaitingForEp = "waiting-for-ep",
        WaitingForNodes = "waiting-for-nodes",
        WaitingForLaunch = "waiting-for-launch",
        ExecutionStart = "execution-start",
        ExecutionEnd = "execution-end",
        Running = "running",
        Success = "success",
        Failed = "failed",
        ResultReceived = "result-received",
        ResultEnqueued = "result-enqueued",
        ActionProviderReceived = "action-provider-received",
        ActionProviderTaskSubmitted = "action-provider-task-submitted",
        ActionProviderTaskGroupInProgress = "action-provider-task-group-in-progress",
        ActionProviderTaskGroupCompleted = "action-provider-task-group-completed",
        ActionProviderTaskGroupError = "action-provider-task-group-error",
    }
);

wire_enum!(
    /// Who recorded a [`TaskTransition`].
    ActorName {
        Worker = "worker",
        Manager = "manager",
        Interchange = "interchange",
        Endpoint = "endpoint",
        ResultProcessor = "result-processor",
        WebService = "web-service",
        ActionProvider = "action-provider",
    }
);
