//! The few web-service calls CLI commands make (PROTOCOL-ENDPOINT §2.8), authenticated with
//! client credentials (PROTOCOL-SDK §2) against the service chosen as the SDK chooses it
//! (PROTOCOL-SDK §1.1).

use std::time::Duration;

use serde_json::Value;

use crate::click::CliError;
use crate::token_store::{self, StoredToken, TokenStore};

/// The compute scope every compute call needs.
pub const COMPUTE_SCOPE: &str =
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

/// `EX_NOPERM`: Globus Auth refused.
const EX_NOPERM: u8 = 77;

impl ServiceError {
    /// The Auth error block upstream's `handle_auth_errors` prints (stdout and the log).
    pub fn auth_block(status: u16, code: &str, text: &str) -> String {
        format!(
            "\nCompute CLI Error: An Auth API error occurred.\nHTTP status:       {status}\ncode:              {code}\nmessage:           {text}\n"
        )
    }

    /// How a command ends on an error it does not handle itself: Auth errors as upstream's
    /// auth handler (the block on stdout, exit 77), anything else as `Error: <message>`.
    pub fn into_cli(self) -> CliError {
        match self {
            ServiceError::Auth { status, code, text } => {
                let msg = Self::auth_block(status, &code, &text);
                crate::console::warning(&msg);
                println!("{msg}");
                CliError::Exit(EX_NOPERM)
            }
            ServiceError::Api { text } => CliError::Click(text),
            ServiceError::Network(e) => CliError::Click(format!("Network failure: {e}")),
            ServiceError::Setup(msg) => CliError::Click(msg),
        }
    }
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

/// The scopes `whoami` and the auth-policy helpers need on `auth.globus.org`.
pub const AUTH_SCOPES: &str = "openid urn:globus:auth:scope:auth.globus.org:manage_projects";

/// A client identity (`GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET`, else the stored login) and an
/// HTTP client for one environment's Auth service. Tokens are cached in the token store
/// (`storage.db`) under the identity's namespace.
pub struct Session {
    http: reqwest::blocking::Client,
    auth: String,
    environment: String,
    id: String,
    secret: String,
    namespace: String,
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

/// Only `GLOBUS_COMPUTE_CLIENT_SECRET` is set (an error for every command that logs in).
pub fn client_identity_half_set() -> bool {
    matches!(
        client_identity(),
        Err(ServiceError::Setup(ref m)) if m.starts_with("Both ")
    )
}

/// The client identity from the environment, if one is configured.
fn client_identity() -> Result<(String, String), ServiceError> {
    let id = std::env::var("GLOBUS_COMPUTE_CLIENT_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let secret = std::env::var("GLOBUS_COMPUTE_CLIENT_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(i), Some(s)) => Ok((i, s)),
        (None, Some(_)) => Err(ServiceError::Setup(
            "Both GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET must be set to use a client identity. Either set both environment variables, or unset them to use a normal login.".into(),
        )),
        _ => Err(ServiceError::Setup(NOT_LOGGED_IN.into())),
    }
}

/// Neither a client identity in the environment nor a stored login.
pub const NOT_LOGGED_IN: &str = "Not logged in: run `globus-compute-endpoint login`, or set GLOBUS_COMPUTE_CLIENT_ID and GLOBUS_COMPUTE_CLIENT_SECRET to use a client identity.";

/// The client identity from the environment, else the one a `login` stored in the token
/// store (namespace `user/<environment>`), with the namespace its tokens are kept under.
pub fn resolve_identity(environment: &str) -> Result<(String, String, String), ServiceError> {
    match client_identity() {
        Ok((id, secret)) => {
            let ns = token_store::namespace(environment, Some(&id));
            Ok((id, secret, ns))
        }
        Err(e) if client_identity_half_set() => Err(e),
        Err(e) => {
            let ns = token_store::namespace(environment, None);
            let stored = TokenStore::open_existing(&crate::compute_dir::compute_dir())
                .map_err(|e| ServiceError::Setup(e.to_string()))?
                .map(|store| store.identity(&ns))
                .transpose()
                .map_err(|e| ServiceError::Setup(e.to_string()))?
                .flatten();
            match stored {
                Some((id, secret)) => Ok((id, secret, ns)),
                None => Err(e),
            }
        }
    }
}

/// The identity a core endpoint registers with when `GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET`
/// are unset: the one `login` stored for the configuration's environment.
pub fn stored_mep_credentials(
    config: &gc_config::CoreEndpointConfig,
) -> Option<gc_mep::ClientCredentials> {
    let env = environment_name(
        config.base.local_compute_services,
        config.base.environment.as_deref(),
    );
    let store = TokenStore::open_existing(&crate::compute_dir::compute_dir()).ok()??;
    let (client_id, client_secret) = store.identity(&token_store::namespace(&env, None)).ok()??;
    Some(gc_mep::ClientCredentials {
        client_id,
        client_secret,
    })
}

impl Session {
    /// The client identity from the environment, else the stored login, for `environment`'s
    /// Auth service.
    pub fn from_env(environment: &str) -> Result<Self, ServiceError> {
        let (id, secret, namespace) = resolve_identity(environment)?;
        Self::with_identity(environment, id, secret, namespace)
    }

    /// A session for the given identity, its tokens cached under `namespace`.
    pub fn with_identity(
        environment: &str,
        id: String,
        secret: String,
        namespace: String,
    ) -> Result<Self, ServiceError> {
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
        Ok(Self {
            http,
            auth,
            environment: environment.to_string(),
            id,
            secret,
            namespace,
        })
    }

    /// The client id of this identity.
    pub fn client_id(&self) -> &str {
        &self.id
    }

    /// A usable cached token for `scope`, if the store has one.
    fn cached_token(&self, scope: &str) -> Option<String> {
        let store = TokenStore::open_existing(&crate::compute_dir::compute_dir()).ok()??;
        let now = token_store::now();
        store
            .tokens(&self.namespace)
            .ok()?
            .into_iter()
            .find(|t| t.usable_for(scope, now))
            .map(|t| t.access_token)
    }

    /// Whether the store lacks a token for any of `scopes` (expired ones count as present
    /// when the identity is stored: they are renewed on use, as refresh tokens are upstream).
    pub fn login_required(&self, scopes: &[&str]) -> bool {
        let Ok(Some(store)) = TokenStore::open_existing(&crate::compute_dir::compute_dir()) else {
            return true;
        };
        let Ok(tokens) = store.tokens(&self.namespace) else {
            return true;
        };
        let renewable = matches!(store.identity(&self.namespace), Ok(Some(_)));
        let now = token_store::now();
        !scopes.iter().all(|scope| {
            tokens.iter().any(|t| {
                if renewable {
                    t.covers(scope)
                } else {
                    t.usable_for(scope, now)
                }
            })
        })
    }

    /// Obtain tokens for the compute and Auth scopes and store them; with `keep_identity`
    /// also store the identity itself (a login without the environment variables).
    pub fn login(&self, keep_identity: bool) -> Result<Vec<StoredToken>, ServiceError> {
        let mut all = Vec::new();
        for scope in [COMPUTE_SCOPE, AUTH_SCOPES] {
            let v = self.token_response(scope)?;
            all.extend(token_store::tokens_of_response(&v, token_store::now()));
        }
        let store = TokenStore::open(&crate::compute_dir::compute_dir())
            .map_err(|e| ServiceError::Setup(e.to_string()))?;
        store
            .store_tokens(&self.namespace, &all)
            .map_err(|e| ServiceError::Setup(e.to_string()))?;
        if keep_identity {
            store
                .set_identity(&self.namespace, &self.id, &self.secret)
                .map_err(|e| ServiceError::Setup(e.to_string()))?;
        }
        Ok(all)
    }

    /// Revoke every token stored for this identity at the Auth service and remove them (and
    /// a stored identity) from the store. Returns how many tokens were removed.
    pub fn logout(&self) -> Result<usize, ServiceError> {
        let Some(store) = TokenStore::open_existing(&crate::compute_dir::compute_dir())
            .map_err(|e| ServiceError::Setup(e.to_string()))?
        else {
            return Ok(0);
        };
        let tokens = store
            .remove_namespace(&self.namespace)
            .map_err(|e| ServiceError::Setup(e.to_string()))?;
        for t in &tokens {
            // A token the service no longer knows is as good as revoked.
            let resp = self
                .http
                .post(format!("{}v2/oauth2/token/revoke", self.auth))
                .basic_auth(&self.id, Some(&self.secret))
                .form(&[("token", t.access_token.as_str())])
                .send()
                .map_err(http_error)?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let text = resp.text().map_err(http_error)?;
                return Err(ServiceError::Auth {
                    status,
                    code: auth_code(&text),
                    text,
                });
            }
        }
        Ok(tokens.len())
    }

    /// An access token for `scope`: a usable stored one, else a new client-credentials
    /// token (stored for the next command; a store that cannot be written is not an error).
    pub fn token(&self, scope: &str) -> Result<String, ServiceError> {
        if let Some(t) = self.cached_token(scope) {
            return Ok(t);
        }
        let v = self.token_response(scope)?;
        if let Ok(store) = TokenStore::open(&crate::compute_dir::compute_dir()) {
            let _ = store.store_tokens(
                &self.namespace,
                &token_store::tokens_of_response(&v, token_store::now()),
            );
        }
        v.get("access_token")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| ServiceError::Auth {
                status: 200,
                code: "Error".into(),
                text: v.to_string(),
            })
    }

    /// The token endpoint's answer to a client-credentials grant for `scope`.
    fn token_response(&self, scope: &str) -> Result<Value, ServiceError> {
        let resp = self
            .http
            .post(format!("{}v2/oauth2/token", self.auth))
            .basic_auth(&self.id, Some(&self.secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
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
        serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v.get("access_token").is_some_and(Value::is_string))
            .ok_or_else(|| ServiceError::Auth {
                status,
                code: "Error".into(),
                text: text.clone(),
            })
    }

    /// A compute client (token for the compute scope).
    pub fn compute(&self) -> Result<ComputeClient, ServiceError> {
        Ok(ComputeClient {
            http: self.http.clone(),
            base: compute_base_url(&self.environment),
            token: self.token(COMPUTE_SCOPE)?,
        })
    }

    /// An Auth API client (token for `openid` and `manage_projects`).
    pub fn auth(&self) -> Result<AuthClient, ServiceError> {
        Ok(AuthClient {
            http: self.http.clone(),
            base: self.auth.clone(),
            token: self.token(AUTH_SCOPES)?,
        })
    }
}

/// One authenticated JSON call.
fn call_json(
    http: &reqwest::blocking::Client,
    token: &str,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, ServiceError> {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().map_err(http_error)?;
    let status = resp.status().as_u16();
    let text = resp.text().map_err(http_error)?;
    if !(200..300).contains(&status) {
        return Err(ServiceError::Api { text });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A compute API client holding a client-credentials access token.
pub struct ComputeClient {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl ComputeClient {
    /// Log in with `GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET` for the given environment.
    pub fn login(environment: &str) -> Result<Self, ServiceError> {
        Session::from_env(environment)?.compute()
    }

    fn call(&self, method: reqwest::Method, path: &str) -> Result<Value, ServiceError> {
        call_json(
            &self.http,
            &self.token,
            method,
            &format!("{}{path}", self.base),
            None,
        )
    }

    /// `GET /v2/endpoints/{id}/status`
    pub fn endpoint_status(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::GET, &format!("/v2/endpoints/{id}/status"))
    }

    /// `POST /v3/endpoints/{id}/lock` (`stop --remote`).
    pub fn lock_endpoint(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::POST, &format!("/v3/endpoints/{id}/lock"))
    }

    /// `GET /v2/tasks/{id}`
    pub fn task(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::GET, &format!("/v2/tasks/{id}"))
    }

    /// `DELETE /v2/endpoints/{id}`
    pub fn delete_endpoint(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::DELETE, &format!("/v2/endpoints/{id}"))
    }
}

/// An Auth API client (`{auth}/v2/...`).
pub struct AuthClient {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
}

impl AuthClient {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ServiceError> {
        call_json(
            &self.http,
            &self.token,
            method,
            &format!("{}{path}", self.base),
            body,
        )
    }

    /// `GET {auth}/v2/oauth2/userinfo`
    pub fn userinfo(&self) -> Result<Value, ServiceError> {
        self.call(reqwest::Method::GET, "v2/oauth2/userinfo", None)
    }

    /// `GET {auth}/v2/api/identities?ids=<id>`
    pub fn identity(&self, id: &str) -> Result<Value, ServiceError> {
        self.call(
            reqwest::Method::GET,
            &format!("v2/api/identities?ids={id}"),
            None,
        )
    }

    /// `POST {auth}/v2/api/policies` with `{"policy": {...}}`; returns the response.
    pub fn create_policy(&self, policy: &Value) -> Result<Value, ServiceError> {
        let body = serde_json::json!({ "policy": policy });
        self.call(reqwest::Method::POST, "v2/api/policies", Some(&body))
    }
}
