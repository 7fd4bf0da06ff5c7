//! Prometheus metrics of a service replica, served at `GET /metrics` (OpenMetrics text).
//!
//! Two kinds of numbers, on purpose:
//!
//! * **Counters and the latency histogram count what this replica did** (tasks it accepted,
//!   outcomes it recorded, HTTP requests it answered, broker reconnects it made). Several
//!   replicas behind a load balancer each expose their own; Prometheus sums them
//!   (`sum without (instance) (...)`).
//! * **Gauges describe the whole site** and are read when scraped: endpoints online, user
//!   endpoints running and tasks without an outcome come from the shared database, queue
//!   depths from the broker (a passive declare per queue). Every replica reports the same
//!   values for them; aggregate with `max`, not `sum`.
//!
//! Instrumentation elsewhere is one call into this module ([`tasks_received`],
//! [`outcomes_recorded`], [`broker_connection_opened`], [`consumer_restarted`]); the HTTP
//! counter is a middleware ([`track_http`]).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::Row;

use crate::AppState;
use crate::broker::{Q_HEARTBEATS, Q_RESULTS, task_queue};
use crate::error::StoreError;
use crate::store::{Outcome, now_f64};

/// Content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most task queues whose depth one scrape reads (the queues of user endpoints with tasks
/// waiting, busiest first); the rest are left out of `gc_service_queue_messages{queue="tasks"}`.
const MAX_TASK_QUEUES_PER_SCRAPE: i64 = 200;

/// Longest a scrape waits for the broker's queue depths.
const BROKER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type Labels = Vec<(&'static str, String)>;

struct Metrics {
    registry: Registry,
    tasks_received: Counter,
    tasks_succeeded: Counter,
    tasks_failed: Counter,
    result_latency: Histogram,
    broker_reconnects: Counter,
    consumer_restarts: Family<Labels, Counter>,
    http_requests: Family<Labels, Counter>,
    endpoints_registered: Gauge,
    endpoints_online: Gauge,
    user_endpoints_running: Gauge,
    tasks_pending: Gauge,
    queue_messages: Family<Labels, Gauge>,
    broker_up: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("gc_service");
        let m = Self {
            registry: Registry::default(),
            tasks_received: Counter::default(),
            tasks_succeeded: Counter::default(),
            tasks_failed: Counter::default(),
            // 10 ms .. ~1.4 h in factors of 2.5: a sleep(0) on a warm user endpoint and a
            // task queued behind a batch job both land in a bucket of their own.
            result_latency: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.5, 15),
            ),
            broker_reconnects: Counter::default(),
            consumer_restarts: Family::default(),
            http_requests: Family::default(),
            endpoints_registered: Gauge::default(),
            endpoints_online: Gauge::default(),
            user_endpoints_running: Gauge::default(),
            tasks_pending: Gauge::default(),
            queue_messages: Family::default(),
            broker_up: Gauge::default(),
        };
        r.register(
            "tasks_received",
            "Tasks accepted by submit requests on this replica",
            m.tasks_received.clone(),
        );
        r.register(
            "tasks_succeeded",
            "Successful task outcomes recorded by this replica",
            m.tasks_succeeded.clone(),
        );
        r.register(
            "tasks_failed",
            "Failed task outcomes recorded by this replica (task exceptions, refused functions, user endpoints that could not start)",
            m.tasks_failed.clone(),
        );
        r.register(
            "task_result_latency_seconds",
            "Time from a task's submission to its recorded outcome",
            m.result_latency.clone(),
        );
        r.register(
            "broker_reconnects",
            "AMQP connections this replica opened after its first one",
            m.broker_reconnects.clone(),
        );
        r.register(
            "consumer_restarts",
            "Restarts of this replica's results/heartbeats consumers after a failure",
            m.consumer_restarts.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered by this replica, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "endpoints_registered",
            "Registered endpoints (site-wide, from the database)",
            m.endpoints_registered.clone(),
        );
        r.register(
            "endpoints_online",
            "Endpoints whose heartbeat is current (site-wide, from the database)",
            m.endpoints_online.clone(),
        );
        r.register(
            "user_endpoints_running",
            "User endpoints whose heartbeat is current and that report themselves active (site-wide)",
            m.user_endpoints_running.clone(),
        );
        r.register(
            "tasks_pending",
            "Tasks without an outcome yet (site-wide, from the database)",
            m.tasks_pending.clone(),
        );
        r.register(
            "queue_messages",
            "Messages ready in broker queues: results, heartbeats, and the task queues of user endpoints with tasks waiting (summed)",
            m.queue_messages.clone(),
        );
        r.register(
            "broker_up",
            "1 if the last scrape could read queue depths from the broker, else 0",
            m.broker_up.clone(),
        );
        Self { registry: r, ..m }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
static CONNECTED_BEFORE: AtomicBool = AtomicBool::new(false);

/// A submit queued `n` tasks.
pub fn tasks_received(n: usize) {
    METRICS.tasks_received.inc_by(n as u64);
}

/// The broker connection was (re)opened; every opening after the first is a reconnect.
pub fn broker_connection_opened() {
    if CONNECTED_BEFORE.swap(true, Ordering::Relaxed) {
        METRICS.broker_reconnects.inc();
    }
}

/// A background consumer failed and is being restarted.
pub fn consumer_restarted(consumer: &'static str) {
    METRICS
        .consumer_restarts
        .get_or_create(&vec![("consumer", consumer.to_string())])
        .inc();
}

/// Count the outcomes of a batch that this replica recorded first, and observe their latency.
///
/// Call after [`crate::store::Store::record_outcomes`]. A task counts when its stored
/// `completion_t` is the one this batch wrote: outcomes a task already had (redeliveries,
/// another replica's earlier record) carry another time and are not counted twice. A database
/// failure only costs these numbers and is logged.
pub async fn outcomes_recorded(state: &AppState, outcomes: &[Outcome]) {
    if let Err(e) = count_outcomes(state, outcomes).await {
        tracing::warn!(error = %e, "could not read recorded outcomes for metrics");
    }
}

async fn count_outcomes(state: &AppState, outcomes: &[Outcome]) -> Result<(), StoreError> {
    let written: std::collections::HashMap<&str, f64> = outcomes
        .iter()
        .map(|o| (o.task_id.as_str(), o.completion_t))
        .collect();
    let ids: Vec<&str> = written.keys().copied().collect();
    for chunk in ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, status, created_at, completion_t FROM tasks WHERE id IN ({})",
            placeholders.join(",")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(state.store.pool()).await? {
            let id: String = row.try_get("id")?;
            let completion: Option<f64> = row.try_get("completion_t")?;
            if completion.is_none() || completion != written.get(id.as_str()).copied() {
                continue;
            }
            let status: String = row.try_get("status")?;
            if status == "success" {
                METRICS.tasks_succeeded.inc();
            } else {
                METRICS.tasks_failed.inc();
            }
            let created: f64 = row.try_get("created_at")?;
            if let Some(done) = completion {
                METRICS.result_latency.observe((done - created).max(0.0));
            }
        }
    }
    Ok(())
}

/// Middleware counting every answered request by method, matched route template (never the
/// raw path, so ids do not multiply the series) and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_string();
    let response = next.run(req).await;
    METRICS
        .http_requests
        .get_or_create(&vec![
            ("method", method),
            ("route", route),
            ("status", response.status().as_u16().to_string()),
        ])
        .inc();
    response
}

/// `GET /metrics`.
pub async fn scrape(State(state): State<AppState>) -> Response {
    if let Err(e) = refresh_from_database(&state).await {
        tracing::warn!(error = %e, "metrics: database gauges not refreshed");
    }
    // A broker that does not answer (rather than refusing) must not hold the scrape up.
    if tokio::time::timeout(BROKER_WAIT, refresh_queue_depths(&state))
        .await
        .is_err()
    {
        tracing::warn!("metrics: broker did not answer within {BROKER_WAIT:?}");
        METRICS.broker_up.set(0);
        METRICS.queue_messages.clear();
    }
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &METRICS.registry) {
        tracing::error!(error = %e, "metrics encoding failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

async fn refresh_from_database(state: &AppState) -> Result<(), StoreError> {
    let pool = state.store.pool();
    let now = now_f64();
    let rows = sqlx::query("SELECT last_heartbeat, heartbeat_period FROM endpoints")
        .fetch_all(pool)
        .await?;
    let mut online = 0;
    for r in &rows {
        if crate::routes::is_online(
            r.try_get("last_heartbeat")?,
            r.try_get("heartbeat_period")?,
            now,
        ) {
            online += 1;
        }
    }
    METRICS.endpoints_registered.set(rows.len() as i64);
    METRICS.endpoints_online.set(online);
    let rows = sqlx::query(
        "SELECT last_heartbeat, heartbeat_period FROM user_endpoints \
         WHERE active = 1 AND last_heartbeat IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let mut running = 0;
    for r in &rows {
        if crate::routes::is_online(
            r.try_get("last_heartbeat")?,
            r.try_get("heartbeat_period")?,
            now,
        ) {
            running += 1;
        }
    }
    METRICS.user_endpoints_running.set(running);
    let pending: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE completion_t IS NULL")
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    METRICS.tasks_pending.set(pending);
    Ok(())
}

/// Read queue depths with passive declares. A queue that does not exist closes the channel
/// (AMQP 404), so each failure costs a new channel; the broker being away sets `broker_up 0`
/// and drops the depth series rather than leaving stale values.
async fn refresh_queue_depths(state: &AppState) {
    let task_queues: Vec<String> = match sqlx::query(
        "SELECT uep_id, COUNT(*) AS n FROM tasks WHERE completion_t IS NULL \
         GROUP BY uep_id ORDER BY n DESC LIMIT $1",
    )
    .bind(MAX_TASK_QUEUES_PER_SCRAPE)
    .fetch_all(state.store.pool())
    .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("uep_id").ok())
            .map(|u| task_queue(&u))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot list task queues");
            Vec::new()
        }
    };
    let mut ch = match state.broker.channel().await {
        Ok(ch) => ch,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: broker unavailable");
            METRICS.broker_up.set(0);
            METRICS.queue_messages.clear();
            return;
        }
    };
    let depth = |name: String, ch: lapin::Channel| async move {
        let r = ch
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        (r.map(|q| q.message_count() as i64), ch)
    };
    let mut broker_ok = true;
    for (label, queue) in [("results", Q_RESULTS), ("heartbeats", Q_HEARTBEATS)] {
        let (r, c) = depth(queue.to_string(), ch).await;
        ch = c;
        match r {
            Ok(n) => {
                METRICS
                    .queue_messages
                    .get_or_create(&vec![("queue", label.to_string())])
                    .set(n);
            }
            Err(e) => {
                tracing::warn!(queue, error = %e, "metrics: cannot read queue depth");
                broker_ok = false;
                METRICS
                    .queue_messages
                    .remove(&vec![("queue", label.to_string())]);
                match state.broker.channel().await {
                    Ok(c) => ch = c,
                    Err(_) => {
                        METRICS.broker_up.set(0);
                        return;
                    }
                }
            }
        }
    }
    let mut tasks = 0;
    for queue in task_queues {
        let (r, c) = depth(queue, ch).await;
        ch = c;
        match r {
            Ok(n) => tasks += n,
            // Not declared yet or already deleted: nothing waits in it.
            Err(_) => match state.broker.channel().await {
                Ok(c) => ch = c,
                Err(_) => {
                    broker_ok = false;
                    break;
                }
            },
        }
    }
    METRICS
        .queue_messages
        .get_or_create(&vec![("queue", "tasks".to_string())])
        .set(tasks);
    METRICS.broker_up.set(broker_ok as i64);
    let _ = ch.close(200, "metrics done".into()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition() -> String {
        let mut s = String::new();
        encode(&mut s, &METRICS.registry).expect("encode");
        s
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// A real refusal: nothing listens on port 1, so the broker connection fails at once.
    #[tokio::test]
    async fn a_scrape_without_a_broker_reports_it_down_and_still_answers() {
        use std::sync::Arc;

        use crate::broker::{Broker, StaticCredentials};
        use crate::store::Store;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::connect(&format!("sqlite://{}/m.db", dir.path().display()))
            .await
            .expect("store");
        let state = AppState {
            store,
            broker: Arc::new(Broker::new(
                "amqp://guest:guest@127.0.0.1:1/%2F".into(),
                1000,
            )),
            creds: Arc::new(StaticCredentials {
                endpoint_url: String::new(),
                sdk_url: String::new(),
            }),
            cfg: Arc::new(crate::ServiceConfig::default()),
            events: Arc::new(tokio::sync::Notify::new()),
        };
        let resp = scrape(State(state)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert_eq!(value(&text, "gc_service_broker_up"), 0.0, "{text}");
        assert!(text.contains("gc_service_broker_up 0"), "{text}");
        assert!(text.contains("gc_service_endpoints_registered 0"), "{text}");
        assert!(!text.contains("gc_service_queue_messages{"), "{text}");
    }

    #[test]
    fn counters_appear_in_the_exposition_and_move() {
        let before = exposition();
        tasks_received(3);
        consumer_restarted("results");
        broker_connection_opened();
        broker_connection_opened();
        let after = exposition();
        assert_eq!(
            value(&after, "gc_service_tasks_received_total")
                - value(&before, "gc_service_tasks_received_total"),
            3.0
        );
        assert!(
            value(
                &after,
                "gc_service_consumer_restarts_total{consumer=\"results\"}"
            ) >= 1.0,
            "{after}"
        );
        // The first opening is not a reconnect, the second is.
        assert!(value(&after, "gc_service_broker_reconnects_total") >= 1.0);
        assert!(after.contains("# TYPE gc_service_task_result_latency_seconds histogram"));
        assert!(after.ends_with("# EOF\n"));
    }
}
