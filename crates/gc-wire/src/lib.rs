//! Wire formats spoken between the Globus Compute SDK, web service, endpoint and user endpoint,
//! compatible with the upstream 4.19 components and globus-compute-common 1.0.0.
//!
//! * [`messagepack`]: the AMQP message bodies (tasks, results, status reports): one version
//!   byte followed by JSON. [`messagepack::pack`] / [`messagepack::unpack`].
//! * [`mep_command`]: the JSON start command on a MEP's command queue.
//! * [`uep_stdin`]: the JSON document a MEP writes to a user endpoint's stdin.
//! * [`amqp_creds`]: the broker credentials both of those carry to a user endpoint.
//! * [`rest`]: the REST request and response bodies.
//!
//! Readers parse "as typed" and return typed errors; nothing here panics on input.
//!
//! ```
//! use gc_wire::messagepack::{self, EpStatusReport, Message};
//! let endpoint_id = uuid::Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap();
//! let heartbeat = Message::EpStatusReport(EpStatusReport {
//!     endpoint_id,
//!     global_state: serde_json::json!({"heartbeat_period": 30}).as_object().unwrap().clone(),
//!     task_statuses: Default::default(),
//! });
//! let bytes = messagepack::pack(&heartbeat);
//! assert_eq!(
//!     &bytes[..],
//!     &b"\x01{\"message_type\":\"ep_status_report\",\"data\":{\"endpoint_id\":\
//!        \"11111111-2222-4333-8444-555555555555\",\"global_state\":{\"heartbeat_period\":30},\
//!        \"task_statuses\":{}}}"[..]
//! );
//! assert_eq!(messagepack::unpack(&bytes).unwrap(), heartbeat);
//! ```
#![forbid(unsafe_code)]

pub mod amqp_creds;
pub mod mep_command;
pub mod messagepack;
pub mod rest;
pub mod uep_stdin;
