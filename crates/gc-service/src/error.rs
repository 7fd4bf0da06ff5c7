//! Errors of the service.
//!
//! Rule: library-level failures are typed ([`StoreError`], [`BrokerError`]); the HTTP boundary
//! turns every error into an [`ApiError`]. Errors the client caused carry a status, a code and a
//! message meant for the user (PROTOCOL-SDK §6, "Type Zero" body). Errors the client did not
//! cause become a generic 500/503 whose detail is logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gc_wire::rest::ErrorBody;

/// Database failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// Broker failures.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("AMQP error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("broker refused message for {0}")]
    Nacked(String),
    #[error("broker user provisioning failed: {0}")]
    Admin(String),
}

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Globus Auth requirements (`authorization_parameters` of a GARE body): what a new
    /// authentication must satisfy for the request to succeed.
    pub authorization_parameters: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            authorization_parameters: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "SEMANTICALLY_INVALID",
            format!("Request payload failed validation: {}", message.into()),
        )
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }
    /// An internal failure: the detail goes to the log, the client gets a generic message.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "The service failed to process the request",
        )
    }
    /// A dependency (broker) is unavailable and nothing was committed: the client may retry.
    pub fn unavailable(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "The service is temporarily unable to process the request",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        Self::unavailable(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        let mut resp = match self.authorization_parameters {
            // A Globus Auth requirements error: the SDK re-authenticates and retries once.
            Some(params) => {
                let body = serde_json::json!({
                    "code": body.code,
                    "message": body.message,
                    "authorization_parameters": params,
                });
                (self.status, axum::Json(body)).into_response()
            }
            None => (self.status, axum::Json(body)).into_response(),
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("2"));
        }
        resp
    }
}
