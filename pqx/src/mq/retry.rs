//! Delayed retry. A failed attempt with retries left is published to a wait queue of its own host
//! queue, whose message TTL is the delay and whose dead-letter target is the host queue itself.
//! The message so comes back to the one queue whose subscriber failed it, never to the other
//! queues it was mailed to (the original PQX's known issue). One wait queue per delay keeps expiry
//! in order, and `x-expires` removes wait queues nobody uses any more.
//!
//! Where `initiator` made the host queue's own retry exchange (`<queue>.retry`, direct, bound to
//! the queue alone), the wait queues are `<queue>.wait.<delay_ms>`, bound to that exchange and
//! dead-lettering back through it: a subscriber then needs no right to publish through the default
//! exchange, which reaches every queue (see [`RetryRoute::HostExchange`]). Otherwise they are
//! `<queue>.retry.<delay_ms>`, published to and dead-lettering through the default exchange. Where
//! an original PQX deployment has a delayed-message exchange, retries go through it instead,
//! routed to their queue only by [`RETRY_QUEUE_HEADER`].

use std::time::Duration;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};

use crate::mq::dead_letter::without_death_history;
use crate::mq::headers::{legacy_retries, AGAIN_HEADER, RETRIES_HEADER};
use crate::mq::held::publish_held;
use crate::mq::topology::{bind, declare_queue, QueueType};
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

/// The wait queue of `queue` for `delay`, on the default exchange's route.
pub fn wait_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay.as_millis())
}

/// The classic wait queue of `queue` for `delay`, on the route through its own retry exchange:
/// named apart from [`wait_queue_name`], whose queues dead-letter elsewhere. (Quorum retries wait
/// in one held queue, [`crate::mq::held_queue_name`].)
pub fn host_wait_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.wait.{}", delay.as_millis())
}

/// The retry exchange of host queue `queue`: direct, bound to that queue alone, by its name.
pub fn host_retry_exchange_name(queue: &str) -> String {
    format!("{queue}.retry")
}

/// Whether `name` is a wait queue of `queue`, on any route (`<queue>.retry.<ms>`,
/// `<queue>.wait.<ms>`, or the held queue `<queue>.qwait`).
pub fn is_wait_queue_of(name: &str, queue: &str) -> bool {
    let Some(rest) = name.strip_prefix(queue) else {
        return false;
    };
    if rest == ".qwait" {
        return true;
    }
    let ms = rest
        .strip_prefix(".retry.")
        .or_else(|| rest.strip_prefix(".wait."));
    ms.is_some_and(|ms| !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()))
}

/// How retries come back to their queue after their wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryRoute {
    /// pqx's own: a wait queue per queue and delay, published to through the default exchange,
    /// that dead-letters back to the queue. No plugin needed.
    WaitQueues,
    /// pqx's own, through the host queue's retry exchange ([`host_retry_exchange_name`]): each
    /// wait queue is bound to it by its own name and comes back through it with the host queue's
    /// name, which only the host queue is bound by. A subscriber needs rights on its own queue's
    /// names only: its wait queues and its exchange (none on the default exchange, which reaches
    /// every queue of the vhost). Classic wait queues dead-letter back after their TTL; with quorum
    /// queues, retries wait in the held queue and subscribers forward them ([`crate::mq::Holder`]).
    HostExchange {
        exchange: String,
        /// As init.yml's `queue_type` says.
        wait_queues: QueueType,
    },
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
    /// Published while a redelivered attempt is settled from its record: its retry may be
    /// published already, and this copy is marked so ([`crate::mq::AGAIN_HEADER`]).
    pub again: bool,
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
    if next.again {
        headers.insert(AGAIN_HEADER.into(), AMQPValue::Boolean(true));
    }
    match route {
        RetryRoute::DelayedExchange { exchange }
            if next.delay.as_millis() <= MAX_PLUGIN_DELAY_MS =>
        {
            through_plugin(publisher, exchange, queue, delivery, headers, next.delay).await
        }
        RetryRoute::HostExchange {
            exchange,
            wait_queues: QueueType::Classic,
        } => {
            let wait = WaitQueue::through(exchange, queue, next.delay);
            wait.publish(publisher, delivery, headers).await
        }
        RetryRoute::HostExchange {
            exchange,
            wait_queues: QueueType::Quorum,
        } => publish_held(publisher, exchange, queue, delivery, headers, next.delay).await,
        _ => {
            let wait = WaitQueue::default_exchange(queue, next.delay);
            wait.publish(publisher, delivery, headers).await
        }
    }
}

/// A wait queue: where a retry waits out its delay, and the way it comes back to its host queue.
struct WaitQueue<'a> {
    name: String,
    delay: Duration,
    /// The exchange it is published to and dead-letters back through ("": the default exchange).
    exchange: &'a str,
    queue: &'a str,
}

impl<'a> WaitQueue<'a> {
    fn default_exchange(queue: &'a str, delay: Duration) -> Self {
        let name = wait_queue_name(queue, delay);
        Self {
            name,
            delay,
            exchange: "",
            queue,
        }
    }

    fn through(exchange: &'a str, queue: &'a str, delay: Duration) -> Self {
        let name = host_wait_queue_name(queue, delay);
        Self {
            name,
            delay,
            exchange,
            queue,
        }
    }

    fn arguments(&self) -> FieldTable {
        let delay_ms = i64::try_from(self.delay.as_millis()).unwrap_or(i64::MAX);
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay_ms));
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(delay_ms.saturating_add(WAIT_QUEUE_SLACK_MS as i64)),
        );
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.exchange.into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.queue.into()),
        );
        args
    }

    /// Declares the wait queue (which also resets its `x-expires` timer while it is in use), binds
    /// it to its exchange unless that is the default one, and publishes the retry to it.
    async fn publish(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        headers: FieldTable,
    ) -> Result<()> {
        let channel = publisher.channel();
        declare_queue(channel, &self.name, self.arguments()).await?;
        if !self.exchange.is_empty() {
            bind(
                channel,
                &self.name,
                self.exchange,
                &self.name,
                FieldTable::default(),
            )
            .await?;
        }
        let properties = carried(&delivery.properties).with_headers(headers);
        let what = format!("retry wait queue {}", self.name);
        if !publisher.fits(&properties) {
            return Err(Error::DoesNotFit { target: what });
        }
        let to = Destination::new(self.exchange, &self.name, &what);
        publisher.publish(to, &delivery.data, properties).await
    }
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
        assert_eq!(
            host_wait_queue_name("h1", Duration::from_secs(2)),
            "h1.wait.2000"
        );
        assert_eq!(host_retry_exchange_name("h1"), "h1.retry");
    }

    #[test]
    fn wait_queues_are_told_by_their_names() {
        for name in ["h1.retry.2000", "h1.wait.5", "h1.qwait"] {
            assert!(is_wait_queue_of(name, "h1"), "{name}");
        }
        for name in [
            "h1.retry",
            "h1.wait.",
            "h1.retry.x",
            "h12.retry.1",
            "h1.wait.1.2",
            "h1.qwait.7",
            "h1.qwaits",
            "h1",
        ] {
            assert!(!is_wait_queue_of(name, "h1"), "{name}");
        }
    }
}
