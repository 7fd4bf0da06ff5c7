//! Background consumers of the `results` and `heartbeats` queues.
//!
//! Results: decode, record (first outcome wins), forward the endpoint's bytes to the task
//! group's SDK queue with a confirmed publish, mark forwarded, and only then ack — so a crash at
//! any point redelivers instead of losing. Deliveries are handled in batches (one transaction,
//! pipelined confirms, one `multiple` ack) to keep up with a busy endpoint.
//!
//! **Forwarding is idempotent per task** (each result reaches the SDK queue once), with
//! evidence rather than guesswork for the one undecidable moment — a publish the broker may
//! have taken whose confirm never arrived (the service killed, or the broker connection lost,
//! in between):
//!
//! 1. before publishing, the task is marked *forwarding* (`tasks.forwarded = 2`);
//! 2. the result is published to the SDK queue with a `BCC` to the service's own durable
//!    [`Q_FORWARD_RECEIPTS`] queue: one publish that the broker routes to both queues in the
//!    same step, so the receipt exists exactly when the SDK's copy was routed;
//! 3. on the confirm the task is marked *forwarded* (1); independently, the receipt consumer
//!    marks every task whose receipt it reads *forwarded*;
//! 4. a redelivered result whose task is still *forwarding* is a forward of unknown fate: the
//!    results consumer publishes a sentinel to the receipt queue and waits until the receipt
//!    consumer has read it — every receipt routed before it has been read and recorded by then
//!    — and publishes again only the tasks still *forwarding*.
//!
//! What remains (docs/reliability.md): receipts are decided by *routing*, so the evidence is
//! exact while the broker lives; a broker killed between routing and writing both queues to
//! disk could keep one copy and not the other. A sentinel another replica consumes is not
//! seen here: after [`BARRIER_TIMEOUT`] the forward is published again (at least once).
//!
//! Heartbeats: record liveness of endpoints and user endpoints. A failure notice for a user
//! endpoint that *died* — killed by a signal (the core endpoint's `(UserEndpointTerminated)`
//! notice) or refused to start because the dead one's PID file is still fresh (`(SystemExit)
//! 73`) — leaves its tasks pending: the user endpoint acknowledges a task only once its result
//! is safe, so the unfinished ones are still on its task queue, and the service starts the
//! user endpoint again once the PID-file window (3 × its heartbeat period) has passed. After
//! [`MAX_QUICK_DEATHS`] such deaths within [`DEATH_WINDOW`] (a task that kills its user
//! endpoint every time), and for every other failure notice, the tasks still waiting on that
//! user endpoint fail with the notice's text.
//!
//! Several replicas may consume the same queues: every effect goes through the database.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use crate::AppState;
use crate::broker::{Pending, Q_FORWARD_RECEIPTS, Q_HEARTBEATS, Q_RESULTS};
use crate::error::{BrokerError, StoreError};
use crate::messages::{Incoming, StatusInfo, pack_failed_result, pack_ha_result_notice, unpack};
use crate::store::{Outcome, now_f64};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("consumer stream ended")]
    Ended,
}

const RESULT_BATCH: usize = 500;
/// Receipts read per batch (one database update, one `multiple` ack).
const RECEIPT_BATCH: usize = 1000;
/// How long a redelivered result of unknown fate waits for the receipt queue to be read up to
/// its sentinel before it is forwarded again anyway.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(30);
/// Message-id prefix of the sentinels on the receipt queue.
const SENTINEL_PREFIX: &str = "gcrs-sentinel.";
/// More deaths than this of one user endpoint within [`DEATH_WINDOW`] fail its tasks.
pub const MAX_QUICK_DEATHS: usize = 5;
/// See [`MAX_QUICK_DEATHS`].
pub const DEATH_WINDOW: Duration = Duration::from_secs(900);

/// Sentinels this process waits for, by message id.
fn sentinels() -> &'static Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>> {
    static S: OnceLock<Mutex<HashMap<String, tokio::sync::oneshot::Sender<()>>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Recent deaths per user endpoint (this replica's view; bounds the restarts).
fn deaths() -> &'static Mutex<HashMap<String, Vec<Instant>>> {
    static D: OnceLock<Mutex<HashMap<String, Vec<Instant>>>> = OnceLock::new();
    D.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Run a consumer forever, reconnecting after failures.
pub async fn run_forever<F, Fut>(name: &'static str, state: AppState, f: F)
where
    F: Fn(AppState) -> Fut,
    Fut: std::future::Future<Output = Result<(), ConsumeError>>,
{
    loop {
        match f(state.clone()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "consumer stopped; restarting in 2 s");
                crate::metrics::consumer_restarted(name);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn consumer(
    ch: &Channel,
    queue: &str,
    prefetch: u16,
) -> Result<lapin::Consumer, ConsumeError> {
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    Ok(ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

async fn next_batch(c: &mut lapin::Consumer, max: usize) -> Result<Vec<Delivery>, ConsumeError> {
    let first = c.next().await.ok_or(ConsumeError::Ended)??;
    let mut batch = vec![first];
    while batch.len() < max {
        match c.next().now_or_never() {
            Some(Some(Ok(d))) => batch.push(d),
            Some(Some(Err(e))) => return Err(e.into()),
            Some(None) => return Err(ConsumeError::Ended),
            None => break,
        }
    }
    Ok(batch)
}

async fn ack_up_to(ch: &Channel, batch: &[Delivery]) -> Result<(), ConsumeError> {
    if let Some(last) = batch.iter().map(|d| d.delivery_tag).max() {
        ch.basic_ack(last, BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

/// Record outcomes and forward result bodies to the SDK queues, each at most once per task
/// (see the module documentation); returns once everything is persisted and confirmed.
pub async fn record_and_forward(
    state: &AppState,
    ch: &Channel,
    outcomes: Vec<Outcome>,
    bodies: HashMap<String, Vec<u8>>,
) -> Result<(), ConsumeError> {
    let mut targets = state.store.record_outcomes(&outcomes).await?;
    crate::metrics::outcomes_recorded(state, &outcomes).await;
    for t in targets.iter().filter(|t| !t.forwarded && !t.forwarding) {
        tracing::info!(task_id = %t.task_id, "Result received from the endpoint");
    }
    if targets.len() < outcomes.len() {
        for o in &outcomes {
            if !targets.iter().any(|t| t.task_id == o.task_id) {
                tracing::warn!(task_id = %o.task_id, "result for an unknown task dropped");
            }
        }
    }
    if targets.iter().any(|t| t.forwarding) {
        targets = settle_unknown_forwards(state, ch, &outcomes, targets).await?;
    }
    let mut pending = Pending::new();
    let mut forwarding = Vec::new();
    let mut to_publish = Vec::new();
    for t in targets {
        if t.forwarded {
            continue;
        }
        if !t.create_queue {
            // No SDK queue to feed: recorded is forwarded.
            forwarding.push(t.task_id);
        } else if bodies.contains_key(&t.task_id) {
            forwarding.push(t.task_id.clone());
            to_publish.push(t);
        }
    }
    state.store.mark_forwarding(&forwarding).await?;
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    for t in &to_publish {
        let Some(body) = bodies.get(&t.task_id) else {
            continue;
        };
        let queue = format!("{}{}", state.cfg.queue_prefix, t.task_group_id);
        let mut headers = FieldTable::default();
        headers.insert(
            "BCC".into(),
            AMQPValue::FieldArray(vec![AMQPValue::LongString(Q_FORWARD_RECEIPTS.into())].into()),
        );
        let notice;
        let body = match (t.high_assurance, uuid::Uuid::parse_str(&t.task_id)) {
            (true, Ok(tid)) => {
                notice = pack_ha_result_notice(&tid);
                headers.insert("high_assurance".into(), AMQPValue::Boolean(true));
                &notice
            }
            _ => body,
        };
        let props = BasicProperties::default()
            .with_timestamp(now)
            .with_message_id(t.task_id.as_str().into())
            .with_headers(headers);
        // Not mandatory: a queue that expired unused only means nobody is listening; the
        // result stays available through the REST routes (and the receipt still records it).
        pending.publish(ch, "", &queue, body, props, false).await?;
    }
    pending.wait().await?;
    state.store.mark_forwarded(&forwarding).await?;
    for id in &forwarding {
        tracing::info!(task_id = %id, "Result forwarded to the SDK");
    }
    Ok(())
}

/// Decides the forwards of unknown fate among `targets` (tasks still marked *forwarding*):
/// waits until the receipt queue has been read past a fresh sentinel, then looks again; a task
/// whose receipt was read is forwarded, the others are published again.
async fn settle_unknown_forwards(
    state: &AppState,
    ch: &Channel,
    outcomes: &[Outcome],
    targets: Vec<crate::store::ForwardTarget>,
) -> Result<Vec<crate::store::ForwardTarget>, ConsumeError> {
    let unknown: Vec<String> = targets
        .iter()
        .filter(|t| t.forwarding)
        .map(|t| t.task_id.clone())
        .collect();
    tracing::info!(
        tasks = unknown.len(),
        "results redelivered while their forward was unconfirmed; reading the receipts first"
    );
    if !receipts_read_up_to_now(ch).await? {
        tracing::warn!(
            tasks = unknown.len(),
            "receipt queue not read within {} s; forwarding these results again",
            BARRIER_TIMEOUT.as_secs()
        );
        return Ok(targets);
    }
    let again: Vec<Outcome> = outcomes
        .iter()
        .filter(|o| unknown.contains(&o.task_id))
        .cloned()
        .collect();
    // Recording again changes nothing (first outcome wins) and returns the current states.
    let fresh = state.store.record_outcomes(&again).await?;
    let mut out: Vec<_> = targets.into_iter().filter(|t| !t.forwarding).collect();
    for t in fresh {
        if t.forwarding {
            tracing::info!(task_id = %t.task_id, "no receipt: forwarding the result again");
        }
        out.push(t);
    }
    Ok(out)
}

/// Publishes a sentinel to the receipt queue and waits (at most [`BARRIER_TIMEOUT`]) until
/// this process's receipt consumer has read and recorded it, and so every receipt before it.
async fn receipts_read_up_to_now(ch: &Channel) -> Result<bool, ConsumeError> {
    let id = format!("{SENTINEL_PREFIX}{}", uuid::Uuid::new_v4());
    let (tx, rx) = tokio::sync::oneshot::channel();
    if let Ok(mut map) = sentinels().lock() {
        map.insert(id.clone(), tx);
    }
    let mut pending = Pending::new();
    let props = BasicProperties::default().with_message_id(id.as_str().into());
    let published = async {
        pending
            .publish(ch, "", Q_FORWARD_RECEIPTS, b"", props, true)
            .await?;
        pending.wait().await
    }
    .await;
    let passed = match published {
        Ok(()) => tokio::time::timeout(BARRIER_TIMEOUT, rx)
            .await
            .is_ok_and(|r| r.is_ok()),
        Err(e) => {
            if let Ok(mut map) = sentinels().lock() {
                map.remove(&id);
            }
            return Err(e.into());
        }
    };
    if let Ok(mut map) = sentinels().lock() {
        map.remove(&id);
    }
    Ok(passed)
}

/// Run `body` on a fresh channel and close the channel when it fails, so that every
/// unacknowledged delivery goes back to the queue for the next attempt.
async fn with_channel<'a, F, Fut>(state: &'a AppState, body: F) -> Result<(), ConsumeError>
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<(), ConsumeError>> + 'a,
{
    let ch = state.broker.channel().await?;
    let result = body(ch.clone()).await;
    let _ = ch.close(200, "consumer restarting".into()).await;
    result
}

/// The results consumer and, beside it, the consumer of the forward receipts it relies on
/// (either failing restarts both).
pub async fn consume_results(state: AppState) -> Result<(), ConsumeError> {
    let results_ch = state.broker.channel().await?;
    let receipts_ch = match state.broker.channel().await {
        Ok(ch) => ch,
        Err(e) => {
            let _ = results_ch.close(200, "consumer restarting".into()).await;
            return Err(e.into());
        }
    };
    // When one loop fails the other is dropped mid-way: close both channels here, so that no
    // consumer is left behind on the shared connection holding deliveries unacknowledged.
    let outcome = tokio::try_join!(
        results_loop(state.clone(), results_ch.clone()),
        receipts_loop(state.clone(), receipts_ch.clone()),
    );
    let _ = results_ch.close(200, "consumer restarting".into()).await;
    let _ = receipts_ch.close(200, "consumer restarting".into()).await;
    outcome.map(|_| ())
}

/// Reads forward receipts: marks their tasks forwarded, acks, then releases the sentinels
/// among them.
async fn receipts_loop(state: AppState, ch: Channel) -> Result<(), ConsumeError> {
    let mut c = consumer(&ch, Q_FORWARD_RECEIPTS, RECEIPT_BATCH as u16 * 2).await?;
    loop {
        let batch = next_batch(&mut c, RECEIPT_BATCH).await?;
        let mut tasks = Vec::new();
        let mut passed = Vec::new();
        for d in &batch {
            let Some(id) = d.properties.message_id().as_ref().map(|s| s.to_string()) else {
                continue;
            };
            if id.starts_with(SENTINEL_PREFIX) {
                passed.push(id);
            } else {
                tasks.push(id);
            }
        }
        state.store.mark_forwarded(&tasks).await?;
        ack_up_to(&ch, &batch).await?;
        if !passed.is_empty() {
            if let Ok(mut map) = sentinels().lock() {
                for id in passed {
                    if let Some(tx) = map.remove(&id) {
                        let _ = tx.send(());
                    }
                }
            }
        }
    }
}

async fn results_loop(state: AppState, ch: Channel) -> Result<(), ConsumeError> {
    let mut c = consumer(&ch, Q_RESULTS, RESULT_BATCH as u16 * 2).await?;
    tracing::info!("consuming endpoint results");
    loop {
        let batch = next_batch(&mut c, RESULT_BATCH).await?;
        let mut outcomes = Vec::new();
        let mut bodies = HashMap::new();
        let now = now_f64();
        for d in &batch {
            match unpack(&d.data) {
                Ok(Incoming::Result(r)) => {
                    let id = r.task_id.to_string();
                    outcomes.push(Outcome {
                        task_id: id.clone(),
                        success: r.success,
                        data: r.data,
                        details: r.details.map(|v| v.to_string()),
                        completion_t: now,
                    });
                    bodies.insert(id, d.data.clone());
                }
                // Older endpoints sent status reports on the result path.
                Ok(Incoming::Status(s)) => handle_status(&state, &ch, s).await?,
                Ok(Incoming::Other(t)) => {
                    tracing::warn!(message_type = %t, "unexpected message on results queue dropped")
                }
                Err(e) => {
                    tracing::warn!(error = %e, routing_key = %d.routing_key, "undecodable message on results queue dropped")
                }
            }
        }
        record_and_forward(&state, &ch, outcomes, bodies).await?;
        ack_up_to(&ch, &batch).await?;
    }
}

pub async fn consume_heartbeats(state: AppState) -> Result<(), ConsumeError> {
    with_channel(&state, |ch| heartbeats_loop(state.clone(), ch)).await
}

async fn heartbeats_loop(state: AppState, ch: Channel) -> Result<(), ConsumeError> {
    let mut c = consumer(&ch, Q_HEARTBEATS, 100).await?;
    tracing::info!("consuming endpoint heartbeats");
    loop {
        let batch = next_batch(&mut c, 100).await?;
        for d in &batch {
            match unpack(&d.data) {
                Ok(Incoming::Status(s)) => handle_status(&state, &ch, s).await?,
                Ok(other) => {
                    tracing::warn!(message = ?other, "unexpected message on heartbeats queue dropped")
                }
                Err(e) => {
                    tracing::warn!(error = %e, routing_key = %d.routing_key, "undecodable heartbeat dropped")
                }
            }
        }
        ack_up_to(&ch, &batch).await?;
        state.events.notify_waiters();
    }
}

/// An endpoint came (back) online: start again the user endpoints that have tasks waiting,
/// since start commands sent while it was away expired unread.
async fn resume_user_endpoints(state: &AppState, ch: &Channel, mep_id: &str) {
    let ueps = match state.store.ueps_with_pending_tasks(mep_id).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(endpoint_id = %mep_id, error = %e, "cannot list waiting user endpoints");
            return;
        }
    };
    for (uep_id, client_id, opts, runtime) in ueps {
        let opts = serde_json::from_str(&opts).unwrap_or(serde_json::Value::Null);
        let runtime = serde_json::from_str(&runtime).unwrap_or(serde_json::Value::Null);
        match crate::routes::publish_start_command(
            state, ch, &client_id, mep_id, &uep_id, &opts, &runtime,
        )
        .await
        {
            Ok(()) => {
                tracing::info!(endpoint_id = %mep_id, uep_id, "restarting user endpoint with waiting tasks")
            }
            Err(e) => {
                tracing::error!(endpoint_id = %mep_id, uep_id, error = e.message, "cannot restart user endpoint")
            }
        }
    }
}

/// Whether a failure notice says the user endpoint died (rather than that it cannot run):
/// killed by a signal, or refused to start because the dead one's PID file is still fresh.
/// Its unfinished tasks are then still on its task queue.
pub fn uep_died(error: &str) -> bool {
    error.contains("(UserEndpointTerminated)") || error.trim_end().ends_with("(SystemExit) 73")
}

/// Counts a death of `uep_id`; returns the deaths within [`DEATH_WINDOW`], this one included.
fn record_death(uep_id: &str) -> usize {
    let now = Instant::now();
    let Ok(mut map) = deaths().lock() else {
        return 1;
    };
    map.retain(|_, times| {
        times.retain(|t| now.duration_since(*t) < DEATH_WINDOW);
        !times.is_empty()
    });
    let times = map.entry(uep_id.to_string()).or_default();
    times.push(now);
    times.len()
}

/// How long to wait before starting a dead user endpoint again: its PID file counts as live
/// for 3 × its heartbeat period (ENDPOINT.md §4.8), plus 2 s.
async fn restart_delay(state: &AppState, uep_id: &str) -> Duration {
    let period = match state.store.uep(uep_id).await {
        Ok(Some(u)) => u.heartbeat_period.unwrap_or(30.0),
        _ => 30.0,
    };
    Duration::from_secs_f64((3.0 * period).clamp(0.0, 600.0) + 2.0)
}

/// Starts a dead user endpoint again after `delay`, unless it came back meanwhile (a submit
/// started it) or has nothing left to run.
async fn restart_later(state: AppState, uep_id: String, delay: Duration) {
    tokio::time::sleep(delay).await;
    let uep = match state.store.uep(&uep_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(uep_id, error = %e, "cannot read user endpoint for its restart");
            return;
        }
    };
    if let (Some(hb), Some(err_at)) = (uep.last_heartbeat, uep.error_at) {
        if hb > err_at {
            tracing::debug!(uep_id, "user endpoint already back");
            return;
        }
    }
    let waiting = match state.store.ueps_with_pending_tasks(&uep.mep_id).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(uep_id, error = %e, "cannot list waiting user endpoints");
            return;
        }
    };
    let Some((_, client_id, opts, runtime)) = waiting.into_iter().find(|w| w.0 == uep_id) else {
        return;
    };
    let opts = serde_json::from_str(&opts).unwrap_or(serde_json::Value::Null);
    let runtime = serde_json::from_str(&runtime).unwrap_or(serde_json::Value::Null);
    let ch = match state.broker.channel().await {
        Ok(ch) => ch,
        Err(e) => {
            // The endpoint's return (heartbeats resuming) starts it again in that case.
            tracing::error!(uep_id, error = %e, "cannot restart user endpoint: no broker channel");
            return;
        }
    };
    match crate::routes::publish_start_command(
        &state,
        &ch,
        &client_id,
        &uep.mep_id,
        &uep_id,
        &opts,
        &runtime,
    )
    .await
    {
        Ok(()) => tracing::info!(uep_id, "restarting user endpoint with waiting tasks"),
        Err(e) => {
            tracing::error!(uep_id, error = e.message, "cannot restart user endpoint")
        }
    }
    let _ = ch.close(200, "done".into()).await;
}

async fn handle_status(state: &AppState, ch: &Channel, s: StatusInfo) -> Result<(), ConsumeError> {
    let id = s.endpoint_id.to_string();
    let now = now_f64();
    if let Some(err) = &s.error {
        if state.store.uep_error(&id, now, err).await? {
            tracing::warn!(uep_id = %id, error = %err, "user endpoint failed");
            if uep_died(err) {
                let recent = record_death(&id);
                if recent <= MAX_QUICK_DEATHS {
                    let delay = restart_delay(state, &id).await;
                    tracing::info!(
                        uep_id = %id,
                        deaths = recent,
                        "user endpoint died; its tasks stay queued; starting it again in {} s",
                        delay.as_secs()
                    );
                    tokio::spawn(restart_later(state.clone(), id, delay));
                    return Ok(());
                }
                tracing::warn!(
                    uep_id = %id,
                    deaths = recent,
                    "user endpoint died {recent} times within {} s; failing its tasks",
                    DEATH_WINDOW.as_secs()
                );
            }
            let pending = state.store.pending_tasks_of_uep(&id).await?;
            if !pending.is_empty() {
                let mut outcomes = Vec::new();
                let mut bodies = HashMap::new();
                for t in pending {
                    let tid = uuid::Uuid::parse_str(&t).unwrap_or_default();
                    bodies.insert(
                        t.clone(),
                        pack_failed_result(&tid, "ENDPOINT_START_FAILED", err),
                    );
                    outcomes.push(Outcome {
                        task_id: t,
                        success: false,
                        data: err.clone(),
                        details: None,
                        completion_t: now,
                    });
                }
                record_and_forward(state, ch, outcomes, bodies).await?;
            }
        } else {
            // E.g. the duplicate notice a MEP sends under its own id (PROTOCOL-ENDPOINT §4.5):
            // it says nothing about the MEP's own health.
            tracing::info!(endpoint_id = %id, error = %err, "endpoint reported an error");
        }
        return Ok(());
    }
    let period = s.heartbeat_period.unwrap_or(30.0);
    let before = state.store.endpoint(&id).await?;
    if state.store.endpoint_heartbeat(&id, now, period).await? {
        let was_online = before
            .as_ref()
            .is_some_and(|e| crate::routes::is_online(e.last_heartbeat, e.heartbeat_period, now));
        if !was_online && period > 0.0 {
            resume_user_endpoints(state, ch, &id).await;
        }
        return Ok(());
    }
    if !state
        .store
        .uep_heartbeat(&id, now, period, s.active.unwrap_or(true))
        .await?
    {
        tracing::debug!(endpoint_id = %id, "heartbeat from an unknown endpoint");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_user_endpoint_is_told_from_one_that_cannot_run() {
        assert!(uep_died(
            "Failed to start or unexpected error:\n  (UserEndpointTerminated) user endpoint \
             process 4242 was terminated by signal 9 (SIGKILL)"
        ));
        assert!(uep_died(
            "Failed to start or unexpected error:\n  (SystemExit) 73"
        ));
        for permanent in [
            "Failed to start or unexpected error:\n  (SystemExit) 78",
            "Failed to start or unexpected error:\n  (SystemExit) 731",
            "Unable to start user endpoint process for alice [exit code: 73; (ValueError) bad]",
            "Failed to start or unexpected error:\n  (ClickException) Configuration for \
             endpoint x is missing an `engine` field",
        ] {
            assert!(!uep_died(permanent), "{permanent}");
        }
    }

    #[test]
    fn deaths_are_counted_per_user_endpoint() {
        let a = uuid::Uuid::new_v4().to_string();
        let b = uuid::Uuid::new_v4().to_string();
        assert_eq!(record_death(&a), 1);
        assert_eq!(record_death(&a), 2);
        assert_eq!(record_death(&b), 1);
        assert_eq!(record_death(&a), 3);
    }
}
