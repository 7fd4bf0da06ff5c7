//! Proptest strategies producing arbitrary messages of every type (shared by test binaries).

use gc_wire::messagepack::*;
use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::{Map, Value};
use uuid::Uuid;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Any text, including control characters, quotes, backslashes and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\"\\\\/a-z\u{7f}\u{e9}\u{2028}]{0,16}"
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Finite floats only: JSON has no spelling for the others.
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((text(), json_value()), 0..6).prop_map(|kv| kv.into_iter().collect())
}

fn transition() -> impl Strategy<Value = TaskTransition> {
    (
        any::<i64>(),
        prop::sample::select(TaskState::ALL),
        prop::sample::select(ActorName::ALL),
    )
        .prop_map(|(timestamp, state, actor)| TaskTransition {
            timestamp,
            state,
            actor,
        })
}

fn task_statuses() -> impl Strategy<Value = IndexMap<String, Vec<TaskTransition>>> {
    prop::collection::vec((text(), prop::collection::vec(transition(), 0..3)), 0..4)
        .prop_map(|kv| kv.into_iter().collect())
}

fn container_image() -> impl Strategy<Value = ContainerImage> {
    (
        text(),
        text(),
        any::<i64>(),
        any::<i64>(),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(
            |(image_type, location, created_at, modified_at, build_status, build_stderr)| {
                ContainerImage {
                    image_type,
                    location,
                    created_at,
                    modified_at,
                    build_status,
                    build_stderr,
                }
            },
        )
}

fn container() -> impl Strategy<Value = Container> {
    (
        uuid(),
        text(),
        prop::collection::vec(container_image(), 0..3),
    )
        .prop_map(|(container_id, name, images)| Container {
            container_id,
            name,
            images,
        })
}

pub fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            uuid(),
            proptest::option::of(uuid()),
            proptest::option::of(container()),
            text()
        )
            .prop_map(|(task_id, container_id, container, task_buffer)| {
                Message::Task(Task {
                    task_id,
                    container_id,
                    container,
                    task_buffer,
                })
            }),
        (
            uuid(),
            text(),
            proptest::option::of(json_object()),
            proptest::option::of(
                (text(), text())
                    .prop_map(|(code, user_message)| { ResultErrorDetails { code, user_message } })
            ),
            proptest::option::of(prop::collection::vec(transition(), 0..4)),
        )
            .prop_map(|(task_id, data, details, error_details, task_statuses)| {
                Message::Result(TaskResult {
                    task_id,
                    data,
                    details,
                    error_details,
                    task_statuses,
                })
            }),
        (uuid(), json_object(), task_statuses()).prop_map(
            |(endpoint_id, global_state, task_statuses)| {
                Message::EpStatusReport(EpStatusReport {
                    endpoint_id,
                    global_state,
                    task_statuses,
                })
            }
        ),
        transition().prop_map(Message::TaskTransition),
        uuid().prop_map(|task_id| Message::TaskCancel(TaskCancel { task_id })),
        task_statuses().prop_map(|task_statuses| Message::ManagerStatusReport(
            ManagerStatusReport { task_statuses }
        )),
        container().prop_map(Message::Container),
        container_image().prop_map(Message::ContainerImage),
    ]
}
