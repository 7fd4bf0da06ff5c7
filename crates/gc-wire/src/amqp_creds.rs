//! The AMQP credentials the service hands to a user endpoint: `kwargs.amqp_creds` of the start
//! command (PROTOCOL-ENDPOINT §4.2), copied into the UEP's stdin document and credential memfd
//! (§5.4), with the publish arguments of §3.5.
//!
//! The MEP passes the object on verbatim, so the command and stdin types keep it as raw JSON;
//! [`AmqpCreds::from_json`] is the typed view a consumer (UEP, failure notices) validates into.
//!
//! ```
//! let creds = gc_wire::amqp_creds::AmqpCreds::from_json(&serde_json::json!({
//!     "endpoint_id": "55555555-3333-4444-8555-666666666666",
//!     "task_queue_info": {"connection_url": "amqp://localhost", "queue": "q.tasks"},
//!     "result_queue_info": {"connection_url": "amqp://localhost", "queue": "results",
//!         "queue_publish_kwargs": {"exchange": "results", "routing_key": "r",
//!                                  "mandatory": true, "properties": {"delivery_mode": 2}}},
//!     "heartbeat_queue_info": {"connection_url": "amqp://localhost", "queue": "heartbeats",
//!         "queue_publish_kwargs": {"exchange": "heartbeats", "routing_key": "h"}},
//! })).unwrap();
//! let kwargs = creds.result_queue_info.queue_publish_kwargs.unwrap();
//! assert_eq!(kwargs.properties.delivery_mode, Some(2));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Why an `amqp_creds` object is unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid amqp_creds: {0}")]
pub struct CredsError(#[source] serde_json::Error);

/// Everything a user endpoint needs to talk to the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AmqpCreds {
    /// The user endpoint's id (used in heartbeats, results and failure notices).
    pub endpoint_id: Uuid,
    /// Consumed (exclusively) for tasks.
    pub task_queue_info: QueueInfo,
    /// Published to with results.
    pub result_queue_info: QueueInfo,
    /// Published to with heartbeats and failure notices.
    pub heartbeat_queue_info: QueueInfo,
}

impl AmqpCreds {
    /// Validate a raw `amqp_creds` JSON value into the typed form.
    pub fn from_json(value: &Value) -> Result<AmqpCreds, CredsError> {
        AmqpCreds::deserialize(value).map_err(CredsError)
    }
}

/// Where to connect and what to consume or publish to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// `amqp://` or `amqps://` URL (PROTOCOL-ENDPOINT §3.6).
    pub connection_url: String,
    /// Passively declared by publishers; unused by consumers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// Consumed by consumers; passively declared by publishers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Arguments of every publish (publishers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_publish_kwargs: Option<PublishKwargs>,
}

/// `queue_publish_kwargs`: the arguments of `basic.publish` (PROTOCOL-ENDPOINT §3.5). Unknown
/// keys are rejected, as they make the upstream publisher fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishKwargs {
    /// `""` is the default exchange.
    pub exchange: String,
    pub routing_key: String,
    #[serde(default)]
    pub mandatory: bool,
    /// Sent unchanged with every message; the endpoint adds none of its own.
    #[serde(default)]
    pub properties: BasicProperties,
}

/// The AMQP basic properties a service may ask publishers to set. Unknown keys are rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    /// 1 (transient) or 2 (persistent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verified_creds() -> Value {
        // From the VERIFIED stdin document of PROTOCOL-ENDPOINT §5.4.
        json!({"endpoint_id":"55555555-3333-4444-8555-666666666666","task_queue_info":{"connection_url":"amqp://gcep:gcep@localhost:5672/gcep","exchange":"tasks","queue":"55555555-3333-4444-8555-666666666666.tasks"},"result_queue_info":{"connection_url":"amqp://gcep:gcep@localhost:5672/gcep","exchange":"results","queue":"results","queue_publish_kwargs":{"exchange":"results","routing_key":"55555555-3333-4444-8555-666666666666.results","mandatory":true,"properties":{"delivery_mode":2}}},"heartbeat_queue_info":{"connection_url":"amqp://gcep:gcep@localhost:5672/gcep","exchange":"heartbeats","queue":"heartbeats","queue_publish_kwargs":{"exchange":"heartbeats","routing_key":"55555555-3333-4444-8555-666666666666.heartbeats","mandatory":true,"properties":{"delivery_mode":2}}}})
    }

    #[test]
    fn verified_creds_parse_and_reserialize_identically() {
        let raw = verified_creds();
        let creds = AmqpCreds::from_json(&raw).unwrap();
        assert_eq!(
            creds
                .heartbeat_queue_info
                .queue_publish_kwargs
                .as_ref()
                .unwrap()
                .routing_key,
            "55555555-3333-4444-8555-666666666666.heartbeats"
        );
        assert_eq!(serde_json::to_value(&creds).unwrap(), raw);
    }

    #[test]
    fn unusable_creds_are_rejected() {
        let mut missing = verified_creds();
        missing.as_object_mut().unwrap().remove("task_queue_info");
        assert!(AmqpCreds::from_json(&missing).is_err());

        let mut bad_id = verified_creds();
        bad_id["endpoint_id"] = json!("not-a-uuid");
        assert!(AmqpCreds::from_json(&bad_id).is_err());

        let mut unknown_kwarg = verified_creds();
        unknown_kwarg["result_queue_info"]["queue_publish_kwargs"]["immediate"] = json!(true);
        assert!(AmqpCreds::from_json(&unknown_kwarg).is_err());

        let mut unknown_property = verified_creds();
        unknown_property["result_queue_info"]["queue_publish_kwargs"]["properties"]["x"] = json!(1);
        assert!(AmqpCreds::from_json(&unknown_property).is_err());

        assert!(AmqpCreds::from_json(&json!([])).is_err());
    }
}
