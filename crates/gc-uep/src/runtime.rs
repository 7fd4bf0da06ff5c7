//! The UEP main loop (ENDPOINT.md §5.2–5.5, PROTOCOL-ENDPOINT §6.2, §6.3, §7).
//!
//! Three kinds of work run concurrently:
//!
//! * the main loop: takes deliveries from the task queue, decides (`task::decide`), hands
//!   tasks to the engine; sends heartbeats and evaluates idle shutdown; watches the parent
//!   process and the shutdown signal;
//! * one small forwarder per running task: awaits the engine's result and passes it on;
//! * the result loop: owns the result [`Publisher`], publishes every result with a pipelined
//!   confirm, counts confirmed results, writes any result that fails to the
//!   [`UnackedStore`] and re-publishes stored results at start, after every reconnect and on
//!   every heartbeat while any remain.
//!
//! **A task is acknowledged only once its result is safe**: confirmed by the broker, or
//! written to the `UnackedStore` (re-published from there after a restart). Until then its
//! delivery is held in a [`task::Unsettled`] book, so a user endpoint that is killed leaves
//! every unfinished task — queued in the engine, running, or with its result in flight — on
//! the task queue, and the broker delivers them to the next user endpoint. The window of
//! unacknowledged tasks is the prefetch ([`prefetch_for`]). When a lost channel makes the
//! broker redeliver a task this process still holds, the task is not run again (the new
//! delivery replaces the old one in the book); a redelivered task whose result is already
//! safe is acknowledged without running. A task may still run twice when the process dies
//! after its result was confirmed but before the acknowledgement reached the broker (at most
//! the [`SubscriberOptions::ack_interval`] of 100 ms); the service keeps the first result.
//!
//! Differences from upstream, on purpose: upstream acknowledges a task once the engine has
//! it (a task queued or running in a killed user endpoint is lost), and sends no prefetch
//! (the whole queue goes to one process). Acknowledgement is driven by gc-broker, which acks
//! only deliveries it was told about, so a delivery that gets an immediate answer (refused
//! function) is acknowledged once its answer is safe instead of waiting for a later task's
//! `multiple` ack (upstream acks it implicitly that way, or redelivers it on exit, producing
//! the same error result twice). A graceful stop lets every task already accepted finish,
//! publishes (or stores) its result and acknowledges it before the final heartbeat; upstream
//! stores those results for the next start.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gc_broker::{
    AckHandle, BrokerError, Confirm, DEFAULT_PREFETCH, HandoffToken, PublishError, Publisher,
    PublisherOptions, StopReason, Subscriber, SubscriberOptions, UnackedStore,
};
use gc_config::UserEndpointConfig;
use gc_engine::Engine;
use gc_htex::{AnyEngine, AnyHandle};
use gc_wire::messagepack::{Message, TaskResult, pack};
use gc_wire::uep_stdin::UepStdin;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::audit::{self, AuditState, AuditWriter};
use crate::error::UepError;
use crate::heartbeat;
use crate::idle::{IdleTracker, IdleVerdict};
use crate::settings::{EngineChoice, Settings, UepOptions};
use crate::task::{self, Decision, Seen, Unsettled};

/// How long the final heartbeat may take (upstream: 5 s).
const FINAL_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the parent pid is checked (upstream: 1 s).
const PARENT_POLL: Duration = Duration::from_secs(1);
/// How long a stopping GlobusComputeEngine waits for accepted tasks before failing them.
const HTEX_DRAIN: Duration = Duration::from_secs(30);
/// Prefetch of a GlobusComputeEngine user endpoint, whose worker count is known only once
/// blocks are up.
const HTEX_PREFETCH: u16 = 2048;
/// Smallest prefetch of a pool user endpoint (4 × gc-broker's default).
const POOL_MIN_PREFETCH: u16 = 4 * DEFAULT_PREFETCH;

/// The task queue's prefetch: every task the user endpoint holds unacknowledged — queued in
/// the engine, running, or with its result awaiting the broker's confirm — counts against it.
/// At least [`POOL_MIN_PREFETCH`] (a task's delivery stays unacknowledged through the
/// result's confirm and the next ack flush, so the window must cover that round trip at the
/// broker's rate), and four tasks per pool worker so that a large pool never idles waiting for
/// the window.
fn prefetch_for(engine: &EngineChoice) -> u16 {
    match engine {
        EngineChoice::Pool(pool) => {
            let workers = pool
                .max_workers
                .unwrap_or_else(|| pool.kind.default_max_workers());
            u16::try_from(workers.saturating_mul(4))
                .unwrap_or(u16::MAX)
                .max(POOL_MIN_PREFETCH)
        }
        EngineChoice::Htex { .. } => HTEX_PREFETCH,
    }
}

/// The book of unacknowledged deliveries and the handle that acknowledges them.
#[derive(Clone)]
struct Settler {
    book: Arc<Mutex<Unsettled<HandoffToken>>>,
    acks: AckHandle,
}

impl Settler {
    fn book(&self) -> std::sync::MutexGuard<'_, Unsettled<HandoffToken>> {
        // A poisoned lock only means another task panicked mid-update; the map stays usable.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What to do with a delivery of `task_id` (see [`Seen`]); acknowledges a redelivery of a
    /// task whose result is already safe.
    fn seen(&self, task_id: Uuid, token: HandoffToken) -> Seen {
        let seen = self.book().seen(task_id, token);
        if seen == Seen::Settled {
            self.acks.handed_off(token);
        }
        seen
    }

    fn hold(&self, task_id: Uuid, token: HandoffToken) {
        self.book().hold(task_id, token);
    }

    /// The task's result is confirmed or stored: acknowledge its delivery.
    fn settle(&self, task_id: Uuid) {
        let token = self.book().settle(task_id);
        if let Some(token) = token {
            self.acks.handed_off(token);
        }
    }
}

/// Why a UEP run ended normally; every one of these exits with status 0 (ENDPOINT.md §5.6).
#[derive(Debug, Clone)]
pub enum Stopped {
    /// `idle_heartbeats_soft` reached.
    IdleSoft,
    /// `idle_heartbeats_hard` exceeded.
    IdleHard,
    /// The shutdown future completed (a termination signal).
    Requested,
    /// The parent (MEP) went away.
    ParentGone,
    /// At start the parent was not `ep_info.posix_ppid`.
    NotParent,
    /// The task subscriber or a publisher gave up (§3.7), e.g. authentication refused.
    Broker(StopReason),
    /// A record could not be written to the HA audit pipe (ENDPOINT §4.10); the text is the
    /// logged ERROR line.
    AuditFailed(String),
}

/// Task and result totals, for heartbeats' idle logic.
#[derive(Debug, Default)]
struct Totals {
    tasks: AtomicU64,
    results: AtomicU64,
}

/// Runs a user endpoint until it stops: idle shutdown, `shutdown` completing (pass
/// [`crate::termination_signals`] in production), the parent going away, or the broker
/// connection giving up. Must be called inside a multi-threaded tokio runtime.
pub async fn run(
    stdin: &UepStdin,
    config: &UserEndpointConfig,
    options: UepOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, UepError> {
    // First of all: the audit pipe becomes close-on-exec here, so that neither
    // `endpoint_setup` nor any worker (user code) inherits it and could forge records.
    let (audit_fail_tx, mut audit_fail_rx) = watch::channel::<Option<String>>(None);
    let audit = match stdin.audit_fd {
        Some(fd) => {
            let pipe =
                gc_sys::take_inherited_fd(fd).map_err(|source| UepError::AuditFd { fd, source })?;
            Some(Arc::new(AuditWriter::new(pipe, audit_fail_tx.clone())))
        }
        None => None,
    };
    if config.base.high_assurance
        && let Err(why) = config.engine.assert_ha_compliant()
    {
        tracing::error!("Engine configuration is not High Assurance compliant:\n{why}");
        return Err(UepError::NotHighAssurance(why));
    }
    if let Some(command) = config.endpoint_setup.as_deref() {
        crate::setup::endpoint_setup(command, &options.endpoint_dir).await?;
    }
    // Upstream exports the directory into its own environment, so functions see it.
    let mut worker = options.worker;
    worker.env.push((
        "GLOBUS_COMPUTE_ENDPOINT_DIR".into(),
        options.endpoint_dir.clone().into_os_string(),
    ));
    let settings = Settings::new(stdin, config, worker)?;
    let store = UnackedStore::open(&options.endpoint_dir)?;
    let uep_id = settings.uep_id;
    let ep_info = heartbeat::extended_ep_info(settings.ep_info.clone(), &settings.config_raw);
    tracing::info!("Initializing EndpointInterchange process with Endpoint ID: {uep_id}");

    let ppid = stdin.ep_info.posix_ppid;
    if ppid > 0 && i64::from(std::os::unix::process::parent_id()) != ppid {
        tracing::warn!("Pid {ppid} not parent; refusing to start");
        return Ok(Stopped::NotParent);
    }
    tracing::info!("Starting EndpointInterchange");
    tracing::info!("Starting Engine");
    let engine = start_engine(&settings, config, uep_id, &options.endpoint_dir).await?;
    let audit_rec = |fid: &str, tid: &str, state: AuditState, msg: Option<&str>| {
        if let Some(a) = &audit {
            let _ = a.write(fid, tid, state, msg);
        }
    };

    let totals = Arc::new(Totals::default());
    let (fatal_tx, mut fatal_rx) = watch::channel::<Option<StopReason>>(None);
    let (result_tx, result_rx) = mpsc::unbounded_channel();
    let mut subscriber = Subscriber::start(
        settings.tasks.clone(),
        SubscriberOptions {
            exclusive: true,
            prefetch: prefetch_for(&settings.engine),
            ..SubscriberOptions::default()
        },
    );
    let settler = Settler {
        book: Arc::new(Mutex::new(Unsettled::default())),
        acks: subscriber.ack_handle(),
    };
    let results = ResultLoop {
        publisher: Publisher::start(settings.results.clone(), PublisherOptions::default()),
        store: store.clone(),
        totals: Arc::clone(&totals),
        fatal: fatal_tx.clone(),
        republishing: Arc::new(Mutex::new(HashSet::new())),
        confirms: JoinSet::new(),
        settler: settler.clone(),
    };
    let (republish_tx, republish_rx) = mpsc::unbounded_channel();
    let result_loop = tokio::spawn(results.run(result_rx, republish_rx));
    let heartbeats = Publisher::start(settings.heartbeats.clone(), PublisherOptions::default());

    let send_heartbeat = |active: bool| {
        heartbeat::report(
            uep_id,
            engine.global_state(),
            &ep_info,
            settings.heartbeat_period,
            active,
        )
    };
    spawn_heartbeat(&heartbeats, send_heartbeat(true), &fatal_tx).await;

    let period = settings.heartbeat_interval();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut parent_ticks = tokio::time::interval(PARENT_POLL);
    let mut idle = IdleTracker::new(settings.idle_soft, settings.idle_hard);
    let mut forwarders = JoinSet::new();
    let (mut last_t, mut last_r) = (0, 0);
    tokio::pin!(shutdown);

    let stopped = loop {
        tokio::select! {
            () = &mut shutdown => break Stopped::Requested,
            delivery = subscriber.next() => match delivery {
                Ok(d) => {
                    totals.tasks.fetch_add(1, Ordering::SeqCst);
                    let token = d.token;
                    let (fid, tid) = task::ids(d.headers());
                    audit_rec(&fid, &tid, AuditState::Received, None);
                    tracing::info!(task_id = %tid, function_id = %fid, "Task received");
                    if let Ok(id) = Uuid::parse_str(&tid) {
                        match settler.seen(id, token) {
                            Seen::New => {}
                            Seen::Running => {
                                tracing::info!(task_id = %id, "Task redelivered while still held; not running it twice");
                                continue;
                            }
                            Seen::Settled => {
                                tracing::info!(task_id = %id, "Task redelivered after its result was sent; acknowledged");
                                continue;
                            }
                        }
                    }
                    match task::decide(d.headers(), &d.body, uep_id, settings.allowed_functions.as_ref()) {
                        Decision::Drop(why) => {
                            tracing::error!(task_id = %tid, "Unhandled error processing incoming task: {why}");
                            subscriber.handed_off(token);
                        }
                        Decision::Answer(result) => {
                            tracing::warn!(task_id = %result.task_id, "{}", result.data);
                            audit_rec(&fid, &tid, AuditState::ExecEnd, None);
                            settler.hold(result.task_id, token);
                            queue_result(&result_tx, &store, &settler, &result);
                        }
                        Decision::Refused(result) => {
                            tracing::warn!(task_id = %result.task_id, "{}", result.data);
                            audit_rec(&fid, &tid, AuditState::Failed, Some(audit::NOT_PERMITTED));
                            audit_rec(&fid, &tid, AuditState::ExecEnd, None);
                            settler.hold(result.task_id, token);
                            queue_result(&result_tx, &store, &settler, &result);
                        }
                        Decision::Run(request) => {
                            let task_id = request.task_id;
                            let task_audit = audit
                                .clone()
                                .map(|a| Arc::new(audit::TaskAudit::new(a, fid, tid)));
                            // GlobusComputeEngine reports the block a task is sent to (RUNNING).
                            let on_placed = task_audit.clone().map(|t| -> gc_htex::PlacementHook {
                                Box::new(move |p: &gc_htex::Placement| t.running(&p.block_id, p.job_id.as_deref()))
                            });
                            match engine.submit_placed(request, on_placed) {
                                Ok(handle) => {
                                    tracing::info!(%task_id, "Task started (handed to the engine)");
                                    settler.hold(task_id, token);
                                    if let Some(t) = &task_audit {
                                        t.exec_start();
                                    }
                                    forwarders.spawn(forward(handle, result_tx.clone(), store.clone(), settler.clone(), task_audit));
                                }
                                Err(e) => {
                                    // Not acknowledged: the broker redelivers it later.
                                    tracing::error!(%task_id, "Failed to process task {task_id}: {e}");
                                    queue_result(&result_tx, &store, &settler, &task::failed_to_start(task_id, &e.to_string()));
                                }
                            }
                        }
                    }
                }
                Err(BrokerError::Stopped(reason)) => break Stopped::Broker(reason),
                Err(e) => break Stopped::Broker(StopReason::TaskFailed(e.to_string())),
            },
            _ = ticks.tick() => {
                let t = totals.tasks.load(Ordering::SeqCst);
                let r = totals.results.load(Ordering::SeqCst);
                tracing::debug!(
                    "Heartbeat.  Approximate Tasks received and Results forwarded since last heartbeat: {} (T), {} (R)",
                    t - last_t, r.saturating_sub(last_r)
                );
                (last_t, last_r) = (t, r);
                spawn_heartbeat(&heartbeats, send_heartbeat(true), &fatal_tx).await;
                let _ = republish_tx.send(());
                match idle.tick(t, r, settings.heartbeat_period) {
                    IdleVerdict::Continue => {}
                    IdleVerdict::SoftLimit => break Stopped::IdleSoft,
                    IdleVerdict::HardLimit => break Stopped::IdleHard,
                }
            }
            _ = parent_ticks.tick(), if ppid > 0 => {
                if i64::from(std::os::unix::process::parent_id()) != ppid {
                    tracing::warn!("Parent ({ppid}) has gone away; initiating shut down");
                    break Stopped::ParentGone;
                }
            }
            Ok(()) = fatal_rx.changed() => {
                let reason = fatal_rx.borrow_and_update().clone();
                if let Some(reason) = reason {
                    tracing::error!("AMQP publisher stopped: {reason}");
                    break Stopped::Broker(reason);
                }
            }
            Some(joined) = forwarders.join_next() => {
                if let Err(e) = joined {
                    tracing::error!("result forwarder failed: {e}");
                }
            }
            Ok(()) = audit_fail_rx.changed() => {
                let text = audit_fail_rx.borrow_and_update().clone();
                if let Some(text) = text {
                    break Stopped::AuditFailed(text);
                }
            }
        }
    };

    tracing::info!("Shutting down EndpointInterchange");
    // Take no more tasks, but keep the task channel open until the accepted ones are settled,
    // so that their acknowledgements can still be sent; what is left then goes back to the
    // queue when the subscriber closes.
    // Finish what was accepted and pass every result on.
    let outstanding = engine.outstanding_tasks();
    if outstanding > 0 {
        tracing::info!("Waiting for {outstanding} accepted task(s) to finish");
    }
    let final_state = state_after_shutdown(engine.global_state());
    engine.shutdown(HTEX_DRAIN).await;
    while let Some(joined) = forwarders.join_next().await {
        if let Err(e) = joined {
            tracing::error!("result forwarder failed: {e}");
        }
    }
    drop(result_tx);
    drop(republish_tx);
    if let Err(e) = result_loop.await {
        tracing::error!("result loop failed: {e}");
    }
    let held = settler.book().held();
    if held > 0 {
        tracing::info!("{held} task(s) not settled; the broker re-queues them");
    }
    subscriber.close().await;
    let last = heartbeat::report(
        uep_id,
        final_state,
        &ep_info,
        settings.heartbeat_period,
        false,
    );
    let sent = tokio::time::timeout(FINAL_HEARTBEAT_TIMEOUT, async {
        heartbeats.publish_confirmed(last).await
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("Unable to send final heartbeat: {e}"),
        Err(_) => tracing::warn!("Unable to send final heartbeat (timeout sending)"),
    }
    if tokio::time::timeout(FINAL_HEARTBEAT_TIMEOUT, heartbeats.close())
        .await
        .is_err()
    {
        tracing::warn!("heartbeat connection did not close in time");
    }
    tracing::info!("EndpointInterchange shutdown complete.");
    Ok(stopped)
}

/// Starts the configured engine: a gc-engine pool, or GlobusComputeEngine (gc-htex) whose
/// workers use the UEP's worker Python when it is a plain interpreter.
async fn start_engine(
    settings: &Settings,
    config: &UserEndpointConfig,
    uep_id: Uuid,
    dir: &std::path::Path,
) -> Result<AnyEngine, UepError> {
    Ok(match &settings.engine {
        EngineChoice::Pool(pool) => {
            AnyEngine::Pool(Engine::start(pool.clone(), Some(uep_id), dir)?)
        }
        EngineChoice::Htex { python } => {
            let mut htex = gc_htex::HtexConfig::from_engine_config(&config.engine, dir)?;
            if let Some(python) = python {
                htex.manager.python.clone_from(python);
            }
            AnyEngine::Htex(gc_htex::HtexEngine::start(htex, Some(uep_id), dir).await?)
        }
    })
}

/// The engine's heartbeat fields once it has finished everything: no task left.
fn state_after_shutdown(
    mut state: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    for key in ["pending_tasks", "outstanding_tasks"] {
        if let Some(v) = state.get_mut(key) {
            *v = 0.into();
        }
    }
    state
}

/// Publishes one heartbeat; a failure is logged, and a publisher that gave up stops the UEP.
async fn spawn_heartbeat(
    publisher: &Publisher,
    body: Vec<u8>,
    fatal: &watch::Sender<Option<StopReason>>,
) {
    let report = |error: PublishError, fatal: &watch::Sender<Option<StopReason>>| {
        tracing::error!("Failed to publish heartbeat: {error}");
        if let PublishError::Stopped(reason) = error {
            fatal.send_replace(Some(reason));
        }
    };
    match publisher.publish(body).await {
        Ok(confirm) => {
            let fatal = fatal.clone();
            tokio::spawn(async move {
                if let Err(f) = confirm.await {
                    report(f.error, &fatal);
                }
            });
        }
        Err(f) => report(f.error, fatal),
    }
}

type ResultMsg = (Uuid, Vec<u8>);

/// Queues a result for the result loop; if that loop is gone, stores it for the next start.
fn queue_result(
    tx: &mpsc::UnboundedSender<ResultMsg>,
    store: &UnackedStore,
    settler: &Settler,
    result: &TaskResult,
) {
    let body = pack(&Message::Result(result.clone()));
    if let Err(mpsc::error::SendError((id, body))) = tx.send((result.task_id, body)) {
        keep(store, settler, id, &body);
    }
}

/// Writes a result that could not be confirmed to the store and, once it is there, settles
/// the task. If the store fails the task stays unacknowledged: the broker gives it to the next
/// user endpoint, which runs it again, so the result is not lost.
fn keep(store: &UnackedStore, settler: &Settler, task_id: Uuid, body: &[u8]) {
    let id = task_id.to_string();
    match store.put(&id, body) {
        Ok(()) => {
            tracing::info!("Storing result for later: {id}");
            settler.settle(task_id);
        }
        Err(e) => tracing::error!(
            "cannot store the result of task {id} ({e}); its task is left for redelivery"
        ),
    }
}

/// Awaits one task's result and queues it.
async fn forward(
    handle: AnyHandle,
    tx: mpsc::UnboundedSender<ResultMsg>,
    store: UnackedStore,
    settler: Settler,
    audit: Option<Arc<audit::TaskAudit>>,
) {
    let task_id = handle.task_id();
    let result = match handle.await {
        Ok(r) => r,
        Err(e) => task::unknown_failure(task_id, "EngineError", &e.to_string()),
    };
    tracing::info!(%task_id, "Task finished");
    if let Some(audit) = audit {
        audit.exec_end();
    }
    queue_result(&tx, &store, &settler, &result);
}

struct ResultLoop {
    publisher: Publisher,
    store: UnackedStore,
    totals: Arc<Totals>,
    fatal: watch::Sender<Option<StopReason>>,
    /// Stored task ids currently being re-published (so none is sent twice at once).
    republishing: Arc<Mutex<HashSet<String>>>,
    confirms: JoinSet<()>,
    settler: Settler,
}

impl ResultLoop {
    async fn run(
        mut self,
        mut results: mpsc::UnboundedReceiver<ResultMsg>,
        mut republish: mpsc::UnboundedReceiver<()>,
    ) {
        let mut connected = self.publisher.connected();
        loop {
            tokio::select! {
                msg = results.recv() => match msg {
                    Some((id, body)) => self.publish(id, body, false).await,
                    None => break,
                },
                Ok(()) = connected.changed() => {
                    if *connected.borrow_and_update() {
                        self.republish_stored().await;
                    }
                }
                Some(()) = republish.recv() => {
                    if *connected.borrow() {
                        self.republish_stored().await;
                    }
                }
                Some(_) = self.confirms.join_next() => {}
            }
        }
        // Sends and confirms everything accepted if connected; fails (and so stores) the rest.
        self.publisher.close().await;
        while self.confirms.join_next().await.is_some() {}
    }

    async fn publish(&mut self, task_id: Uuid, body: Vec<u8>, stored: bool) {
        match self.publisher.publish(body).await {
            Ok(confirm) => {
                let ctx = ConfirmCtx {
                    task_id,
                    stored,
                    store: self.store.clone(),
                    totals: Arc::clone(&self.totals),
                    fatal: self.fatal.clone(),
                    republishing: Arc::clone(&self.republishing),
                    settler: self.settler.clone(),
                };
                self.confirms.spawn(ctx.wait(confirm));
            }
            Err(f) => {
                if stored {
                    self.done_republishing(task_id);
                } else {
                    keep(&self.store, &self.settler, task_id, &f.body);
                }
                if let PublishError::Stopped(reason) = f.error {
                    self.fatal.send_replace(Some(reason));
                }
            }
        }
    }

    fn done_republishing(&self, task_id: Uuid) {
        if let Ok(mut set) = self.republishing.lock() {
            set.remove(&task_id.to_string());
        }
    }

    /// Publishes every stored result not already on its way.
    async fn republish_stored(&mut self) {
        let ids = match self.store.task_ids() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("cannot list stored results: {e}");
                return;
            }
        };
        for id in ids {
            let Ok(task_id) = Uuid::parse_str(&id) else {
                tracing::warn!("ignoring stored file {id:?}: not a task id");
                continue;
            };
            let fresh = self
                .republishing
                .lock()
                .map(|mut set| set.insert(id.clone()))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            match self.store.get(&id) {
                Ok(Some(body)) => {
                    tracing::debug!("Retrieved stored result ({id})");
                    self.publish(task_id, body, true).await;
                }
                Ok(None) => self.done_republishing(task_id),
                Err(e) => {
                    tracing::error!("cannot read stored result {id}: {e}");
                    self.done_republishing(task_id);
                }
            }
        }
    }
}

/// What a confirm waiter needs.
struct ConfirmCtx {
    task_id: Uuid,
    /// The body is (already) in the store.
    stored: bool,
    store: UnackedStore,
    totals: Arc<Totals>,
    fatal: watch::Sender<Option<StopReason>>,
    republishing: Arc<Mutex<HashSet<String>>>,
    settler: Settler,
}

impl ConfirmCtx {
    async fn wait(self, confirm: Confirm) {
        let id = self.task_id.to_string();
        match confirm.await {
            Ok(()) => {
                tracing::info!(task_id = %id, "Result sent (confirmed by the broker)");
                self.totals.results.fetch_add(1, Ordering::SeqCst);
                self.settler.settle(self.task_id);
                if self.stored {
                    if let Err(e) = self.store.remove(&id) {
                        tracing::error!(task_id = %id, "cannot remove re-published result {id}: {e}");
                    }
                }
            }
            Err(f) => {
                tracing::error!(task_id = %id, "Failed to publish result {id}: {}", f.error);
                if !self.stored {
                    if f.body.is_empty() {
                        tracing::error!(
                            "result of task {id} not confirmed (publisher ended without \
                             answering); its task is left for redelivery"
                        );
                    } else {
                        keep(&self.store, &self.settler, self.task_id, &f.body);
                    }
                }
                if let PublishError::Stopped(reason) = f.error {
                    self.fatal.send_replace(Some(reason));
                }
            }
        }
        if self.stored {
            if let Ok(mut set) = self.republishing.lock() {
                set.remove(&id);
            }
        }
    }
}
