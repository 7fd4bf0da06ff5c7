//! `gc-service`: the self-hostable Globus Compute web service and its admin commands.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use uuid::Uuid;

use gc_service::broker::{Broker, CredentialIssuer, StaticCredentials};
use gc_service::rabbit_admin::ManagedCredentials;
use gc_service::store::{IdentityRow, Store, now_i64};
use gc_service::{AppState, ServiceConfig, auth};

/// Globus Compute web service (Auth emulation + compute REST API + RabbitMQ routing).
#[derive(Parser)]
#[command(name = "gc-service", version)]
struct Cli {
    /// Database URL: `sqlite:///path/file.db` or `postgres://user@host/db`.
    /// Default: a SQLite file under $XDG_DATA_HOME/gc-service (or ~/.local/share/gc-service).
    #[arg(long, global = true, env = "GCRS_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web service.
    Serve(ServeArgs),
    /// Manage API clients (the GLOBUS_COMPUTE_CLIENT_ID/SECRET pairs users and endpoints use).
    #[command(subcommand)]
    Client(ClientCmd),
    /// Manage the Globus-style identities attached to a client.
    #[command(subcommand)]
    Identity(IdentityCmd),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on. The SDK's "local" environment expects 127.0.0.1:5000.
    #[arg(long, env = "GCRS_LISTEN", default_value = "127.0.0.1:5000")]
    listen: String,
    /// AMQP URL the service itself uses.
    #[arg(
        long,
        env = "GCRS_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2F"
    )]
    amqp_url: String,
    /// AMQP URL handed to endpoints (default: --amqp-url).
    #[arg(long, env = "GCRS_ENDPOINT_AMQP_URL")]
    endpoint_amqp_url: Option<String>,
    /// AMQP URL handed to SDK result watchers (default: --endpoint-amqp-url).
    #[arg(long, env = "GCRS_SDK_AMQP_URL")]
    sdk_amqp_url: Option<String>,
    /// Prefix of the per-task-group SDK result queues.
    #[arg(long, env = "GCRS_QUEUE_PREFIX", default_value = "gcrs_results_")]
    queue_prefix: String,
    /// Seconds a submit waits for a user endpoint's first heartbeat before queueing anyway.
    #[arg(long, env = "GCRS_UEP_START_TIMEOUT", default_value_t = 30.0)]
    uep_start_timeout: f64,
    /// Lifetime of issued access tokens, seconds.
    #[arg(long, env = "GCRS_TOKEN_LIFETIME", default_value_t = 172_800)]
    token_lifetime: i64,
    /// Idle seconds after which an unused SDK result queue is deleted by the broker.
    #[arg(long, env = "GCRS_RESULT_QUEUE_EXPIRY", default_value_t = 7 * 24 * 3600)]
    result_queue_expiry: i64,
    /// RabbitMQ management API, `http://USER:PASS@host:15672`. When set, every endpoint and
    /// user endpoint gets its own broker user limited to its own queues (in the vhost of the
    /// endpoint URL); otherwise endpoints get the endpoint URL's credentials.
    #[arg(long, env = "GCRS_BROKER_ADMIN_URL", hide_env_values = true)]
    broker_admin_url: Option<String>,
    /// Secret from which per-endpoint broker passwords are derived (same on every replica;
    /// default: the management API password).
    #[arg(long, env = "GCRS_BROKER_CREDENTIAL_SECRET", hide_env_values = true)]
    broker_credential_secret: Option<String>,
    /// Token that opens the admin status page `/admin/status` (as a bearer token or the
    /// password of HTTP Basic authentication). Without it the page is not served.
    #[arg(long, env = "GCRS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[derive(Subcommand)]
enum ClientCmd {
    /// Create a client; prints GLOBUS_COMPUTE_CLIENT_ID=... and GLOBUS_COMPUTE_CLIENT_SECRET=...
    Create {
        /// A label for the client.
        #[arg(long)]
        name: String,
        /// Print JSON instead of shell assignments.
        #[arg(long)]
        json: bool,
    },
    /// List clients.
    List,
    /// Revoke a client and all its tokens.
    Revoke { client_id: Uuid },
}

#[derive(Subcommand)]
enum IdentityCmd {
    /// Attach an identity to a client (the first attached, or one added with --primary, is the
    /// effective identity; all of them form the identity set endpoints map).
    Add {
        #[arg(long)]
        client: Uuid,
        /// Globus username, e.g. alice@uchicago.edu.
        #[arg(long)]
        username: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Identity provider display name, e.g. "University of Chicago".
        #[arg(long, default_value = "Globus ID")]
        provider: String,
        /// Identity provider id (default: derived from the provider name).
        #[arg(long)]
        provider_id: Option<Uuid>,
        #[arg(long)]
        organization: Option<String>,
        /// Identity id (default: random).
        #[arg(long)]
        id: Option<Uuid>,
        /// Make this the effective identity.
        #[arg(long)]
        primary: bool,
    },
    /// List a client's identities.
    List {
        #[arg(long)]
        client: Uuid,
    },
}

fn default_database_url() -> Result<String> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("neither XDG_DATA_HOME nor HOME is set; pass --database-url")?;
    let dir = base.join("gc-service");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("gc-service.db").display()))
}

fn provider_uuid(name: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("gc-service:idp:{name}").as_bytes(),
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GCRS_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,lapin=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let url = match cli.database_url {
        Some(u) => u,
        None => default_database_url()?,
    };
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("opening database {}", redact(&url)))?;
    match cli.command {
        Command::Serve(args) => serve(store, args).await,
        Command::Client(cmd) => client_cmd(store, cmd).await,
        Command::Identity(cmd) => identity_cmd(store, cmd).await,
    }
}

/// Hide a password in a URL for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn serve(store: Store, args: ServeArgs) -> Result<()> {
    if !(args.uep_start_timeout.is_finite() && args.uep_start_timeout >= 0.0) {
        bail!("--uep-start-timeout must be a non-negative number of seconds");
    }
    let endpoint_url = args
        .endpoint_amqp_url
        .clone()
        .unwrap_or_else(|| args.amqp_url.clone());
    let sdk_url = args
        .sdk_amqp_url
        .clone()
        .unwrap_or_else(|| endpoint_url.clone());
    let cfg = ServiceConfig {
        queue_prefix: args.queue_prefix,
        token_lifetime_s: args.token_lifetime,
        uep_start_timeout: Duration::from_secs_f64(args.uep_start_timeout),
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        ..ServiceConfig::default()
    };
    let state = AppState {
        store,
        broker: Arc::new(Broker::new(
            args.amqp_url.clone(),
            args.result_queue_expiry * 1000,
        )),
        creds: match &args.broker_admin_url {
            Some(admin) => Arc::new(
                ManagedCredentials::new(
                    admin,
                    &endpoint_url,
                    sdk_url,
                    args.broker_credential_secret.clone(),
                )
                .context("--broker-admin-url")?,
            ) as Arc<dyn CredentialIssuer>,
            None => Arc::new(StaticCredentials {
                endpoint_url,
                sdk_url,
            }),
        },
        cfg: Arc::new(cfg),
        events: Arc::new(tokio::sync::Notify::new()),
    };
    gc_service::start_background(&state)
        .await
        .with_context(|| format!("connecting to RabbitMQ at {}", redact(&args.amqp_url)))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, "gc-service ready");
    axum::serve(listener, gc_service::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
}

async fn client_cmd(store: Store, cmd: ClientCmd) -> Result<()> {
    match cmd {
        ClientCmd::Create { name, json } => {
            let id = Uuid::new_v4().to_string();
            let secret = auth::random_secret();
            let hash =
                auth::hash_secret(&secret).map_err(|e| anyhow::anyhow!("hashing secret: {e}"))?;
            store.create_client(&id, &name, &hash).await?;
            // A client acts under its own identity until a user identity is attached.
            store
                .add_identity(&IdentityRow {
                    id: id.clone(),
                    client_id: id.clone(),
                    username: format!("{id}@clients.auth.globus.org"),
                    name: Some(name.clone()),
                    email: None,
                    identity_provider: provider_uuid("Globus Auth").to_string(),
                    identity_provider_display_name: "Globus Auth".into(),
                    organization: None,
                    is_primary: true,
                    created_at: now_i64(),
                })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"client_id": id, "client_secret": secret, "name": name})
                );
            } else {
                println!("GLOBUS_COMPUTE_CLIENT_ID={id}");
                println!("GLOBUS_COMPUTE_CLIENT_SECRET={secret}");
            }
        }
        ClientCmd::List => {
            for c in store.list_clients().await? {
                let status = if c.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                let created = chrono::DateTime::from_timestamp(c.created_at, 0).unwrap_or_default();
                println!("{}\t{}\t{}\t{}", c.id, status, created.to_rfc3339(), c.name);
            }
        }
        ClientCmd::Revoke { client_id } => {
            if !store.revoke_client(&client_id.to_string()).await? {
                bail!("no active client {client_id}");
            }
            println!("revoked {client_id}");
        }
    }
    Ok(())
}

async fn identity_cmd(store: Store, cmd: IdentityCmd) -> Result<()> {
    match cmd {
        IdentityCmd::Add {
            client,
            username,
            name,
            email,
            provider,
            provider_id,
            organization,
            id,
            primary,
        } => {
            let client_id = client.to_string();
            let existing = store.identities_of(&client_id).await?;
            if store
                .list_clients()
                .await?
                .iter()
                .all(|c| c.id != client_id)
            {
                bail!("no client {client_id}");
            }
            // The first user identity replaces the client's own identity as the effective one.
            let only_client_identity = existing.iter().all(|i| i.id == client_id);
            let id = id.unwrap_or_else(Uuid::new_v4).to_string();
            store
                .add_identity(&IdentityRow {
                    id: id.clone(),
                    client_id,
                    username,
                    name,
                    email,
                    identity_provider: provider_id
                        .unwrap_or_else(|| provider_uuid(&provider))
                        .to_string(),
                    identity_provider_display_name: provider.clone(),
                    organization: organization.or(Some(provider)),
                    is_primary: primary || only_client_identity,
                    created_at: now_i64(),
                })
                .await
                .context("adding identity (is the id or username already used?)")?;
            println!("{id}");
        }
        IdentityCmd::List { client } => {
            for i in store.identities_of(&client.to_string()).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    i.id,
                    if i.is_primary { "primary" } else { "linked" },
                    i.username,
                    i.email.unwrap_or_default(),
                    i.identity_provider_display_name
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(redact("amqp://u:p@h:5672/%2F"), "amqp://u:***@h:5672/%2F");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
