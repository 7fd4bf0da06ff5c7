//! Reconnection and give-up rules shared by the subscriber and the publisher (§3.7).
//!
//! The rules are a small pure state machine ([`RetryState`]) so they can be unit-tested
//! without a broker; the async loops only ask it what to do next.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

use crate::error::{ConfigError, StopReason};
use crate::url::AmqpUrl;

/// Tunables of the give-up rules. [`RetryPolicy::default`] is upstream's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Connect attempts before giving up (7200).
    pub max_attempts: u32,
    /// Sleep before each connect retry is uniform in `[min, max]` (0.5 s – 10 s).
    pub retry_sleep_min: Duration,
    /// Upper bound of the retry sleep.
    pub retry_sleep_max: Duration,
    /// The attempt counter resets once a session has been up this long (60 s).
    pub reset_after: Duration,
    /// This many channel closes ... (3)
    pub channel_close_limit: usize,
    /// ... within this window stop the thread for good (10 s).
    pub channel_close_window: Duration,
    /// Delay before reopening a channel the broker closed (1 s).
    pub channel_reopen_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 7200,
            retry_sleep_min: Duration::from_millis(500),
            retry_sleep_max: Duration::from_secs(10),
            reset_after: Duration::from_secs(60),
            channel_close_limit: 3,
            channel_close_window: Duration::from_secs(10),
            channel_reopen_delay: Duration::from_secs(1),
        }
    }
}

/// What to do after a failure.
#[derive(Debug)]
pub(crate) enum Next {
    /// Sleep this long, then try again.
    RetryAfter(Duration),
    /// Stop for good.
    GiveUp(StopReason),
}

/// Counters of one subscriber/publisher over its whole life.
#[derive(Debug)]
pub(crate) struct RetryState {
    policy: RetryPolicy,
    attempts: u32,
    channel_closes: VecDeque<Instant>,
}

impl RetryState {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        RetryState {
            policy,
            attempts: 0,
            channel_closes: VecDeque::new(),
        }
    }

    /// A connect attempt (TCP, handshake, or channel set-up on a fresh connection) failed.
    pub(crate) fn connect_failed(&mut self, err: lapin::Error) -> Next {
        if is_auth_failure(&err) {
            return Next::GiveUp(StopReason::Authentication(err));
        }
        self.attempts += 1;
        if self.attempts >= self.policy.max_attempts {
            return Next::GiveUp(StopReason::AttemptsExhausted {
                attempts: self.attempts,
                last: err,
            });
        }
        Next::RetryAfter(self.retry_sleep())
    }

    /// An established connection was lost after being up for `up_for`.
    pub(crate) fn connection_lost(&mut self, up_for: Duration, err: lapin::Error) -> Next {
        if up_for >= self.policy.reset_after {
            self.attempts = 0;
        }
        self.connect_failed(err)
    }

    /// The broker closed our channel while the connection stayed up.
    pub(crate) fn channel_closed(&mut self, now: Instant, err: lapin::Error) -> Next {
        let window = self.policy.channel_close_window;
        self.channel_closes.push_back(now);
        while let Some(&first) = self.channel_closes.front() {
            if now.duration_since(first) > window {
                self.channel_closes.pop_front();
            } else {
                break;
            }
        }
        if self.channel_closes.len() >= self.policy.channel_close_limit {
            return Next::GiveUp(StopReason::ChannelClosedTooOften {
                closes: self.channel_closes.len(),
                window_secs: window.as_secs(),
                last: err,
            });
        }
        Next::RetryAfter(self.policy.channel_reopen_delay)
    }

    fn retry_sleep(&self) -> Duration {
        use rand::Rng;
        let (lo, hi) = (self.policy.retry_sleep_min, self.policy.retry_sleep_max);
        if hi <= lo {
            return lo;
        }
        rand::rng().random_range(lo..=hi)
    }
}

/// Produces the connection target before every connect attempt.
///
/// 4.19 UEPs re-read their (possibly rotated) AMQP credentials at every reconnect (§5.4); an
/// endpoint passes a closure that decrypts and parses the credential memfd. A failure is
/// retried once after 1 s, as upstream does, then the subscriber/publisher stops with
/// [`StopReason::Config`].
pub type TargetSource<T> = Arc<dyn Fn() -> Result<T, ConfigError> + Send + Sync>;

/// Reads the current target from `source`, retrying once after 1 s.
pub(crate) async fn refresh<T>(source: &TargetSource<T>) -> Result<T, ConfigError> {
    match source() {
        Ok(t) => Ok(t),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the connection target; retrying in 1 s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            source()
        }
    }
}

/// `true` when the broker refused the login (RabbitMQ closes the connection with
/// `403 ACCESS_REFUSED` during the handshake when the client announces
/// `authentication_failure_close`, as lapin does).
pub(crate) fn is_auth_failure(err: &lapin::Error) -> bool {
    matches!(
        err.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED))
    )
}

/// Bound on one whole connect (TCP, TLS, AMQP handshake): pika's socket timeout (10 s) plus
/// its stack timeout (15 s) plus slack, so a peer that accepts TCP but never speaks AMQP
/// cannot hang a subscriber or publisher.
const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// Opens one connection to `url`.
pub(crate) async fn connect(url: &AmqpUrl) -> Result<lapin::Connection, lapin::Error> {
    let attempt =
        lapin::Connection::connect_uri(url.to_lapin(), lapin::ConnectionProperties::default());
    match tokio::time::timeout(CONNECT_DEADLINE, attempt).await {
        Ok(result) => result,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no AMQP connection within {CONNECT_DEADLINE:?}"),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_err() -> lapin::Error {
        lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn attempts_limit_and_reset() {
        let mut s = RetryState::new(policy());
        match s.connect_failed(io_err()) {
            Next::RetryAfter(d) => {
                assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(10))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(s.connect_failed(io_err()), Next::RetryAfter(_)));
        // A long-lived session resets the counter.
        assert!(matches!(
            s.connection_lost(Duration::from_secs(61), io_err()),
            Next::RetryAfter(_)
        ));
        assert!(matches!(s.connect_failed(io_err()), Next::RetryAfter(_)));
        // A short one does not.
        assert!(matches!(
            s.connection_lost(Duration::from_secs(1), io_err()),
            Next::GiveUp(StopReason::AttemptsExhausted { attempts: 3, .. })
        ));
    }

    #[test]
    fn auth_failure_gives_up_at_once() {
        let err = lapin::Error::from(lapin::ErrorKind::ProtocolError(
            lapin::protocol::AMQPError::new(
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
                "ACCESS_REFUSED - Login was refused".into(),
            ),
        ));
        let mut s = RetryState::new(RetryPolicy::default());
        assert!(matches!(
            s.connect_failed(err),
            Next::GiveUp(StopReason::Authentication(_))
        ));
    }

    #[test]
    fn three_channel_closes_within_window_stop() {
        let mut s = RetryState::new(RetryPolicy::default());
        let t0 = Instant::now();
        assert!(matches!(
            s.channel_closed(t0, io_err()),
            Next::RetryAfter(d) if d == Duration::from_secs(1)
        ));
        // Outside the window: the first close no longer counts.
        assert!(matches!(
            s.channel_closed(t0 + Duration::from_secs(11), io_err()),
            Next::RetryAfter(_)
        ));
        assert!(matches!(
            s.channel_closed(t0 + Duration::from_secs(12), io_err()),
            Next::RetryAfter(_)
        ));
        assert!(matches!(
            s.channel_closed(t0 + Duration::from_secs(13), io_err()),
            Next::GiveUp(StopReason::ChannelClosedTooOften { closes: 3, .. })
        ));
    }
}
