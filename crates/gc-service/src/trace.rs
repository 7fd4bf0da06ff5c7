//! `GET /admin/tasks/{id}`: what the service knows about one task, for tracing it
//! (`globus-compute-endpoint trace TASK_ID` shows it beside the endpoint's log lines).
//!
//! Opened by the admin token (`--admin-token`, as the status page: a bearer token or the
//! password of HTTP Basic authentication); without a configured token the route answers 404.
//! The answer holds the task's endpoint, status and the service's timestamps (Unix seconds):
//! `submitted_at` (recorded at submit, before it is queued), `result_received_at` (the
//! endpoint's result recorded), and whether the result was forwarded to the submitter's queue.
//! The service's log has a line for every stage too (`Task submitted`, `Task queued for the
//! user endpoint`, `Result received from the endpoint`, `Result forwarded to the SDK`), each
//! with a `task_id` field.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AppState;

/// The route's answer.
#[derive(Debug, Serialize)]
pub struct TaskTrace {
    pub task_id: String,
    pub endpoint_id: String,
    pub task_group_id: String,
    pub status: String,
    pub submitted_at: f64,
    pub result_received_at: Option<f64>,
    pub result_forwarded: bool,
}

/// The admin secret a request presents: a bearer token, or the password of HTTP Basic.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':').map(|(_, p)| p.to_string())
    } else {
        None
    }
}

/// `GET /admin/tasks/{id}`.
pub async fn task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = state.cfg.admin_token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Digests, so the comparison time does not depend on a matching prefix.
    let ok = presented(&headers)
        .is_some_and(|s| Sha256::digest(s.as_bytes()) == Sha256::digest(token.as_bytes()));
    if !ok {
        return (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
    }
    match state.store.task(&id).await {
        Ok(Some(t)) => Json(TaskTrace {
            task_id: t.id,
            endpoint_id: t.endpoint_id,
            task_group_id: t.task_group_id,
            status: t.status,
            submitted_at: t.created_at,
            result_received_at: t.completion_t,
            result_forwarded: t.forwarded,
        })
        .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "unknown task\n").into_response(),
        Err(e) => {
            tracing::error!(task_id = %id, error = %e, "task trace: database query failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not available\n",
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_secrets() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("abc"));
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s3cret");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        assert_eq!(presented(&h).as_deref(), Some("s3cret"));
        h.insert(header::AUTHORIZATION, "Digest x".parse().unwrap());
        assert_eq!(presented(&h), None);
    }
}
