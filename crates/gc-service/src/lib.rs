//! `gc-service`: the self-hostable Globus Compute web service.
//!
//! One axum application serves the Globus Auth emulation under `/auth` and the compute REST
//! routes the unmodified SDK and endpoint use; sqlx keeps state in SQLite or PostgreSQL; lapin
//! routes tasks, commands, results and heartbeats through RabbitMQ. A replica keeps nothing in
//! memory that another replica needs: run several behind a load balancer on one database.
#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod consumers;
pub mod error;
pub mod messages;
pub mod metrics;
pub mod policy;
pub mod rabbit_admin;
pub mod routes;
pub mod status;
pub mod store;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};

use crate::broker::{Broker, CredentialIssuer};
use crate::store::Store;

/// Settings of a running service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Prefix of the SDK result queues (`<prefix><task_group_id>`).
    pub queue_prefix: String,
    /// Lifetime of issued bearer tokens, seconds.
    pub token_lifetime_s: i64,
    /// How long a submit waits for a user endpoint to check in.
    pub uep_start_timeout: Duration,
    /// Largest request body, bytes.
    pub max_request_bytes: usize,
    /// Duration of `POST /v3/endpoints/{id}/lock`, seconds.
    pub lock_seconds: i64,
    /// Token that opens the admin status page (`None`: no status page).
    pub admin_token: Option<String>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            queue_prefix: "gcrs_results_".into(),
            token_lifetime_s: 172_800,
            uep_start_timeout: Duration::from_secs(30),
            max_request_bytes: 256 * 1024 * 1024,
            lock_seconds: 300,
            admin_token: None,
        }
    }
}

/// Shared handles of the application (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub broker: Arc<Broker>,
    pub creds: Arc<dyn CredentialIssuer>,
    pub cfg: Arc<ServiceConfig>,
    /// Wakes submissions waiting for a user endpoint when this replica records a heartbeat
    /// (other replicas' heartbeats are seen by polling the database).
    pub events: Arc<tokio::sync::Notify>,
}

/// The HTTP application.
pub fn router(state: AppState) -> Router {
    use routes::*;
    Router::new()
        .route("/auth/v2/oauth2/token", post(auth::token))
        .route("/auth/v2/oauth2/token/revoke", post(auth::revoke))
        .route("/auth/v2/oauth2/token/introspect", post(auth::introspect))
        .route(
            "/auth/v2/oauth2/userinfo",
            get(auth::userinfo).post(auth::userinfo),
        )
        .route("/auth/v2/api/identities", get(auth::identities))
        .route(
            "/auth/v2/api/policies",
            get(policy::list).post(policy::create),
        )
        .route(
            "/auth/v2/api/policies/{id}",
            get(policy::get).put(policy::update).delete(policy::delete),
        )
        .route("/v2/version", get(version))
        .route("/v3/functions", post(register_function))
        .route(
            "/v2/functions/{id}",
            get(get_function).delete(delete_function),
        )
        .route("/v3/endpoints", post(register_endpoint_new))
        .route("/v3/endpoints/{id}", put(register_endpoint_put))
        .route("/v3/endpoints/{id}/submit", post(submit))
        .route("/v3/endpoints/{id}/lock", post(lock_endpoint))
        .route(
            "/v3/endpoints/{id}/allowed_functions",
            get(allowed_functions),
        )
        .route("/v2/endpoints", get(list_endpoints))
        .route(
            "/v2/endpoints/{id}",
            get(get_endpoint).delete(delete_endpoint),
        )
        .route("/v2/endpoints/{id}/status", get(endpoint_status))
        .route("/v2/get_amqp_result_connection_url", get(amqp_result_url))
        .route("/v2/tasks/{id}", get(get_task))
        .route("/v2/batch_status", post(batch_status))
        .route("/v2/taskgroup/{id}", get(get_task_group))
        .route("/metrics", get(metrics::scrape))
        .route("/admin/status", get(status::page))
        .route("/admin/tasks/{id}", get(trace::task))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// Declare the shared topology and start the background consumers.
pub async fn start_background(state: &AppState) -> Result<(), error::BrokerError> {
    let ch = state.broker.channel().await?;
    state.broker.declare_base(&ch).await?;
    let _ = ch.close(200, "done".into()).await;
    tokio::spawn(consumers::run_forever(
        "results",
        state.clone(),
        consumers::consume_results,
    ));
    tokio::spawn(consumers::run_forever(
        "heartbeats",
        state.clone(),
        consumers::consume_heartbeats,
    ));
    Ok(())
}
