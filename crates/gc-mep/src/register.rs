//! Registration with the web service at start-up (PROTOCOL-ENDPOINT §2): client-credentials
//! tokens, the version check, `POST`/`PUT /v3/endpoints`, `userinfo`, and `endpoint.json`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use gc_config::CoreEndpointConfig;
use gc_wire::rest::{AUTH_RESOURCE_SERVER, COMPUTE_SCOPE, RegisterEndpointRequest};
use serde_json::{Value, json};

/// The endpoint release whose behaviour this crate reproduces (sent as `endpoint_version`).
pub const ENDPOINT_VERSION: &str = "4.19.0";

/// Why registration failed; [`RegisterError::exit_code`] is the MEP's exit status (§2.6).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Missing or inconsistent local set-up (credentials, environment).
    #[error("{0}")]
    Setup(String),
    /// The Auth token endpoint refused.
    #[error("Globus Auth error (HTTP {status}): {text}")]
    Auth { status: u16, text: String },
    /// 409, 423 or 404 from the registration call.
    #[error("Endpoint registration blocked.  [{text}]")]
    Blocked { status: u16, text: String },
    /// 409 `ENDPOINT_ALREADY_CONNECTED`: the service says another host runs this endpoint.
    #[error("Endpoint registration refused: {message}")]
    HeldElsewhere { message: String },
    /// 400 or 422 from the registration call.
    #[error("Endpoint registration blocked.  [{text}]")]
    Invalid { status: u16, text: String },
    /// Any other error status from the compute API.
    #[error("Globus Compute API error (HTTP {status}): {text}")]
    Api { status: u16, text: String },
    /// The service could not be reached.
    #[error("Network failure; unable to register endpoint: {0}")]
    Network(String),
    /// A 2xx answer without the structure the MEP needs.
    #[error("Invalid or unexpected registration data structure: {0}")]
    Malformed(String),
    /// The service returned another id than the one requested.
    #[error(
        "Unexpected response from server: mismatched endpoint id.\n  Expected: {expected}, received: {received}"
    )]
    MismatchedId { expected: String, received: String },
    /// The owner's identity set could not be determined (§2.7).
    #[error("{0}\n    Failed to determine identity set; try `whoami` command?")]
    IdentitySet(String),
    /// `endpoint.json` could not be written.
    #[error("cannot write {path}: {source}")]
    EndpointJson {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegisterError {
    /// The process exit status upstream uses for this outcome (PE §2.6, ENDPOINT §4.2).
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            RegisterError::Blocked { .. } | RegisterError::HeldElsewhere { .. } => 69,
            RegisterError::Invalid { .. } => 65,
            RegisterError::Network(_) => 75,
            RegisterError::Auth { .. } => 77,
            RegisterError::Malformed(_) | RegisterError::MismatchedId { .. } => 70,
            RegisterError::Setup(_)
            | RegisterError::Api { .. }
            | RegisterError::IdentitySet(_)
            | RegisterError::EndpointJson { .. } => 1,
        }
    }
}

/// Where the service is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrls {
    /// Compute API base, without a trailing slash.
    pub compute: String,
    /// Auth base, with a trailing slash.
    pub auth: String,
}

impl ServiceUrls {
    /// The SDK's choice for a MEP configuration (PROTOCOL-SDK §1.1): `local_compute_services`
    /// ⇒ `local`, else `environment`, else `GLOBUS_SDK_ENVIRONMENT`, else production. The
    /// globus-sdk overrides `GLOBUS_SDK_SERVICE_URL_COMPUTE` / `_AUTH` win when set.
    pub fn for_config(config: &CoreEndpointConfig) -> Result<Self, RegisterError> {
        let env_var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let environment = if config.base.local_compute_services {
            "local".to_string()
        } else if let Some(e) = config.base.environment.clone().filter(|e| !e.is_empty()) {
            e
        } else {
            env_var("GLOBUS_SDK_ENVIRONMENT").unwrap_or_else(|| "production".into())
        };
        let compute = match env_var("GLOBUS_SDK_SERVICE_URL_COMPUTE") {
            Some(url) => url,
            None => match environment.as_str() {
                "local" => "http://localhost:5000".into(),
                "preview" => "https://compute.api.preview.globus.org".into(),
                "sandbox" | "test" | "integration" | "staging" => {
                    format!("https://compute.api.{environment}.globuscs.info")
                }
                _ => "https://compute.api.globus.org".into(),
            },
        };
        let auth = match env_var("GLOBUS_SDK_SERVICE_URL_AUTH") {
            Some(url) => url,
            None => match environment.as_str() {
                "production" => "https://auth.globus.org/".into(),
                "preview" => "https://auth.preview.globus.org/".into(),
                "sandbox" | "test" | "integration" | "staging" => {
                    format!("https://auth.{environment}.globuscs.info/")
                }
                other => {
                    return Err(RegisterError::Setup(format!(
                        "Unrecognized environment \"{other}\" (set GLOBUS_SDK_SERVICE_URL_AUTH)"
                    )));
                }
            },
        };
        Ok(ServiceUrls {
            compute: compute.trim_end_matches('/').to_string(),
            auth: if auth.ends_with('/') {
                auth
            } else {
                format!("{auth}/")
            },
        })
    }
}

/// Client credentials (`GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET`).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

impl ClientCredentials {
    /// Reads both variables from the environment.
    pub fn from_env() -> Result<Self, RegisterError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (
            get("GLOBUS_COMPUTE_CLIENT_ID"),
            get("GLOBUS_COMPUTE_CLIENT_SECRET"),
        ) {
            (Some(client_id), Some(client_secret)) => Ok(ClientCredentials {
                client_id,
                client_secret,
            }),
            _ => Err(RegisterError::Setup(
                "Both GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET must be set to \
                 start an endpoint with a client identity."
                    .into(),
            )),
        }
    }
}

/// What registering needs.
#[derive(Debug, Clone)]
pub struct RegisterInputs<'a> {
    /// `<compute dir>/<name>`; `endpoint.json` is read from and written to it.
    pub endpoint_dir: &'a Path,
    /// The endpoint (directory) name.
    pub name: &'a str,
    /// The loaded `config.yaml`.
    pub config: &'a CoreEndpointConfig,
    /// `--endpoint-uuid`, if given.
    pub endpoint_uuid: Option<&'a str>,
    /// Service addresses.
    pub urls: &'a ServiceUrls,
    /// Client identity.
    pub credentials: &'a ClientCredentials,
    /// `metadata.python_version` (the Python the engines' workers use).
    pub python_version: &'a str,
    /// `start --takeover`: take the endpoint over even if another host holds it.
    pub takeover: bool,
}

/// Environment variable that replaces the reported host name. Test-only: it lets one machine
/// play a second login node (docs/troubleshooting.md).
pub const HOSTNAME_OVERRIDE_ENV: &str = "GCRS_TEST_ENDPOINT_HOSTNAME";

/// This process's start token (`metadata.start_token`): with the host name, it tells the
/// service which process holds the endpoint.
fn start_token() -> &'static str {
    static TOKEN: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().to_string());
    &TOKEN
}

/// The host name reported at registration: [`HOSTNAME_OVERRIDE_ENV`] if set, else the
/// system's.
pub fn reported_hostname() -> String {
    std::env::var(HOSTNAME_OVERRIDE_ENV)
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
}

/// The validated registration response plus the owner's identity set.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// The MEP's id.
    pub endpoint_id: String,
    /// `command_queue_info` (has `connection_url` and `queue`).
    pub command_queue_info: Value,
    /// `heartbeat_queue_info` (has `connection_url`, `queue`, `queue_publish_kwargs`).
    pub heartbeat_queue_info: Value,
    /// `sub`s of the owner's identities (§2.7): start commands must carry one of them.
    pub identity_set: BTreeSet<String>,
}

fn net(e: reqwest::Error) -> RegisterError {
    RegisterError::Network(e.to_string())
}

async fn token(
    http: &reqwest::Client,
    urls: &ServiceUrls,
    creds: &ClientCredentials,
    scope: &str,
    resource_server: &str,
) -> Result<String, RegisterError> {
    let resp = http
        .post(format!("{}v2/oauth2/token", urls.auth))
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .map_err(net)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(net)?;
    if !(200..300).contains(&status) {
        return Err(RegisterError::Auth { status, text });
    }
    let body: Value = serde_json::from_str(&text).map_err(|_| RegisterError::Auth {
        status,
        text: text.clone(),
    })?;
    // The token for the requested resource server: the top-level one or one of other_tokens.
    let candidates = std::iter::once(&body).chain(
        body.get("other_tokens")
            .and_then(Value::as_array)
            .into_iter()
            .flatten(),
    );
    for t in candidates {
        let rs = t.get("resource_server").and_then(Value::as_str);
        if rs.is_none() || rs == Some(resource_server) {
            if let Some(tok) = t.get("access_token").and_then(Value::as_str) {
                return Ok(tok.to_string());
            }
        }
    }
    Err(RegisterError::Auth { status, text })
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
) -> Result<(u16, String), RegisterError> {
    let resp = http
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await
        .map_err(net)?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.map_err(net)?))
}

/// The registration body (§2.4); `multi_user: true` when this process is privileged.
pub fn request_body(inputs: &RegisterInputs<'_>) -> RegisterEndpointRequest {
    let cfg = inputs.config;
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let template_path = cfg.template_path(inputs.endpoint_dir);
    let template = read(&template_path).or_else(|| {
        template_path
            .to_str()
            .and_then(|s| s.strip_suffix(".j2"))
            .and_then(|p| read(Path::new(p)))
    });
    let schema = read(&cfg.schema_path(inputs.endpoint_dir))
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .unwrap_or(Value::Null);
    let local_user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    let hostname = reported_hostname();
    let uuids = |v: &Option<Vec<uuid::Uuid>>| {
        v.as_ref()
            .filter(|v| !v.is_empty())
            .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    RegisterEndpointRequest {
        endpoint_name: inputs.name.to_string(),
        display_name: cfg.base.display_name.clone(),
        multi_user: crate::privilege::is_privileged().then_some(true),
        metadata: Some(json!({
            "endpoint_version": ENDPOINT_VERSION,
            "python_version": inputs.python_version,
            "hostname": hostname,
            "local_user": local_user,
            "endpoint_config": cfg.source_content,
            "user_config_template": template.unwrap_or_default(),
            "user_config_schema": schema,
            "start_token": start_token(),
            "heartbeat_period": cfg.base.heartbeat_period.as_f64(),
            "takeover": inputs.takeover,
        })),
        allowed_functions: uuids(&cfg.base.allowed_functions),
        authentication_policy: cfg.base.authentication_policy.map(|u| u.to_string()),
        subscription_uuid: cfg.base.subscription_id.map(|u| u.to_string()),
        public: Some(cfg.public),
        high_assurance: Some(cfg.base.high_assurance),
        admins: uuids(&cfg.base.admins),
    }
}

/// The id to re-register with: `--endpoint-uuid`, else `endpoint.json`, else none.
fn existing_id(inputs: &RegisterInputs<'_>) -> Option<String> {
    if let Some(id) = inputs.endpoint_uuid {
        return Some(id.to_string());
    }
    let text = std::fs::read_to_string(inputs.endpoint_dir.join("endpoint.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v.get("endpoint_id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `code` of an error body (`{"code": ..., "message": ...}`).
fn error_code(text: &str) -> Option<&'static str> {
    let v: Value = serde_json::from_str(text).ok()?;
    match v.get("code").and_then(Value::as_str)? {
        "ENDPOINT_ALREADY_CONNECTED" => Some("ENDPOINT_ALREADY_CONNECTED"),
        _ => None,
    }
}

/// `message` of an error body.
fn error_message(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    v.get("message").and_then(Value::as_str).map(str::to_string)
}

fn check_queue_info(reg: &Value, key: &str, required: &[&str]) -> Result<Value, RegisterError> {
    let info = reg
        .get(key)
        .filter(|v| v.is_object())
        .ok_or_else(|| RegisterError::Malformed(format!("(KeyError) '{key}'")))?;
    for k in required {
        if info.get(*k).is_none() {
            return Err(RegisterError::Malformed(format!("(KeyError) '{k}'")));
        }
    }
    Ok(info.clone())
}

/// Registers (or re-registers) the endpoint, writes `endpoint.json` and fetches the owner's
/// identity set. Follows the call order of §2.3.
pub async fn register(inputs: &RegisterInputs<'_>) -> Result<Registration, RegisterError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .user_agent(concat!(
            "globus-compute-endpoint-rs/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(net)?;
    let urls = inputs.urls;
    let compute_token = token(
        &http,
        urls,
        inputs.credentials,
        COMPUTE_SCOPE,
        gc_wire::rest::COMPUTE_RESOURCE_SERVER,
    )
    .await?;

    let (status, text) = get_json(
        &http,
        &format!("{}/v2/version?service=all", urls.compute),
        &compute_token,
    )
    .await?;
    if !(200..300).contains(&status) {
        return Err(RegisterError::Api { status, text });
    }

    let body = request_body(inputs);
    let requested = existing_id(inputs);
    let req = match &requested {
        Some(id) => http.put(format!("{}/v3/endpoints/{id}", urls.compute)),
        None => http.post(format!("{}/v3/endpoints", urls.compute)),
    };
    let resp = req
        .bearer_auth(&compute_token)
        .json(&body)
        .send()
        .await
        .map_err(net)?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(net)?;
    match status {
        200..=299 => {}
        409 if error_code(&text) == Some("ENDPOINT_ALREADY_CONNECTED") => {
            return Err(RegisterError::HeldElsewhere {
                message: error_message(&text).unwrap_or(text),
            });
        }
        404 | 409 | 423 => return Err(RegisterError::Blocked { status, text }),
        400 | 422 => return Err(RegisterError::Invalid { status, text }),
        _ => return Err(RegisterError::Api { status, text }),
    }
    let reg: Value = serde_json::from_str(&text)
        .map_err(|e| RegisterError::Malformed(format!("(JSONDecodeError) {e}")))?;
    let endpoint_id = reg
        .get("endpoint_id")
        .and_then(Value::as_str)
        .ok_or_else(|| RegisterError::Malformed("(KeyError) 'endpoint_id'".into()))?
        .to_string();
    uuid::Uuid::parse_str(&endpoint_id)
        .map_err(|e| RegisterError::Malformed(format!("(ValueError) {e}")))?;
    if let Some(expected) = inputs.endpoint_uuid {
        if expected != endpoint_id {
            return Err(RegisterError::MismatchedId {
                expected: expected.to_string(),
                received: endpoint_id,
            });
        }
    }
    let command_queue_info =
        check_queue_info(&reg, "command_queue_info", &["connection_url", "queue"])?;
    let heartbeat_queue_info = check_queue_info(
        &reg,
        "heartbeat_queue_info",
        &["connection_url", "queue", "queue_publish_kwargs"],
    )?;

    let path = inputs.endpoint_dir.join("endpoint.json");
    std::fs::write(&path, json!({ "endpoint_id": endpoint_id }).to_string()).map_err(|source| {
        RegisterError::EndpointJson {
            path: path.display().to_string(),
            source,
        }
    })?;

    let identity_set = identity_set(&http, inputs).await?;
    Ok(Registration {
        endpoint_id,
        command_queue_info,
        heartbeat_queue_info,
        identity_set,
    })
}

/// `GET {auth}/v2/oauth2/userinfo` → the `sub` of every identity (§2.7).
async fn identity_set(
    http: &reqwest::Client,
    inputs: &RegisterInputs<'_>,
) -> Result<BTreeSet<String>, RegisterError> {
    let ident_err = |msg: String| RegisterError::IdentitySet(msg);
    let auth_token = token(
        http,
        inputs.urls,
        inputs.credentials,
        "openid urn:globus:auth:scope:auth.globus.org:manage_projects",
        AUTH_RESOURCE_SERVER,
    )
    .await
    .map_err(|e| ident_err(format!("(GlobusAPIError) {e}")))?;
    let (status, text) = get_json(
        http,
        &format!("{}v2/oauth2/userinfo", inputs.urls.auth),
        &auth_token,
    )
    .await
    .map_err(|e| ident_err(format!("(NetworkError) {e}")))?;
    if !(200..300).contains(&status) {
        return Err(ident_err(format!("(GlobusAPIError) ({status}) {text}")));
    }
    let v: Value =
        serde_json::from_str(&text).map_err(|e| ident_err(format!("(JSONDecodeError) {e}")))?;
    let set: BTreeSet<String> = v
        .get("identity_set")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.get("sub").and_then(Value::as_str).map(str::to_string))
        .collect();
    if set.is_empty() {
        return Err(ident_err("(ValueError) empty identity set".into()));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_protocol_table() {
        let t = |s: u16| RegisterError::Api {
            status: s,
            text: String::new(),
        };
        assert_eq!(
            RegisterError::Blocked {
                status: 423,
                text: "x".into()
            }
            .exit_code(),
            69
        );
        assert_eq!(
            RegisterError::Invalid {
                status: 422,
                text: "x".into()
            }
            .exit_code(),
            65
        );
        assert_eq!(RegisterError::Network("down".into()).exit_code(), 75);
        assert_eq!(
            RegisterError::Auth {
                status: 401,
                text: String::new()
            }
            .exit_code(),
            77
        );
        assert_eq!(RegisterError::Malformed("x".into()).exit_code(), 70);
        assert_eq!(t(500).exit_code(), 1);
        assert_eq!(
            RegisterError::Blocked {
                status: 409,
                text: r#"{"code": "BLOCKED"}"#.into()
            }
            .to_string(),
            r#"Endpoint registration blocked.  [{"code": "BLOCKED"}]"#
        );
    }
}
