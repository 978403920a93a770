//! Delayed retry without plugins. A failed attempt with retries left is published to a wait queue of
//! its own host queue (`<queue>.retry.<delay_ms>`), whose message TTL is the delay and whose
//! dead-letter target is the host queue itself through the default exchange. The message so comes
//! back to the one queue whose subscriber failed it, never to the other queues it was mailed to
//! (the original PQX's known issue). One wait queue per delay keeps expiry in order, and `x-expires`
//! removes wait queues nobody uses any more.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

use crate::error::AmqpContext;
use crate::mq::{Publisher, ATTEMPT_HEADER};
use crate::Result;

/// The wait before a retry when a task sets `retry` but no `poke`.
pub const DEFAULT_POKE_SECS: u16 = 10;

/// How long an unused wait queue outlives its longest possible message.
const WAIT_QUEUE_SLACK_MS: u64 = 60_000;

/// What becomes of a delivery once its attempt is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// It succeeded: acknowledge it.
    Done,
    /// It failed with retries left: run attempt `attempt` after `delay`, on the same queue.
    RetryAfter { attempt: u32, delay: Duration },
    /// It failed for the last time: reject it to the dead-letter queue.
    GiveUp,
}

/// Decides after attempt `attempt` (1-based): `retry` is how many attempts may follow the first
/// failure, `poke` the seconds to wait before each.
pub fn decide(success: bool, attempt: u32, retry: u8, poke: Option<u16>) -> RetryDecision {
    if success {
        return RetryDecision::Done;
    }
    if attempt > u32::from(retry) {
        return RetryDecision::GiveUp;
    }
    let secs = poke.unwrap_or(DEFAULT_POKE_SECS);
    RetryDecision::RetryAfter {
        attempt: attempt + 1,
        delay: Duration::from_secs(u64::from(secs)),
    }
}

/// The wait queue of `queue` for `delay`.
pub fn wait_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay.as_millis())
}

/// Publishes `delivery` again, as attempt `attempt`, to come back to `queue` after `delay`; returns
/// once the broker has confirmed it. The caller then acknowledges the original delivery.
pub async fn schedule_retry(
    publisher: &Publisher,
    delayed_exchange: &str,
    queue: &str,
    delivery: &Delivery,
    attempt: u32,
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
    let channel = publisher.channel();
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    // Declared on each retry: that also resets the x-expires timer while the queue is in use.
    channel
        .queue_declare(wait_queue.as_str().into(), options, args)
        .await
        .context(|| format!("declaring retry wait queue {wait_queue}"))?;
    channel
        .queue_bind(
            wait_queue.as_str().into(),
            delayed_exchange.into(),
            wait_queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .context(|| format!("binding retry wait queue {wait_queue} to {delayed_exchange}"))?;

    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    let source = &delivery.properties;
    // No expiration: waiting_timeout bounds the first wait in the host queue, not the retry delay.
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Some(v) = source.content_type() {
        properties = properties.with_content_type(v.clone());
    }
    if let Some(v) = source.message_id() {
        properties = properties.with_message_id(v.clone());
    }
    if let Some(v) = source.timestamp() {
        properties = properties.with_timestamp(*v);
    }
    publisher
        .publish(
            delayed_exchange,
            &wait_queue,
            &delivery.data,
            properties,
            &format!("retry wait queue {wait_queue}"),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_n_means_n_more_attempts() {
        assert_eq!(decide(true, 1, 0, None), RetryDecision::Done);
        assert_eq!(decide(false, 1, 0, None), RetryDecision::GiveUp);
        assert_eq!(
            decide(false, 1, 2, Some(3)),
            RetryDecision::RetryAfter {
                attempt: 2,
                delay: Duration::from_secs(3)
            }
        );
        assert_eq!(
            decide(false, 2, 2, None),
            RetryDecision::RetryAfter {
                attempt: 3,
                delay: Duration::from_secs(10)
            }
        );
        assert_eq!(decide(false, 3, 2, Some(3)), RetryDecision::GiveUp);
    }

    #[test]
    fn wait_queue_is_per_queue_and_delay() {
        assert_eq!(
            wait_queue_name("h1", Duration::from_secs(2)),
            "h1.retry.2000"
        );
    }
}
