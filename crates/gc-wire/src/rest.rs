//! JSON bodies of the REST routes used by the SDK (PROTOCOL-SDK §3) and by the endpoint
//! (PROTOCOL-ENDPOINT §2.4–§2.5).
//!
//! Request types are parsed "as typed": fields the clients may omit are `Option`s, free-form
//! objects the service passes through unchanged are [`serde_json::Value`]s. Response types are
//! built by the service and serialized with exactly the keys the clients read; optional keys are
//! skipped when absent because the SDK distinguishes "missing" from `null` (e.g. `result`).
//!
//! ```
//! use gc_wire::rest::SubmitRequest;
//! let body = r#"{"create_queue": true, "tasks": {"f": ["28\n00\n..."]}}"#;
//! let req: SubmitRequest = serde_json::from_str(body).unwrap();
//! assert!(req.create_queue);
//! assert_eq!(req.tasks["f"].len(), 1);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The compute scope string every SDK token request carries (PROTOCOL-SDK §2.2).
pub const COMPUTE_SCOPE: &str =
    "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all";
/// Resource server name of compute tokens.
pub const COMPUTE_RESOURCE_SERVER: &str = "funcx_service";
/// Resource server name of Auth tokens (`openid`, `manage_projects`, ...).
pub const AUTH_RESOURCE_SERVER: &str = "auth.globus.org";

/// Error body of every compute route ("Type Zero", PROTOCOL-SDK §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// OAuth2 error body of the Auth routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    pub error_description: String,
}

/// One token of a token response (PROTOCOL-SDK §2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenData {
    pub access_token: String,
    pub scope: String,
    pub resource_server: String,
    pub expires_in: i64,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// `POST /auth/v2/oauth2/token` response: the first token top-level, the rest in `other_tokens`
/// (which must be present, even empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    #[serde(flatten)]
    pub token: TokenData,
    pub other_tokens: Vec<TokenData>,
}

/// `POST /auth/v2/oauth2/token/introspect` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntrospectResponse {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_set: Option<Vec<String>>,
}

/// A Globus identity as Auth describes it (`/v2/api/identities`, `userinfo.identity_set`, and the
/// `globus_identity_set` of a MEP start command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// `sub` and `id` carry the same value: userinfo uses the former, the API the latter.
    pub sub: String,
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub identity_provider: String,
    pub identity_provider_display_name: String,
    pub organization: Option<String>,
    pub status: String,
    pub identity_type: String,
    pub last_authentication: Option<i64>,
}

/// `GET /auth/v2/oauth2/userinfo` response (PROTOCOL-ENDPOINT §2.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    pub sub: String,
    pub preferred_username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub identity_provider: String,
    pub identity_provider_display_name: String,
    pub organization: Option<String>,
    pub last_authentication: Option<i64>,
    pub identity_set: Vec<Identity>,
}

/// `GET /auth/v2/api/identities` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentitiesResponse {
    pub identities: Vec<Identity>,
}

/// `GET /v2/version?service=all` response; both minimum versions are required by the SDK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub api: String,
    pub min_sdk_version: String,
    pub min_ep_version: String,
}

/// `POST /v3/functions` request (PROTOCOL-SDK §3.3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterFunctionRequest {
    pub function_name: String,
    pub function_code: String,
    /// Absent before SDK 4.19: the code is then serialized.
    #[serde(default)]
    pub serialized: Option<bool>,
    #[serde(default)]
    pub meta: Option<Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub ha_endpoint_id: Option<String>,
}

/// `POST /v3/functions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterFunctionResponse {
    pub function_uuid: String,
}

/// Metadata of a registered function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionMetadata {
    pub python_version: Option<String>,
    pub sdk_version: Option<String>,
}

/// `GET /v2/functions/{id}` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionResponse {
    pub function_uuid: String,
    pub function_name: String,
    pub function_code: String,
    pub description: Option<String>,
    pub metadata: FunctionMetadata,
}

/// `DELETE /v2/functions/{id}` and `DELETE /v2/endpoints/{id}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteResponse {
    pub result: u16,
}

/// `POST /v3/endpoints/{id}/submit` request (PROTOCOL-SDK §3.3.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    #[serde(default)]
    pub create_queue: bool,
    /// Function id (as the client spelled it) → task payloads in submission order.
    pub tasks: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub task_group_id: Option<String>,
    #[serde(default)]
    pub resource_specification: Option<Value>,
    #[serde(default)]
    pub user_endpoint_config: Option<Value>,
    #[serde(default)]
    pub user_runtime: Option<Value>,
    #[serde(default)]
    pub result_serializers: Option<Vec<String>>,
}

/// `POST /v3/endpoints/{id}/submit` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub request_id: String,
    pub task_group_id: String,
    pub endpoint_id: String,
    pub tasks: BTreeMap<String, Vec<String>>,
}

/// `GET /v2/get_amqp_result_connection_url` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmqpResultUrlResponse {
    pub queue_prefix: String,
    pub connection_url: String,
}

/// One task's state (`GET /v2/tasks/{id}` and the values of `/v2/batch_status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// `POST /v2/batch_status` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatusRequest {
    pub task_ids: Vec<String>,
}

/// `POST /v2/batch_status` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchStatusResponse {
    pub response: String,
    pub results: BTreeMap<String, TaskStatus>,
}

/// One task of a task group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGroupTask {
    pub id: String,
    pub created_at: String,
}

/// `GET /v2/taskgroup/{id}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskGroupResponse {
    pub taskgroup_id: String,
    pub create_websockets_queue: bool,
    pub tasks: Vec<TaskGroupTask>,
}

/// `POST /v3/endpoints` / `PUT /v3/endpoints/{id}` request (PROTOCOL-ENDPOINT §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterEndpointRequest {
    pub endpoint_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub multi_user: Option<bool>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub allowed_functions: Option<Vec<String>>,
    #[serde(default)]
    pub authentication_policy: Option<String>,
    #[serde(default)]
    pub subscription_uuid: Option<String>,
    #[serde(default)]
    pub public: Option<bool>,
    #[serde(default)]
    pub high_assurance: Option<bool>,
    #[serde(default)]
    pub admins: Option<Vec<String>>,
}

/// AMQP publishing arguments handed to an endpoint (PROTOCOL-ENDPOINT §3.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuePublishKwargs {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub properties: Value,
}

/// Where an endpoint connects and what it consumes or publishes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub connection_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    pub queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_publish_kwargs: Option<QueuePublishKwargs>,
}

/// `POST /v3/endpoints` / `PUT /v3/endpoints/{id}` response (PROTOCOL-ENDPOINT §2.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterEndpointResponse {
    pub endpoint_id: String,
    pub command_queue_info: QueueInfo,
    pub heartbeat_queue_info: QueueInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_queue_info: Option<QueueInfo>,
}

/// `kwargs.amqp_creds` of a start command: what a user endpoint connects to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UepAmqpCreds {
    pub endpoint_id: String,
    pub task_queue_info: QueueInfo,
    pub result_queue_info: QueueInfo,
    pub heartbeat_queue_info: QueueInfo,
}

/// One entry of `GET /v2/endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointListEntry {
    pub uuid: String,
    pub name: String,
    pub display_name: String,
    pub owner: String,
}

/// `GET /v2/endpoints/{id}/status` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatusResponse {
    pub status: String,
    pub details: Value,
}

/// `POST /v3/endpoints/{id}/lock` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockResponse {
    pub endpoint_id: String,
    pub lock_expiration_timestamp: String,
}

/// `GET /v3/endpoints/{id}/allowed_functions` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedFunctionsResponse {
    pub endpoint_id: String,
    pub restricted: bool,
    pub functions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_response_flattens_first_token_and_keeps_other_tokens() {
        let r = TokenResponse {
            token: TokenData {
                access_token: "t".into(),
                scope: COMPUTE_SCOPE.into(),
                resource_server: COMPUTE_RESOURCE_SERVER.into(),
                expires_in: 10,
                token_type: "Bearer".into(),
                refresh_token: None,
            },
            other_tokens: vec![],
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["access_token"], "t");
        assert_eq!(v["resource_server"], "funcx_service");
        assert_eq!(v["other_tokens"], serde_json::json!([]));
        assert!(v.get("refresh_token").is_none());
    }

    #[test]
    fn pending_task_status_omits_result_keys() {
        let s = TaskStatus {
            task_id: "x".into(),
            status: "waiting-for-ep".into(),
            result: None,
            exception: None,
            completion_t: None,
            details: None,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"task_id":"x","status":"waiting-for-ep"}"#
        );
    }

    #[test]
    fn registration_body_of_upstream_endpoint_parses() {
        let body = r#"{"endpoint_name": "probeep", "display_name": "Probe EP",
            "metadata": {"endpoint_version": "4.19.0"},
            "allowed_functions": ["0a0a0a0a-0000-4000-8000-00000000000a"],
            "public": false, "high_assurance": false}"#;
        let r: RegisterEndpointRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.endpoint_name, "probeep");
        assert_eq!(r.allowed_functions.unwrap().len(), 1);
        assert_eq!(r.multi_user, None);
    }
}
