//! Globus Auth emulation (PROTOCOL-SDK §2.9 with the recommended extras, PROTOCOL-ENDPOINT §2.2
//! and §2.7) and caller identification for the compute routes.
//!
//! Bearer tokens and client secrets are random 256-bit values. Tokens are stored as their
//! SHA-256 (a token is high-entropy, so a fast hash suffices and lookups stay cheap); client
//! secrets are stored as Argon2id password hashes.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::store::{IdentityRow, TokenRow, now_i64};
use gc_wire::rest::{
    AUTH_RESOURCE_SERVER, COMPUTE_RESOURCE_SERVER, COMPUTE_SCOPE, IdentitiesResponse, Identity,
    IntrospectResponse, OAuthErrorBody, TokenData, TokenResponse, UserInfo,
};

/// A random URL-safe secret of 256 bits.
pub fn random_secret() -> String {
    let mut buf = [0u8; 32];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Argon2id hash of a client secret (PHC string).
pub fn hash_secret(secret: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    use argon2::password_hash::rand_core::OsRng;
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)?
        .to_string())
}

fn verify_secret(secret: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    match argon2::password_hash::PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// An OAuth-style error response of the Auth routes.
pub struct OAuthError(StatusCode, &'static str, String);

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(OAuthErrorBody {
                error: self.1.to_string(),
                error_description: self.2,
            }),
        )
            .into_response()
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        OAuthError(e.status, "server_error", e.message)
    }
}

impl From<crate::error::StoreError> for OAuthError {
    fn from(e: crate::error::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get("authorization")?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Check client credentials; returns the client id. Constant work whether or not the client
/// exists is not attempted: client ids are not secret.
async fn authenticate_client(
    state: &AppState,
    id: &str,
    secret: &str,
) -> Result<String, OAuthError> {
    let invalid = || {
        OAuthError(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client credentials".into(),
        )
    };
    let Ok(uuid) = uuid::Uuid::parse_str(id) else {
        return Err(invalid());
    };
    let id = uuid.to_string();
    let Some(phc) = state.store.client_secret_hash(&id).await? else {
        return Err(invalid());
    };
    let secret = secret.to_string();
    let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &phc))
        .await
        .unwrap_or(false);
    if ok { Ok(id) } else { Err(invalid()) }
}

fn client_from_request(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    basic_credentials(headers).or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    })
}

fn is_auth_scope(s: &str) -> bool {
    matches!(s, "openid" | "email" | "profile")
        || s.starts_with("urn:globus:auth:scope:auth.globus.org:")
}

async fn issue(
    state: &AppState,
    client_id: &str,
    rs: &str,
    scope: String,
) -> Result<TokenData, OAuthError> {
    let token = random_secret();
    let lifetime = state.cfg.token_lifetime_s;
    state
        .store
        .insert_token(
            &token_hash(&token),
            client_id,
            rs,
            &scope,
            now_i64() + lifetime,
        )
        .await?;
    Ok(TokenData {
        access_token: token,
        scope,
        resource_server: rs.to_string(),
        expires_in: lifetime,
        token_type: "Bearer".into(),
        refresh_token: None,
    })
}

/// `POST /auth/v2/oauth2/token` (client-credentials grant).
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<Json<TokenResponse>, OAuthError> {
    let Form(form) =
        form.map_err(|e| OAuthError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    if grant != "client_credentials" {
        return Err(OAuthError(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("grant_type {grant:?} is not supported; use client_credentials"),
        ));
    }
    let Some((id, secret)) = client_from_request(&headers, &form) else {
        return Err(OAuthError(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication required".into(),
        ));
    };
    let client_id = authenticate_client(&state, &id, &secret).await?;

    let mut compute = Vec::new();
    let mut auth = Vec::new();
    for s in form
        .get("scope")
        .map(String::as_str)
        .unwrap_or("")
        .split_whitespace()
    {
        if s == COMPUTE_SCOPE {
            if !compute.contains(&s) {
                compute.push(s);
            }
        } else if is_auth_scope(s) {
            if !auth.contains(&s) {
                auth.push(s);
            }
        } else {
            return Err(OAuthError(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!("Unknown scope {s:?}"),
            ));
        }
    }
    let mut tokens = Vec::new();
    if !compute.is_empty() {
        tokens.push(
            issue(
                &state,
                &client_id,
                COMPUTE_RESOURCE_SERVER,
                compute.join(" "),
            )
            .await?,
        );
    }
    if !auth.is_empty() {
        tokens.push(issue(&state, &client_id, AUTH_RESOURCE_SERVER, auth.join(" ")).await?);
    }
    if tokens.is_empty() {
        return Err(OAuthError(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "No scope requested".into(),
        ));
    }
    let first = tokens.remove(0);
    Ok(Json(TokenResponse {
        token: first,
        other_tokens: tokens,
    }))
}

/// `POST /auth/v2/oauth2/token/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<Json<serde_json::Value>, OAuthError> {
    let Form(form) =
        form.map_err(|e| OAuthError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let Some((id, secret)) = client_from_request(&headers, &form) else {
        return Err(OAuthError(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication required".into(),
        ));
    };
    let client_id = authenticate_client(&state, &id, &secret).await?;
    if let Some(tok) = form.get("token") {
        let hash = token_hash(tok);
        if let Some(row) = state.store.valid_token(&hash).await? {
            if row.client_id == client_id {
                state.store.revoke_token(&hash).await?;
            }
        }
    }
    Ok(Json(serde_json::json!({"active": false})))
}

fn to_identity(r: &IdentityRow) -> Identity {
    Identity {
        sub: r.id.clone(),
        id: r.id.clone(),
        username: r.username.clone(),
        name: r.name.clone(),
        email: r.email.clone(),
        identity_provider: r.identity_provider.clone(),
        identity_provider_display_name: r.identity_provider_display_name.clone(),
        organization: r.organization.clone(),
        status: "used".into(),
        identity_type: "login".into(),
        last_authentication: Some(r.created_at),
    }
}

/// The identity set of a client, primary first.
pub async fn identity_set(state: &AppState, client_id: &str) -> Result<Vec<Identity>, ApiError> {
    Ok(state
        .store
        .identities_of(client_id)
        .await?
        .iter()
        .map(to_identity)
        .collect())
}

/// `POST /auth/v2/oauth2/token/introspect`.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Result<Json<IntrospectResponse>, OAuthError> {
    let Form(form) =
        form.map_err(|e| OAuthError(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    let Some((id, secret)) = client_from_request(&headers, &form) else {
        return Err(OAuthError(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication required".into(),
        ));
    };
    authenticate_client(&state, &id, &secret).await?;
    let inactive = IntrospectResponse {
        active: false,
        scope: None,
        client_id: None,
        sub: None,
        username: None,
        name: None,
        email: None,
        exp: None,
        token_type: None,
        identity_set: None,
    };
    let Some(tok) = form.get("token") else {
        return Ok(Json(inactive));
    };
    let Some(row) = state.store.valid_token(&token_hash(tok)).await? else {
        return Ok(Json(inactive));
    };
    let idents = identity_set(&state, &row.client_id).await?;
    let primary = idents.first();
    Ok(Json(IntrospectResponse {
        active: true,
        scope: Some(row.scope),
        client_id: Some(row.client_id.clone()),
        sub: primary.map(|i| i.sub.clone()),
        username: primary.map(|i| i.username.clone()),
        name: primary.and_then(|i| i.name.clone()),
        email: primary.and_then(|i| i.email.clone()),
        exp: Some(row.expires_at),
        token_type: Some("Bearer".into()),
        identity_set: Some(idents.iter().map(|i| i.sub.clone()).collect()),
    }))
}

/// `GET /auth/v2/oauth2/userinfo`.
pub async fn userinfo(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<UserInfo>, ApiError> {
    let idents = identity_set(&state, &caller.client_id).await?;
    let Some(primary) = idents.first().cloned() else {
        return Err(ApiError::internal(&format!(
            "client {} has no identity",
            caller.client_id
        )));
    };
    Ok(Json(UserInfo {
        sub: primary.sub,
        preferred_username: primary.username,
        name: primary.name,
        email: primary.email,
        identity_provider: primary.identity_provider,
        identity_provider_display_name: primary.identity_provider_display_name,
        organization: primary.organization,
        last_authentication: primary.last_authentication,
        identity_set: idents,
    }))
}

/// `GET /auth/v2/api/identities?ids=...&usernames=...`.
pub async fn identities(
    _caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<IdentitiesResponse>, ApiError> {
    let mut out = Vec::new();
    for id in q
        .get("ids")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        if let Some(r) = state.store.identity(id.trim()).await? {
            out.push(to_identity(&r));
        }
    }
    for u in q
        .get("usernames")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        if let Some(r) = state.store.identity_by_username(u.trim()).await? {
            out.push(to_identity(&r));
        }
    }
    Ok(Json(IdentitiesResponse { identities: out }))
}

/// The authenticated caller of a route: a client holding a valid bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    pub token: TokenRow,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(&parts.headers) else {
            return Err(ApiError::unauthorized("Missing bearer token"));
        };
        match state.store.valid_token(&token_hash(token)).await? {
            Some(row) => Ok(Caller {
                client_id: row.client_id.clone(),
                token: row,
            }),
            None => Err(ApiError::unauthorized("Invalid or expired bearer token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hash_and_verify() {
        let s = random_secret();
        assert_eq!(s.len(), 43);
        let phc = hash_secret(&s).unwrap();
        assert!(verify_secret(&s, &phc));
        assert!(!verify_secret("wrong", &phc));
        assert!(!verify_secret(&s, "not a phc string"));
    }

    #[test]
    fn basic_header_parses() {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode("id:sec:ret");
        h.insert("authorization", format!("Basic {v}").parse().unwrap());
        assert_eq!(basic_credentials(&h), Some(("id".into(), "sec:ret".into())));
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert_eq!(basic_credentials(&h), None);
    }
}
