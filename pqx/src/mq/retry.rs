//! Delayed retry. A failed attempt with retries left is published to a wait queue of its own host
//! queue (`<queue>.retry.<delay_ms>`), whose message TTL is the delay and whose dead-letter target
//! is the host queue itself through the default exchange. The message so comes back to the one
//! queue whose subscriber failed it, never to the other queues it was mailed to (the original
//! PQX's known issue). One wait queue per delay keeps expiry in order, and `x-expires` removes
//! wait queues nobody uses any more. Where an original PQX deployment has a delayed-message
//! exchange, retries go through it instead, routed to their queue only by [`RETRY_QUEUE_HEADER`].

use std::time::Duration;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};

use crate::mq::dead_letter::without_death_history;
use crate::mq::headers::{legacy_retries, RETRIES_HEADER};
use crate::mq::topology::declare_queue;
use crate::mq::{carried, Destination, Publisher, ATTEMPT_HEADER, MAX_TTL_MS};
use crate::{Error, Result};

/// The wait before a retry when a task sets `retry` but no `poke`.
pub const DEFAULT_POKE_SECS: u16 = 10;

/// How long an unused wait queue outlives its longest possible message.
const WAIT_QUEUE_SLACK_MS: u64 = 60_000;

/// The longest wait before a retry: its wait queue's `x-expires` (the wait and the slack) must be
/// a TTL the broker takes.
pub const MAX_RETRY_DELAY: Duration = Duration::from_millis(MAX_TTL_MS - WAIT_QUEUE_SLACK_MS);

/// What becomes of a delivery once its attempt is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// It succeeded: acknowledge it.
    Done,
    /// It failed with retries left: run attempt `attempt` after `delay`, on the same queue.
    RetryAfter { attempt: u32, delay: Duration },
    /// It failed for the last time: send it to the dead-letter queue.
    GiveUp,
}

/// How a command's failures are retried: `retry` more attempts after the first failure, the first
/// after `poke`, each later one `backoff` times longer than the one before, none longer than
/// `max_poke`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    retry: u8,
    poke: Duration,
    backoff: f64,
    max_poke: Option<Duration>,
}

impl RetryPolicy {
    /// `retry` retries after the default poke of [`DEFAULT_POKE_SECS`], without backoff.
    pub fn new(retry: u8) -> Self {
        Self {
            retry,
            poke: Duration::from_secs(u64::from(DEFAULT_POKE_SECS)),
            backoff: 1.0,
            max_poke: None,
        }
    }

    /// The wait before the first retry, in seconds (default [`DEFAULT_POKE_SECS`]).
    pub fn with_poke(mut self, secs: Option<u16>) -> Self {
        if let Some(secs) = secs {
            self.poke = Duration::from_secs(u64::from(secs));
        }
        self
    }

    /// The factor each wait grows by (default 1: constant).
    pub fn with_backoff(mut self, factor: f64) -> Self {
        self.backoff = factor.max(1.0);
        self
    }

    /// The longest wait, in seconds (default: no limit).
    pub fn with_max_poke(mut self, secs: Option<u32>) -> Self {
        self.max_poke = secs.map(|s| Duration::from_secs(u64::from(s)));
        self
    }

    /// How many retries the command has.
    pub fn retries(&self) -> u8 {
        self.retry
    }

    /// The wait before attempt `attempt` (2 for the first retry).
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(2)).unwrap_or(i32::MAX);
        let secs = self.poke.as_secs_f64() * self.backoff.powi(exponent);
        // Whole milliseconds, so that equal delays share one wait queue.
        let ms = (secs * 1000.0)
            .round()
            .min(MAX_RETRY_DELAY.as_millis() as f64);
        let delay = Duration::from_millis(ms as u64);
        match self.max_poke {
            Some(max) => delay.min(max),
            None => delay,
        }
    }

    /// Decides after attempt `attempt` (1-based) succeeded or failed.
    pub fn decide(&self, success: bool, attempt: u32) -> RetryDecision {
        if success {
            RetryDecision::Done
        } else if attempt > u32::from(self.retry) {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter {
                attempt: attempt + 1,
                delay: self.delay_before(attempt + 1),
            }
        }
    }
}

/// The wait queue of `queue` for `delay`.
pub fn wait_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay.as_millis())
}

/// How retries come back to their queue after their wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRoute {
    /// pqx's own: a wait queue per queue and delay, published to through the default exchange,
    /// that dead-letters back to the queue. No plugin needed.
    WaitQueues,
    /// The delayed-message plugin's exchange (`x-delayed-message`, headers type), where an original
    /// PQX deployment has one: the message carries `x-delay` and only the header
    /// [`RETRY_QUEUE_HEADER`], which the queue is bound by, so that it comes back to that queue
    /// only.
    DelayedExchange { exchange: String },
}

/// The header a retry on a delayed-message exchange is routed by: not `x-` prefixed, since a
/// headers exchange ignores those when it matches.
pub const RETRY_QUEUE_HEADER: &str = "pqx-retry-queue";

/// The longest wait the delayed-message plugin takes (`x-delay` is a signed 32-bit integer).
const MAX_PLUGIN_DELAY_MS: u128 = i32::MAX as u128;

/// One retry to schedule: attempt `attempt` of a command with `retry` retries, after `delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempt: u32,
    pub retry: u8,
    pub delay: Duration,
}

/// Publishes `delivery` again, as `next`, to come back to `queue` after its delay; returns once
/// the broker has confirmed it. The caller then acknowledges the original delivery.
pub async fn schedule_retry(
    publisher: &Publisher,
    route: &RetryRoute,
    queue: &str,
    delivery: &Delivery,
    next: Retry,
) -> Result<()> {
    // The broker's x-death history of earlier waits would grow with every retry: the attempt
    // header says all a retry needs. `x-retries` keeps an original PQX subscriber that takes
    // the message within the same number of runs.
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut headers = without_death_history(&headers);
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(next.attempt)),
    );
    headers.insert(
        RETRIES_HEADER.into(),
        AMQPValue::ShortInt(legacy_retries(next.retry, next.attempt)),
    );
    match route {
        RetryRoute::DelayedExchange { exchange }
            if next.delay.as_millis() <= MAX_PLUGIN_DELAY_MS =>
        {
            through_plugin(publisher, exchange, queue, delivery, headers, next.delay).await
        }
        _ => through_wait_queue(publisher, queue, delivery, headers, next.delay).await,
    }
}

async fn through_wait_queue(
    publisher: &Publisher,
    queue: &str,
    delivery: &Delivery,
    headers: FieldTable,
    delay: Duration,
) -> Result<()> {
    let wait_queue = wait_queue_name(queue, delay);
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay_ms));
    args.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(delay_ms.saturating_add(WAIT_QUEUE_SLACK_MS as i64)),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
    // Declared on each retry: that also resets the x-expires timer while the queue is in use.
    declare_queue(publisher.channel(), &wait_queue, args).await?;
    let properties = carried(&delivery.properties).with_headers(headers);
    let what = format!("retry wait queue {wait_queue}");
    if !publisher.fits(&properties) {
        return Err(Error::DoesNotFit { target: what });
    }
    let to = Destination::new("", &wait_queue, &what);
    publisher.publish(to, &delivery.data, properties).await
}

async fn through_plugin(
    publisher: &Publisher,
    exchange: &str,
    queue: &str,
    delivery: &Delivery,
    headers: FieldTable,
    delay: Duration,
) -> Result<()> {
    // Only pqx's own headers and the retry queue: the routing pairs would match other queues.
    let mut kept: FieldTable = headers
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("x-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into();
    kept.insert(
        RETRY_QUEUE_HEADER.into(),
        AMQPValue::LongString(queue.into()),
    );
    let delay_ms = i32::try_from(delay.as_millis()).unwrap_or(i32::MAX);
    kept.insert("x-delay".into(), AMQPValue::LongInt(delay_ms));
    let properties = carried(&delivery.properties).with_headers(kept);
    let what = format!("delayed exchange {exchange} (for queue {queue})");
    if !publisher.fits(&properties) {
        return Err(Error::DoesNotFit { target: what });
    }
    let to = Destination::delayed(exchange, &what);
    publisher.publish(to, &delivery.data, properties).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_n_means_n_more_attempts() {
        assert_eq!(RetryPolicy::new(0).decide(true, 1), RetryDecision::Done);
        assert_eq!(RetryPolicy::new(0).decide(false, 1), RetryDecision::GiveUp);
        let two = RetryPolicy::new(2).with_poke(Some(3));
        let retry = |attempt, secs| RetryDecision::RetryAfter {
            attempt,
            delay: Duration::from_secs(secs),
        };
        assert_eq!(two.decide(false, 1), retry(2, 3));
        assert_eq!(RetryPolicy::new(2).decide(false, 2), retry(3, 10));
        assert_eq!(two.decide(false, 3), RetryDecision::GiveUp);
    }

    #[test]
    fn backoff_grows_up_to_max_poke() {
        let p = RetryPolicy::new(9)
            .with_poke(Some(2))
            .with_backoff(3.0)
            .with_max_poke(Some(40));
        let delays: Vec<u64> = (2..=6).map(|a| p.delay_before(a).as_secs()).collect();
        assert_eq!(delays, vec![2, 6, 18, 40, 40]);
        let half = RetryPolicy::new(1).with_poke(Some(1)).with_backoff(1.5);
        assert_eq!(half.delay_before(3), Duration::from_millis(1500));
        let huge = RetryPolicy::new(255)
            .with_poke(Some(u16::MAX))
            .with_backoff(100.0)
            .with_max_poke(Some(u32::MAX));
        assert_eq!(huge.delay_before(255), MAX_RETRY_DELAY);
    }

    #[test]
    fn wait_queue_is_per_queue_and_delay() {
        assert_eq!(
            wait_queue_name("h1", Duration::from_secs(2)),
            "h1.retry.2000"
        );
    }
}
