//! Test support: a private RabbitMQ vhost per test (stand-in for the service's topology), and
//! a loopback TCP proxy that can be cut and restored to simulate a broker outage without
//! touching anyone else's connections.

#![allow(dead_code)]

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gc_broker::RetryPolicy;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const BROKER: &str = "127.0.0.1:5672";

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh vhost with full permissions for guest, deleted on drop.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn new() -> Vhost {
        let name = format!("gcrs-broker-test-{:016x}", rand::rng().random::<u64>());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost { name }
    }

    /// URL through `addr` (the broker itself or a proxy).
    pub fn url_via(&self, addr: &str) -> String {
        format!("amqp://guest:guest@{addr}/{}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(BROKER)
    }

    pub async fn admin(&self) -> Admin {
        let conn = Connection::connect(&self.url(), ConnectionProperties::default())
            .await
            .expect("admin connection");
        let channel = conn.create_channel().await.expect("admin channel");
        Admin { conn, channel }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// The "service" side: declares topology, publishes tasks, inspects queues.
pub struct Admin {
    pub conn: Connection,
    pub channel: lapin::Channel,
}

impl Admin {
    pub async fn queue(&self, name: &str) {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .expect("queue declare");
    }

    /// Topic exchange `exchange` with queue `queue` bound by `key`.
    pub async fn topic(&self, exchange: &str, queue: &str, key: &str) {
        self.channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange declare");
        self.queue(queue).await;
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }

    pub async fn send(&self, queue: &str, body: &[u8]) {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish");
    }

    /// Ready (not unacked) messages in `queue`.
    pub async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare")
            .message_count()
    }

    /// Takes one message (auto-acked).
    pub async fn get(&self, queue: &str) -> Option<lapin::message::BasicGetMessage> {
        self.channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
    }

    /// Waits until `queue` has `n` ready messages.
    pub async fn wait_ready(&self, queue: &str, n: u32) {
        for _ in 0..200 {
            if self.ready(queue).await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "queue {queue} never reached {n} ready messages (has {})",
            self.ready(queue).await
        );
    }
}

/// Queue info of a publisher to `exchange` with `routing_key`.
pub fn publish_info(url: &str, exchange: &str, queue: &str, routing_key: &str) -> Value {
    json!({
        "connection_url": url,
        "exchange": exchange,
        "queue": queue,
        "queue_publish_kwargs": {
            "exchange": exchange,
            "routing_key": routing_key,
            "mandatory": true,
            "properties": {"delivery_mode": 2}
        }
    })
}

/// Retries quickly, so give-up paths finish in a test's time.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        retry_sleep_min: Duration::from_millis(50),
        retry_sleep_max: Duration::from_millis(150),
        channel_reopen_delay: Duration::from_millis(100),
        ..RetryPolicy::default()
    }
}

/// A loopback TCP proxy to the broker that can be cut (port closed, every connection
/// dropped) and restored on the same port.
pub struct Proxy {
    pub port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Proxy {
            port,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(BROKER).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Closes the listening port and drops every proxied connection.
    pub fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        // The aborted listener is released asynchronously; retry the bind briefly.
        for _ in 0..100 {
            if let Ok(l) = TcpListener::bind(("127.0.0.1", self.port)).await {
                self.serve(l);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot re-bind proxy port {}", self.port);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
