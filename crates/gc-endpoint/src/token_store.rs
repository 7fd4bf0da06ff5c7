//! The token store: `<compute dir>/storage.db`, the SQLite file upstream's SDK keeps its
//! tokens in (globus-sdk `SQLiteTokenStorage`, schema version 2), created mode 0600.
//!
//! Rows of `token_storage` are keyed by namespace and resource server, as upstream's:
//! `user/<environment>` for a stored login, `clientprofile/<environment>/<client id>` when
//! `GLOBUS_COMPUTE_CLIENT_ID` / `_SECRET` are set (ENDPOINT.md §1.2). The token JSON has
//! upstream's fields (`resource_server`, `scope`, `access_token`, `refresh_token`,
//! `expires_at_seconds`, `token_type`).
//!
//! Our service issues tokens only for client identities and without refresh tokens, so a
//! stored login (`login` without the environment variables) also keeps the client identity it
//! was given, in a table of our own (`gcrs_client_identity`), to obtain new tokens once the
//! stored ones expire -- the part a refresh token plays upstream. `logout` removes both.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

/// File name inside the Compute directory.
pub const FILE_NAME: &str = "storage.db";

/// Why the token store could not be used.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError(format!("token store {}: {e}", path.display()))
}

/// One stored token (one resource server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// `funcx_service`, `auth.globus.org`, ...
    pub resource_server: String,
    /// Space-separated scopes.
    pub scope: String,
    /// The bearer token.
    pub access_token: String,
    /// Unix seconds.
    pub expires_at_seconds: i64,
}

impl StoredToken {
    /// Whether the token is still good for at least a minute and covers `scope` (every word).
    pub fn usable_for(&self, scope: &str, now: i64) -> bool {
        self.expires_at_seconds > now + 60 && self.covers(scope)
    }

    /// Whether the token was issued for every word of `scope`.
    pub fn covers(&self, scope: &str) -> bool {
        scope
            .split_whitespace()
            .all(|s| self.scope.split_whitespace().any(|have| have == s))
    }

    fn to_json(&self) -> Value {
        json!({
            "resource_server": self.resource_server,
            "identity_id": Value::Null,
            "scope": self.scope,
            "access_token": self.access_token,
            "refresh_token": Value::Null,
            "expires_at_seconds": self.expires_at_seconds,
            "token_type": "Bearer",
        })
    }

    fn from_json(resource_server: &str, v: &Value) -> Option<Self> {
        Some(Self {
            resource_server: resource_server.to_string(),
            scope: v.get("scope")?.as_str()?.to_string(),
            access_token: v.get("access_token")?.as_str()?.to_string(),
            expires_at_seconds: v.get("expires_at_seconds")?.as_i64()?,
        })
    }
}

/// The namespace of a login: `clientprofile/<env>/<id>` for a client identity from the
/// environment, else `user/<env>`.
pub fn namespace(environment: &str, env_client_id: Option<&str>) -> String {
    match env_client_id {
        Some(id) => format!("clientprofile/{environment}/{id}"),
        None => format!("user/{environment}"),
    }
}

/// An open `storage.db`.
pub struct TokenStore {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS token_storage (
    namespace VARCHAR NOT NULL,
    resource_server VARCHAR NOT NULL,
    token_data_json VARCHAR NOT NULL,
    PRIMARY KEY (namespace, resource_server)
);
CREATE TABLE IF NOT EXISTS sdk_storage_adapter_internal (
    attribute VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    PRIMARY KEY (attribute)
);
INSERT OR IGNORE INTO sdk_storage_adapter_internal(attribute, value)
    VALUES ('globus-sdk.database_schema_version', '2');
CREATE TABLE IF NOT EXISTS gcrs_client_identity (
    namespace VARCHAR NOT NULL PRIMARY KEY,
    client_id VARCHAR NOT NULL,
    client_secret VARCHAR NOT NULL
);
";

impl TokenStore {
    /// Open (creating, mode 0600) `<compute_dir>/storage.db`.
    pub fn open(compute_dir: &Path) -> Result<Self, StoreError> {
        let path = compute_dir.join(FILE_NAME);
        // Create the file ourselves so it is never readable by others, whatever the umask.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError(format!("token store {}: {e}", path.display())))?;
        let conn = Connection::open(&path).map_err(sql_error(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql_error(&path))?;
        conn.execute_batch(SCHEMA).map_err(sql_error(&path))?;
        Ok(Self { conn, path })
    }

    /// Open the store only if the file exists (reading never creates it).
    pub fn open_existing(compute_dir: &Path) -> Result<Option<Self>, StoreError> {
        if compute_dir.join(FILE_NAME).is_file() {
            Self::open(compute_dir).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Replace the tokens of the given resource servers in `namespace`.
    pub fn store_tokens(&self, namespace: &str, tokens: &[StoredToken]) -> Result<(), StoreError> {
        for t in tokens {
            self.conn
                .execute(
                    "REPLACE INTO token_storage(namespace, resource_server, token_data_json) VALUES (?1, ?2, ?3)",
                    params![namespace, t.resource_server, t.to_json().to_string()],
                )
                .map_err(sql_error(&self.path))?;
        }
        Ok(())
    }

    /// Every token stored in `namespace` (rows that do not parse are skipped).
    pub fn tokens(&self, namespace: &str) -> Result<Vec<StoredToken>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT resource_server, token_data_json FROM token_storage WHERE namespace = ?1 ORDER BY resource_server")
            .map_err(sql_error(&self.path))?;
        let rows = stmt
            .query_map(params![namespace], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(sql_error(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            let (rs, text) = row.map_err(sql_error(&self.path))?;
            if let Some(t) = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| StoredToken::from_json(&rs, &v))
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Store the client identity of a login in `namespace`.
    pub fn set_identity(&self, namespace: &str, id: &str, secret: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "REPLACE INTO gcrs_client_identity(namespace, client_id, client_secret) VALUES (?1, ?2, ?3)",
                params![namespace, id, secret],
            )
            .map_err(sql_error(&self.path))?;
        Ok(())
    }

    /// The client identity stored in `namespace`, if any.
    pub fn identity(&self, namespace: &str) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT client_id, client_secret FROM gcrs_client_identity WHERE namespace = ?1",
                params![namespace],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql_error(&self.path))
    }

    /// Remove every token and the stored identity of `namespace`; returns the removed tokens.
    pub fn remove_namespace(&self, namespace: &str) -> Result<Vec<StoredToken>, StoreError> {
        let tokens = self.tokens(namespace)?;
        self.conn
            .execute(
                "DELETE FROM token_storage WHERE namespace = ?1",
                params![namespace],
            )
            .map_err(sql_error(&self.path))?;
        self.conn
            .execute(
                "DELETE FROM gcrs_client_identity WHERE namespace = ?1",
                params![namespace],
            )
            .map_err(sql_error(&self.path))?;
        Ok(tokens)
    }
}

/// Tokens of a token-endpoint response (`access_token` … plus `other_tokens`), as stored.
pub fn tokens_of_response(v: &Value, now: i64) -> Vec<StoredToken> {
    let one = |t: &Value| -> Option<StoredToken> {
        Some(StoredToken {
            resource_server: t.get("resource_server")?.as_str()?.to_string(),
            scope: t.get("scope")?.as_str()?.to_string(),
            access_token: t.get("access_token")?.as_str()?.to_string(),
            expires_at_seconds: now + t.get("expires_in").and_then(Value::as_i64).unwrap_or(0),
        })
    };
    let mut out: Vec<StoredToken> = one(v).into_iter().collect();
    if let Some(others) = v.get("other_tokens").and_then(Value::as_array) {
        out.extend(others.iter().filter_map(one));
    }
    out
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn token(rs: &str, scope: &str, exp: i64) -> StoredToken {
        StoredToken {
            resource_server: rs.into(),
            scope: scope.into(),
            access_token: format!("tok-{rs}"),
            expires_at_seconds: exp,
        }
    }

    #[test]
    fn store_round_trip_mode_and_upstream_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ns = namespace("local", None);
        assert_eq!(ns, "user/local");
        let t = token("funcx_service", "a b", 100);
        store.store_tokens(&ns, std::slice::from_ref(&t)).unwrap();
        store.set_identity(&ns, "id", "secret").unwrap();
        assert_eq!(store.tokens(&ns).unwrap(), vec![t.clone()]);
        assert!(store.tokens("user/other").unwrap().is_empty());
        assert_eq!(
            store.identity(&ns).unwrap(),
            Some(("id".into(), "secret".into()))
        );
        drop(store);

        // Upstream's reader sees the same rows: the SDK's JSON fields, schema version 2.
        let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
        let json: String = conn
            .query_row(
                "SELECT token_data_json FROM token_storage WHERE namespace='user/local'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["expires_at_seconds"], 100);
        assert_eq!(v["token_type"], "Bearer");
        let version: String = conn
            .query_row(
                "SELECT value FROM sdk_storage_adapter_internal WHERE attribute='globus-sdk.database_schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, "2");

        let store = TokenStore::open(dir.path()).unwrap();
        assert_eq!(store.remove_namespace(&ns).unwrap(), vec![t]);
        assert!(store.tokens(&ns).unwrap().is_empty());
        assert_eq!(store.identity(&ns).unwrap(), None);
    }

    #[test]
    fn usable_needs_time_left_and_every_scope() {
        let t = token("auth.globus.org", "openid email", 1000);
        assert!(t.usable_for("openid", 900));
        assert!(t.usable_for("email openid", 900));
        assert!(!t.usable_for("openid profile", 900));
        assert!(!t.usable_for("openid", 950));
    }

    #[test]
    fn response_tokens() {
        let v = json!({
            "access_token": "a", "scope": "s1", "resource_server": "funcx_service",
            "expires_in": 60, "token_type": "Bearer",
            "other_tokens": [{"access_token": "b", "scope": "openid",
                              "resource_server": "auth.globus.org", "expires_in": 30}]
        });
        let toks = tokens_of_response(&v, 1000);
        assert_eq!(toks.len(), 2);
        assert_eq!(toks[0].expires_at_seconds, 1060);
        assert_eq!(toks[1].resource_server, "auth.globus.org");
        assert!(tokens_of_response(&json!({"error": "x"}), 0).is_empty());
    }
}
