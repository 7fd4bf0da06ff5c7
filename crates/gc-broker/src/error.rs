//! Errors of the broker crate.
//!
//! The rule: configuration problems (a bad `connection_url`, unknown `queue_publish_kwargs`
//! keys) are [`ConfigError`]s found before any connection is tried; everything that happens
//! on the wire is a [`BrokerError`]. A [`BrokerError::Stopped`] is final: the subscriber or
//! publisher that returned it gave up for good (§3.7 of PROTOCOL-ENDPOINT) and its owner
//! decides what that means (the MEP shuts down, the UEP restarts its main loop).

use std::path::PathBuf;

/// A `*_queue_info` object or its `connection_url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse at all.
    #[error("invalid connection_url: {0}")]
    InvalidUrl(String),
    /// Only `amqp` and `amqps` are understood.
    #[error("unsupported connection_url scheme {0:?} (expected amqp or amqps)")]
    UnsupportedScheme(String),
    /// A query option that pika does not know either.
    #[error("unknown connection_url query option {0:?}")]
    UnknownQueryOption(String),
    /// A query option pika knows but this implementation deliberately does not honour.
    #[error("connection_url query option {0:?} is not supported")]
    UnsupportedQueryOption(String),
    /// A query option given more than once.
    #[error("connection_url query option {0:?} given more than once")]
    DuplicateQueryOption(String),
    /// A query option with a value of the wrong form.
    #[error("connection_url query option {key:?} has invalid value {value:?}")]
    InvalidQueryValue { key: String, value: String },
    /// A required key is missing.
    #[error("missing required key {0:?}")]
    MissingKey(String),
    /// A key has a JSON value of the wrong type or range.
    #[error("key {key:?}: {reason}")]
    InvalidValue { key: String, reason: String },
    /// A key that the upstream publisher would reject with `TypeError`.
    #[error("unknown key {key:?} in {location}")]
    UnknownKey { location: &'static str, key: String },
}

/// Something went wrong talking to the broker, or with the local result store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// Bad configuration (never retried).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The broker refused our credentials (never retried, §3.7).
    #[error("authentication refused by the broker: {0}")]
    Authentication(lapin::Error),
    /// Any other AMQP or I/O error.
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The subscriber or publisher stopped for good; the reason says why.
    #[error("stopped for good: {0}")]
    Stopped(StopReason),
}

/// Why a subscriber or publisher gave up (§3.7).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StopReason {
    /// The owner asked for it (close/drop).
    #[error("closed by its owner")]
    Closed,
    /// Authentication failure: retrying cannot help.
    #[error("authentication refused: {0}")]
    Authentication(lapin::Error),
    /// The connect attempt limit was reached.
    #[error("gave up after {attempts} connection attempts; last error: {last}")]
    AttemptsExhausted { attempts: u32, last: lapin::Error },
    /// The target source could not produce a valid target (e.g. rotated credentials that do
    /// not parse), even after one retry.
    #[error("cannot read the connection target: {0}")]
    Config(ConfigError),
    /// The background task ended abnormally (a panic inside it or a dependency).
    #[error("background task failed: {0}")]
    TaskFailed(String),
    /// The broker closed our channel too often in a short time.
    #[error("channel closed {closes} times within {window_secs} s; last error: {last}")]
    ChannelClosedTooOften {
        closes: usize,
        window_secs: u64,
        last: lapin::Error,
    },
}

/// Why a single publish did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The broker answered `basic.nack`.
    #[error("broker nacked the message")]
    Nacked,
    /// A `mandatory` message was returned (`basic.return`): no queue is bound for its routing
    /// key. Upstream counts such a message as delivered; we report it.
    #[error("message returned by the broker: {code} {text}")]
    Returned { code: u16, text: String },
    /// The publisher task ended without answering (it panicked); the body did not come back.
    #[error("publisher task ended without answering")]
    Lost,
    /// The publisher stopped for good before the message was confirmed.
    #[error("publisher stopped before the message was confirmed: {0}")]
    Stopped(StopReason),
}

/// The local unacked-result store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A task id that is not a safe file name.
    #[error("invalid task id {0:?} for the result store")]
    InvalidKey(String),
    /// File system error, with the path involved.
    #[error("result store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
