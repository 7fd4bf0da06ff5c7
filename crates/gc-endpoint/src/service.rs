//! The few web-service calls CLI commands make (PROTOCOL-ENDPOINT §2.8), authenticated with
//! client credentials (PROTOCOL-SDK §2) against the service chosen as the SDK chooses it
//! (PROTOCOL-SDK §1.1).

use std::time::Duration;

use serde_json::Value;

/// The compute scope every compute call needs.
const COMPUTE_SCOPE: &str =
    "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all";

/// Why a service call failed.
#[derive(Debug)]
pub enum ServiceError {
    /// Globus Auth (token endpoint) refused: shown with the Auth error block, exit 77.
    Auth {
        status: u16,
        code: String,
        text: String,
    },
    /// The compute service answered with an error status.
    Api { text: String },
    /// The service could not be reached.
    Network(String),
    /// Local set-up problem (credentials, environment).
    Setup(String),
}

/// Where the SDK would send compute calls: `local` → `http://localhost:5000`, known
/// environments to their hosts, anything else to production.
///
/// Extension: `GLOBUS_SDK_SERVICE_URL_COMPUTE`, which globus-sdk honours for clients built
/// without an explicit base URL (the Compute SDK always passes one, so upstream ignores it),
/// points this program at a self-hosted service on any address.
pub fn compute_base_url(environment: &str) -> String {
    if let Ok(url) = std::env::var("GLOBUS_SDK_SERVICE_URL_COMPUTE") {
        if !url.is_empty() {
            return url.trim_end_matches('/').to_string();
        }
    }
    match environment {
        "local" => "http://localhost:5000".into(),
        "preview" => "https://compute.api.preview.globus.org".into(),
        "dev" => "https://api.dev.funcx.org".into(),
        "sandbox" | "test" | "integration" | "staging" => {
            format!("https://compute.api.{environment}.globuscs.info")
        }
        _ => "https://compute.api.globus.org".into(),
    }
}

/// globus-sdk's Auth base URL: `GLOBUS_SDK_SERVICE_URL_AUTH`, else by environment.
fn auth_base_url(environment: &str) -> Result<String, ServiceError> {
    if let Ok(url) = std::env::var("GLOBUS_SDK_SERVICE_URL_AUTH") {
        if !url.is_empty() {
            return Ok(url);
        }
    }
    match environment {
        "production" => Ok("https://auth.globus.org/".into()),
        "preview" => Ok("https://auth.preview.globus.org/".into()),
        "sandbox" | "test" | "integration" | "staging" => {
            Ok(format!("https://auth.{environment}.globuscs.info/"))
        }
        other => Err(ServiceError::Setup(format!(
            "Unrecognized environment \"{other}\" (set GLOBUS_SDK_SERVICE_URL_AUTH)"
        ))),
    }
}

/// The environment name: `local` if `local_compute_services`, else the config's
/// `environment`, else `GLOBUS_SDK_ENVIRONMENT`, else `production`.
pub fn environment_name(local_compute_services: bool, config_env: Option<&str>) -> String {
    if local_compute_services {
        return "local".into();
    }
    if let Some(e) = config_env.filter(|e| !e.is_empty()) {
        return e.into();
    }
    match std::env::var("GLOBUS_SDK_ENVIRONMENT") {
        Ok(e) if !e.is_empty() => e,
        _ => "production".into(),
    }
}

/// A compute API client holding a client-credentials access token.
pub struct ComputeClient {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

fn http_error(e: reqwest::Error) -> ServiceError {
    ServiceError::Network(e.to_string())
}

fn auth_code(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v
            .get("code")
            .and_then(Value::as_str)
            .or_else(|| v.get("error").and_then(Value::as_str))
            .unwrap_or("Error")
            .to_string(),
        Err(_) => "Error".into(),
    }
}

impl ComputeClient {
    /// Log in with `GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET` for the given environment.
    pub fn login(environment: &str) -> Result<Self, ServiceError> {
        let id = std::env::var("GLOBUS_COMPUTE_CLIENT_ID")
            .ok()
            .filter(|s| !s.is_empty());
        let secret = std::env::var("GLOBUS_COMPUTE_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty());
        let (id, secret) = match (id, secret) {
            (Some(i), Some(s)) => (i, s),
            (None, Some(_)) => {
                return Err(ServiceError::Setup(
                    "Both GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET must be set to use a client identity. Either set both environment variables, or unset them to use a normal login.".into(),
                ));
            }
            _ => {
                return Err(ServiceError::Setup(
                    "Interactive Globus login is not available in this build; set GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET to use a client identity.".into(),
                ));
            }
        };
        let timeout = std::env::var("GLOBUS_SDK_HTTP_TIMEOUT")
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .unwrap_or(60.0);
        let mut builder = reqwest::blocking::Client::builder().user_agent(concat!(
            "globus-compute-endpoint-rs/",
            env!("CARGO_PKG_VERSION")
        ));
        if timeout > 0.0 {
            builder = builder.timeout(Duration::from_secs_f64(timeout));
        }
        let http = builder.build().map_err(http_error)?;
        let mut auth = auth_base_url(environment)?;
        if !auth.ends_with('/') {
            auth.push('/');
        }
        let resp = http
            .post(format!("{auth}v2/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", COMPUTE_SCOPE),
            ])
            .send()
            .map_err(http_error)?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(http_error)?;
        if !(200..300).contains(&status) {
            return Err(ServiceError::Auth {
                status,
                code: auth_code(&text),
                text,
            });
        }
        let token = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.get("access_token")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .ok_or_else(|| ServiceError::Auth {
                status,
                code: "Error".into(),
                text: text.clone(),
            })?;
        Ok(Self {
            http,
            base: compute_base_url(environment),
            token,
        })
    }

    fn call(&self, method: reqwest::Method, path: &str) -> Result<Value, ServiceError> {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .map_err(http_error)?;
        let status = resp.status().as_u16();
        let text = resp.text().map_err(http_error)?;
        if !(200..300).contains(&status) {
            return Err(ServiceError::Api { text });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET /v2/endpoints/{id}/status`
    pub fn endpoint_status(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::GET, &format!("/v2/endpoints/{id}/status"))
    }

    /// `DELETE /v2/endpoints/{id}`
    pub fn delete_endpoint(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::DELETE, &format!("/v2/endpoints/{id}"))
    }
}
