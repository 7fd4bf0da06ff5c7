//! The "messagepack" format of globus-compute-common 1.0.0 (PROTOCOL-ENDPOINT §8).
//!
//! Despite its name it is not MessagePack: a message is one protocol-version byte (`0x01`)
//! followed by the UTF-8 JSON object `{"message_type": <type>, "data": <fields>}`.
//!
//! * [`pack`] writes exactly the bytes the Python writer produces: keys in field order, every
//!   field present (`null` included), compact separators, raw UTF-8, floats in Python's
//!   spelling (`1e+16`, `1.5e-7`).
//! * [`unpack`] reads with the Python reader's leniency (see [`DecodeError`] for what is
//!   rejected). It never panics, and it allocates at most a constant factor of the input: the
//!   format has no length prefixes, so nothing is reserved on the word of the sender.
//!
//! Deliberate differences from the Python reader, all on input no upstream component writes:
//! nesting deeper than 128 levels, the non-standard tokens `NaN`/`Infinity`, and lone UTF-16
//! surrogate escapes are rejected; typed integer fields (timestamps, `created_at`) must fit in
//! an `i64`; integers beyond `u64` inside free-form objects are read as floats.
//!
//! ```
//! use gc_wire::messagepack::{self, Message, TaskCancel};
//! let id = uuid::Uuid::parse_str("00000000-0000-4000-8000-000000000001").unwrap();
//! let bytes = messagepack::pack(&Message::TaskCancel(TaskCancel { task_id: id }));
//! assert_eq!(
//!     bytes,
//!     b"\x01{\"message_type\":\"task_cancel\",\"data\":{\"task_id\":\"00000000-0000-4000-8000-000000000001\"}}"
//! );
//! assert_eq!(messagepack::unpack(&bytes).unwrap(), Message::TaskCancel(TaskCancel { task_id: id }));
//! ```

mod decode;
mod types;

use serde::Serialize;
use serde_json::Value;

pub use types::*;

/// The only protocol version in use (the first byte of every message).
pub const PROTOCOL_VERSION: u8 = 1;

/// Why bytes could not be read as a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty message")]
    Empty,
    /// The first byte is not [`PROTOCOL_VERSION`] (a bare JSON object starts with `{` = 123).
    #[error("message had unknown protocol version {0}")]
    UnsupportedVersion(u8),
    /// The bytes after the version byte are not one UTF-8 JSON value.
    #[error("message body is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// `message_type` names no known message (truncated to 64 characters).
    #[error("unknown message type {0:?}")]
    UnknownMessageType(String),
    /// A required key is absent; `path` is dotted from the envelope, e.g. `data.task_id`.
    #[error("required field `{path}` is missing")]
    Missing { path: String },
    /// A value has the wrong type or an unacceptable value.
    #[error("field `{path}` should be {expected}")]
    Invalid {
        path: String,
        expected: &'static str,
    },
}

/// Encode a message as protocol v1 bytes, byte-identical to globus-compute-common's `pack`.
pub fn pack(message: &Message) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        message_type: &'static str,
        data: Data<'a>,
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Data<'a> {
        Task(&'a Task),
        Result(&'a TaskResult),
        EpStatusReport(&'a EpStatusReport),
        TaskTransition(&'a TaskTransition),
        TaskCancel(&'a TaskCancel),
        ManagerStatusReport(&'a ManagerStatusReport),
        Container(&'a Container),
        ContainerImage(&'a ContainerImage),
    }

    let data = match message {
        Message::Task(m) => Data::Task(m),
        Message::Result(m) => Data::Result(m),
        Message::EpStatusReport(m) => Data::EpStatusReport(m),
        Message::TaskTransition(m) => Data::TaskTransition(m),
        Message::TaskCancel(m) => Data::TaskCancel(m),
        Message::ManagerStatusReport(m) => Data::ManagerStatusReport(m),
        Message::Container(m) => Data::Container(m),
        Message::ContainerImage(m) => Data::ContainerImage(m),
    };
    let envelope = Envelope {
        message_type: message.message_type(),
        data,
    };
    let mut out = Vec::with_capacity(256);
    out.push(PROTOCOL_VERSION);
    // serde_json's compact output is pydantic's: same separators and string escapes, floats as
    // shortest round-trip digits with a signed exponent (`1e+16`, `1.5e-7`); see the
    // cross-check test against globus-compute-common.
    // Cannot fail: the sink is a Vec, every map key is a string, serde_json values hold only
    // finite numbers, and no type here has a fallible `Serialize`.
    serde_json::to_writer(&mut out, &envelope)
        .expect("serializing a message into memory cannot fail");
    out
}

/// Decode protocol v1 bytes into a message.
pub fn unpack(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // serde_json bounds nesting depth (128), so hostile input cannot exhaust the stack.
    let envelope: Value = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    decode::read_envelope(envelope)
}
