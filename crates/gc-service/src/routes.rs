//! Compute routes of PROTOCOL-SDK §3.2 and PROTOCOL-ENDPOINT §2 / §2.8.
//!
//! Ownership rules: tasks, task groups and private functions are visible to their owner only
//! (others get 404, or 403 for a task group id another client already uses); endpoints accept
//! submissions from their owner, from anybody when public, and from any authenticated user
//! when multi-user (the endpoint's identity mapping decides who runs what).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::{Caller, identity_set};
use crate::broker::{self, Pending, task_headers};
use crate::error::ApiError;
use crate::messages::pack_task;
use crate::store::{EndpointHolder, EndpointRow, FunctionRow, NewTask, TaskRow, now_f64, now_i64};
use gc_wire::rest::*;

/// Largest accepted task payload (one entry of a submit's `tasks` lists), in bytes.
pub const MAX_TASK_PAYLOAD: usize = 10 * 1024 * 1024;

/// A JSON request body: 400 for malformed JSON, 422 for JSON of the wrong shape, 413 for a body
/// above the configured limit. Every rejection has a JSON body saying what is wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), state.cfg.max_request_bytes)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!(
                        "Request body could not be read or exceeds {} bytes: {e}",
                        state.cfg.max_request_bytes
                    ),
                )
            })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match T::deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) if e.is_syntax() || e.is_eof() => {
                Err(ApiError::bad_request(format!("Malformed JSON body: {e}")))
            }
            Err(e) => Err(ApiError::invalid(e.to_string())),
        }
    }
}

fn path_uuid(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::bad_request(format!("Invalid {what} id {s:?}: not a UUID")))
}

fn body_uuid(s: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::invalid(format!("invalid {what} id {s:?}: not a UUID")))
}

// ----- version -----

pub async fn version(Query(q): Query<BTreeMap<String, String>>) -> Json<Value> {
    if q.get("service").map(String::as_str) == Some("all") {
        Json(json!(VersionResponse {
            api: "1.0.0".into(),
            min_sdk_version: "2.0.0".into(),
            min_ep_version: "2.0.0".into(),
        }))
    } else {
        Json(json!("1.0.0"))
    }
}

// ----- functions -----

/// Pack one buffer the way the SDK does: `<len in code points>\n<buffer>`.
fn pack_buffer(buf: &str) -> String {
    format!("{}\n{}", buf.chars().count(), buf)
}

pub async fn register_function(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RegisterFunctionRequest>,
) -> Result<Json<RegisterFunctionResponse>, ApiError> {
    if req.function_name.is_empty() {
        return Err(ApiError::invalid("function_name must not be empty"));
    }
    if req.function_code.is_empty() {
        return Err(ApiError::invalid("function_code must not be empty"));
    }
    if req.function_code.len() > MAX_TASK_PAYLOAD {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("function_code exceeds {MAX_TASK_PAYLOAD} bytes"),
        ));
    }
    if req.public == Some(true) && req.ha_endpoint_id.is_some() {
        return Err(ApiError::invalid(
            "public and ha_endpoint_id are mutually exclusive",
        ));
    }
    let ha_endpoint_id = match &req.ha_endpoint_id {
        Some(e) => {
            let eid = body_uuid(e, "ha_endpoint")?.to_string();
            match state.store.endpoint(&eid).await? {
                Some(ep) if ep.high_assurance => {
                    if let Some(pid) = &ep.authentication_policy {
                        crate::policy::require(&state, &caller, pid, &eid).await?;
                    }
                }
                Some(_) => {
                    return Err(ApiError::invalid(format!(
                        "ha_endpoint_id {eid} is not a high-assurance endpoint"
                    )));
                }
                None => {
                    return Err(ApiError::invalid(format!(
                        "ha_endpoint_id {eid} is not a registered endpoint"
                    )));
                }
            }
            Some(eid)
        }
        None => None,
    };
    // Raw source (SDK 4.19 `register_source_code`) becomes the "st" (PureSourceTextInspect)
    // form an endpoint can execute.
    let code = if req.serialized == Some(false) {
        pack_buffer(&format!("st\n{}:{}", req.function_name, req.function_code))
    } else {
        req.function_code
    };
    let meta = req.meta.unwrap_or(Value::Null);
    let id = Uuid::new_v4().to_string();
    state
        .store
        .insert_function(&FunctionRow {
            id: id.clone(),
            owner_id: caller.client_id,
            name: req.function_name,
            code,
            description: req.description,
            python_version: meta
                .get("python_version")
                .and_then(Value::as_str)
                .map(str::to_string),
            sdk_version: meta
                .get("sdk_version")
                .and_then(Value::as_str)
                .map(str::to_string),
            public: req.public == Some(true),
            ha_endpoint_id,
        })
        .await?;
    Ok(Json(RegisterFunctionResponse { function_uuid: id }))
}

async fn visible_function(
    state: &AppState,
    caller: &Caller,
    id: &Uuid,
) -> Result<FunctionRow, ApiError> {
    match state.store.function(&id.to_string()).await? {
        Some(f) if f.owner_id == caller.client_id || f.public => Ok(f),
        _ => Err(ApiError::not_found(
            "FUNCTION_NOT_FOUND",
            format!("Function {id} not found"),
        )),
    }
}

pub async fn get_function(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FunctionResponse>, ApiError> {
    let fid = path_uuid(&id, "function")?;
    let f = visible_function(&state, &caller, &fid).await?;
    if let Some(eid) = &f.ha_endpoint_id {
        require_ha_policies(&state, &caller, vec![eid.clone()]).await?;
    }
    Ok(Json(FunctionResponse {
        function_uuid: id,
        function_name: f.name,
        function_code: f.code,
        description: f.description,
        metadata: FunctionMetadata {
            python_version: f.python_version,
            sdk_version: f.sdk_version,
        },
    }))
}

pub async fn delete_function(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let fid = path_uuid(&id, "function")?;
    let f = visible_function(&state, &caller, &fid).await?;
    if f.owner_id != caller.client_id {
        return Err(ApiError::forbidden(
            "FUNCTION_ACCESS_FORBIDDEN",
            format!("Function {fid} is not yours to delete"),
        ));
    }
    state.store.delete_function(&f.id).await?;
    Ok(Json(DeleteResponse { result: 302 }))
}

// ----- endpoints -----

fn metadata_str(meta: &Value, key: &str) -> Value {
    meta.get(key).cloned().unwrap_or(Value::Null)
}

fn restricted_functions(e: &EndpointRow) -> Option<Vec<String>> {
    e.allowed_functions
        .as_deref()
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .filter(|v| !v.is_empty())
}

pub async fn register_endpoint_new(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<RegisterEndpointRequest>,
) -> Result<Json<RegisterEndpointResponse>, ApiError> {
    register_endpoint(caller, state, Uuid::new_v4(), req).await
}

pub async fn register_endpoint_put(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<RegisterEndpointRequest>,
) -> Result<Json<RegisterEndpointResponse>, ApiError> {
    let eid = path_uuid(&id, "endpoint")?;
    register_endpoint(caller, state, eid, req).await
}

async fn register_endpoint(
    caller: Caller,
    state: AppState,
    eid: Uuid,
    req: RegisterEndpointRequest,
) -> Result<Json<RegisterEndpointResponse>, ApiError> {
    let name = req.endpoint_name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::invalid(
            "endpoint_name must be 1 to 128 characters",
        ));
    }
    let allowed = match &req.allowed_functions {
        Some(list) => {
            let mut ids = Vec::with_capacity(list.len());
            for f in list {
                ids.push(body_uuid(f, "function")?.to_string());
            }
            if ids.is_empty() {
                None
            } else {
                Some(json!(ids).to_string())
            }
        }
        None => None,
    };
    let mut canonical = [None, None];
    for (slot, (what, v)) in canonical.iter_mut().zip([
        ("authentication_policy", &req.authentication_policy),
        ("subscription_uuid", &req.subscription_uuid),
    ]) {
        if let Some(v) = v {
            *slot = Some(body_uuid(v, what)?.to_string());
        }
    }
    let [policy_id, subscription_id] = canonical;
    let high_assurance = req.high_assurance == Some(true);
    if let Some(pid) = &policy_id {
        match state.store.policy(pid).await? {
            None => {
                return Err(ApiError::invalid(format!(
                    "authentication_policy {pid} does not exist"
                )));
            }
            Some(p) if high_assurance && !p.high_assurance => {
                return Err(ApiError::invalid(format!(
                    "high-assurance endpoints need a high-assurance authentication policy; {pid} is not one"
                )));
            }
            Some(_) => {}
        }
    }
    if high_assurance && (policy_id.is_none() || subscription_id.is_none()) {
        return Err(ApiError::invalid(
            "high-assurance endpoints require both an authentication_policy and a subscription_uuid",
        ));
    }
    if let Some(admins) = &req.admins {
        for a in admins {
            body_uuid(a, "admin identity")?;
        }
    }
    let eid_s = eid.to_string();
    let holder = requested_holder(req.metadata.as_ref());
    let existing = state.store.endpoint(&eid_s).await?;
    if let Some(existing) = &existing {
        if existing.owner_id != caller.client_id {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ENDPOINT_ALREADY_REGISTERED",
                format!("Endpoint {eid} is registered to another user"),
            ));
        }
        if existing.high_assurance != high_assurance {
            return Err(ApiError::invalid(format!(
                "the high_assurance setting of endpoint {eid} cannot be changed after its first registration"
            )));
        }
        if existing.locked_until.is_some_and(|t| t > now_i64()) {
            return Err(ApiError::new(
                StatusCode::LOCKED,
                "ENDPOINT_LOCKED",
                format!("Endpoint {eid} is locked; try again later"),
            ));
        }
    }
    if existing.is_some() {
        claim_holder(
            &state,
            &eid_s,
            name,
            &holder,
            takeover_requested(req.metadata.as_ref()),
        )
        .await?;
    }
    // Create the queues before the reply that names them.
    let ch = state.broker.channel().await?;
    state.broker.declare_command_queue(&ch, &eid_s).await?;
    let _ = ch.close(200, "done".into()).await;

    let display = req
        .display_name
        .clone()
        .filter(|d| !d.is_empty() && d != "None")
        .unwrap_or_else(|| name.to_string());
    state
        .store
        .upsert_endpoint(&EndpointRow {
            id: eid_s.clone(),
            owner_id: caller.client_id.clone(),
            name: name.to_string(),
            display_name: display,
            multi_user: req.multi_user == Some(true),
            public: req.public == Some(true),
            high_assurance,
            metadata: req.metadata.clone().unwrap_or(json!({})).to_string(),
            allowed_functions: allowed,
            locked_until: None,
            last_heartbeat: None,
            heartbeat_period: None,
            authentication_policy: policy_id,
            subscription_id,
        })
        .await?;
    if existing.is_none() {
        // A new endpoint: nobody can hold it yet (a racing first registration of the same id
        // is another client's, refused above, or this client's own twice: the last one wins).
        let previous = state.store.endpoint_holder(&eid_s).await?;
        state
            .store
            .claim_endpoint_holder(&eid_s, previous.map(|p| p.since), &holder)
            .await?;
    }
    let url = state.creds.endpoint_url(&eid_s).await?;
    Ok(Json(RegisterEndpointResponse {
        endpoint_id: eid_s.clone(),
        command_queue_info: broker::command_queue_info(url.clone(), &eid_s),
        heartbeat_queue_info: broker::heartbeat_queue_info(url.clone(), &eid_s),
        result_queue_info: Some(broker::result_queue_info(url, &eid_s)),
    }))
}

/// Heartbeat period assumed for a holder that has not sent one since it registered, when its
/// registration did not say (`metadata.heartbeat_period`); upstream's default.
const DEFAULT_HEARTBEAT_PERIOD: f64 = 30.0;

/// The holder a registration asks to become: `metadata.hostname` and `metadata.start_token`
/// (our endpoint sends a fresh token per process; upstream's sends none).
fn requested_holder(meta: Option<&Value>) -> EndpointHolder {
    let text = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    EndpointHolder {
        host: text("hostname"),
        token: text("start_token"),
        since: now_f64(),
    }
}

/// `metadata.takeover: true` (`start --takeover`).
fn takeover_requested(meta: Option<&Value>) -> bool {
    meta.and_then(|m| m.get("takeover"))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Whether the recorded holder still counts as connected: its heartbeats since it registered
/// say it is online, or it registered less than two heartbeat periods (plus slack) ago and
/// has not heartbeated yet. A final heartbeat (`heartbeat_period: 0`) releases it at once.
pub fn holder_alive(
    holder: &EndpointHolder,
    last_heartbeat: Option<f64>,
    heartbeat_period: Option<f64>,
    registered_period: Option<f64>,
    now: f64,
) -> bool {
    match last_heartbeat {
        Some(last) if last >= holder.since => is_online(Some(last), heartbeat_period, now),
        _ => is_online(
            Some(holder.since),
            Some(registered_period.unwrap_or(DEFAULT_HEARTBEAT_PERIOD)),
            now,
        ),
    }
}

/// Records `holder` as the process holding endpoint `eid`, unless another host holds it and
/// is alive (409 naming that host) — or `takeover` is set. Registrations from the holder's
/// own host pass: there the endpoint's PID file already keeps a second instance out.
async fn claim_holder(
    state: &AppState,
    eid: &str,
    name: &str,
    holder: &EndpointHolder,
    takeover: bool,
) -> Result<(), ApiError> {
    for _ in 0..3 {
        let Some(e) = state.store.endpoint(eid).await? else {
            return Ok(());
        };
        let current = state.store.endpoint_holder(eid).await?;
        if let Some(cur) = &current {
            let meta: Value = serde_json::from_str(&e.metadata).unwrap_or(json!({}));
            let registered_period = meta.get("heartbeat_period").and_then(Value::as_f64);
            let now = now_f64();
            if cur.host != holder.host
                && holder_alive(
                    cur,
                    e.last_heartbeat,
                    e.heartbeat_period,
                    registered_period,
                    now,
                )
            {
                if !takeover {
                    return Err(held_elsewhere(eid, name, cur, e.last_heartbeat, now));
                }
                tracing::warn!(
                    endpoint_id = %eid,
                    from_host = %cur.host,
                    to_host = %holder.host,
                    "endpoint taken over by another host"
                );
            }
        }
        if state
            .store
            .claim_endpoint_holder(eid, current.map(|c| c.since), holder)
            .await?
        {
            return Ok(());
        }
        // Another registration changed the holder between our read and write: decide again.
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "ENDPOINT_REGISTRATION_RACE",
        format!("Endpoint {eid} is being registered concurrently; try again"),
    ))
}

fn held_elsewhere(
    eid: &str,
    name: &str,
    holder: &EndpointHolder,
    last_heartbeat: Option<f64>,
    now: f64,
) -> ApiError {
    let since = chrono::DateTime::from_timestamp(holder.since as i64, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let heard = match last_heartbeat {
        Some(h) if h >= holder.since => format!("last heartbeat {:.0} s ago", (now - h).max(0.0)),
        _ => "no heartbeat yet".to_string(),
    };
    ApiError::new(
        StatusCode::CONFLICT,
        "ENDPOINT_ALREADY_CONNECTED",
        format!(
            "Endpoint {eid} is already running on host {host} (registered {since}, {heard}). \
             Stop it there, or from any host with `globus-compute-endpoint stop --remote {name}`; \
             to replace it from this host anyway, start with --takeover.",
            host = holder.host,
        ),
    )
}

async fn owned_endpoint(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<EndpointRow, ApiError> {
    let eid = path_uuid(id, "endpoint")?;
    match state.store.endpoint(&eid.to_string()).await? {
        Some(e) if e.owner_id == caller.client_id => Ok(e),
        Some(_) => Err(ApiError::forbidden(
            "ENDPOINT_ACCESS_FORBIDDEN",
            format!("Endpoint {eid} is not yours"),
        )),
        None => Err(ApiError::not_found(
            "ENDPOINT_NOT_FOUND",
            format!("Endpoint {eid} not found"),
        )),
    }
}

async fn readable_endpoint(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<EndpointRow, ApiError> {
    let eid = path_uuid(id, "endpoint")?;
    match state.store.endpoint(&eid.to_string()).await? {
        Some(e) if e.owner_id == caller.client_id || e.public || e.multi_user => Ok(e),
        _ => Err(ApiError::not_found(
            "ENDPOINT_NOT_FOUND",
            format!("Endpoint {eid} not found"),
        )),
    }
}

pub async fn list_endpoints(
    caller: Caller,
    State(state): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Vec<EndpointListEntry>>, ApiError> {
    let any = q.get("role").map(String::as_str) == Some("any");
    let rows = state
        .store
        .endpoints_visible_to(&caller.client_id, any)
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| EndpointListEntry {
                uuid: e.id,
                name: e.name,
                display_name: e.display_name,
                owner: e.owner_id,
            })
            .collect(),
    ))
}

pub async fn get_endpoint(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = readable_endpoint(&state, &caller, &id).await?;
    let meta: Value = serde_json::from_str(&e.metadata).unwrap_or(json!({}));
    Ok(Json(json!({
        "uuid": e.id,
        "name": e.name,
        "display_name": e.display_name,
        "owner": e.owner_id,
        "multi_user": e.multi_user,
        "public": e.public,
        "high_assurance": e.high_assurance,
        "endpoint_config": metadata_str(&meta, "endpoint_config"),
        "user_config_template": metadata_str(&meta, "user_config_template"),
        "user_config_schema": metadata_str(&meta, "user_config_schema"),
        "description": metadata_str(&meta, "description"),
        "hostname": metadata_str(&meta, "hostname"),
        "local_user": metadata_str(&meta, "local_user"),
        "ip_address": metadata_str(&meta, "ip_address"),
        "endpoint_version": metadata_str(&meta, "endpoint_version"),
        "sdk_version": metadata_str(&meta, "sdk_version"),
        "python_version": metadata_str(&meta, "python_version"),
        "subscription_uuid": e.subscription_id,
        "authentication_policy": e.authentication_policy,
        "allowed_functions": restricted_functions(&e),
    })))
}

/// Whether heartbeats say the endpoint is up: one arrived within two periods (plus slack),
/// and the last one did not announce a shutdown (`heartbeat_period: 0`).
pub fn is_online(last: Option<f64>, period: Option<f64>, now: f64) -> bool {
    match (last, period) {
        (Some(last), Some(p)) if p > 0.0 => now - last <= 2.0 * p + 10.0,
        _ => false,
    }
}

pub async fn endpoint_status(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EndpointStatusResponse>, ApiError> {
    let e = readable_endpoint(&state, &caller, &id).await?;
    let online = is_online(e.last_heartbeat, e.heartbeat_period, now_f64());
    let outstanding = state.store.pending_count_of_endpoint(&e.id).await?;
    Ok(Json(EndpointStatusResponse {
        status: if online { "online" } else { "offline" }.into(),
        details: json!({
            "last_heartbeat": e.last_heartbeat,
            "heartbeat_period": e.heartbeat_period,
            "outstanding_tasks": outstanding,
        }),
    }))
}

pub async fn delete_endpoint(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    let e = owned_endpoint(&state, &caller, &id).await?;
    // Withdraw broker credentials first: if that fails nothing changed and a retry is clean.
    let mut ids = state.store.uep_ids_of(&e.id).await?;
    ids.push(e.id.clone());
    state.creds.revoke(&ids).await?;
    state.store.delete_endpoint(&e.id).await?;
    Ok(Json(DeleteResponse { result: 302 }))
}

pub async fn lock_endpoint(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<LockResponse>, ApiError> {
    let e = owned_endpoint(&state, &caller, &id).await?;
    let until = now_i64() + state.cfg.lock_seconds;
    state.store.lock_endpoint(&e.id, until).await?;
    // `stop --remote` stops the endpoint wherever it runs: deleting its command queue cancels
    // the running process's consumer, which then cannot subscribe again and shuts down. The
    // next registration (after the lock) declares the queue afresh.
    state.store.release_endpoint_holder(&e.id).await?;
    let ch = state.broker.channel().await?;
    let deleted = ch
        .queue_delete(
            broker::command_queue(&e.id).as_str().into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await;
    let _ = ch.close(200, "done".into()).await;
    if let Err(err) = deleted {
        tracing::warn!(endpoint_id = %e.id, error = %err, "cannot delete the command queue of a locked endpoint");
    }
    let ts = chrono::DateTime::from_timestamp(until, 0)
        .unwrap_or_default()
        .to_rfc3339();
    Ok(Json(LockResponse {
        endpoint_id: e.id,
        lock_expiration_timestamp: ts,
    }))
}

pub async fn allowed_functions(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AllowedFunctionsResponse>, ApiError> {
    let e = readable_endpoint(&state, &caller, &id).await?;
    let list = restricted_functions(&e);
    Ok(Json(AllowedFunctionsResponse {
        endpoint_id: e.id,
        restricted: list.is_some(),
        functions: list.unwrap_or_default(),
    }))
}

// ----- results connection -----

pub async fn amqp_result_url(
    caller: Caller,
    State(state): State<AppState>,
) -> Json<AmqpResultUrlResponse> {
    Json(AmqpResultUrlResponse {
        queue_prefix: state.cfg.queue_prefix.clone(),
        connection_url: state.creds.sdk_url(&caller.client_id),
    })
}

// ----- submit -----

/// JSON with object keys sorted at every level: the stable input of the UEP id derivation.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&m[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The user endpoint id for (endpoint, identity, user config, runtime): the same inputs always
/// give the same id (PROTOCOL-ENDPOINT §5.6), formatted as a version-8 UUID.
pub fn derive_uep_id(
    mep_id: &str,
    identity_id: &str,
    user_opts: &Value,
    user_runtime: &Value,
) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        mep_id.to_string(),
        identity_id.to_string(),
        canonical_json(user_opts),
        canonical_json(user_runtime),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Version 8 ("custom") and the RFC 4122 variant.
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

fn uep_alive(u: &crate::store::UepRow, now: f64) -> bool {
    u.active
        && is_online(u.last_heartbeat, u.heartbeat_period.or(Some(30.0)), now)
        && match (u.error_at, u.last_heartbeat) {
            (Some(e), Some(h)) => e < h,
            _ => true,
        }
}

/// Publish the start command for a user endpoint and, unless it is already running, wait
/// (bounded) for its first heartbeat or its failure notice.
/// Publish `cmd_start_endpoint` for a user endpoint on its endpoint's command queue, with
/// the identity set of the client the user endpoint runs for. Returns when the broker has
/// confirmed the command.
pub async fn publish_start_command(
    state: &AppState,
    ch: &lapin::Channel,
    client_id: &str,
    mep_id: &str,
    uep_id: &str,
    user_opts: &Value,
    user_runtime: &Value,
) -> Result<(), ApiError> {
    let idents = identity_set(state, client_id).await?;
    let Some(primary) = idents.first() else {
        return Err(ApiError::internal(&format!(
            "client {client_id} has no identity"
        )));
    };
    let creds = broker::uep_creds(state.creds.endpoint_url(uep_id).await?, uep_id);
    let command = json!({
        "command": "cmd_start_endpoint",
        "globus_username": primary.username,
        "globus_effective_identity": primary.id,
        "globus_identity_set": idents,
        "args": [],
        "kwargs": {
            "name": format!("uep.{mep_id}.{uep_id}"),
            "user_opts": user_opts,
            "user_runtime": user_runtime,
            "amqp_creds": creds,
        },
    });
    let props = lapin::BasicProperties::default()
        .with_content_type("application/json".into())
        .with_timestamp(now_i64().max(0) as u64)
        // A command older than the endpoint's 180 s skew window would only produce a
        // failure notice; let the broker drop it instead.
        .with_expiration("170000".into());
    let mut pending = Pending::new();
    pending
        .publish(
            ch,
            broker::EX_COMMANDS,
            &broker::command_queue(mep_id),
            command.to_string().as_bytes(),
            props,
            true,
        )
        .await?;
    pending.wait().await?;
    Ok(())
}

/// Publish the start command for a user endpoint and, unless it is already running or its
/// endpoint is offline, wait (bounded) for its first heartbeat or its failure notice.
async fn start_uep(
    state: &AppState,
    ch: &lapin::Channel,
    caller: &Caller,
    mep: &EndpointRow,
    uep_id: &str,
    user_opts: &Value,
    user_runtime: &Value,
) -> Result<(), ApiError> {
    let now = now_f64();
    let was_alive = state
        .store
        .uep(uep_id)
        .await?
        .is_some_and(|u| uep_alive(&u, now));
    let sent_at = now_f64();
    publish_start_command(
        state,
        ch,
        &caller.client_id,
        &mep.id,
        uep_id,
        user_opts,
        user_runtime,
    )
    .await?;
    state.store.uep_start_sent(uep_id, sent_at).await?;
    if was_alive {
        return Ok(());
    }
    if !is_online(mep.last_heartbeat, mep.heartbeat_period, now) {
        // Nobody would answer: queue the tasks now; the start command is sent again when the
        // endpoint's heartbeats resume (see the heartbeat consumer).
        tracing::info!(endpoint_id = %mep.id, uep_id, "endpoint offline; tasks queued");
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + state.cfg.uep_start_timeout;
    loop {
        let notified = state.events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(u) = state.store.uep(uep_id).await? {
            if let (Some(err), Some(at)) = (&u.error, u.error_at) {
                if at >= sent_at {
                    return Err(ApiError::invalid(err.clone()));
                }
            }
            if u.active && u.last_heartbeat.is_some_and(|h| h >= sent_at) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() >= deadline {
            // The tasks wait in the user endpoint's durable queue; a later failure notice
            // still fails them (see the heartbeat consumer).
            tracing::warn!(
                uep_id,
                "user endpoint did not check in in time; queueing tasks anyway"
            );
            return Ok(());
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

pub async fn submit(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SubmitRequest>,
) -> Result<Json<SubmitResponse>, ApiError> {
    let eid = path_uuid(&id, "endpoint")?;
    let eid_s = eid.to_string();
    let Some(ep) = state.store.endpoint(&eid_s).await? else {
        return Err(ApiError::not_found(
            "ENDPOINT_NOT_FOUND",
            format!("Endpoint {eid} not found"),
        ));
    };
    if ep.owner_id != caller.client_id && !ep.public && !ep.multi_user {
        return Err(ApiError::forbidden(
            "ENDPOINT_ACCESS_FORBIDDEN",
            format!("You may not submit tasks to endpoint {eid}"),
        ));
    }
    if let Some(pid) = &ep.authentication_policy {
        crate::policy::require(&state, &caller, pid, &eid_s).await?;
    }
    let user_opts = match &req.user_endpoint_config {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(ApiError::invalid("user_endpoint_config must be an object")),
    };
    let user_runtime = match &req.user_runtime {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(ApiError::invalid("user_runtime must be an object")),
    };
    let resource_spec = match &req.resource_specification {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(m)) if !m.is_empty() => Some(v.to_string()),
        Some(Value::Object(_)) => None,
        Some(_) => {
            return Err(ApiError::invalid(
                "resource_specification must be an object",
            ));
        }
    };
    let restricted = restricted_functions(&ep);

    // Validate everything before anything is committed.
    let mut functions: Vec<(String, FunctionRow, &Vec<String>)> = Vec::new();
    for (fid_sent, payloads) in &req.tasks {
        let fid = body_uuid(fid_sent, "function")?;
        let f = visible_function(&state, &caller, &fid).await?;
        if f.ha_endpoint_id.as_ref().is_some_and(|h| *h != eid_s) {
            return Err(ApiError::forbidden(
                "FUNCTION_NOT_PERMITTED",
                format!(
                    "Function {} is bound to another high-assurance endpoint and cannot run on {eid}",
                    f.id
                ),
            ));
        }
        if let Some(allowed) = &restricted {
            if !allowed.contains(&f.id) {
                return Err(ApiError::forbidden(
                    "FUNCTION_NOT_PERMITTED",
                    format!("Function {} not permitted on endpoint {eid}", f.id),
                ));
            }
        }
        for p in payloads {
            if p.len() > MAX_TASK_PAYLOAD {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    format!(
                        "A task payload of {} bytes exceeds the limit of {MAX_TASK_PAYLOAD} bytes",
                        p.len()
                    ),
                ));
            }
        }
        functions.push((fid_sent.clone(), f, payloads));
    }
    let tg = match &req.task_group_id {
        Some(tg) => {
            let tg = body_uuid(tg, "task group")?.to_string();
            match state.store.task_group_owner(&tg).await? {
                Some(owner) if owner != caller.client_id => {
                    return Err(ApiError::forbidden(
                        "TASK_GROUP_ACCESS_FORBIDDEN",
                        format!("Task group {tg} belongs to another user"),
                    ));
                }
                _ => tg,
            }
        }
        None => Uuid::new_v4().to_string(),
    };

    let identity = state
        .store
        .identities_of(&caller.client_id)
        .await?
        .into_iter()
        .next()
        .map(|i| i.id)
        .unwrap_or_else(|| caller.client_id.clone());
    let uep_id = derive_uep_id(&eid_s, &identity, &user_opts, &user_runtime).to_string();

    let ch = state.broker.channel().await?;
    let result = async {
        state.broker.declare_task_queue(&ch, &uep_id).await?;
        if req.create_queue {
            let q = format!("{}{}", state.cfg.queue_prefix, tg);
            state.broker.declare_result_queue(&ch, &q).await?;
        }
        state
            .store
            .ensure_task_group(&tg, &caller.client_id, req.create_queue)
            .await?;
        state
            .store
            .ensure_uep(
                &uep_id,
                &eid_s,
                &caller.client_id,
                &user_opts.to_string(),
                &user_runtime.to_string(),
            )
            .await?;
        if req.tasks.values().any(|p| !p.is_empty()) {
            start_uep(
                &state,
                &ch,
                &caller,
                &ep,
                &uep_id,
                &user_opts,
                &user_runtime,
            )
            .await?;
        }

        let mut response: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut new_tasks = Vec::new();
        for (fid_sent, f, payloads) in &functions {
            let ids: Vec<String> = payloads
                .iter()
                .map(|_| Uuid::new_v4().to_string())
                .collect();
            for id in &ids {
                new_tasks.push(NewTask {
                    id: id.clone(),
                    function_id: f.id.clone(),
                });
            }
            response.insert(fid_sent.clone(), ids);
        }
        state
            .store
            .insert_tasks(&tg, &caller.client_id, &eid_s, &uep_id, &new_tasks)
            .await?;
        for t in &new_tasks {
            tracing::info!(task_id = %t.id, endpoint_id = %eid_s, uep_id = %uep_id, function_id = %t.function_id, "Task submitted");
        }
        let runtime_header = user_runtime
            .as_object()
            .filter(|o| !o.is_empty())
            .map(|_| user_runtime.to_string());
        let queued = async {
            let mut pending = Pending::new();
            let queue = broker::task_queue(&uep_id);
            for (fid_sent, f, payloads) in &functions {
                for (task_id, payload) in response[fid_sent].iter().zip(payloads.iter()) {
                    let tid = Uuid::parse_str(task_id).unwrap_or_default();
                    let mut buffer = String::with_capacity(f.code.len() + payload.len());
                    buffer.push_str(&f.code);
                    buffer.push_str(payload);
                    let mut headers = task_headers(
                        task_id,
                        &f.id,
                        resource_spec.as_deref(),
                        req.result_serializers.as_deref(),
                    );
                    // The submitter's runtime rides along with every task, so the worker can
                    // refuse up front what it cannot deserialize (docs/troubleshooting.md).
                    if let Some(text) = &runtime_header {
                        headers.insert(
                            "user_runtime".into(),
                            lapin::types::AMQPValue::LongString(text.as_str().into()),
                        );
                    }
                    pending
                        .publish(
                            &ch,
                            broker::EX_TASKS,
                            &queue,
                            &pack_task(&tid, &buffer),
                            lapin::BasicProperties::default().with_headers(headers),
                            true,
                        )
                        .await?;
                }
            }
            pending.wait().await
        }
        .await;
        if let Err(e) = queued {
            // Not accepted after all: forget the tasks so the client's retry starts clean.
            // Any task message that did reach the queue yields a result for an unknown task,
            // which is logged and dropped.
            let ids: Vec<String> = new_tasks.iter().map(|t| t.id.clone()).collect();
            if let Err(de) = state.store.delete_tasks(&ids).await {
                tracing::error!(error = %de, task_group_id = %tg, "could not remove unqueued tasks");
                return Err(ApiError::internal(&de));
            }
            return Err(e.into());
        }
        for t in &new_tasks {
            tracing::info!(task_id = %t.id, uep_id = %uep_id, "Task queued for the user endpoint (confirmed by the broker)");
        }
        crate::metrics::tasks_received(new_tasks.len());
        Ok::<_, ApiError>(response)
    }
    .await;
    let _ = ch.close(200, "done".into()).await;
    let tasks = result?;
    Ok(Json(SubmitResponse {
        request_id: Uuid::new_v4().to_string(),
        task_group_id: tg,
        endpoint_id: eid_s,
        tasks,
    }))
}

// ----- tasks -----

pub fn task_status(sent_id: &str, t: &TaskRow) -> TaskStatus {
    let done = t.completion_t.is_some();
    TaskStatus {
        task_id: sent_id.to_string(),
        status: t.status.clone(),
        result: if done { t.result.clone() } else { None },
        exception: if done { t.exception.clone() } else { None },
        completion_t: t.completion_t.map(|c| c.to_string()),
        details: t
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok()),
    }
}

/// Results of tasks that ran on a high-assurance endpoint are released only to a caller that
/// satisfies that endpoint's authentication policy now (the SDK fetches them over REST).
async fn require_ha_policies(
    state: &AppState,
    caller: &Caller,
    endpoint_ids: Vec<String>,
) -> Result<(), ApiError> {
    let unique: std::collections::BTreeSet<String> = endpoint_ids.into_iter().collect();
    for eid in &unique {
        if let Some(ep) = state.store.endpoint(eid).await? {
            if let (true, Some(pid)) = (ep.high_assurance, &ep.authentication_policy) {
                crate::policy::require(state, caller, pid, eid).await?;
            }
        }
    }
    Ok(())
}

pub async fn get_task(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskStatus>, ApiError> {
    let tid = path_uuid(&id, "task")?;
    match state.store.task(&tid.to_string()).await? {
        Some(t) if t.owner_id == caller.client_id => {
            require_ha_policies(&state, &caller, vec![t.endpoint_id.clone()]).await?;
            Ok(Json(task_status(&id, &t)))
        }
        _ => Err(ApiError::not_found(
            "TASK_NOT_FOUND",
            format!("Task {id} not found"),
        )),
    }
}

pub async fn batch_status(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<BatchStatusRequest>,
) -> Result<Json<BatchStatusResponse>, ApiError> {
    let mut canonical: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for sent in &req.task_ids {
        if let Ok(u) = Uuid::parse_str(sent) {
            canonical
                .entry(u.to_string())
                .or_default()
                .push(sent.clone());
        }
    }
    let ids: Vec<String> = canonical.keys().cloned().collect();
    let mut results = BTreeMap::new();
    let tasks: Vec<TaskRow> = state
        .store
        .tasks(&ids)
        .await?
        .into_iter()
        .filter(|t| t.owner_id == caller.client_id)
        .collect();
    let endpoint_ids = tasks.iter().map(|t| t.endpoint_id.clone()).collect();
    require_ha_policies(&state, &caller, endpoint_ids).await?;
    for t in tasks {
        for sent in canonical.get(&t.id).into_iter().flatten() {
            results.insert(sent.clone(), task_status(sent, &t));
        }
    }
    Ok(Json(BatchStatusResponse {
        response: "batch".into(),
        results,
    }))
}

pub async fn get_task_group(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TaskGroupResponse>, ApiError> {
    let tg = path_uuid(&id, "task group")?.to_string();
    match state.store.task_group_owner(&tg).await? {
        Some(owner) if owner == caller.client_id => {}
        Some(_) => {
            return Err(ApiError::forbidden(
                "TASK_GROUP_ACCESS_FORBIDDEN",
                format!("Task group {tg} belongs to another user"),
            ));
        }
        None => {
            return Err(ApiError::not_found(
                "TASK_GROUP_NOT_FOUND",
                format!("Task group {tg} not found"),
            ));
        }
    }
    let tasks = state.store.tasks_of_group(&tg).await?;
    Ok(Json(TaskGroupResponse {
        taskgroup_id: tg,
        create_websockets_queue: true,
        tasks: tasks
            .into_iter()
            .map(|t| TaskGroupTask {
                id: t.id,
                created_at: chrono::DateTime::from_timestamp_micros((t.created_at * 1e6) as i64)
                    .unwrap_or_default()
                    .format("%Y-%m-%dT%H:%M:%S%.6f")
                    .to_string(),
            })
            .collect(),
    }))
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "No such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[test]
    fn uep_id_is_stable_and_depends_on_every_input() {
        let o = json!({"a": 1});
        let r = json!({"python": {"version": "3.11"}});
        let id = derive_uep_id("m", "i", &o, &r);
        assert_eq!(id, derive_uep_id("m", "i", &json!({"a": 1}), &r));
        assert_ne!(id, derive_uep_id("m2", "i", &o, &r));
        assert_ne!(id, derive_uep_id("m", "i2", &o, &r));
        assert_ne!(id, derive_uep_id("m", "i", &json!({"a": 2}), &r));
        assert_ne!(id, derive_uep_id("m", "i", &o, &json!({})));
    }

    #[test]
    fn source_code_is_packed_by_code_points() {
        assert_eq!(pack_buffer("st\nf:é"), "6\nst\nf:é");
    }

    #[test]
    fn holder_expires_after_missed_heartbeats_or_a_final_one() {
        let h = EndpointHolder {
            host: "login-a".into(),
            token: "t".into(),
            since: 1000.0,
        };
        // No heartbeat since registering: alive for two registered periods plus slack.
        assert!(holder_alive(&h, None, None, Some(5.0), 1019.0));
        assert!(!holder_alive(&h, None, None, Some(5.0), 1021.0));
        assert!(holder_alive(&h, None, None, None, 1069.0));
        // A heartbeat older than the registration belongs to an earlier holder.
        assert!(!holder_alive(&h, Some(990.0), Some(5.0), Some(5.0), 1030.0));
        // Heartbeats keep it alive; missing ones let it expire.
        assert!(holder_alive(&h, Some(1100.0), Some(5.0), None, 1115.0));
        assert!(!holder_alive(&h, Some(1100.0), Some(5.0), None, 1121.0));
        // A final heartbeat (period 0) releases it at once.
        assert!(!holder_alive(&h, Some(1100.0), Some(0.0), None, 1100.5));
    }

    #[test]
    fn requested_holder_reads_the_registration_metadata() {
        let meta = json!({"hostname": "login-b", "start_token": "abc", "takeover": true});
        let h = requested_holder(Some(&meta));
        assert_eq!((h.host.as_str(), h.token.as_str()), ("login-b", "abc"));
        assert!(takeover_requested(Some(&meta)));
        assert!(!takeover_requested(Some(&json!({"takeover": "yes"}))));
        assert_eq!(requested_holder(None).host, "");
    }

    #[test]
    fn online_needs_a_recent_positive_period() {
        assert!(is_online(Some(100.0), Some(5.0), 110.0));
        assert!(!is_online(Some(100.0), Some(5.0), 200.0));
        assert!(!is_online(Some(100.0), Some(0.0), 100.0));
        assert!(!is_online(None, Some(5.0), 100.0));
    }
}
