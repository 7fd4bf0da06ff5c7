//! One RabbitMQ user per endpoint and per user endpoint, created through the RabbitMQ
//! management HTTP API (`rabbitmq_management` plugin), so that an endpoint's broker
//! credentials reach only its own queues.
//!
//! For an (user) endpoint id `E` the user `gcrs-ep-E` gets, in the endpoints' vhost:
//!
//! | permission | regex | allows |
//! | --- | --- | --- |
//! | configure | `^$` | nothing: the endpoint only passive-declares |
//! | write | `^(results\|heartbeats)$` | publishing to those two exchanges only (not the default exchange, so no SDK result queue) |
//! | read | `^E\.(tasks\|commands)$` | consuming its own task queue (user endpoint) or command queue (endpoint) |
//! | topic write on `results` and `heartbeats` | `^E\.(results\|heartbeats)$` | routing keys of its own id only |
//!
//! Passwords are derived, not stored: `base64url(SHA-256(domain tag ‖ secret ‖ user))` with a
//! service secret every replica is configured with. Every replica therefore hands out the same
//! password for the same endpoint without sharing state, and re-provisioning a user (after a
//! restart, or on another replica) never invalidates connections already made.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::broker::CredentialIssuer;
use crate::error::BrokerError;

/// Credentials from the management API: per-endpoint users on the endpoints' broker.
pub struct ManagedCredentials {
    http: reqwest::Client,
    /// Base of the management API, e.g. `http://127.0.0.1:15672` (no credentials).
    api: url::Url,
    admin_user: String,
    admin_password: String,
    /// The URL endpoints connect to; its user and password are replaced per endpoint.
    endpoint_url: url::Url,
    vhost: String,
    secret: String,
    sdk_url: String,
    /// Users this replica provisioned recently (an optimisation only: provisioning is
    /// idempotent and every replica derives the same password). Entries expire after
    /// [`PROVISIONED_TTL`], so a user another replica deleted is re-created soon after.
    provisioned: Mutex<HashMap<String, Instant>>,
}

/// How long a replica trusts that a user it provisioned still exists.
const PROVISIONED_TTL: Duration = Duration::from_secs(60);

/// Settings of [`ManagedCredentials`] that are not derived.
#[derive(Debug, thiserror::Error)]
pub enum AdminConfigError {
    #[error("invalid broker admin URL: {0}")]
    AdminUrl(String),
    #[error("invalid endpoint AMQP URL: {0}")]
    EndpointUrl(String),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl ManagedCredentials {
    /// `admin_url`: `http(s)://USER:PASS@host:15672` of the management API; `endpoint_url`:
    /// the AMQP URL endpoints use (host, port, vhost); `secret`: password-derivation secret
    /// (default: the admin password).
    pub fn new(
        admin_url: &str,
        endpoint_url: &str,
        sdk_url: String,
        secret: Option<String>,
    ) -> Result<Self, AdminConfigError> {
        let mut api =
            url::Url::parse(admin_url).map_err(|e| AdminConfigError::AdminUrl(e.to_string()))?;
        if !matches!(api.scheme(), "http" | "https") {
            return Err(AdminConfigError::AdminUrl(
                "scheme must be http or https".into(),
            ));
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let admin_user = decode(api.username());
        let admin_password = decode(api.password().unwrap_or(""));
        if admin_user.is_empty() {
            return Err(AdminConfigError::AdminUrl(
                "it must carry USER:PASSWORD@".into(),
            ));
        }
        let _ = api.set_username("");
        let _ = api.set_password(None);
        let endpoint_url = url::Url::parse(endpoint_url)
            .map_err(|e| AdminConfigError::EndpointUrl(e.to_string()))?;
        let vhost = match endpoint_url.path() {
            "" | "/" => "/".to_string(),
            p => decode(&p[1..]),
        };
        let secret = secret.unwrap_or_else(|| admin_password.clone());
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            api,
            admin_user,
            admin_password,
            endpoint_url,
            vhost,
            secret,
            sdk_url,
            provisioned: Mutex::new(HashMap::new()),
        })
    }

    /// Broker user name of an endpoint id.
    pub fn user_name(endpoint_id: &str) -> String {
        format!("gcrs-ep-{endpoint_id}")
    }

    fn password(&self, user: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"gc-service broker credential\0");
        h.update(self.secret.as_bytes());
        h.update(b"\0");
        h.update(user.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    }

    fn api_path(&self, parts: &[&str]) -> Result<url::Url, BrokerError> {
        let mut u = self.api.clone();
        u.path_segments_mut()
            .map_err(|()| BrokerError::Admin("management URL cannot be a base".into()))?
            .pop_if_empty()
            .push("api")
            .extend(parts);
        Ok(u)
    }

    async fn put(&self, parts: &[&str], body: serde_json::Value) -> Result<(), BrokerError> {
        let url = self.api_path(parts)?;
        let resp = self
            .http
            .put(url)
            .basic_auth(&self.admin_user, Some(&self.admin_password))
            .json(&body)
            .send()
            .await
            .map_err(|e| BrokerError::Admin(format!("management API unreachable: {e}")))?;
        if !resp.status().is_success() {
            // The body may echo the request; log the status and the API path only.
            return Err(BrokerError::Admin(format!(
                "management API PUT /api/{} answered {}",
                parts.first().copied().unwrap_or(""),
                resp.status()
            )));
        }
        Ok(())
    }

    async fn provision(&self, endpoint_id: &str) -> Result<String, BrokerError> {
        let user = Self::user_name(endpoint_id);
        let password = self.password(&user);
        let known = self
            .provisioned
            .lock()
            .map(|s| {
                s.get(&user)
                    .is_some_and(|at| at.elapsed() < PROVISIONED_TTL)
            })
            .unwrap_or(false);
        if !known {
            let id = regex_escape(endpoint_id);
            self.put(&["users", &user], json!({"password": password, "tags": ""}))
                .await?;
            self.put(
                &["permissions", &self.vhost, &user],
                json!({
                    "configure": "^$",
                    "write": "^(results|heartbeats)$",
                    "read": format!("^{id}\\.(tasks|commands)$"),
                }),
            )
            .await?;
            for exchange in ["results", "heartbeats"] {
                self.put(
                    &["topic-permissions", &self.vhost, &user],
                    json!({
                        "exchange": exchange,
                        "write": format!("^{id}\\.(results|heartbeats)$"),
                        "read": "^$",
                    }),
                )
                .await?;
            }
            tracing::info!(user = %user, "provisioned broker user for endpoint");
            if let Ok(mut s) = self.provisioned.lock() {
                s.retain(|_, at| at.elapsed() < PROVISIONED_TTL);
                s.insert(user.clone(), Instant::now());
            }
        }
        let mut url = self.endpoint_url.clone();
        url.set_username(&user)
            .and_then(|()| url.set_password(Some(&password)))
            .map_err(|()| BrokerError::Admin("endpoint URL cannot carry credentials".into()))?;
        Ok(url.to_string())
    }
}

/// Escape regex metacharacters (ids are UUIDs, but the rule must not depend on it).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl ManagedCredentials {
    /// Delete the broker users of these endpoint ids (absent users are fine). RabbitMQ
    /// closes their open connections.
    async fn delete_users(&self, endpoint_ids: &[String]) -> Result<(), BrokerError> {
        for id in endpoint_ids {
            let user = Self::user_name(id);
            if let Ok(mut s) = self.provisioned.lock() {
                s.remove(&user);
            }
            let resp = self
                .http
                .delete(self.api_path(&["users", &user])?)
                .basic_auth(&self.admin_user, Some(&self.admin_password))
                .send()
                .await
                .map_err(|e| BrokerError::Admin(format!("management API unreachable: {e}")))?;
            if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_FOUND) {
                return Err(BrokerError::Admin(format!(
                    "management API DELETE /api/users answered {}",
                    resp.status()
                )));
            }
            tracing::info!(user = %user, "removed broker user of deleted endpoint");
        }
        Ok(())
    }
}

impl CredentialIssuer for ManagedCredentials {
    fn endpoint_url<'a>(&'a self, endpoint_id: &'a str) -> crate::broker::UrlFuture<'a> {
        Box::pin(self.provision(endpoint_id))
    }
    fn revoke<'a>(&'a self, endpoint_ids: &'a [String]) -> crate::broker::RevokeFuture<'a> {
        Box::pin(self.delete_users(endpoint_ids))
    }
    fn sdk_url(&self, _client_id: &str) -> String {
        self.sdk_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_passwords() {
        let m = ManagedCredentials::new(
            "http://adm%40in:s%3Acret@127.0.0.1:15672",
            "amqp://guest:guest@rabbit:5672/my%2Fvhost",
            "amqp://sdk".into(),
            None,
        )
        .unwrap();
        assert_eq!(
            (m.admin_user.as_str(), m.admin_password.as_str()),
            ("adm@in", "s:cret")
        );
        assert_eq!(m.vhost, "my/vhost");
        assert_eq!(
            m.api_path(&["permissions", "my/vhost", "u"])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:15672/api/permissions/my%2Fvhost/u"
        );
        let u = ManagedCredentials::user_name("e1");
        assert_eq!(m.password(&u), m.password(&u));
        assert_ne!(m.password(&u), m.password("gcrs-ep-e2"));
        assert_eq!(m.password(&u).len(), 43);
        let other = ManagedCredentials::new(
            "http://a:b@h:1",
            "amqp://h/",
            String::new(),
            Some("x".into()),
        )
        .unwrap();
        assert_eq!(other.vhost, "/");
        assert_ne!(other.password(&u), m.password(&u));
        assert!(ManagedCredentials::new("http://h:1", "amqp://h/", String::new(), None).is_err());
        assert!(ManagedCredentials::new("amqp://a:b@h", "amqp://h/", String::new(), None).is_err());
        assert_eq!(regex_escape("a.b*"), "a\\.b\\*");
    }
}
