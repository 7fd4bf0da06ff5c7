//! The endpoint side of AMQP: everything a MEP or UEP needs to talk to RabbitMQ.
//!
//! One job: turn the service's `*_queue_info` objects into live, self-healing AMQP
//! connections with the exact flags upstream uses (PROTOCOL-ENDPOINT §3), and make sure no
//! accepted result is lost on the way.
//!
//! * [`ConsumeTarget`] / [`PublishTarget`] / [`AmqpUrl`] — validated queue infos and
//!   `connection_url`s (§3.5, §3.6); mistakes are typed [`ConfigError`]s.
//! * [`Subscriber`] — manual-ack consumer with ack-after-hand-off batched `multiple` acks,
//!   bounded prefetch, optional `exclusive` (UEP task queue) and §3.7's reconnect rules.
//! * [`Publisher`] — passive declares + `confirm.select`, pipelined confirms, `basic.return`
//!   reported as a failure, messages held across reconnects.
//! * [`UnackedStore`] — `<dir>/unacked_results/<task_id>`, atomic writes, re-publish.
//! * [`send_notice`] / [`send_notice_blocking`] — the one-shot failure notice (§4.6).
//!
//! ```no_run
//! # async fn demo(task_info: serde_json::Value, result_info: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
//! use gc_broker::{ConsumeTarget, PublishTarget, Publisher, PublisherOptions, Subscriber, SubscriberOptions};
//! let tasks = ConsumeTarget::from_json(&task_info, None)?;
//! let results = PublishTarget::from_json(&result_info, None)?;
//! let mut sub = Subscriber::start(tasks, SubscriberOptions { exclusive: true, ..Default::default() });
//! let publisher = Publisher::start(results, PublisherOptions::default());
//! while let Ok(task) = sub.next().await {
//!     // ... hand the task to the engine, then:
//!     sub.handed_off(task.token);
//!     let confirm = publisher.publish(task.body).await?;
//!     confirm.await?;
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod error;
mod notice;
mod publisher;
mod queue_info;
mod retry;
mod store;
mod subscriber;
mod url;

pub use error::{BrokerError, ConfigError, PublishError, StopReason, StoreError};
pub use lapin::BasicProperties;
pub use lapin::types::{AMQPValue, FieldTable};
pub use notice::{NoticeError, NoticeTarget, send_notice, send_notice_blocking};
pub use publisher::{Confirm, PublishFailure, Publisher, PublisherOptions};
pub use queue_info::{ConsumeTarget, PublishKwargs, PublishTarget};
pub use retry::{RetryPolicy, TargetSource};
pub use store::{RepublishReport, STORE_DIR, UnackedStore};
pub use subscriber::{
    AckHandle, DEFAULT_PREFETCH, Delivery, HandoffToken, Subscriber, SubscriberOptions,
};
pub use url::{AMQP_PORT, AMQPS_PORT, AmqpUrl};
