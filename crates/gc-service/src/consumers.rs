//! Background consumers of the `results` and `heartbeats` queues.
//!
//! Results: decode, record (first outcome wins), forward the endpoint's bytes to the task
//! group's SDK queue with a confirmed publish, mark forwarded, and only then ack — so a crash at
//! any point redelivers instead of losing. Deliveries are handled in batches (one transaction,
//! pipelined confirms, one `multiple` ack) to keep up with a busy endpoint.
//!
//! Heartbeats: record liveness of endpoints and user endpoints; a failure notice fails the
//! tasks still waiting on that user endpoint with the notice's text.
//!
//! Several replicas may consume the same queues: every effect goes through the database.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use crate::AppState;
use crate::broker::{Pending, Q_HEARTBEATS, Q_RESULTS};
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

/// Record outcomes and forward result bodies to the SDK queues; returns once everything is
/// persisted and confirmed.
pub async fn record_and_forward(
    state: &AppState,
    ch: &Channel,
    outcomes: Vec<Outcome>,
    bodies: HashMap<String, Vec<u8>>,
) -> Result<(), ConsumeError> {
    let targets = state.store.record_outcomes(&outcomes).await?;
    crate::metrics::outcomes_recorded(state, &outcomes).await;
    if targets.len() < outcomes.len() {
        for o in &outcomes {
            if !targets.iter().any(|t| t.task_id == o.task_id) {
                tracing::warn!(task_id = %o.task_id, "result for an unknown task dropped");
            }
        }
    }
    let mut pending = Pending::new();
    let mut forwarded = Vec::new();
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    for t in targets {
        if t.forwarded {
            continue;
        }
        if t.create_queue {
            let Some(body) = bodies.get(&t.task_id) else {
                continue;
            };
            let queue = format!("{}{}", state.cfg.queue_prefix, t.task_group_id);
            let mut props = BasicProperties::default().with_timestamp(now);
            let notice;
            let body = match (t.high_assurance, uuid::Uuid::parse_str(&t.task_id)) {
                (true, Ok(tid)) => {
                    notice = pack_ha_result_notice(&tid);
                    let mut h = FieldTable::default();
                    h.insert("high_assurance".into(), AMQPValue::Boolean(true));
                    props = props.with_headers(h);
                    &notice
                }
                _ => body,
            };
            // Not mandatory: a queue that expired unused only means nobody is listening; the
            // result stays available through the REST routes.
            pending.publish(ch, "", &queue, body, props, false).await?;
        }
        forwarded.push(t.task_id);
    }
    pending.wait().await?;
    state.store.mark_forwarded(&forwarded).await?;
    Ok(())
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

pub async fn consume_results(state: AppState) -> Result<(), ConsumeError> {
    with_channel(&state, |ch| results_loop(state.clone(), ch)).await
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

async fn handle_status(state: &AppState, ch: &Channel, s: StatusInfo) -> Result<(), ConsumeError> {
    let id = s.endpoint_id.to_string();
    let now = now_f64();
    if let Some(err) = &s.error {
        if state.store.uep_error(&id, now, err).await? {
            tracing::warn!(uep_id = %id, error = %err, "user endpoint failed");
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
