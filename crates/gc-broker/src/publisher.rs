//! The result and heartbeat publisher (§3.4).
//!
//! On every (re)connect: passive `exchange.declare` of the queue info's `exchange` (skipped
//! when it is `""`, the default exchange cannot be declared), passive `queue.declare` of its
//! `queue`, `confirm.select`. Messages are published with the `queue_publish_kwargs` and their
//! confirms are **pipelined**: up to [`PublisherOptions::max_in_flight`] messages are on the
//! wire at once, each tracked by its delivery tag (lapin's `PublisherConfirm`), and the
//! socket write of one message is not awaited before the next is queued, so throughput is
//! bounded by the broker, not by one round trip per message (numbers in docs/benchmarks.md).
//!
//! Each [`Publisher::publish`] returns a [`Confirm`] future that completes with `Ok(())` on
//! `basic.ack` and fails on `basic.nack` and — unlike upstream, which installs no
//! `basic.return` handler and so silently loses unroutable `mandatory` messages — on
//! `basic.return` ([`PublishError::Returned`]). A failure hands the body back so the owner can
//! keep it (e.g. in the [`crate::UnackedStore`]).
//!
//! While disconnected, accepted messages are held (in order) and sent after the reconnect; a
//! message that was on the wire when the channel died is sent again (at-least-once, as
//! upstream; the service de-duplicates results by `task_id`). Reconnects follow
//! [`RetryPolicy`]; when the publisher gives up, every held message fails with
//! [`PublishError::Stopped`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Confirmation, Connection, ExchangeKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{ConfigError, PublishError, StopReason};
use crate::queue_info::PublishTarget;
use crate::retry::{self, Next, RetryPolicy, RetryState, TargetSource};

/// How a [`Publisher`] behaves.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Messages accepted but not yet on the wire; [`Publisher::publish`] waits when full.
    pub queue_capacity: usize,
    /// Published messages awaiting their confirm.
    pub max_in_flight: usize,
    /// Reconnection and give-up rules.
    pub retry: RetryPolicy,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            queue_capacity: 4096,
            max_in_flight: 1024,
            retry: RetryPolicy::default(),
        }
    }
}

/// A message that could not be confirmed, with its body handed back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct PublishFailure {
    /// Why.
    pub error: PublishError,
    /// The message body, so the owner can store or retry it.
    pub body: Vec<u8>,
}

type Reply = oneshot::Sender<Result<(), PublishFailure>>;

struct Request {
    body: Vec<u8>,
    reply: Reply,
}

/// Completes when the broker confirmed (`Ok`) or refused the message.
#[derive(Debug)]
pub struct Confirm {
    rx: oneshot::Receiver<Result<(), PublishFailure>>,
}

impl Future for Confirm {
    type Output = Result<(), PublishFailure>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            // The worker answers every request, even when it stops; only a panic in it drops
            // a reply unanswered.
            Poll::Ready(Err(_)) => Poll::Ready(Err(PublishFailure {
                error: PublishError::Lost,
                body: Vec::new(),
            })),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A confirmed publisher. See the module documentation.
#[derive(Debug)]
pub struct Publisher {
    tx: mpsc::Sender<Request>,
    shutdown: watch::Sender<bool>,
    connected: watch::Receiver<bool>,
    stop_reason: Arc<Mutex<Option<StopReason>>>,
    task: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts the publisher's background task. Must be called inside a tokio runtime.
    #[must_use]
    pub fn start(target: PublishTarget, options: PublisherOptions) -> Publisher {
        let initial = target.clone();
        Self::spawn(initial, Arc::new(move || Ok(target.clone())), options)
    }

    /// Like [`Publisher::start`], but asks `source` for the target before every connect
    /// (credential rotation, §5.4). Fails if the first target is invalid.
    pub fn start_with_source(
        source: TargetSource<PublishTarget>,
        options: PublisherOptions,
    ) -> Result<Publisher, ConfigError> {
        let initial = source()?;
        Ok(Self::spawn(initial, source, options))
    }

    fn spawn(
        target: PublishTarget,
        source: TargetSource<PublishTarget>,
        options: PublisherOptions,
    ) -> Publisher {
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (connected_tx, connected_rx) = watch::channel(false);
        let stop_reason = Arc::new(Mutex::new(None));
        let worker = Worker {
            retry: RetryState::new(options.retry.clone()),
            target,
            source,
            options,
            rx,
            shutdown: shutdown_rx,
            connected: connected_tx,
            held: VecDeque::new(),
            next_seq: 0,
            stop_reason: Arc::clone(&stop_reason),
        };
        let task = tokio::spawn(worker.run());
        Publisher {
            tx,
            shutdown: shutdown_tx,
            connected: connected_rx,
            stop_reason,
            task: Some(task),
        }
    }

    /// Queues `body` for publishing (waiting while the queue is full) and returns the future
    /// of its confirm. Fails at once if the publisher has stopped.
    pub async fn publish(&self, body: Vec<u8>) -> Result<Confirm, PublishFailure> {
        let (reply, rx) = oneshot::channel();
        match self.tx.send(Request { body, reply }).await {
            Ok(()) => Ok(Confirm { rx }),
            Err(mpsc::error::SendError(req)) => Err(PublishFailure {
                error: PublishError::Stopped(self.stop_reason()),
                body: req.body,
            }),
        }
    }

    /// Publishes and waits for the confirm.
    pub async fn publish_confirmed(&self, body: Vec<u8>) -> Result<(), PublishFailure> {
        self.publish(body).await?.await
    }

    /// Watches whether the publisher currently has a confirmed channel.
    #[must_use]
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// Why the publisher stopped (`Closed` while it is still running).
    #[must_use]
    pub fn stop_reason(&self) -> StopReason {
        self.stop_reason
            .lock()
            .map(|g| g.clone())
            .unwrap_or(None)
            .unwrap_or(StopReason::Closed)
    }

    /// Stops accepting messages; if connected, sends and confirms everything already accepted,
    /// otherwise fails it with [`PublishError::Stopped`]; then closes the connection.
    pub async fn close(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

struct Pending {
    seq: u64,
    /// Shared with the publish future while it runs.
    body: Arc<Vec<u8>>,
    reply: Reply,
}

impl Pending {
    fn fail(self, error: PublishError) {
        let body = Arc::try_unwrap(self.body).unwrap_or_else(|shared| (*shared).clone());
        let _ = self.reply.send(Err(PublishFailure { error, body }));
    }
}

enum SessionEnd {
    /// Shutdown requested and everything accepted was settled (or must be failed).
    Shutdown,
    ChannelClosed(lapin::Error),
    ConnectionLost(lapin::Error),
}

struct Worker {
    target: PublishTarget,
    source: TargetSource<PublishTarget>,
    options: PublisherOptions,
    retry: RetryState,
    rx: mpsc::Receiver<Request>,
    shutdown: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
    /// Accepted, not on the wire (or on the wire of a dead channel), in order.
    held: VecDeque<Pending>,
    next_seq: u64,
    stop_reason: Arc<Mutex<Option<StopReason>>>,
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn classify(conn: &Connection, err: lapin::Error) -> SessionEnd {
    if conn.status().connected() {
        SessionEnd::ChannelClosed(err)
    } else {
        SessionEnd::ConnectionLost(err)
    }
}

type ConfirmFuture =
    Pin<Box<dyn Future<Output = (u64, Result<Confirmation, lapin::Error>)> + Send>>;

impl Worker {
    async fn run(mut self) {
        let reason = self.run_loop().await;
        self.connected.send_replace(false);
        if let Ok(mut slot) = self.stop_reason.lock() {
            *slot = Some(reason.clone());
        }
        // Refuse new messages, then fail everything still accepted.
        self.rx.close();
        while let Ok(req) = self.rx.try_recv() {
            let pending = self.accept(req);
            self.held.push_back(pending);
        }
        for p in self.held.drain(..) {
            p.fail(PublishError::Stopped(reason.clone()));
        }
    }

    fn accept(&mut self, req: Request) -> Pending {
        self.next_seq += 1;
        Pending {
            seq: self.next_seq,
            body: Arc::new(req.body),
            reply: req.reply,
        }
    }

    /// Sleeps before a retry; returns true if shut down meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = wait_shutdown(&mut self.shutdown) => true,
            () = tokio::time::sleep(d) => false,
        }
    }

    async fn run_loop(&mut self) -> StopReason {
        loop {
            match retry::refresh(&self.source).await {
                Ok(t) => self.target = t,
                Err(e) => return StopReason::Config(e),
            }
            let connected = tokio::select! {
                () = wait_shutdown(&mut self.shutdown) => return StopReason::Closed,
                c = retry::connect(&self.target.url) => c,
            };
            let conn = match connected {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(url = %self.target.url, error = %e, "publisher connect failed");
                    match self.retry.connect_failed(e) {
                        Next::GiveUp(r) => return r,
                        Next::RetryAfter(d) => {
                            if self.pause(d).await {
                                return StopReason::Closed;
                            }
                            continue;
                        }
                    }
                }
            };
            let up_since = Instant::now();
            let outcome = loop {
                let next = match self.session(&conn).await {
                    SessionEnd::Shutdown => break Some(StopReason::Closed),
                    SessionEnd::ChannelClosed(e) => {
                        tracing::warn!(error = %e, "publisher channel closed");
                        self.retry.channel_closed(Instant::now(), e)
                    }
                    SessionEnd::ConnectionLost(e) => {
                        tracing::warn!(error = %e, "publisher connection lost");
                        match self.retry.connection_lost(up_since.elapsed(), e) {
                            Next::GiveUp(r) => break Some(r),
                            Next::RetryAfter(d) => {
                                if self.pause(d).await {
                                    break Some(StopReason::Closed);
                                }
                                break None;
                            }
                        }
                    }
                };
                match next {
                    Next::GiveUp(r) => break Some(r),
                    Next::RetryAfter(d) => {
                        if self.pause(d).await {
                            break Some(StopReason::Closed);
                        }
                    }
                }
            };
            if conn.status().connected() {
                let _ = conn.close(200, "OK".into()).await;
            }
            if let Some(r) = outcome {
                return r;
            }
        }
    }

    async fn open_channel(&self, conn: &Connection) -> Result<lapin::Channel, lapin::Error> {
        let channel = conn.create_channel().await?;
        if !self.target.exchange.is_empty() {
            channel
                .exchange_declare(
                    self.target.exchange.as_str().into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .queue_declare(
                self.target.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    /// One confirmed channel on an established connection.
    async fn session(&mut self, conn: &Connection) -> SessionEnd {
        let channel = match self.open_channel(conn).await {
            Ok(c) => c,
            Err(e) => return classify(conn, e),
        };
        self.connected.send_replace(true);
        let mut in_flight: HashMap<u64, Pending> = HashMap::new();
        let mut confirms: FuturesUnordered<ConfirmFuture> = FuturesUnordered::new();
        let mut draining = false;
        let mut status_tick = tokio::time::interval(Duration::from_secs(1));
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_in_flight = self.options.max_in_flight.max(1);

        let end = 'session: loop {
            // Put held messages on the wire while there is room.
            while in_flight.len() < max_in_flight {
                let Some(p) = self.held.pop_front() else {
                    break;
                };
                let mut fut = self.start_publish(&channel, &p);
                // Poll once right away: lapin assigns the delivery tag and queues the frames
                // on the first poll, so wire order stays acceptance order while we go on
                // without waiting for each socket write (that wait alone halves throughput).
                let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
                if let Poll::Ready(out) = first {
                    fut = Box::pin(std::future::ready(out));
                }
                confirms.push(fut);
                in_flight.insert(p.seq, p);
            }
            if draining && self.held.is_empty() && in_flight.is_empty() {
                let _ = channel.close(200, "OK".into()).await;
                break SessionEnd::Shutdown;
            }
            let room = in_flight.len() < max_in_flight && !draining;
            tokio::select! {
                biased;
                () = wait_shutdown(&mut self.shutdown), if !draining => {
                    draining = true;
                    self.rx.close();
                    while let Ok(req) = self.rx.try_recv() {
                        let p = self.accept(req);
                        self.held.push_back(p);
                    }
                }
                Some((seq, result)) = confirms.next(), if !confirms.is_empty() => {
                    let Some(p) = in_flight.remove(&seq) else { continue };
                    match result {
                        Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                            let _ = p.reply.send(Ok(()));
                        }
                        Ok(Confirmation::Ack(Some(returned))) => {
                            p.fail(PublishError::Returned {
                                code: returned.reply_code,
                                text: returned.reply_text.to_string(),
                            });
                        }
                        Ok(Confirmation::Nack(_)) => p.fail(PublishError::Nacked),
                        Err(e) => {
                            // The channel died with this message unconfirmed: send it again.
                            self.held.push_front(p);
                            break 'session classify(conn, e);
                        }
                    }
                }
                req = self.rx.recv(), if room => match req {
                    Some(req) => {
                        let p = self.accept(req);
                        self.held.push_back(p);
                    }
                    // Every Publisher handle is gone: drain what was accepted, then stop.
                    None => draining = true,
                },
                _ = status_tick.tick() => {
                    if !channel.status().connected() {
                        let err = lapin::Error::from(std::io::Error::other("publisher channel is no longer open"));
                        break classify(conn, err);
                    }
                }
            }
        };
        self.connected.send_replace(false);
        // Unconfirmed messages of this channel go back to the front, in their original order.
        let mut unconfirmed: Vec<Pending> = in_flight.into_values().collect();
        unconfirmed.sort_by_key(|p| p.seq);
        for p in unconfirmed.into_iter().rev() {
            self.held.push_front(p);
        }
        if draining {
            if let SessionEnd::Shutdown = end {
                return end;
            }
            // Shut down while the channel failed: do not reconnect, fail what is left.
            return SessionEnd::Shutdown;
        }
        end
    }

    /// The future of one publish: socket write, then the broker's confirm.
    fn start_publish(&self, channel: &lapin::Channel, p: &Pending) -> ConfirmFuture {
        let kw = &self.target.kwargs;
        let channel = channel.clone();
        let body = Arc::clone(&p.body);
        let seq = p.seq;
        let exchange = ShortString::from(kw.exchange.as_str());
        let routing_key = ShortString::from(kw.routing_key.as_str());
        let options = BasicPublishOptions {
            mandatory: kw.mandatory,
            immediate: false,
        };
        let properties = kw.properties.clone();
        Box::pin(async move {
            let result = match channel
                .basic_publish(exchange, routing_key, options, &body, properties)
                .await
            {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            };
            (seq, result)
        })
    }
}
