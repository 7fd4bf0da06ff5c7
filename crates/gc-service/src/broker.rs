//! RabbitMQ: the topology of PROTOCOL-ENDPOINT §3.8, the queue descriptions handed to endpoints,
//! and confirmed publishing.
//!
//! | Object | Kind | Bound as |
//! | --- | --- | --- |
//! | exchange `tasks` | direct | queue `<uep_id>.tasks`, key = queue name |
//! | exchange `results` | topic | queue `results`, key `*.results` (consumed by the service) |
//! | exchange `heartbeats` | topic | queue `heartbeats`, key `*.heartbeats` (consumed by the service) |
//! | exchange `commands` | direct | queue `<mep_id>.commands`, key = queue name |
//! | default exchange | — | SDK result queues `<queue_prefix><task_group_id>` |
//! | default exchange | — | queue `gcrs.forward-receipts` (consumed by the service; results reach it by `BCC`) |
//!
//! Every queue is created before the reply that names it. Every publish waits for the broker's
//! confirm; a batch of publishes is pipelined (all sent, then all confirms awaited).

use std::sync::Arc;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};
use serde_json::json;
use tokio::sync::Mutex;

use crate::error::BrokerError;
use gc_wire::rest::{QueueInfo, QueuePublishKwargs, UepAmqpCreds};

pub const EX_TASKS: &str = "tasks";
pub const EX_RESULTS: &str = "results";
pub const EX_HEARTBEATS: &str = "heartbeats";
pub const EX_COMMANDS: &str = "commands";
pub const Q_RESULTS: &str = "results";
pub const Q_HEARTBEATS: &str = "heartbeats";
/// The service's own queue of forward receipts: every result forwarded to an SDK queue is
/// also routed here (`BCC`), in the same routing step (see `consumers`).
pub const Q_FORWARD_RECEIPTS: &str = "gcrs.forward-receipts";

/// A broker URL being issued (provisioning may call out to the broker's management API).
pub type UrlFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, BrokerError>> + Send + 'a>>;

/// Where endpoints and SDK clients connect. [`StaticCredentials`] hands everybody the
/// configured URL; [`crate::rabbit_admin::ManagedCredentials`] creates one broker user per
/// (user) endpoint that can reach only that endpoint's queues.
pub trait CredentialIssuer: Send + Sync {
    /// URL for a (user) endpoint's connections.
    fn endpoint_url<'a>(&'a self, endpoint_id: &'a str) -> UrlFuture<'a>;
    /// URL for an SDK client's result watcher.
    fn sdk_url(&self, client_id: &str) -> String;
    /// Withdraw the credentials of deleted (user) endpoints.
    fn revoke<'a>(&'a self, _endpoint_ids: &'a [String]) -> RevokeFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// Credentials being withdrawn.
pub type RevokeFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BrokerError>> + Send + 'a>>;

/// One configured URL for everybody (suits a single-site deployment and tests).
pub struct StaticCredentials {
    pub endpoint_url: String,
    pub sdk_url: String,
}

impl CredentialIssuer for StaticCredentials {
    fn endpoint_url<'a>(&'a self, _endpoint_id: &'a str) -> UrlFuture<'a> {
        let url = self.endpoint_url.clone();
        Box::pin(async move { Ok(url) })
    }
    fn sdk_url(&self, _client_id: &str) -> String {
        self.sdk_url.clone()
    }
}

/// A shared, lazily (re)connected AMQP connection.
pub struct Broker {
    url: String,
    conn: Mutex<Option<Arc<Connection>>>,
    /// Idle time after which an unused SDK result queue is deleted by the broker.
    result_queue_expires_ms: i64,
}

fn publish_kwargs(exchange: &str, routing_key: String) -> QueuePublishKwargs {
    QueuePublishKwargs {
        exchange: exchange.to_string(),
        routing_key,
        mandatory: true,
        properties: json!({"delivery_mode": 2}),
    }
}

/// `heartbeat_queue_info` for an endpoint or user endpoint.
pub fn heartbeat_queue_info(url: String, id: &str) -> QueueInfo {
    QueueInfo {
        connection_url: url,
        exchange: Some(EX_HEARTBEATS.into()),
        queue: Q_HEARTBEATS.into(),
        queue_publish_kwargs: Some(publish_kwargs(EX_HEARTBEATS, format!("{id}.heartbeats"))),
    }
}

/// `result_queue_info` for an endpoint or user endpoint.
pub fn result_queue_info(url: String, id: &str) -> QueueInfo {
    QueueInfo {
        connection_url: url,
        exchange: Some(EX_RESULTS.into()),
        queue: Q_RESULTS.into(),
        queue_publish_kwargs: Some(publish_kwargs(EX_RESULTS, format!("{id}.results"))),
    }
}

/// `command_queue_info` of a (multi-user) endpoint.
pub fn command_queue_info(url: String, mep_id: &str) -> QueueInfo {
    QueueInfo {
        connection_url: url,
        exchange: Some(EX_COMMANDS.into()),
        queue: command_queue(mep_id),
        queue_publish_kwargs: None,
    }
}

pub fn command_queue(mep_id: &str) -> String {
    format!("{mep_id}.commands")
}

pub fn task_queue(uep_id: &str) -> String {
    format!("{uep_id}.tasks")
}

/// `kwargs.amqp_creds` of a start command.
pub fn uep_creds(url: String, uep_id: &str) -> UepAmqpCreds {
    UepAmqpCreds {
        endpoint_id: uep_id.to_string(),
        task_queue_info: QueueInfo {
            connection_url: url.clone(),
            exchange: Some(EX_TASKS.into()),
            queue: task_queue(uep_id),
            queue_publish_kwargs: None,
        },
        result_queue_info: result_queue_info(url.clone(), uep_id),
        heartbeat_queue_info: heartbeat_queue_info(url, uep_id),
    }
}

/// Messages published in one go whose confirms are awaited together.
pub struct Pending(Vec<(String, PublisherConfirm)>);

impl Pending {
    pub fn new() -> Self {
        Self(Vec::new())
    }
    /// Publish a persistent message; its confirm is awaited by [`Pending::wait`].
    pub async fn publish(
        &mut self,
        ch: &Channel,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
        mandatory: bool,
    ) -> Result<(), BrokerError> {
        let confirm = ch
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                body,
                props.with_delivery_mode(2),
            )
            .await?;
        self.0.push((format!("{exchange}/{routing_key}"), confirm));
        Ok(())
    }

    /// Wait for every confirm; any nack or returned (unroutable) message is an error.
    pub async fn wait(self) -> Result<(), BrokerError> {
        for (what, confirm) in self.0 {
            match confirm.await? {
                lapin::Confirmation::Ack(None) | lapin::Confirmation::NotRequested => {}
                lapin::Confirmation::Ack(Some(_)) | lapin::Confirmation::Nack(_) => {
                    return Err(BrokerError::Nacked(what));
                }
            }
        }
        Ok(())
    }
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

impl Broker {
    pub fn new(url: String, result_queue_expires_ms: i64) -> Self {
        Self {
            url,
            conn: Mutex::new(None),
            result_queue_expires_ms,
        }
    }

    async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.status().connected() {
                return Ok(c.clone());
            }
        }
        let props = ConnectionProperties::default().with_connection_name("gc-service".into());
        let conn = Arc::new(Connection::connect(&self.url, props).await?);
        crate::metrics::broker_connection_opened();
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// A fresh channel in publisher-confirm mode.
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        let conn = self.connection().await?;
        let ch = match conn.create_channel().await {
            Ok(ch) => ch,
            Err(e) => {
                // The connection may have died since the status check: reconnect once.
                tracing::warn!(error = %e, "AMQP channel open failed; reconnecting");
                self.conn.lock().await.take();
                self.connection().await?.create_channel().await?
            }
        };
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(ch)
    }

    /// Exchanges and the two service-consumed queues.
    pub async fn declare_base(&self, ch: &Channel) -> Result<(), BrokerError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            EX_TASKS.into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            EX_COMMANDS.into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            EX_RESULTS.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            EX_HEARTBEATS.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            Q_FORWARD_RECEIPTS.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
        for (q, ex, key) in [
            (Q_RESULTS, EX_RESULTS, "*.results"),
            (Q_HEARTBEATS, EX_HEARTBEATS, "*.heartbeats"),
        ] {
            ch.queue_declare(
                q.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
            ch.queue_bind(
                q.into(),
                ex.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        }
        Ok(())
    }

    async fn declare_bound(
        &self,
        ch: &Channel,
        queue: String,
        exchange: &str,
    ) -> Result<(), BrokerError> {
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            queue.as_str().into(),
            exchange.into(),
            queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(())
    }

    pub async fn declare_command_queue(
        &self,
        ch: &Channel,
        mep_id: &str,
    ) -> Result<(), BrokerError> {
        self.declare_bound(ch, command_queue(mep_id), EX_COMMANDS)
            .await
    }

    pub async fn declare_task_queue(&self, ch: &Channel, uep_id: &str) -> Result<(), BrokerError> {
        self.declare_bound(ch, task_queue(uep_id), EX_TASKS).await
    }

    /// The SDK result queue of a task group (same arguments every time: idempotent).
    pub async fn declare_result_queue(&self, ch: &Channel, name: &str) -> Result<(), BrokerError> {
        let mut args = FieldTable::default();
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(self.result_queue_expires_ms),
        );
        ch.queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await?;
        Ok(())
    }
}

/// Headers of a task message (PROTOCOL-ENDPOINT §7.1): strings as AMQP long strings, the
/// serializer list as an array of long strings.
pub fn task_headers(
    task_id: &str,
    function_id: &str,
    resource_specification: Option<&str>,
    result_serializers: Option<&[String]>,
) -> FieldTable {
    let mut h = FieldTable::default();
    h.insert("task_uuid".into(), AMQPValue::LongString(task_id.into()));
    h.insert(
        "function_uuid".into(),
        AMQPValue::LongString(function_id.into()),
    );
    if let Some(rs) = resource_specification {
        h.insert(
            "resource_specification".into(),
            AMQPValue::LongString(rs.into()),
        );
    }
    if let Some(list) = result_serializers {
        let arr: Vec<AMQPValue> = list
            .iter()
            .map(|s| AMQPValue::LongString(s.as_str().into()))
            .collect();
        h.insert(
            "result_serializers".into(),
            AMQPValue::FieldArray(arr.into()),
        );
    }
    h
}
