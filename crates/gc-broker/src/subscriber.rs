//! The consumer of the MEP command queue and of the UEP task queue (§3.3).
//!
//! A [`Subscriber`] owns one connection with one channel and one consumer (manual ack,
//! optionally `exclusive`). Deliveries come out of [`Subscriber::next`]; once the owner has
//! handed a delivery off (to the engine, or decided it is done with it), it reports the
//! delivery's [`HandoffToken`] through [`Subscriber::handed_off`] or an [`AckHandle`]. Only
//! handed-off deliveries are ever acknowledged:
//!
//! * the contiguous run of handed-off tags from the lowest unacknowledged one is acked with one
//!   `basic.ack(multiple=true)`; a handed-off tag above a gap (an earlier delivery still with
//!   the owner) is acked on its own, so a `multiple` ack never covers a delivery that was not
//!   handed off;
//! * acks are flushed when [`SubscriberOptions::ack_batch`] are pending, and otherwise every
//!   [`SubscriberOptions::ack_interval`] (upstream flushes every 0.5 s);
//! * every token carries the session (channel) it came from; a token of an earlier session is
//!   dropped, never acked on a newer channel (delivery tags are per channel, and the broker
//!   redelivers everything unacked when the old channel died).
//!
//! **Prefetch.** Upstream sends no `basic.qos`, so the broker pushes the whole queue into one
//! UEP. We default to a prefetch of [`DEFAULT_PREFETCH`] (256): enough to keep the pipeline full
//! at the broker's rate (acks are flushed every 64 hand-offs, far below the window, so the
//! broker never waits for us in steady state), small enough that a UEP that dies, or whose
//! engine stops taking tasks, leaves the rest of the queue on the broker for the next consumer
//! instead of holding it unacknowledged. The owner applies back-pressure simply by handing off
//! later: the UEP hands a task off only once its result is confirmed or stored, so its window
//! counts every task it holds (gc-uep sizes it to its engine).
//!
//! **Reconnects** follow [`RetryPolicy`] (§3.7). When the subscriber gives up,
//! [`Subscriber::next`] returns [`BrokerError::Stopped`] with the reason.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{BrokerError, ConfigError, StopReason};
use crate::queue_info::ConsumeTarget;
use crate::retry::{self, Next, RetryPolicy, RetryState, TargetSource};

/// Default `basic.qos` prefetch count (see the module documentation for the reasoning).
pub const DEFAULT_PREFETCH: u16 = 256;

/// How a [`Subscriber`] consumes.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// Consume exclusively (true for the UEP task queue, false for the MEP command queue).
    pub exclusive: bool,
    /// `basic.qos` prefetch count; 0 sends no `basic.qos` (unlimited, upstream's behaviour).
    pub prefetch: u16,
    /// Flush acks as soon as this many hand-offs are pending.
    pub ack_batch: usize,
    /// Flush pending acks at least this often.
    pub ack_interval: Duration,
    /// Reconnection and give-up rules.
    pub retry: RetryPolicy,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            exclusive: false,
            prefetch: DEFAULT_PREFETCH,
            ack_batch: 64,
            ack_interval: Duration::from_millis(100),
            retry: RetryPolicy::default(),
        }
    }
}

/// Identifies one delivery for acknowledgement: its channel session and delivery tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandoffToken {
    session: u64,
    tag: u64,
}

impl HandoffToken {
    /// The AMQP delivery tag (per channel; for logs).
    #[must_use]
    pub fn delivery_tag(&self) -> u64 {
        self.tag
    }

    /// Which channel session of the subscriber the delivery came from (1, 2, … per reconnect).
    #[must_use]
    pub fn session(&self) -> u64 {
        self.session
    }
}

/// One message taken from the queue.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Message body.
    pub body: Vec<u8>,
    /// AMQP properties (the UEP reads `headers`; the MEP `content_type`, `timestamp`,
    /// `headers.debug`).
    pub properties: BasicProperties,
    /// Exchange it was published to.
    pub exchange: String,
    /// Routing key it was published with.
    pub routing_key: String,
    /// The broker's redelivered flag (upstream ignores it).
    pub redelivered: bool,
    /// Give this back through [`Subscriber::handed_off`] once the delivery is handed off.
    pub token: HandoffToken,
}

impl Delivery {
    /// The AMQP `headers` table, if any.
    #[must_use]
    pub fn headers(&self) -> Option<&FieldTable> {
        self.properties.headers().as_ref()
    }
}

/// A cloneable handle to report hand-offs from anywhere (never blocks).
#[derive(Debug, Clone)]
pub struct AckHandle {
    tx: mpsc::UnboundedSender<HandoffToken>,
}

impl AckHandle {
    /// Marks a delivery as handed off: it will be acknowledged with the next flush. A token of
    /// a channel that has since been replaced is ignored (the broker redelivers it).
    pub fn handed_off(&self, token: HandoffToken) {
        // If the subscriber task is gone its channel is gone too; nothing can be acked.
        let _ = self.tx.send(token);
    }
}

/// A queue consumer with ack-after-hand-off. See the module documentation.
#[derive(Debug)]
pub struct Subscriber {
    deliveries: mpsc::Receiver<Delivery>,
    acks: AckHandle,
    shutdown: watch::Sender<bool>,
    consuming: watch::Receiver<bool>,
    task: Option<JoinHandle<StopReason>>,
    stopped: Option<StopReason>,
}

impl Subscriber {
    /// Starts consuming `target.queue` in a background task. Must be called inside a tokio
    /// runtime.
    #[must_use]
    pub fn start(target: ConsumeTarget, options: SubscriberOptions) -> Subscriber {
        let initial = target.clone();
        Self::spawn(initial, Arc::new(move || Ok(target.clone())), options)
    }

    /// Like [`Subscriber::start`], but asks `source` for the target before every connect
    /// (credential rotation, §5.4). Fails if the first target is invalid.
    pub fn start_with_source(
        source: TargetSource<ConsumeTarget>,
        options: SubscriberOptions,
    ) -> Result<Subscriber, ConfigError> {
        let initial = source()?;
        Ok(Self::spawn(initial, source, options))
    }

    fn spawn(
        target: ConsumeTarget,
        source: TargetSource<ConsumeTarget>,
        options: SubscriberOptions,
    ) -> Subscriber {
        let capacity = if options.prefetch == 0 {
            1024
        } else {
            usize::from(options.prefetch)
        };
        let (out_tx, out_rx) = mpsc::channel(capacity);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (consuming_tx, consuming_rx) = watch::channel(false);
        let worker = Worker {
            retry: RetryState::new(options.retry.clone()),
            target,
            source,
            options,
            out: out_tx,
            acks: ack_rx,
            shutdown: shutdown_rx,
            consuming: consuming_tx,
            session: 0,
        };
        let task = tokio::spawn(worker.run());
        Subscriber {
            deliveries: out_rx,
            acks: AckHandle { tx: ack_tx },
            shutdown: shutdown_tx,
            consuming: consuming_rx,
            task: Some(task),
            stopped: None,
        }
    }

    /// The next delivery, or [`BrokerError::Stopped`] once the subscriber has given up (or was
    /// closed). Cancel-safe.
    pub async fn next(&mut self) -> Result<Delivery, BrokerError> {
        if let Some(reason) = &self.stopped {
            return Err(BrokerError::Stopped(reason.clone()));
        }
        if let Some(d) = self.deliveries.recv().await {
            return Ok(d);
        }
        // Await through a reference so that a cancelled `next` keeps the handle.
        let reason = match self.task.as_mut() {
            Some(task) => task
                .await
                .unwrap_or_else(|e| StopReason::TaskFailed(e.to_string())),
            None => StopReason::Closed,
        };
        self.task = None;
        self.stopped = Some(reason.clone());
        Err(BrokerError::Stopped(reason))
    }

    /// Marks a delivery as handed off (see [`AckHandle::handed_off`]).
    pub fn handed_off(&self, token: HandoffToken) {
        self.acks.handed_off(token);
    }

    /// A cloneable handle for reporting hand-offs from other tasks.
    #[must_use]
    pub fn ack_handle(&self) -> AckHandle {
        self.acks.clone()
    }

    /// Watches whether the consumer is currently registered with the broker.
    #[must_use]
    pub fn consuming(&self) -> watch::Receiver<bool> {
        self.consuming.clone()
    }

    /// Flushes the acks of everything handed off so far, cancels the consumer and closes the
    /// connection. Deliveries not handed off are returned to the queue by the broker.
    pub async fn close(mut self) {
        let _ = self.shutdown.send(true);
        // Unblocks the task if it is waiting for room to pass on a delivery.
        self.deliveries.close();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Which acks a session still owes. Tags below `next` are acknowledged.
#[derive(Debug)]
struct AckState {
    session: u64,
    next: u64,
    ready: BTreeSet<u64>,
    acked_above_gap: BTreeSet<u64>,
}

impl AckState {
    fn new(session: u64) -> Self {
        AckState {
            session,
            next: 1,
            ready: BTreeSet::new(),
            acked_above_gap: BTreeSet::new(),
        }
    }

    /// Records a hand-off; returns false for a token of another session or a stale tag.
    fn add(&mut self, token: HandoffToken) -> bool {
        if token.session != self.session
            || token.tag < self.next
            || self.acked_above_gap.contains(&token.tag)
        {
            return false;
        }
        self.ready.insert(token.tag)
    }

    fn pending(&self) -> usize {
        self.ready.len()
    }

    /// The acks to send now, as `(delivery_tag, multiple)`.
    fn take_acks(&mut self) -> Vec<(u64, bool)> {
        let mut acks = Vec::new();
        let mut highest = None;
        loop {
            if self.ready.remove(&self.next) {
                highest = Some(self.next);
            } else if !self.acked_above_gap.remove(&self.next) {
                break;
            }
            self.next += 1;
        }
        if let Some(h) = highest {
            acks.push((h, true));
        }
        for tag in std::mem::take(&mut self.ready) {
            acks.push((tag, false));
            self.acked_above_gap.insert(tag);
        }
        acks
    }
}

enum SessionEnd {
    Shutdown,
    ChannelClosed(lapin::Error),
    ConnectionLost(lapin::Error),
}

struct Worker {
    target: ConsumeTarget,
    source: TargetSource<ConsumeTarget>,
    options: SubscriberOptions,
    retry: RetryState,
    out: mpsc::Sender<Delivery>,
    acks: mpsc::UnboundedReceiver<HandoffToken>,
    shutdown: watch::Receiver<bool>,
    consuming: watch::Sender<bool>,
    session: u64,
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

/// Sleeps, unless shut down first; returns true on shutdown.
async fn sleep_or_shutdown(rx: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = wait_shutdown(rx) => true,
        () = tokio::time::sleep(d) => false,
    }
}

fn classify(conn: &Connection, err: lapin::Error) -> SessionEnd {
    if conn.status().connected() {
        SessionEnd::ChannelClosed(err)
    } else {
        SessionEnd::ConnectionLost(err)
    }
}

impl Worker {
    async fn run(mut self) -> StopReason {
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
                    tracing::warn!(url = %self.target.url, error = %e, "subscriber connect failed");
                    match self.retry.connect_failed(e) {
                        Next::GiveUp(r) => return r,
                        Next::RetryAfter(d) => {
                            if sleep_or_shutdown(&mut self.shutdown, d).await {
                                return StopReason::Closed;
                            }
                            continue;
                        }
                    }
                }
            };
            let up_since = Instant::now();
            let reason = loop {
                let end = self.session(&conn).await;
                let next = match end {
                    SessionEnd::Shutdown => break Some(StopReason::Closed),
                    SessionEnd::ChannelClosed(e) => {
                        tracing::warn!(queue = %self.target.queue, error = %e, "subscriber channel closed");
                        self.retry.channel_closed(Instant::now(), e)
                    }
                    SessionEnd::ConnectionLost(e) => {
                        tracing::warn!(queue = %self.target.queue, error = %e, "subscriber connection lost");
                        match self.retry.connection_lost(up_since.elapsed(), e) {
                            Next::GiveUp(r) => break Some(r),
                            Next::RetryAfter(d) => {
                                if sleep_or_shutdown(&mut self.shutdown, d).await {
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
                        if sleep_or_shutdown(&mut self.shutdown, d).await {
                            break Some(StopReason::Closed);
                        }
                    }
                }
            };
            if conn.status().connected() {
                let _ = conn.close(200, "OK".into()).await;
            }
            if let Some(r) = reason {
                return r;
            }
        }
    }

    /// One channel + consumer on an established connection.
    async fn session(&mut self, conn: &Connection) -> SessionEnd {
        let channel = match conn.create_channel().await {
            Ok(c) => c,
            Err(e) => return classify(conn, e),
        };
        if self.options.prefetch > 0 {
            if let Err(e) = channel
                .basic_qos(self.options.prefetch, BasicQosOptions::default())
                .await
            {
                return classify(conn, e);
            }
        }
        let consume_options = BasicConsumeOptions {
            no_ack: false,
            exclusive: self.options.exclusive,
            ..BasicConsumeOptions::default()
        };
        let mut consumer = match channel
            .basic_consume(
                self.target.queue.as_str().into(),
                "".into(),
                consume_options,
                FieldTable::default(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => return classify(conn, e),
        };
        self.session += 1;
        let mut acks = AckState::new(self.session);
        self.consuming.send_replace(true);
        // Not `interval`: its first tick is immediate, which would flush a partial batch.
        let period = self.options.ack_interval.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            tokio::select! {
                biased;
                () = wait_shutdown(&mut self.shutdown) => {
                    while let Ok(t) = self.acks.try_recv() {
                        acks.add(t);
                    }
                    let _ = flush(&channel, &mut acks).await;
                    let _ = channel.close(200, "OK".into()).await;
                    break SessionEnd::Shutdown;
                }
                Some(token) = self.acks.recv() => {
                    // Take every hand-off already reported: results confirmed together are
                    // reported together, in no particular order, and flushing in the middle of
                    // such a run would split it into many single acks.
                    acks.add(token);
                    while let Ok(t) = self.acks.try_recv() {
                        acks.add(t);
                    }
                    if acks.pending() >= self.options.ack_batch {
                        if let Err(e) = flush(&channel, &mut acks).await {
                            break classify(conn, e);
                        }
                    }
                }
                item = consumer.next() => match item {
                    Some(Ok(d)) => {
                        let delivery = Delivery {
                            body: d.data,
                            properties: d.properties,
                            exchange: d.exchange.to_string(),
                            routing_key: d.routing_key.to_string(),
                            redelivered: d.redelivered,
                            token: HandoffToken { session: self.session, tag: d.delivery_tag },
                        };
                        if self.out.send(delivery).await.is_err() {
                            // The owner closed or dropped the subscriber: settle what was
                            // handed off, as close() does.
                            while let Ok(t) = self.acks.try_recv() {
                                acks.add(t);
                            }
                            let _ = flush(&channel, &mut acks).await;
                            let _ = channel.close(200, "OK".into()).await;
                            break SessionEnd::Shutdown;
                        }
                    }
                    Some(Err(e)) => break classify(conn, e),
                    None => {
                        // Consumer cancelled by the broker (e.g. queue deleted): upstream
                        // closes the channel, which counts as one channel close.
                        let _ = channel.close(200, "consumer cancelled".into()).await;
                        break classify(conn, lapin::Error::from(std::io::Error::other(
                            "consumer cancelled by the broker",
                        )));
                    }
                },
                _ = tick.tick() => {
                    if acks.pending() > 0 {
                        if let Err(e) = flush(&channel, &mut acks).await {
                            break classify(conn, e);
                        }
                    }
                }
            }
        };
        self.consuming.send_replace(false);
        end
    }
}

async fn flush(channel: &lapin::Channel, acks: &mut AckState) -> Result<(), lapin::Error> {
    for (tag, multiple) in acks.take_acks() {
        channel.basic_ack(tag, BasicAckOptions { multiple }).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(session: u64, tag: u64) -> HandoffToken {
        HandoffToken { session, tag }
    }

    #[test]
    fn contiguous_run_is_one_multiple_ack() {
        let mut s = AckState::new(1);
        for t in [2, 1, 3] {
            assert!(s.add(tok(1, t)));
        }
        assert_eq!(s.take_acks(), vec![(3, true)]);
        assert!(s.take_acks().is_empty());
        assert!(!s.add(tok(1, 2)), "already acked");
    }

    #[test]
    fn never_covers_a_delivery_not_handed_off() {
        let mut s = AckState::new(1);
        s.add(tok(1, 1));
        s.add(tok(1, 3));
        s.add(tok(1, 4));
        // Tag 2 is still with the owner: 3 and 4 are acked one by one.
        assert_eq!(s.take_acks(), vec![(1, true), (3, false), (4, false)]);
        s.add(tok(1, 5));
        assert_eq!(s.take_acks(), vec![(5, false)]);
        // Once 2 is handed off, the multiple ack may run past the individually acked tags.
        s.add(tok(1, 2));
        s.add(tok(1, 6));
        assert_eq!(s.take_acks(), vec![(6, true)]);
        assert!(s.acked_above_gap.is_empty());
    }

    #[test]
    fn tokens_of_another_session_are_ignored() {
        let mut s = AckState::new(2);
        assert!(!s.add(tok(1, 1)));
        assert!(s.take_acks().is_empty());
    }
}
