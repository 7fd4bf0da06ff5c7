//! `delete` against the real self-hosted service (`gc-service`, in process, on SQLite and the
//! local RabbitMQ at 127.0.0.1:5672): a registered endpoint is removed from the service and
//! from disk, with client credentials issued by the service itself.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gc_service::broker::{Broker, StaticCredentials};
use gc_service::store::Store;
use gc_service::{AppState, ServiceConfig};
use serde_json::{Value, json};
use support::{ours, ours_with, tempdir};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Start the service on a free port; returns its base URL and a client id/secret.
fn start_service(db_dir: &std::path::Path) -> (String, String, String) {
    let db = format!("sqlite://{}", db_dir.join("svc.db").display());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let store = Store::connect(&db).await.expect("database");
            let id = uuid::Uuid::new_v4().to_string();
            let secret = gc_service::auth::random_secret();
            let hash = gc_service::auth::hash_secret(&secret).expect("hash");
            store
                .create_client(&id, "gc-endpoint test", &hash)
                .await
                .expect("client");
            let state = AppState {
                store,
                broker: Arc::new(Broker::new(AMQP.into(), 60_000)),
                creds: Arc::new(StaticCredentials {
                    endpoint_url: AMQP.into(),
                    sdk_url: AMQP.into(),
                }),
                cfg: Arc::new(ServiceConfig::default()),
                events: Arc::new(tokio::sync::Notify::new()),
            };
            gc_service::start_background(&state)
                .await
                .expect("RabbitMQ");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tx.send((format!("http://{addr}"), id, secret))
                .expect("send");
            axum_serve(listener, state).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("service start")
}

async fn axum_serve(listener: tokio::net::TcpListener, state: AppState) {
    let _ = axum::serve(listener, gc_service::router(state)).await;
}

#[test]
fn delete_removes_a_registered_endpoint_from_the_real_service() {
    let svc_dir = tempdir();
    let (base, id, secret) = start_service(svc_dir.path());
    let http = reqwest::blocking::Client::new();
    let token: Value = http
        .post(format!("{base}/auth/v2/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "scope",
                "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all",
            ),
        ])
        .send()
        .expect("token")
        .json()
        .expect("token json");
    let bearer = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let reg: Value = http
        .post(format!("{base}/v3/endpoints"))
        .bearer_auth(&bearer)
        .json(&json!({"endpoint_name": "svc1", "metadata": {"endpoint_version": "0.1.0"}}))
        .send()
        .expect("register")
        .json()
        .expect("register json");
    let ep_id = reg["endpoint_id"]
        .as_str()
        .expect("endpoint_id")
        .to_string();

    let d = tempdir();
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "svc1"]).code,
        0
    );
    let dir = d.path().join("svc1");
    std::fs::write(
        dir.join("endpoint.json"),
        format!(r#"{{"endpoint_id": "{ep_id}"}}"#),
    )
    .unwrap();

    let env = [
        ("GLOBUS_SDK_SERVICE_URL_COMPUTE", base.as_str()),
        ("GLOBUS_SDK_SERVICE_URL_AUTH", &format!("{base}/auth/")),
        ("GLOBUS_COMPUTE_CLIENT_ID", id.as_str()),
        ("GLOBUS_COMPUTE_CLIENT_SECRET", secret.as_str()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, *v)).collect();
    let r = ours_with(d.path(), &["delete", "--yes", "svc1"], "", &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.starts_with(&format!(
        "> Endpoint {ep_id} has been deleted from the web service\n"
    )));
    assert!(!dir.exists());
    let after = http
        .get(format!("{base}/v2/endpoints/{ep_id}"))
        .bearer_auth(&bearer)
        .send()
        .expect("get");
    assert_eq!(after.status().as_u16(), 404);

    // Deleting it again: the service refuses, the (re-created) local directory is kept.
    assert_eq!(
        ours(d.path(), &["configure", "--multi-user", "false", "svc1"]).code,
        0
    );
    std::fs::write(
        dir.join("endpoint.json"),
        format!(r#"{{"endpoint_id": "{ep_id}"}}"#),
    )
    .unwrap();
    let again = ours_with(d.path(), &["delete", "--yes", "svc1"], "", &env);
    assert_ne!(again.code, 0, "{again:?}");
    assert!(dir.exists());
}
