//! One-shot failure notice (§4.6): connect, publish one message, confirm, close.
//!
//! The notice goes to `heartbeat_queue_info.connection_url` (no `amqp_port` override, as
//! upstream) with `exchange` and `routing_key` from its `queue_publish_kwargs`, `mandatory`
//! set and **no properties**; the other `queue_publish_kwargs` keys are ignored here, as
//! upstream does, so a notice can still be sent when those keys would not validate. Unlike
//! upstream we use publisher confirms and report a `basic.return`, so the caller learns
//! whether the notice arrived. The body (a packed `EPStatusReport`) is built by the caller.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation};
use serde_json::Value;

use crate::error::{BrokerError, ConfigError, PublishError};
use crate::url::AmqpUrl;

/// Where a failure notice goes.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeTarget {
    /// `connection_url` of the heartbeat queue info.
    pub url: AmqpUrl,
    /// `queue_publish_kwargs.exchange`.
    pub exchange: String,
    /// `queue_publish_kwargs.routing_key`.
    pub routing_key: String,
}

/// Why a notice could not be sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NoticeError {
    /// Connecting, publishing or closing failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker nacked or returned the notice.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// It did not complete in time.
    #[error("failure notice not confirmed within {0:?}")]
    Timeout(Duration),
    /// The blocking helper could not build its runtime.
    #[error("cannot start a runtime for the failure notice: {0}")]
    Runtime(String),
}

impl NoticeTarget {
    /// Reads the three fields it needs from a `heartbeat_queue_info` object.
    pub fn from_json(info: &Value) -> Result<Self, ConfigError> {
        let s = |v: Option<&Value>, key: &str| -> Result<String, ConfigError> {
            match v {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(ConfigError::InvalidValue {
                    key: key.to_owned(),
                    reason: "must be a string".to_owned(),
                }),
                None => Err(ConfigError::MissingKey(key.to_owned())),
            }
        };
        let kwargs = info.get("queue_publish_kwargs");
        Ok(NoticeTarget {
            url: AmqpUrl::parse(&s(info.get("connection_url"), "connection_url")?)?,
            exchange: s(kwargs.and_then(|k| k.get("exchange")), "exchange")?,
            routing_key: s(kwargs.and_then(|k| k.get("routing_key")), "routing_key")?,
        })
    }
}

/// Sends one notice and waits for the broker's confirm, within `timeout`.
pub async fn send_notice(
    target: &NoticeTarget,
    body: &[u8],
    timeout: Duration,
) -> Result<(), NoticeError> {
    match tokio::time::timeout(timeout, send_inner(target, body)).await {
        Ok(r) => r,
        Err(_) => Err(NoticeError::Timeout(timeout)),
    }
}

/// [`send_notice`] for callers without a tokio runtime (it builds a current-thread one).
pub fn send_notice_blocking(
    target: &NoticeTarget,
    body: &[u8],
    timeout: Duration,
) -> Result<(), NoticeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| NoticeError::Runtime(e.to_string()))?;
    rt.block_on(send_notice(target, body, timeout))
}

async fn send_inner(target: &NoticeTarget, body: &[u8]) -> Result<(), NoticeError> {
    let amqp = |e: lapin::Error| {
        if crate::retry::is_auth_failure(&e) {
            NoticeError::Broker(BrokerError::Authentication(e))
        } else {
            NoticeError::Broker(BrokerError::Amqp(e))
        }
    };
    let conn = crate::retry::connect(&target.url).await.map_err(amqp)?;
    let result = async {
        let channel = conn.create_channel().await.map_err(amqp)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp)?;
        let confirm = channel
            .basic_publish(
                target.exchange.as_str().into(),
                target.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                BasicProperties::default(),
            )
            .await
            .map_err(amqp)?
            .await
            .map_err(amqp)?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(r)) => Err(NoticeError::Publish(PublishError::Returned {
                code: r.reply_code,
                text: r.reply_text.to_string(),
            })),
            Confirmation::Nack(_) => Err(NoticeError::Publish(PublishError::Nacked)),
        }
    }
    .await;
    let _ = conn.close(200, "OK".into()).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_about_other_kwargs() {
        let v = json!({
            "connection_url": "amqp://u:p@127.0.0.1:5999/v",
            "exchange": "heartbeats", "queue": "heartbeats",
            "queue_publish_kwargs": {"exchange": "heartbeats", "routing_key": "x.heartbeats",
                                     "mandatory": true, "properties": {"bogus": 1}, "other": 2}
        });
        let t = NoticeTarget::from_json(&v).unwrap();
        assert_eq!(t.url.port, 5999);
        assert_eq!(t.routing_key, "x.heartbeats");
        let v = json!({"connection_url": "amqp://h/"});
        assert_eq!(
            NoticeTarget::from_json(&v),
            Err(ConfigError::MissingKey("exchange".into()))
        );
    }
}
