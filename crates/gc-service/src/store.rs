//! Persistent state: SQLite (default) or PostgreSQL through sqlx's `Any` driver.
//!
//! Every query is written in the SQL subset both databases accept (numbered `$N` parameters,
//! TEXT/BIGINT/DOUBLE PRECISION columns), so one code path and one migration list serve both.
//! Transactions never read before they write, so SQLite's single writer never has to upgrade
//! a read lock (which would fail with `SQLITE_BUSY` instead of waiting).

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::StoreError;

/// Migrations in order; each runs once, recorded in `gcrs_schema_version`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_policies.sql")),
    (3, include_str!("../migrations/0003_ha_functions.sql")),
    (4, include_str!("../migrations/0004_endpoint_holder.sql")),
];

pub type Result<T> = std::result::Result<T, StoreError>;

/// Current time as fractional Unix seconds.
pub fn now_f64() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Current time as whole Unix seconds.
pub fn now_i64() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    is_sqlite: bool,
}

#[derive(Debug, Clone)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct IdentityRow {
    pub id: String,
    pub client_id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub identity_provider: String,
    pub identity_provider_display_name: String,
    pub organization: Option<String>,
    pub is_primary: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub client_id: String,
    pub resource_server: String,
    pub scope: String,
    pub expires_at: i64,
    /// When the holder authenticated to get this token (client credentials: the grant).
    pub authenticated_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct FunctionRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub code: String,
    pub description: Option<String>,
    pub python_version: Option<String>,
    pub sdk_version: Option<String>,
    pub public: bool,
    /// The high-assurance endpoint this function is bound to.
    pub ha_endpoint_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EndpointRow {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub display_name: String,
    pub multi_user: bool,
    pub public: bool,
    pub high_assurance: bool,
    pub metadata: String,
    pub allowed_functions: Option<String>,
    pub locked_until: Option<i64>,
    pub last_heartbeat: Option<f64>,
    pub heartbeat_period: Option<f64>,
    /// Authentication policy submitters must satisfy.
    pub authentication_policy: Option<String>,
    pub subscription_id: Option<String>,
}

/// A stored authentication policy (Globus Auth policy fields).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRow {
    pub id: String,
    pub owner_id: String,
    pub project_id: String,
    pub display_name: String,
    pub description: String,
    pub high_assurance: bool,
    pub authentication_assurance_timeout: Option<i64>,
    pub required_mfa: bool,
    pub domain_constraints_include: Option<Vec<String>>,
    pub domain_constraints_exclude: Option<Vec<String>>,
}

/// The process holding an endpoint's connection (its last accepted registration).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointHolder {
    /// Host name the registration reported.
    pub host: String,
    /// Per-process start token the registration reported (empty for endpoints without one).
    pub token: String,
    /// When the registration was accepted (seconds since the epoch).
    pub since: f64,
}

#[derive(Debug, Clone)]
pub struct UepRow {
    pub id: String,
    pub mep_id: String,
    pub start_sent_at: Option<f64>,
    pub last_heartbeat: Option<f64>,
    pub heartbeat_period: Option<f64>,
    pub active: bool,
    pub error: Option<String>,
    pub error_at: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: String,
    pub task_group_id: String,
    pub owner_id: String,
    pub endpoint_id: String,
    pub status: String,
    pub result: Option<String>,
    pub exception: Option<String>,
    pub details: Option<String>,
    pub completion_t: Option<f64>,
    pub forwarded: bool,
    pub created_at: f64,
}

/// A task about to be inserted.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub function_id: String,
}

/// An outcome reported for a task (from an endpoint result or a start failure).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub task_id: String,
    pub success: bool,
    pub data: String,
    pub details: Option<String>,
    pub completion_t: f64,
}

/// Where to forward a completed task's result.
#[derive(Debug, Clone)]
pub struct ForwardTarget {
    pub task_id: String,
    pub task_group_id: String,
    /// The SDK queue is known to have the result (`tasks.forwarded = 1`).
    pub forwarded: bool,
    /// A forward was started and its outcome is unknown (`tasks.forwarded = 2`, see
    /// `consumers::record_and_forward`).
    pub forwarding: bool,
    pub create_queue: bool,
    /// The task ran on a high-assurance endpoint: forward a data-less notice only.
    pub high_assurance: bool,
}

/// Make a SQLite database file readable by its owner only (it holds secret and token hashes);
/// SQLite gives its `-wal` and `-shm` files the same mode. In-memory databases are left alone.
fn restrict_sqlite_file(url: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path, error = %e, "could not make the database file private");
    }
}

fn b(v: i64) -> bool {
    v != 0
}

impl Store {
    /// Connect and bring the schema up to date. `sqlite:` URLs create the file if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        let opts = AnyConnectOptions::from_str(&url)?;
        let mut pool_opts = AnyPoolOptions::new().max_connections(if is_sqlite { 4 } else { 8 });
        if is_sqlite {
            pool_opts = pool_opts.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool_opts.connect_with(opts).await?;
        if is_sqlite {
            restrict_sqlite_file(&url);
            sqlx::raw_sql("PRAGMA journal_mode = WAL;")
                .execute(&pool)
                .await?;
        }
        let store = Self { pool, is_sqlite };
        store.migrate().await?;
        Ok(store)
    }

    pub fn is_sqlite(&self) -> bool {
        self.is_sqlite
    }

    /// The connection pool, for read-only reports kept beside their users (metrics, status).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS gcrs_schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            // Insert first: a concurrent replica migrating at the same time fails on the key
            // instead of applying the migration twice.
            let inserted = sqlx::query(
                "INSERT INTO gcrs_schema_version (version, applied_at) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
            )
            .bind(*version)
            .bind(now_i64())
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                tx.commit().await?;
                tracing::info!(version, "applied database migration");
            } else {
                tx.rollback().await?;
            }
        }
        Ok(())
    }

    // ----- clients, identities, tokens -----

    pub async fn create_client(&self, id: &str, name: &str, secret_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO clients (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(name)
        .bind(secret_hash)
        .bind(now_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Secret hash of a client that is not revoked.
    pub async fn client_secret_hash(&self, id: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT secret_hash FROM clients WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("secret_hash")).transpose()?)
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientRow>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, revoked_at FROM clients ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClientRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revoke a client and every token it holds. Returns false if no such client.
    pub async fn revoke_client(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let n =
            sqlx::query("UPDATE clients SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_i64())
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE client_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Attach an identity; a primary identity replaces the previous primary.
    pub async fn add_identity(&self, ident: &IdentityRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if ident.is_primary {
            sqlx::query("UPDATE identities SET is_primary = 0 WHERE client_id = $1")
                .bind(&ident.client_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO identities (id, client_id, username, name, email, identity_provider, \
             identity_provider_display_name, organization, is_primary, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&ident.id)
        .bind(&ident.client_id)
        .bind(&ident.username)
        .bind(ident.name.clone())
        .bind(ident.email.clone())
        .bind(&ident.identity_provider)
        .bind(&ident.identity_provider_display_name)
        .bind(ident.organization.clone())
        .bind(ident.is_primary as i64)
        .bind(ident.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn identity_from_row(r: &AnyRow) -> Result<IdentityRow> {
        Ok(IdentityRow {
            id: r.try_get("id")?,
            client_id: r.try_get("client_id")?,
            username: r.try_get("username")?,
            name: r.try_get("name")?,
            email: r.try_get("email")?,
            identity_provider: r.try_get("identity_provider")?,
            identity_provider_display_name: r.try_get("identity_provider_display_name")?,
            organization: r.try_get("organization")?,
            is_primary: b(r.try_get("is_primary")?),
            created_at: r.try_get("created_at")?,
        })
    }

    /// Identities of a client, primary first.
    pub async fn identities_of(&self, client_id: &str) -> Result<Vec<IdentityRow>> {
        let rows = sqlx::query(
            "SELECT * FROM identities WHERE client_id = $1 ORDER BY is_primary DESC, created_at, id",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::identity_from_row).collect()
    }

    pub async fn identity(&self, id: &str) -> Result<Option<IdentityRow>> {
        let row = sqlx::query("SELECT * FROM identities WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::identity_from_row).transpose()
    }

    pub async fn identity_by_username(&self, username: &str) -> Result<Option<IdentityRow>> {
        let row = sqlx::query("SELECT * FROM identities WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::identity_from_row).transpose()
    }

    pub async fn insert_token(
        &self,
        token_hash: &str,
        client_id: &str,
        resource_server: &str,
        scope: &str,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tokens (token_hash, client_id, resource_server, scope, expires_at, authenticated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(client_id)
        .bind(resource_server)
        .bind(scope)
        .bind(expires_at)
        .bind(now_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A token that is valid now (not revoked, not expired, client not revoked).
    pub async fn valid_token(&self, token_hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT t.client_id, t.resource_server, t.scope, t.expires_at, t.authenticated_at FROM tokens t \
             JOIN clients c ON c.id = t.client_id \
             WHERE t.token_hash = $1 AND t.revoked = 0 AND t.expires_at > $2 AND c.revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now_i64())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRow {
                client_id: r.try_get("client_id")?,
                resource_server: r.try_get("resource_server")?,
                scope: r.try_get("scope")?,
                expires_at: r.try_get("expires_at")?,
                authenticated_at: r.try_get("authenticated_at")?,
            })
        })
        .transpose()
    }

    pub async fn revoke_token(&self, token_hash: &str) -> Result<()> {
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- authentication policies -----

    fn policy_from_row(r: &AnyRow) -> Result<PolicyRow> {
        let list = |col: &str| -> Result<Option<Vec<String>>> {
            let text: Option<String> = r.try_get(col)?;
            text.map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("policy {col}: {e}")))
            })
            .transpose()
        };
        Ok(PolicyRow {
            id: r.try_get("id")?,
            owner_id: r.try_get("owner_id")?,
            project_id: r.try_get("project_id")?,
            display_name: r.try_get("display_name")?,
            description: r.try_get("description")?,
            high_assurance: b(r.try_get("high_assurance")?),
            authentication_assurance_timeout: r.try_get("authentication_assurance_timeout")?,
            required_mfa: b(r.try_get("required_mfa")?),
            domain_constraints_include: list("domain_constraints_include")?,
            domain_constraints_exclude: list("domain_constraints_exclude")?,
        })
    }

    /// Insert a policy, or replace every field of an existing one (same id).
    pub async fn upsert_policy(&self, p: &PolicyRow) -> Result<()> {
        let list = |l: &Option<Vec<String>>| {
            l.as_ref()
                .map(|v| serde_json::Value::from(v.clone()).to_string())
        };
        sqlx::query(
            "INSERT INTO auth_policies (id, owner_id, project_id, display_name, description, high_assurance, \
             authentication_assurance_timeout, required_mfa, domain_constraints_include, domain_constraints_exclude, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id, display_name = excluded.display_name, \
             description = excluded.description, high_assurance = excluded.high_assurance, \
             authentication_assurance_timeout = excluded.authentication_assurance_timeout, \
             required_mfa = excluded.required_mfa, domain_constraints_include = excluded.domain_constraints_include, \
             domain_constraints_exclude = excluded.domain_constraints_exclude",
        )
        .bind(&p.id)
        .bind(&p.owner_id)
        .bind(&p.project_id)
        .bind(&p.display_name)
        .bind(&p.description)
        .bind(p.high_assurance as i64)
        .bind(p.authentication_assurance_timeout)
        .bind(p.required_mfa as i64)
        .bind(list(&p.domain_constraints_include))
        .bind(list(&p.domain_constraints_exclude))
        .bind(now_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn policy(&self, id: &str) -> Result<Option<PolicyRow>> {
        let row = sqlx::query("SELECT * FROM auth_policies WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::policy_from_row).transpose()
    }

    /// Policies a client created, oldest first.
    pub async fn policies_of(&self, owner_id: &str) -> Result<Vec<PolicyRow>> {
        let rows =
            sqlx::query("SELECT * FROM auth_policies WHERE owner_id = $1 ORDER BY created_at, id")
                .bind(owner_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(Self::policy_from_row).collect()
    }

    /// Delete a policy. Returns false if there was none.
    pub async fn delete_policy(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM auth_policies WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Whether any registered endpoint names this policy.
    pub async fn policy_in_use(&self, id: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM endpoints WHERE authentication_policy = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    // ----- functions -----

    pub async fn insert_function(&self, f: &FunctionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO functions (id, owner_id, name, code, description, python_version, sdk_version, public, \
             ha_endpoint_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&f.id)
        .bind(&f.owner_id)
        .bind(&f.name)
        .bind(&f.code)
        .bind(f.description.clone())
        .bind(f.python_version.clone())
        .bind(f.sdk_version.clone())
        .bind(f.public as i64)
        .bind(f.ha_endpoint_id.clone())
        .bind(now_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn function(&self, id: &str) -> Result<Option<FunctionRow>> {
        let row = sqlx::query("SELECT * FROM functions WHERE id = $1 AND deleted = 0")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(FunctionRow {
                id: r.try_get("id")?,
                owner_id: r.try_get("owner_id")?,
                name: r.try_get("name")?,
                code: r.try_get("code")?,
                description: r.try_get("description")?,
                python_version: r.try_get("python_version")?,
                sdk_version: r.try_get("sdk_version")?,
                public: b(r.try_get("public")?),
                ha_endpoint_id: r.try_get("ha_endpoint_id")?,
            })
        })
        .transpose()
    }

    pub async fn delete_function(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE functions SET deleted = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- endpoints -----

    fn endpoint_from_row(r: &AnyRow) -> Result<EndpointRow> {
        Ok(EndpointRow {
            id: r.try_get("id")?,
            owner_id: r.try_get("owner_id")?,
            name: r.try_get("name")?,
            display_name: r.try_get("display_name")?,
            multi_user: b(r.try_get("multi_user")?),
            public: b(r.try_get("public")?),
            high_assurance: b(r.try_get("high_assurance")?),
            metadata: r.try_get("metadata")?,
            allowed_functions: r.try_get("allowed_functions")?,
            locked_until: r.try_get("locked_until")?,
            last_heartbeat: r.try_get("last_heartbeat")?,
            heartbeat_period: r.try_get("heartbeat_period")?,
            authentication_policy: r.try_get("authentication_policy")?,
            subscription_id: r.try_get("subscription_id")?,
        })
    }

    pub async fn endpoint(&self, id: &str) -> Result<Option<EndpointRow>> {
        let row = sqlx::query("SELECT * FROM endpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::endpoint_from_row).transpose()
    }

    pub async fn endpoints_visible_to(
        &self,
        owner: &str,
        include_public: bool,
    ) -> Result<Vec<EndpointRow>> {
        let rows = sqlx::query(
            "SELECT * FROM endpoints WHERE owner_id = $1 OR (public = 1 AND $2 = 1) ORDER BY created_at, id",
        )
        .bind(owner)
        .bind(include_public as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::endpoint_from_row).collect()
    }

    /// Insert or update an endpoint's registration (the caller checked ownership).
    pub async fn upsert_endpoint(&self, e: &EndpointRow) -> Result<()> {
        let now = now_i64();
        sqlx::query(
            "INSERT INTO endpoints (id, owner_id, name, display_name, multi_user, public, high_assurance, metadata, \
             allowed_functions, authentication_policy, subscription_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, display_name = excluded.display_name, \
             multi_user = excluded.multi_user, public = excluded.public, high_assurance = excluded.high_assurance, \
             metadata = excluded.metadata, allowed_functions = excluded.allowed_functions, \
             authentication_policy = excluded.authentication_policy, subscription_id = excluded.subscription_id, \
             updated_at = excluded.updated_at",
        )
        .bind(&e.id)
        .bind(&e.owner_id)
        .bind(&e.name)
        .bind(&e.display_name)
        .bind(e.multi_user as i64)
        .bind(e.public as i64)
        .bind(e.high_assurance as i64)
        .bind(&e.metadata)
        .bind(e.allowed_functions.clone())
        .bind(e.authentication_policy.clone())
        .bind(e.subscription_id.clone())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_endpoint(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM endpoints WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn lock_endpoint(&self, id: &str, until: i64) -> Result<()> {
        sqlx::query("UPDATE endpoints SET locked_until = $1 WHERE id = $2")
            .bind(until)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The recorded holder of an endpoint's connection, if any.
    pub async fn endpoint_holder(&self, id: &str) -> Result<Option<EndpointHolder>> {
        let row = sqlx::query(
            "SELECT holder_host, holder_token, holder_since FROM endpoints WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let host: Option<String> = r.try_get("holder_host")?;
        let token: Option<String> = r.try_get("holder_token")?;
        let since: Option<f64> = r.try_get("holder_since")?;
        Ok(match (host, since) {
            (Some(host), Some(since)) => Some(EndpointHolder {
                host,
                token: token.unwrap_or_default(),
                since,
            }),
            _ => None,
        })
    }

    /// Record `holder` as the holder of endpoint `id`, provided the holder recorded now is
    /// still the one read before (`previous_since`, `None` for no holder): of two
    /// registrations racing on several replicas only one wins. Returns whether it did.
    pub async fn claim_endpoint_holder(
        &self,
        id: &str,
        previous_since: Option<f64>,
        holder: &EndpointHolder,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE endpoints SET holder_host = $1, holder_token = $2, holder_since = $3 \
             WHERE id = $4 AND COALESCE(holder_since, -1.0) = $5",
        )
        .bind(&holder.host)
        .bind(&holder.token)
        .bind(holder.since)
        .bind(id)
        .bind(previous_since.unwrap_or(-1.0))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Forget the holder of endpoint `id` (after `stop --remote`).
    pub async fn release_endpoint_holder(&self, id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE endpoints SET holder_host = NULL, holder_token = NULL, holder_since = NULL \
             WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a heartbeat of a registered endpoint. Returns false if the id is not one.
    pub async fn endpoint_heartbeat(&self, id: &str, at: f64, period: f64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE endpoints SET last_heartbeat = $1, heartbeat_period = $2 WHERE id = $3",
        )
        .bind(at)
        .bind(period)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    // ----- user endpoints -----

    pub async fn ensure_uep(
        &self,
        id: &str,
        mep_id: &str,
        client_id: &str,
        user_opts: &str,
        user_runtime: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_endpoints (id, mep_id, client_id, user_opts, user_runtime, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(mep_id)
        .bind(client_id)
        .bind(user_opts)
        .bind(user_runtime)
        .bind(now_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ids of the user endpoints ever started under an endpoint.
    pub async fn uep_ids_of(&self, mep_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM user_endpoints WHERE mep_id = $1 ORDER BY id")
            .bind(mep_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    pub async fn uep(&self, id: &str) -> Result<Option<UepRow>> {
        let row = sqlx::query(
            "SELECT id, mep_id, start_sent_at, last_heartbeat, heartbeat_period, active, error, error_at \
             FROM user_endpoints WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(UepRow {
                id: r.try_get("id")?,
                mep_id: r.try_get("mep_id")?,
                start_sent_at: r.try_get("start_sent_at")?,
                last_heartbeat: r.try_get("last_heartbeat")?,
                heartbeat_period: r.try_get("heartbeat_period")?,
                active: b(r.try_get("active")?),
                error: r.try_get("error")?,
                error_at: r.try_get("error_at")?,
            })
        })
        .transpose()
    }

    pub async fn uep_start_sent(&self, id: &str, at: f64) -> Result<()> {
        sqlx::query("UPDATE user_endpoints SET start_sent_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record a user endpoint heartbeat. Returns false if the id is unknown.
    pub async fn uep_heartbeat(
        &self,
        id: &str,
        at: f64,
        period: f64,
        active: bool,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE user_endpoints SET last_heartbeat = $1, heartbeat_period = $2, active = $3 WHERE id = $4",
        )
        .bind(at)
        .bind(period)
        .bind(active as i64)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    pub async fn uep_error(&self, id: &str, at: f64, error: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE user_endpoints SET error = $1, error_at = $2, active = 0 WHERE id = $3",
        )
        .bind(error)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    // ----- task groups and tasks -----

    pub async fn task_group_owner(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT owner_id FROM task_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("owner_id")).transpose()?)
    }

    /// Create a task group if it does not exist; `create_queue` is sticky once true.
    pub async fn ensure_task_group(&self, id: &str, owner: &str, create_queue: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO task_groups (id, owner_id, create_queue, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET create_queue = CASE WHEN excluded.create_queue = 1 THEN 1 ELSE task_groups.create_queue END",
        )
        .bind(id)
        .bind(owner)
        .bind(create_queue as i64)
        .bind(now_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a batch of tasks in one transaction. The caller records tasks before it queues
    /// them (a fast endpoint's result must find its task) and calls [`Store::delete_tasks`]
    /// if queueing fails.
    pub async fn insert_tasks(
        &self,
        task_group_id: &str,
        owner: &str,
        endpoint_id: &str,
        uep_id: &str,
        tasks: &[NewTask],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let created = now_f64();
        for chunk in tasks.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO tasks (id, task_group_id, owner_id, function_id, endpoint_id, uep_id, status, created_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 8;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${},${},${},${},${},${},${},${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8
                ));
            }
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(t.id.clone())
                    .bind(task_group_id.to_string())
                    .bind(owner.to_string())
                    .bind(t.function_id.clone())
                    .bind(endpoint_id.to_string())
                    .bind(uep_id.to_string())
                    .bind("waiting-for-ep")
                    .bind(created);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remove tasks that could not be queued (the submit then fails as a whole).
    pub async fn delete_tasks(&self, ids: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("DELETE FROM tasks WHERE id IN ({})", placeholders.join(","));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn task_from_row(r: &AnyRow) -> Result<TaskRow> {
        Ok(TaskRow {
            id: r.try_get("id")?,
            task_group_id: r.try_get("task_group_id")?,
            owner_id: r.try_get("owner_id")?,
            endpoint_id: r.try_get("endpoint_id")?,
            status: r.try_get("status")?,
            result: r.try_get("result")?,
            exception: r.try_get("exception")?,
            details: r.try_get("details")?,
            completion_t: r.try_get("completion_t")?,
            forwarded: b(r.try_get("forwarded")?),
            created_at: r.try_get("created_at")?,
        })
    }

    const TASK_COLS: &'static str = "id, task_group_id, owner_id, endpoint_id, status, result, exception, details, completion_t, forwarded, created_at";

    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM tasks WHERE id = $1",
            Self::TASK_COLS
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(Self::task_from_row).transpose()
    }

    pub async fn tasks(&self, ids: &[String]) -> Result<Vec<TaskRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {} FROM tasks WHERE id IN ({})",
                Self::TASK_COLS,
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&self.pool).await? {
                out.push(Self::task_from_row(&r)?);
            }
        }
        Ok(out)
    }

    pub async fn tasks_of_group(&self, tg: &str) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM tasks WHERE task_group_id = $1 ORDER BY created_at, id",
            Self::TASK_COLS
        ))
        .bind(tg)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::task_from_row).collect()
    }

    /// Record outcomes; a task that already has one keeps it (results are at-least-once).
    /// Returns where each known task's result must go, with whether it was already forwarded.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<Vec<ForwardTarget>> {
        if outcomes.is_empty() {
            return Ok(vec![]);
        }
        // First outcome per task wins, within the batch as across batches.
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| seen.insert(o.task_id.as_str()))
            .collect();
        let mut tx = self.pool.begin().await?;
        for chunk in unique.chunks(500) {
            // One statement per chunk; VALUES columns are named column1.. in both databases.
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 6;
                    format!(
                        "(${},${},${},${},${},${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6
                    )
                })
                .collect();
            let sql = format!(
                "UPDATE tasks SET status = v.column2, result = v.column3, exception = v.column4, \
                 details = v.column5, completion_t = v.column6 FROM (VALUES {}) AS v \
                 WHERE tasks.id = v.column1 AND tasks.completion_t IS NULL",
                rows.join(",")
            );
            let mut q = sqlx::query(&sql);
            for o in chunk {
                q = q
                    .bind(o.task_id.clone())
                    .bind(if o.success { "success" } else { "failed" })
                    .bind(if o.success {
                        Some(o.data.clone())
                    } else {
                        None
                    })
                    .bind(if o.success {
                        None
                    } else {
                        Some(o.data.clone())
                    })
                    .bind(o.details.clone())
                    .bind(o.completion_t);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let ids: Vec<String> = outcomes.iter().map(|o| o.task_id.clone()).collect();
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT t.id, t.task_group_id, t.forwarded, g.create_queue, \
                 COALESCE(e.high_assurance, 0) AS ha FROM tasks t \
                 JOIN task_groups g ON g.id = t.task_group_id \
                 LEFT JOIN endpoints e ON e.id = t.endpoint_id WHERE t.id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&self.pool).await? {
                let state: i64 = r.try_get("forwarded")?;
                out.push(ForwardTarget {
                    task_id: r.try_get("id")?,
                    task_group_id: r.try_get("task_group_id")?,
                    forwarded: state == 1,
                    forwarding: state == 2,
                    create_queue: b(r.try_get("create_queue")?),
                    high_assurance: b(r.try_get("ha")?),
                });
            }
        }
        Ok(out)
    }

    /// A forward of these tasks' results is about to be published (`forwarded` 0 → 2; tasks
    /// already forwarded keep 1).
    pub async fn mark_forwarding(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE tasks SET forwarded = 2 WHERE forwarded = 0 AND id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    pub async fn mark_forwarded(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "UPDATE tasks SET forwarded = 1 WHERE id IN ({})",
                placeholders.join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id.clone());
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Ids of the tasks routed to a user endpoint that have no outcome yet.
    pub async fn pending_tasks_of_uep(&self, uep_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM tasks WHERE uep_id = $1 AND completion_t IS NULL")
            .bind(uep_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// User endpoints of an endpoint that still have tasks without an outcome, with what is
    /// needed to start them again: (uep id, client id, user_opts JSON, user_runtime JSON).
    pub async fn ueps_with_pending_tasks(
        &self,
        mep_id: &str,
    ) -> Result<Vec<(String, String, String, String)>> {
        let rows = sqlx::query(
            "SELECT u.id, u.client_id, u.user_opts, u.user_runtime FROM user_endpoints u \
             WHERE u.mep_id = $1 AND EXISTS (SELECT 1 FROM tasks t WHERE t.uep_id = u.id AND t.completion_t IS NULL)",
        )
        .bind(mep_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("client_id")?,
                    r.try_get("user_opts")?,
                    r.try_get("user_runtime")?,
                ))
            })
            .collect()
    }

    /// Count of tasks without an outcome (for status reports).
    pub async fn pending_count_of_endpoint(&self, endpoint_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM tasks WHERE endpoint_id = $1 AND completion_t IS NULL",
        )
        .bind(endpoint_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}
