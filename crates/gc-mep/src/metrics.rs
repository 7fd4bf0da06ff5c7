//! Optional Prometheus metrics of a running endpoint, served at `GET /metrics` (OpenMetrics
//! text) on the address in [`LISTEN_ENV`] (for example `127.0.0.1:9464`).
//!
//! Upstream 4.19 has no such port and no `config.yaml` key for one, so it is switched on by
//! an environment variable of `globus-compute-endpoint start` rather than a configuration key
//! the schema would refuse. The numbers come from the MEP's own [`MepEvent`]s: user endpoint
//! processes started, running and ended, start failures and refused commands. What happens
//! inside a user endpoint (its tasks, its workers) is that process's business and is not
//! counted here; the service's `/metrics` counts tasks per site (docs/operations.md).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::MepEvent;
use crate::MepOptions;

/// The environment variable naming the metrics address.
pub const LISTEN_ENV: &str = "GCRS_ENDPOINT_METRICS_LISTEN";

/// Errors of the metrics port.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address in [`LISTEN_ENV`] is not `HOST:PORT`.
    #[error("{LISTEN_ENV}={value:?} is not an address like 127.0.0.1:9464")]
    Address {
        /// The value found.
        value: String,
    },
    /// The address could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

type Labels = Vec<(&'static str, String)>;

/// The MEP's counters and gauges.
pub struct MepMetrics {
    registry: Registry,
    running: Gauge,
    started: Counter,
    start_failures: Counter,
    duplicate_starts: Counter,
    rejected_commands: Counter,
    exits: Family<Labels, Counter>,
    pids: Mutex<HashSet<u32>>,
}

impl Default for MepMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MepMetrics {
    /// Empty metrics, registered under the `gc_endpoint` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("gc_endpoint");
        let m = Self {
            registry: Registry::default(),
            running: Gauge::default(),
            started: Counter::default(),
            start_failures: Counter::default(),
            duplicate_starts: Counter::default(),
            rejected_commands: Counter::default(),
            exits: Family::default(),
            pids: Mutex::new(HashSet::new()),
        };
        r.register(
            "user_endpoints_running",
            "User endpoint processes this endpoint started that have not ended",
            m.running.clone(),
        );
        r.register(
            "user_endpoints_started",
            "User endpoint processes started",
            m.started.clone(),
        );
        r.register(
            "user_endpoint_start_failures",
            "Start commands that failed before a user endpoint ran (a failure notice was sent)",
            m.start_failures.clone(),
        );
        r.register(
            "user_endpoint_duplicate_starts",
            "Start commands for a user endpoint that was already running (cached, not started)",
            m.duplicate_starts.clone(),
        );
        r.register(
            "commands_rejected",
            "Commands refused (malformed, expired, or not from an allowed identity)",
            m.rejected_commands.clone(),
        );
        r.register(
            "user_endpoint_exits",
            "User endpoint processes that ended, by how: exit status 0, another status, or a signal",
            m.exits.clone(),
        );
        Self { registry: r, ..m }
    }

    /// Count one event.
    pub fn observe(&self, event: &MepEvent) {
        match event {
            MepEvent::Spawned { pid, .. } => {
                self.started.inc();
                if let Ok(mut pids) = self.pids.lock() {
                    pids.insert(*pid);
                    self.running.set(pids.len() as i64);
                }
            }
            MepEvent::Exited { pid, code, .. } => {
                let how = match code {
                    Some(0) => "ok",
                    Some(_) => "error",
                    None => "signal",
                };
                self.exits.get_or_create(&vec![("how", how.into())]).inc();
                if let Ok(mut pids) = self.pids.lock() {
                    pids.remove(pid);
                    self.running.set(pids.len() as i64);
                }
            }
            MepEvent::StartFailed { .. } => {
                self.start_failures.inc();
            }
            MepEvent::Duplicate { .. } => {
                self.duplicate_starts.inc();
            }
            MepEvent::Rejected { .. } => {
                self.rejected_commands.inc();
            }
        }
    }

    /// The OpenMetrics exposition.
    pub fn exposition(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The metrics address a [`LISTEN_ENV`] value names; `None` for an empty value.
pub fn parse_listen(value: &str) -> Result<Option<SocketAddr>, MetricsError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| MetricsError::Address {
        value: value.to_string(),
    })
}

/// With [`LISTEN_ENV`] set: bind its address and [`serve`] there. Without it, nothing
/// happens. Call inside the MEP's runtime before [`crate::run`].
pub async fn enable_from_env(options: &mut MepOptions) -> Result<(), MetricsError> {
    let Some(value) = std::env::var_os(LISTEN_ENV) else {
        return Ok(());
    };
    let Some(addr) = parse_listen(&value.to_string_lossy())? else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    tracing::info!("Serving endpoint metrics on http://{addr}/metrics");
    serve(listener, options);
    Ok(())
}

/// Route the MEP's events (and on to whatever `options.events` already sent them to) through
/// a [`MepMetrics`], and serve it on `listener` until the runtime ends.
pub fn serve(listener: tokio::net::TcpListener, options: &mut MepOptions) {
    let metrics = Arc::new(MepMetrics::new());
    let (tx, mut rx) = mpsc::unbounded_channel::<MepEvent>();
    let forward = options.events.replace(tx);
    let counted = metrics.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            counted.observe(&event);
            if let Some(f) = &forward {
                let _ = f.send(event);
            }
        }
    });
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.exposition(),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("Endpoint metrics server stopped: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn events_move_the_numbers() {
        let m = MepMetrics::new();
        let name = || "uep.a.b".to_string();
        m.observe(&MepEvent::Spawned {
            pid: 10,
            name: name(),
        });
        m.observe(&MepEvent::Spawned {
            pid: 11,
            name: name(),
        });
        m.observe(&MepEvent::Duplicate {
            pid: 11,
            name: name(),
        });
        m.observe(&MepEvent::Exited {
            pid: 10,
            name: name(),
            code: None,
        });
        m.observe(&MepEvent::StartFailed {
            name: name(),
            text: "no such user".into(),
        });
        m.observe(&MepEvent::Rejected {
            text: "bad".into(),
            notice: false,
        });
        let text = m.exposition();
        assert_eq!(
            value(&text, "gc_endpoint_user_endpoints_running"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "gc_endpoint_user_endpoints_started_total"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "gc_endpoint_user_endpoint_duplicate_starts_total"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "gc_endpoint_user_endpoint_exits_total{how=\"signal\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "gc_endpoint_user_endpoint_start_failures_total"),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "gc_endpoint_commands_rejected_total"),
            Some(1.0)
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn listen_values() {
        assert_eq!(
            parse_listen(" 127.0.0.1:9464 ").expect("address"),
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        assert_eq!(parse_listen("").expect("empty"), None);
        let err = parse_listen("localhost").expect_err("a host name is not an address");
        assert!(err.to_string().contains(LISTEN_ENV), "{err}");
    }

    #[tokio::test]
    async fn served_over_http_and_events_still_forwarded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = gc_config::CoreEndpointConfig::default();
        let mut options = MepOptions::new("ep", dir.path().join("ep"), config).expect("options");
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        options.events = Some(seen_tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        serve(listener, &mut options);
        let events = options.events.clone().expect("events");
        events
            .send(MepEvent::Spawned {
                pid: 7,
                name: "uep.x".into(),
            })
            .expect("send");
        // The event reaches the earlier receiver after it was counted.
        assert!(matches!(
            seen_rx.recv().await,
            Some(MepEvent::Spawned { pid: 7, .. })
        ));
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        assert_eq!(
            value(&body, "gc_endpoint_user_endpoints_running"),
            Some(1.0)
        );
    }
}
