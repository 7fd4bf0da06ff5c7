//! The `*_queue_info` objects the service hands to an endpoint (PROTOCOL-ENDPOINT §3.5, §5.4),
//! validated into the types the subscriber and publisher use.
//!
//! Parsing starts from JSON (`serde_json::Value`) rather than from a serde struct so that
//! every unknown key of `queue_publish_kwargs` and of its `properties` is seen and reported as
//! a typed [`ConfigError::UnknownKey`] (upstream raises `TypeError` in the publisher thread).
//! Unknown keys at the top level of a queue-info object are tolerated, as upstream does.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::url::AmqpUrl;

/// What a consumer needs: where to connect and which queue to consume.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumeTarget {
    /// Parsed `connection_url`, with any `amqp_port` override applied.
    pub url: AmqpUrl,
    /// `queue` to consume.
    pub queue: String,
}

/// What a publisher needs: where to connect, what to check passively, how to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishTarget {
    /// Parsed `connection_url`, with any `amqp_port` override applied.
    pub url: AmqpUrl,
    /// `exchange` of the queue info: passively declared on every (re)connect (skipped when
    /// empty: the default exchange cannot be declared).
    pub exchange: String,
    /// `queue` of the queue info: passively declared on every (re)connect.
    pub queue: String,
    /// How each message is published.
    pub kwargs: PublishKwargs,
}

/// `queue_publish_kwargs`: the arguments of every `basic.publish`.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishKwargs {
    /// Target exchange (`""` = default exchange).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// `mandatory` flag (default false).
    pub mandatory: bool,
    /// AMQP basic properties, fixed for every message of this publisher.
    pub properties: BasicProperties,
}

impl ConsumeTarget {
    /// Validates a queue-info JSON object (`connection_url`, `queue`).
    pub fn from_json(info: &Value, amqp_port: Option<u16>) -> Result<Self, ConfigError> {
        let obj = as_object(info, "queue_info")?;
        Ok(ConsumeTarget {
            url: parse_url(obj, amqp_port)?,
            queue: req_str(obj, "queue")?.to_owned(),
        })
    }

    /// Validates the wire-crate form of a queue-info object.
    pub fn from_wire(
        info: &gc_wire::rest::QueueInfo,
        amqp_port: Option<u16>,
    ) -> Result<Self, ConfigError> {
        Self::from_json(&wire_to_json(info)?, amqp_port)
    }
}

impl PublishTarget {
    /// Validates a publisher queue-info JSON object (`connection_url`, `exchange`, `queue`,
    /// `queue_publish_kwargs`).
    pub fn from_json(info: &Value, amqp_port: Option<u16>) -> Result<Self, ConfigError> {
        let obj = as_object(info, "queue_info")?;
        let kwargs = obj
            .get("queue_publish_kwargs")
            .ok_or_else(|| ConfigError::MissingKey("queue_publish_kwargs".into()))?;
        Ok(PublishTarget {
            url: parse_url(obj, amqp_port)?,
            exchange: req_str(obj, "exchange")?.to_owned(),
            queue: req_str(obj, "queue")?.to_owned(),
            kwargs: PublishKwargs::from_json(kwargs)?,
        })
    }

    /// Validates the wire-crate form of a queue-info object.
    pub fn from_wire(
        info: &gc_wire::rest::QueueInfo,
        amqp_port: Option<u16>,
    ) -> Result<Self, ConfigError> {
        Self::from_json(&wire_to_json(info)?, amqp_port)
    }
}

impl PublishKwargs {
    /// Validates a `queue_publish_kwargs` object (§3.5).
    pub fn from_json(kwargs: &Value) -> Result<Self, ConfigError> {
        let obj = as_object(kwargs, "queue_publish_kwargs")?;
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "exchange" | "routing_key" | "mandatory" | "properties"
            ) {
                return Err(ConfigError::UnknownKey {
                    location: "queue_publish_kwargs",
                    key: key.clone(),
                });
            }
        }
        let mandatory = match obj.get("mandatory") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("mandatory", "must be a boolean")),
        };
        let properties = match obj.get("properties") {
            None | Some(Value::Null) => BasicProperties::default(),
            Some(p) => properties_from_json(p)?,
        };
        Ok(PublishKwargs {
            exchange: short(req_str(obj, "exchange")?, "exchange")?.to_string(),
            routing_key: short(req_str(obj, "routing_key")?, "routing_key")?.to_string(),
            mandatory,
            properties,
        })
    }
}

fn wire_to_json(info: &gc_wire::rest::QueueInfo) -> Result<Value, ConfigError> {
    serde_json::to_value(info).map_err(|e| invalid("queue_info", &e.to_string()))
}

fn parse_url(obj: &Map<String, Value>, amqp_port: Option<u16>) -> Result<AmqpUrl, ConfigError> {
    Ok(AmqpUrl::parse(req_str(obj, "connection_url")?)?.with_port_override(amqp_port))
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ConfigError> {
    v.as_object()
        .ok_or_else(|| invalid(what, "must be a JSON object"))
}

fn req_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, ConfigError> {
    match obj.get(key) {
        None => Err(ConfigError::MissingKey(key.to_owned())),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(key, "must be a string")),
    }
}

fn invalid(key: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        reason: reason.to_owned(),
    }
}

/// AMQP short strings are at most 255 bytes.
fn short(s: &str, key: &str) -> Result<ShortString, ConfigError> {
    if s.len() > 255 {
        return Err(invalid(key, "longer than 255 bytes"));
    }
    Ok(ShortString::from(s))
}

fn properties_from_json(v: &Value) -> Result<BasicProperties, ConfigError> {
    let obj = as_object(v, "properties")?;
    let mut p = BasicProperties::default();
    for (key, value) in obj {
        if value.is_null() {
            // pika's BasicProperties defaults every field to None.
            continue;
        }
        let k = key.as_str();
        let string = || -> Result<ShortString, ConfigError> {
            match value {
                Value::String(s) => short(s, k),
                _ => Err(invalid(k, "must be a string")),
            }
        };
        let int_in = |lo: u64, hi: u64| -> Result<u64, ConfigError> {
            match value.as_u64() {
                Some(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => Err(invalid(k, &format!("must be an integer in {lo}..={hi}"))),
            }
        };
        p = match k {
            "content_type" => p.with_content_type(string()?),
            "content_encoding" => p.with_content_encoding(string()?),
            "headers" => p.with_headers(table_from_json(value, "headers")?),
            "delivery_mode" => p.with_delivery_mode(narrow(int_in(1, 2)?)),
            "priority" => p.with_priority(narrow(int_in(0, 255)?)),
            "correlation_id" => p.with_correlation_id(string()?),
            "reply_to" => p.with_reply_to(string()?),
            "expiration" => p.with_expiration(string()?),
            "message_id" => p.with_message_id(string()?),
            "timestamp" => p.with_timestamp(int_in(0, u64::MAX)?),
            "type" => p.with_type(string()?),
            "user_id" => p.with_user_id(string()?),
            "app_id" => p.with_app_id(string()?),
            "cluster_id" => p.with_cluster_id(string()?),
            _ => {
                return Err(ConfigError::UnknownKey {
                    location: "queue_publish_kwargs.properties",
                    key: key.clone(),
                });
            }
        };
    }
    Ok(p)
}

/// Range-checked by the caller; saturates instead of panicking.
fn narrow(n: u64) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

fn table_from_json(v: &Value, key: &str) -> Result<FieldTable, ConfigError> {
    let obj = as_object(v, key)?;
    let mut table = FieldTable::default();
    for (k, val) in obj {
        table.insert(short(k, key)?, amqp_value(val, key)?);
    }
    Ok(table)
}

/// JSON → AMQP field value, with the types pika's encoder picks for the Python equivalents
/// (str → long string, int → signed 64-bit, float → double, None → void).
fn amqp_value(v: &Value, key: &str) -> Result<AMQPValue, ConfigError> {
    Ok(match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => return Err(invalid(key, "number out of range")),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => {
            let mut arr = FieldArray::default();
            for item in items {
                arr.push(amqp_value(item, key)?);
            }
            AMQPValue::FieldArray(arr)
        }
        Value::Object(_) => AMQPValue::FieldTable(table_from_json(v, key)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info() -> Value {
        json!({
            "connection_url": "amqp://u:p@127.0.0.1:5672/gcep",
            "exchange": "results",
            "queue": "results",
            "queue_publish_kwargs": {
                "exchange": "results",
                "routing_key": "abc.results",
                "mandatory": true,
                "properties": {"delivery_mode": 2, "content_type": "application/octet-stream",
                               "headers": {"a": "b", "n": 3}, "message_id": null}
            },
            "extra_top_level_key": 1
        })
    }

    #[test]
    fn publish_target_parses() {
        let t = PublishTarget::from_json(&info(), Some(5999)).unwrap();
        assert_eq!(t.url.port, 5999);
        assert_eq!(t.url.vhost, "gcep");
        assert_eq!(t.exchange, "results");
        assert_eq!(t.kwargs.routing_key, "abc.results");
        assert!(t.kwargs.mandatory);
        assert_eq!(t.kwargs.properties.delivery_mode(), &Some(2));
        assert_eq!(t.kwargs.properties.message_id(), &None);
        let headers = t.kwargs.properties.headers().clone().unwrap();
        assert_eq!(
            headers.inner().get("a"),
            Some(&AMQPValue::LongString("b".into()))
        );
    }

    #[test]
    fn unknown_kwargs_keys_are_typed_errors() {
        let mut v = info();
        v["queue_publish_kwargs"]["immediate"] = json!(true);
        assert_eq!(
            PublishTarget::from_json(&v, None),
            Err(ConfigError::UnknownKey {
                location: "queue_publish_kwargs",
                key: "immediate".into()
            })
        );
        let mut v = info();
        v["queue_publish_kwargs"]["properties"]["persistent"] = json!(true);
        assert_eq!(
            PublishTarget::from_json(&v, None),
            Err(ConfigError::UnknownKey {
                location: "queue_publish_kwargs.properties",
                key: "persistent".into()
            })
        );
    }

    #[test]
    fn wrong_types_and_missing_keys() {
        let mut v = info();
        v["queue_publish_kwargs"]["properties"]["delivery_mode"] = json!(3);
        assert!(matches!(
            PublishTarget::from_json(&v, None),
            Err(ConfigError::InvalidValue { .. })
        ));
        let mut v = info();
        v["queue_publish_kwargs"]["mandatory"] = json!("yes");
        assert!(matches!(
            PublishTarget::from_json(&v, None),
            Err(ConfigError::InvalidValue { .. })
        ));
        let mut v = info();
        v["queue_publish_kwargs"]
            .as_object_mut()
            .unwrap()
            .remove("routing_key");
        assert_eq!(
            PublishTarget::from_json(&v, None),
            Err(ConfigError::MissingKey("routing_key".into()))
        );
        let mut v = info();
        v.as_object_mut().unwrap().remove("queue_publish_kwargs");
        assert_eq!(
            PublishTarget::from_json(&v, None),
            Err(ConfigError::MissingKey("queue_publish_kwargs".into()))
        );
        assert!(matches!(
            ConsumeTarget::from_json(&json!([]), None),
            Err(ConfigError::InvalidValue { .. })
        ));
        let v = json!({"connection_url": "amqp://h/?nope=1", "queue": "q"});
        assert_eq!(
            ConsumeTarget::from_json(&v, None),
            Err(ConfigError::UnknownQueryOption("nope".into()))
        );
    }

    #[test]
    fn from_wire_types() {
        let w = gc_wire::rest::QueueInfo {
            connection_url: "amqps://u:p@example.org/v".into(),
            exchange: Some("tasks".into()),
            queue: "q1".into(),
            queue_publish_kwargs: None,
        };
        let c = ConsumeTarget::from_wire(&w, Some(443)).unwrap();
        assert_eq!((c.url.port, c.queue.as_str()), (443, "q1"));
        assert!(c.url.tls);
        assert!(matches!(
            PublishTarget::from_wire(&w, None),
            Err(ConfigError::MissingKey(_))
        ));
    }
}
