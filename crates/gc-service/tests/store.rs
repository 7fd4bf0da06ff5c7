//! The store against real databases: a fresh SQLite file and a fresh PostgreSQL database
//! (`GCRS_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`, is used
//! only to create and drop the per-run database).

use gc_service::store::{
    EndpointRow, FunctionRow, IdentityRow, NewTask, Outcome, PolicyRow, Store, now_f64, now_i64,
};
use sqlx::Connection;

fn admin_url() -> String {
    std::env::var("GCRS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

struct PgDb {
    name: String,
}

impl PgDb {
    async fn create() -> (Self, String) {
        let name = format!("gcrs_store_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin_url())
            .await
            .expect("PostgreSQL reachable");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) if i > "postgres://".len() => format!("{}/{name}", &base[..i]),
            _ => format!("{base}/{name}"),
        };
        (Self { name }, url)
    }

    async fn drop_db(self) {
        let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

async fn exercise(url: &str) {
    let store = Store::connect(url).await.unwrap();
    // Migrations are idempotent: a second replica connecting applies nothing twice.
    let again = Store::connect(url).await.unwrap();

    // Clients, identities, tokens.
    store.create_client("c1", "one", "hash").await.unwrap();
    assert_eq!(
        store.client_secret_hash("c1").await.unwrap().as_deref(),
        Some("hash")
    );
    for (id, primary) in [("i1", true), ("i2", false)] {
        store
            .add_identity(&IdentityRow {
                id: id.into(),
                client_id: "c1".into(),
                username: format!("{id}@example.org"),
                name: None,
                email: Some(format!("{id}@example.org")),
                identity_provider: "p".into(),
                identity_provider_display_name: "P".into(),
                organization: None,
                is_primary: primary,
                created_at: now_i64(),
            })
            .await
            .unwrap();
    }
    let ids: Vec<String> = again
        .identities_of("c1")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["i1", "i2"]);
    store
        .insert_token("live", "c1", "funcx_service", "s", now_i64() + 100)
        .await
        .unwrap();
    store
        .insert_token("expired", "c1", "funcx_service", "s", now_i64() - 1)
        .await
        .unwrap();
    assert!(store.valid_token("live").await.unwrap().is_some());
    assert!(store.valid_token("expired").await.unwrap().is_none());
    assert!(store.valid_token("unknown").await.unwrap().is_none());

    // Tasks: recorded in one go; tasks that could not be queued are removed again.
    store.ensure_task_group("tg", "c1", true).await.unwrap();
    let tasks: Vec<NewTask> = (0..450)
        .map(|i| NewTask {
            id: format!("t{i}"),
            function_id: "f".into(),
        })
        .collect();
    let unqueued: Vec<NewTask> = (0..10)
        .map(|i| NewTask {
            id: format!("x{i}"),
            function_id: "f".into(),
        })
        .collect();
    store
        .insert_tasks("tg", "c1", "ep", "uep", &unqueued)
        .await
        .unwrap();
    assert!(store.task("x0").await.unwrap().is_some());
    let ids: Vec<String> = unqueued.iter().map(|t| t.id.clone()).collect();
    store.delete_tasks(&ids).await.unwrap();
    assert!(store.task("x0").await.unwrap().is_none());
    store
        .insert_tasks("tg", "c1", "ep", "uep", &tasks)
        .await
        .unwrap();
    assert_eq!(store.tasks_of_group("tg").await.unwrap().len(), 450);
    assert_eq!(store.pending_tasks_of_uep("uep").await.unwrap().len(), 450);

    // Outcomes: the first one wins, within a batch and across batches.
    let outcome = |id: &str, ok: bool, data: &str| Outcome {
        task_id: id.into(),
        success: ok,
        data: data.into(),
        details: None,
        completion_t: now_f64(),
    };
    let targets = store
        .record_outcomes(&[
            outcome("t1", true, "first"),
            outcome("t1", false, "second"),
            outcome("nope", true, "x"),
        ])
        .await
        .unwrap();
    assert_eq!(targets.len(), 1);
    assert!(!targets[0].forwarded && !targets[0].forwarding && targets[0].create_queue);
    // Forwarding: 0 -> 2 (a forward of unknown fate) -> 1; marking never goes back.
    store.mark_forwarding(&["t1".into()]).await.unwrap();
    let targets = store
        .record_outcomes(&[outcome("t1", false, "again")])
        .await
        .unwrap();
    assert!(targets[0].forwarding && !targets[0].forwarded);
    store.mark_forwarded(&["t1".into()]).await.unwrap();
    store.mark_forwarding(&["t1".into()]).await.unwrap();
    let targets = store
        .record_outcomes(&[outcome("t1", false, "third")])
        .await
        .unwrap();
    assert!(targets[0].forwarded && !targets[0].forwarding);
    let t1 = store.task("t1").await.unwrap().unwrap();
    assert_eq!(
        (t1.status.as_str(), t1.result.as_deref(), t1.exception),
        ("success", Some("first"), None)
    );
    assert!(t1.completion_t.is_some());
    let t2 = store
        .record_outcomes(&[outcome("t2", false, "boom")])
        .await
        .unwrap();
    assert_eq!(t2.len(), 1);
    let t2 = store.task("t2").await.unwrap().unwrap();
    assert_eq!(
        (t2.status.as_str(), t2.exception.as_deref()),
        ("failed", Some("boom"))
    );
    assert_eq!(store.pending_tasks_of_uep("uep").await.unwrap().len(), 448);
    let many: Vec<String> = (0..450).map(|i| format!("t{i}")).collect();
    assert_eq!(store.tasks(&many).await.unwrap().len(), 450);

    // User endpoints.
    store.ensure_uep("u", "ep", "c1", "{}", "{}").await.unwrap();
    assert!(store.uep_heartbeat("u", 10.0, 5.0, true).await.unwrap());
    assert!(!store.uep_heartbeat("other", 10.0, 5.0, true).await.unwrap());
    assert!(store.uep_error("u", 11.0, "failed").await.unwrap());
    let u = store.uep("u").await.unwrap().unwrap();
    assert_eq!(
        (u.active, u.error.as_deref(), u.error_at),
        (false, Some("failed"), Some(11.0))
    );

    policies_and_endpoints(&store).await;

    // Revoking a client kills its tokens.
    assert!(store.revoke_client("c1").await.unwrap());
    assert!(store.valid_token("live").await.unwrap().is_none());
    assert!(store.client_secret_hash("c1").await.unwrap().is_none());
}

/// Authentication policies round-trip (lists as JSON, nulls kept), endpoints keep the policy
/// and subscription they registered with, and tokens record when their holder authenticated.
async fn policies_and_endpoints(store: &Store) {
    let tok = store.valid_token("live").await.unwrap().unwrap();
    let at = tok.authenticated_at.expect("authentication time recorded");
    assert!((now_i64() - at).abs() <= 5);

    let mut p = PolicyRow {
        id: "p1".into(),
        owner_id: "c1".into(),
        project_id: "proj".into(),
        display_name: "Uni only".into(),
        description: String::new(),
        high_assurance: true,
        authentication_assurance_timeout: Some(1800),
        required_mfa: false,
        domain_constraints_include: Some(vec!["uni.edu".into(), "*.uni.edu".into()]),
        domain_constraints_exclude: None,
    };
    store.upsert_policy(&p).await.unwrap();
    assert_eq!(store.policy("p1").await.unwrap().as_ref(), Some(&p));
    p.domain_constraints_include = None;
    p.domain_constraints_exclude = Some(vec!["evil.org".into()]);
    p.authentication_assurance_timeout = None;
    store.upsert_policy(&p).await.unwrap();
    assert_eq!(store.policy("p1").await.unwrap().as_ref(), Some(&p));
    assert_eq!(store.policies_of("c1").await.unwrap(), vec![p.clone()]);
    assert!(store.policies_of("other").await.unwrap().is_empty());
    assert!(store.policy("nope").await.unwrap().is_none());
    assert!(!store.policy_in_use("p1").await.unwrap());

    let mut ep = EndpointRow {
        id: "ep-ha".into(),
        owner_id: "c1".into(),
        name: "ha".into(),
        display_name: "ha".into(),
        multi_user: false,
        public: true,
        high_assurance: true,
        metadata: "{}".into(),
        allowed_functions: None,
        locked_until: None,
        last_heartbeat: None,
        heartbeat_period: None,
        authentication_policy: Some("p1".into()),
        subscription_id: Some("sub".into()),
    };
    store.upsert_endpoint(&ep).await.unwrap();
    let got = store.endpoint("ep-ha").await.unwrap().unwrap();
    assert_eq!(
        (
            got.authentication_policy.as_deref(),
            got.subscription_id.as_deref(),
            got.high_assurance
        ),
        (Some("p1"), Some("sub"), true)
    );
    assert!(store.policy_in_use("p1").await.unwrap());
    // Re-registration without a policy clears it.
    ep.authentication_policy = None;
    store.upsert_endpoint(&ep).await.unwrap();
    assert_eq!(
        store
            .endpoint("ep-ha")
            .await
            .unwrap()
            .unwrap()
            .authentication_policy,
        None
    );
    assert!(store.delete_policy("p1").await.unwrap());
    assert!(!store.delete_policy("p1").await.unwrap());
    store.delete_endpoint("ep-ha").await.unwrap();

    // Functions remember the high-assurance endpoint they are bound to.
    for (id, ha) in [("fn-ha", Some("ep-ha".to_string())), ("fn-plain", None)] {
        store
            .insert_function(&FunctionRow {
                id: id.into(),
                owner_id: "c1".into(),
                name: "f".into(),
                code: "code".into(),
                description: None,
                python_version: None,
                sdk_version: None,
                public: false,
                ha_endpoint_id: ha.clone(),
            })
            .await
            .unwrap();
        assert_eq!(
            store.function(id).await.unwrap().unwrap().ha_endpoint_id,
            ha
        );
    }

    // Tasks remember the endpoint they ran on.
    assert_eq!(store.task("t1").await.unwrap().unwrap().endpoint_id, "ep");
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&format!("sqlite://{}/t.db", dir.path().display())).await;
}

#[tokio::test]
async fn postgres_store() {
    let (db, url) = PgDb::create().await;
    exercise(&url).await;
    db.drop_db().await;
}
