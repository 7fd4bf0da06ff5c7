//! Authentication policies: the Globus Auth `/v2/api/policies` routes, and their evaluation
//! when a caller uses an endpoint registered with `authentication_policy`.
//!
//! The model (documented for operators in `docs/security.md`):
//!
//! * The *session* of a request is the caller's identity set (every identity attached to the
//!   client) and the time the bearer token was issued, which for client credentials is when
//!   the client last authenticated.
//! * Domain of an identity: the part of its username after the last `@`, lower-cased.
//!   Patterns are matched case-insensitively; `*` matches any run of characters, so
//!   `*.example.edu` matches `hpc.example.edu` but not `example.edu`.
//! * A policy is satisfied when at least one session identity has a domain that matches
//!   `domain_constraints_include` (or the list is empty/absent) and matches no pattern of
//!   `domain_constraints_exclude`; and, when `authentication_assurance_timeout` is set, the
//!   token was issued no more than that many seconds ago; and `required_mfa` is false
//!   (client credentials cannot perform multi-factor authentication, so an MFA policy is
//!   never satisfied: it fails closed).
//! * An unmet policy is answered with 403 and a Globus Auth requirements error body
//!   (`authorization_parameters.session_required_policies`). The unmodified SDK reacts by
//!   authenticating again (a fresh client-credentials grant: a new token, a new
//!   authentication time) and retrying once; a domain mismatch fails again and surfaces as
//!   `GlobusAPIError` carrying the message.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::JsonBody;
use crate::store::{IdentityRow, PolicyRow, now_i64};

/// Code of the 403 answered when a policy is not satisfied.
pub const POLICY_ERROR_CODE: &str = "AuthorizationRequired";

/// A policy document as Globus Auth shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyDoc {
    pub id: String,
    pub project_id: String,
    pub display_name: String,
    pub description: String,
    pub high_assurance: bool,
    pub authentication_assurance_timeout: Option<i64>,
    pub required_mfa: bool,
    pub domain_constraints_include: Option<Vec<String>>,
    pub domain_constraints_exclude: Option<Vec<String>>,
}

impl From<&PolicyRow> for PolicyDoc {
    fn from(p: &PolicyRow) -> Self {
        Self {
            id: p.id.clone(),
            project_id: p.project_id.clone(),
            display_name: p.display_name.clone(),
            description: p.description.clone(),
            high_assurance: p.high_assurance,
            authentication_assurance_timeout: p.authentication_assurance_timeout,
            required_mfa: p.required_mfa,
            domain_constraints_include: p.domain_constraints_include.clone(),
            domain_constraints_exclude: p.domain_constraints_exclude.clone(),
        }
    }
}

/// Fields of a create or update request; absent fields keep their value on update.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFields {
    pub project_id: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub high_assurance: Option<bool>,
    pub authentication_assurance_timeout: Option<i64>,
    pub required_mfa: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub domain_constraints_include: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    pub domain_constraints_exclude: Option<Option<Vec<String>>>,
}

/// Distinguish an explicit `null` (`Some(None)`: clear) from an absent key (`None`: keep).
fn present<'de, D>(d: D) -> Result<Option<Option<Vec<String>>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<Vec<String>>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    pub policy: PolicyFields,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

fn clean_domains(list: Option<Vec<String>>, what: &str) -> Result<Option<Vec<String>>, ApiError> {
    let Some(list) = list else { return Ok(None) };
    let mut out = Vec::with_capacity(list.len());
    for d in list {
        let d = d.trim().to_ascii_lowercase();
        if d.is_empty() || d.len() > 253 || d.contains('@') || d.chars().any(char::is_whitespace) {
            return Err(bad(format!("{what}: invalid domain {d:?}")));
        }
        out.push(d);
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

/// Apply request fields onto a policy (a new one starts from defaults) and validate.
fn apply(mut p: PolicyRow, f: PolicyFields, creating: bool) -> Result<PolicyRow, ApiError> {
    if let Some(project) = f.project_id {
        p.project_id = Uuid::parse_str(&project)
            .map_err(|_| bad(format!("project_id {project:?} is not a UUID")))?
            .to_string();
    } else if creating {
        return Err(bad("project_id is required"));
    }
    match f.display_name {
        Some(n) if !n.trim().is_empty() => p.display_name = n,
        Some(_) => return Err(bad("display_name must not be empty")),
        None if creating => return Err(bad("display_name is required")),
        None => {}
    }
    match f.description {
        Some(d) => p.description = d,
        None if creating => return Err(bad("description is required")),
        None => {}
    }
    if let Some(ha) = f.high_assurance {
        if !creating && ha != p.high_assurance {
            return Err(bad("high_assurance cannot be changed after creation"));
        }
        p.high_assurance = ha;
    }
    if let Some(t) = f.authentication_assurance_timeout {
        if t < 0 {
            return Err(bad("authentication_assurance_timeout must be >= 0"));
        }
        p.authentication_assurance_timeout = Some(t);
    }
    if let Some(mfa) = f.required_mfa {
        p.required_mfa = mfa;
    }
    if p.required_mfa && !p.high_assurance {
        return Err(bad(
            "required_mfa may only be set on high-assurance policies",
        ));
    }
    if let Some(l) = f.domain_constraints_include {
        p.domain_constraints_include = clean_domains(l, "domain_constraints_include")?;
    }
    if let Some(l) = f.domain_constraints_exclude {
        p.domain_constraints_exclude = clean_domains(l, "domain_constraints_exclude")?;
    }
    Ok(p)
}

/// `POST /auth/v2/api/policies`.
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    JsonBody(req): JsonBody<PolicyRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let blank = PolicyRow {
        id: Uuid::new_v4().to_string(),
        owner_id: caller.client_id.clone(),
        project_id: String::new(),
        display_name: String::new(),
        description: String::new(),
        high_assurance: false,
        authentication_assurance_timeout: None,
        required_mfa: false,
        domain_constraints_include: None,
        domain_constraints_exclude: None,
    };
    let p = apply(blank, req.policy, true)?;
    state.store.upsert_policy(&p).await?;
    tracing::info!(policy_id = %p.id, owner = %p.owner_id, "authentication policy created");
    Ok(Json(json!({"policy": PolicyDoc::from(&p)})))
}

fn policy_id(id: &str) -> Result<String, ApiError> {
    Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| ApiError::not_found("NOT_FOUND", format!("Policy {id} not found")))
}

async fn load(state: &AppState, id: &str) -> Result<PolicyRow, ApiError> {
    state
        .store
        .policy(&policy_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("Policy {id} not found")))
}

async fn load_owned(state: &AppState, caller: &Caller, id: &str) -> Result<PolicyRow, ApiError> {
    let p = load(state, id).await?;
    if p.owner_id != caller.client_id {
        return Err(ApiError::forbidden(
            "FORBIDDEN",
            format!("Policy {id} belongs to another client"),
        ));
    }
    Ok(p)
}

/// `GET /auth/v2/api/policies/{id}`: any authenticated client may read a policy (endpoint
/// administrators reference policies others created).
pub async fn get(
    _caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = load(&state, &id).await?;
    Ok(Json(json!({"policy": PolicyDoc::from(&p)})))
}

/// `GET /auth/v2/api/policies`: the caller's policies.
pub async fn list(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let docs: Vec<PolicyDoc> = state
        .store
        .policies_of(&caller.client_id)
        .await?
        .iter()
        .map(PolicyDoc::from)
        .collect();
    Ok(Json(json!({"policies": docs})))
}

/// `PUT /auth/v2/api/policies/{id}` (owner only).
pub async fn update(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<PolicyRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = load_owned(&state, &caller, &id).await?;
    let p = apply(p, req.policy, false)?;
    state.store.upsert_policy(&p).await?;
    tracing::info!(policy_id = %p.id, "authentication policy updated");
    Ok(Json(json!({"policy": PolicyDoc::from(&p)})))
}

/// `DELETE /auth/v2/api/policies/{id}` (owner only; refused while an endpoint uses it, so an
/// endpoint never silently loses its protection).
pub async fn delete(
    caller: Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = load_owned(&state, &caller, &id).await?;
    if state.store.policy_in_use(&p.id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            format!("Policy {} is used by a registered endpoint", p.id),
        ));
    }
    state.store.delete_policy(&p.id).await?;
    Ok(Json(json!({"policy": PolicyDoc::from(&p)})))
}

// ----- evaluation -----

/// Case-insensitive glob match where `*` matches any run of characters.
pub fn domain_matches(pattern: &str, domain: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let d: Vec<char> = domain.to_lowercase().chars().collect();
    // Iterative wildcard matching with single-star backtracking (linear in practice).
    let (mut pi, mut di) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while di < d.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, di));
            pi += 1;
        } else if pi < p.len() && p[pi] == d[di] {
            pi += 1;
            di += 1;
        } else if let Some((sp, sd)) = star {
            pi = sp + 1;
            di = sd + 1;
            star = Some((sp, sd + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Domain of an identity username (`alice@uni.edu` → `uni.edu`).
pub fn identity_domain(username: &str) -> Option<String> {
    username
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

/// Why a session does not satisfy a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    Domain,
    Timeout { timeout_s: i64 },
    Mfa,
}

impl Unmet {
    pub fn message(&self, policy: &PolicyRow) -> String {
        match self {
            Unmet::Domain => {
                let mut m = format!(
                    "None of your identities satisfies the domain requirements of authentication policy {}",
                    policy.id
                );
                if let Some(inc) = &policy.domain_constraints_include {
                    m.push_str(&format!(" (allowed domains: {})", inc.join(", ")));
                }
                if let Some(exc) = &policy.domain_constraints_exclude {
                    m.push_str(&format!(" (excluded domains: {})", exc.join(", ")));
                }
                m
            }
            Unmet::Timeout { timeout_s } => format!(
                "Authentication policy {} requires an authentication within the last {timeout_s} seconds; \
                 authenticate again",
                policy.id
            ),
            Unmet::Mfa => format!(
                "Authentication policy {} requires multi-factor authentication, which client \
                 credentials cannot provide",
                policy.id
            ),
        }
    }
}

/// Evaluate a policy against a session (identity set + authentication time).
pub fn evaluate(
    policy: &PolicyRow,
    identities: &[IdentityRow],
    authenticated_at: Option<i64>,
    now: i64,
) -> Result<(), Unmet> {
    if policy.required_mfa {
        return Err(Unmet::Mfa);
    }
    let include = policy
        .domain_constraints_include
        .as_deref()
        .unwrap_or_default();
    let exclude = policy
        .domain_constraints_exclude
        .as_deref()
        .unwrap_or_default();
    let acceptable = |i: &IdentityRow| match identity_domain(&i.username) {
        Some(d) => {
            (include.is_empty() || include.iter().any(|p| domain_matches(p, &d)))
                && !exclude.iter().any(|p| domain_matches(p, &d))
        }
        None => include.is_empty() && exclude.is_empty(),
    };
    if (!include.is_empty() || !exclude.is_empty()) && !identities.iter().any(acceptable) {
        return Err(Unmet::Domain);
    }
    if let Some(timeout_s) = policy.authentication_assurance_timeout {
        match authenticated_at {
            Some(at) if now - at <= timeout_s => {}
            _ => return Err(Unmet::Timeout { timeout_s }),
        }
    }
    Ok(())
}

/// Require the caller to satisfy the endpoint's policy; the refusal is a Globus Auth
/// requirements error the SDK understands. A policy id that no longer resolves fails closed.
pub async fn require(
    state: &AppState,
    caller: &Caller,
    policy_id: &str,
    endpoint_id: &str,
) -> Result<(), ApiError> {
    let Some(policy) = state.store.policy(policy_id).await? else {
        tracing::error!(
            endpoint_id,
            policy_id,
            "endpoint names an unknown authentication policy"
        );
        return Err(ApiError::forbidden(
            "ENDPOINT_ACCESS_FORBIDDEN",
            format!(
                "Endpoint {endpoint_id} requires an authentication policy that cannot be evaluated"
            ),
        ));
    };
    let identities = state.store.identities_of(&caller.client_id).await?;
    match evaluate(
        &policy,
        &identities,
        caller.token.authenticated_at,
        now_i64(),
    ) {
        Ok(()) => Ok(()),
        Err(unmet) => {
            let message = unmet.message(&policy);
            tracing::info!(
                client_id = %caller.client_id,
                endpoint_id,
                policy_id,
                reason = ?unmet,
                "authentication policy not satisfied"
            );
            let mut params = json!({
                "session_message": message,
                "session_required_policies": [policy.id],
            });
            if unmet == Unmet::Mfa {
                params["session_required_mfa"] = json!(true);
            }
            let mut e = ApiError::forbidden(POLICY_ERROR_CODE, message);
            e.authorization_parameters = Some(params);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(username: &str) -> IdentityRow {
        IdentityRow {
            id: Uuid::new_v4().to_string(),
            client_id: "c".into(),
            username: username.into(),
            name: None,
            email: None,
            identity_provider: "p".into(),
            identity_provider_display_name: "P".into(),
            organization: None,
            is_primary: false,
            created_at: 0,
        }
    }

    fn policy() -> PolicyRow {
        PolicyRow {
            id: "p1".into(),
            owner_id: "o".into(),
            project_id: "x".into(),
            display_name: "d".into(),
            description: String::new(),
            high_assurance: false,
            authentication_assurance_timeout: None,
            required_mfa: false,
            domain_constraints_include: None,
            domain_constraints_exclude: None,
        }
    }

    #[test]
    fn wildcard_domains() {
        assert!(domain_matches("example.edu", "EXAMPLE.edu"));
        assert!(domain_matches("*.example.edu", "hpc.example.edu"));
        assert!(domain_matches("*.example.edu", "a.b.example.edu"));
        assert!(!domain_matches("*.example.edu", "example.edu"));
        assert!(!domain_matches("*.example.edu", "badexample.edu"));
        assert!(domain_matches("*", "anything.org"));
        assert!(domain_matches("*.edu", "uni.edu"));
        assert!(!domain_matches("uni.edu", "uni.edu.evil.org"));
        assert!(!domain_matches("uni.edu", "evil-uni.edu"));
        assert_eq!(identity_domain("a@b@Uni.EDU").as_deref(), Some("uni.edu"));
        assert_eq!(identity_domain("nodomain"), None);
    }

    #[test]
    fn include_and_exclude() {
        let mut p = policy();
        p.domain_constraints_include = Some(vec!["uni.edu".into(), "*.uni.edu".into()]);
        assert_eq!(evaluate(&p, &[ident("a@uni.edu")], Some(0), 0), Ok(()));
        assert_eq!(evaluate(&p, &[ident("a@hpc.uni.edu")], Some(0), 0), Ok(()));
        assert_eq!(
            evaluate(&p, &[ident("a@other.org")], Some(0), 0),
            Err(Unmet::Domain)
        );
        // One acceptable identity in the set is enough.
        assert_eq!(
            evaluate(&p, &[ident("a@other.org"), ident("a@uni.edu")], Some(0), 0),
            Ok(())
        );
        assert_eq!(evaluate(&p, &[], Some(0), 0), Err(Unmet::Domain));

        let mut p = policy();
        p.domain_constraints_exclude = Some(vec!["evil.org".into()]);
        assert_eq!(
            evaluate(&p, &[ident("a@evil.org")], Some(0), 0),
            Err(Unmet::Domain)
        );
        assert_eq!(evaluate(&p, &[ident("a@good.org")], Some(0), 0), Ok(()));
        assert_eq!(
            evaluate(&p, &[ident("nodomain")], Some(0), 0),
            Err(Unmet::Domain)
        );
        // No constraints: anybody.
        assert_eq!(evaluate(&policy(), &[], None, 0), Ok(()));
    }

    #[test]
    fn assurance_timeout_and_mfa() {
        let mut p = policy();
        p.high_assurance = true;
        p.authentication_assurance_timeout = Some(60);
        let ids = [ident("a@uni.edu")];
        assert_eq!(evaluate(&p, &ids, Some(1000), 1060), Ok(()));
        assert_eq!(
            evaluate(&p, &ids, Some(1000), 1061),
            Err(Unmet::Timeout { timeout_s: 60 })
        );
        assert_eq!(
            evaluate(&p, &ids, None, 1000),
            Err(Unmet::Timeout { timeout_s: 60 })
        );
        p.required_mfa = true;
        assert_eq!(evaluate(&p, &ids, Some(1000), 1000), Err(Unmet::Mfa));
    }

    #[test]
    fn create_validation() {
        let blank = policy();
        let f = |v: serde_json::Value| serde_json::from_value::<PolicyFields>(v).unwrap();
        assert!(
            apply(
                blank.clone(),
                f(json!({"display_name": "x", "description": ""})),
                true
            )
            .is_err()
        );
        let pid = Uuid::new_v4().to_string();
        let ok = apply(
            blank.clone(),
            f(
                json!({"project_id": pid, "display_name": "x", "description": "",
                     "domain_constraints_include": [" Uni.EDU "]}),
            ),
            true,
        )
        .unwrap();
        assert_eq!(
            ok.domain_constraints_include,
            Some(vec!["uni.edu".to_string()])
        );
        assert!(apply(
            blank.clone(),
            f(json!({"project_id": pid, "display_name": "x", "description": "", "required_mfa": true})),
            true
        )
        .is_err());
        assert!(
            apply(
                blank.clone(),
                f(
                    json!({"project_id": pid, "display_name": "x", "description": "",
                     "authentication_assurance_timeout": -1})
                ),
                true
            )
            .is_err()
        );
        // Update: null clears a list, an absent key keeps it; HA cannot flip.
        let upd = apply(
            ok.clone(),
            f(json!({"domain_constraints_include": null})),
            false,
        )
        .unwrap();
        assert_eq!(upd.domain_constraints_include, None);
        let keep = apply(ok.clone(), f(json!({"description": "new"})), false).unwrap();
        assert_eq!(
            keep.domain_constraints_include,
            ok.domain_constraints_include
        );
        assert!(apply(ok, f(json!({"high_assurance": true})), false).is_err());
        assert!(serde_json::from_value::<PolicyFields>(json!({"bogus": 1})).is_err());
    }
}
