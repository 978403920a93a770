//! Retries that wait in a quorum queue, held by the subscribers themselves.
//!
//! On a cluster, a retry must survive the loss of a node while it waits. A quorum wait queue with a
//! message TTL that dead-letters back at least once would do that, but RabbitMQ 3.10 (Debian's)
//! stops forwarding such a queue's expired messages for good when its leader and the target's move
//! at the same time, as when a node dies (rabbitmq-server PR #7677 fixed it in a later 3.10): the
//! retries stay in the wait queue, neither lost nor run. So pqx does not use the broker's TTL for
//! them: a retry goes to the host queue's one held queue `<queue>.qwait` (quorum, no TTL) with the
//! time it is due ([`DUE_HEADER`]); each subscriber of the host queue consumes it, holds each
//! delivery unacknowledged until it is due, then publishes it to the host queue and acknowledges it.
//! A subscriber that dies hands what it held back to the queue, and another holds it; a copy that
//! may have been forwarded already (a redelivery) is marked published again, so that it runs once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use tracing::warn;

use crate::error::AmqpContext;
use crate::mq::headers::{header_i64, AGAIN_HEADER};
use crate::mq::retry::MAX_RETRY_DELAY;
use crate::mq::topology::{bind, declare_queue, QueueType};
use crate::mq::{carried, Destination, Publisher};
use crate::{Error, Result};

/// When a held retry is due: milliseconds since the Unix epoch.
pub const DUE_HEADER: &str = "x-pqx-due";

/// How many retries one subscriber holds at once; the others wait in the queue for their turn (a
/// retry never runs before its time; with more than this many waiting, it may run later).
const HOLD_WINDOW: u16 = 1000;

/// The longest a delivery is held: the broker closes a channel that holds one unacknowledged longer
/// than its `consumer_timeout` (30 minutes by default). A retry due later goes back to the end of
/// the queue after this long, and is held again.
const HOLD_MAX: Duration = Duration::from_secs(10 * 60);

/// The held queue of host queue `queue`.
pub fn held_queue_name(queue: &str) -> String {
    format!("{queue}.qwait")
}

/// Declares the held queue of `queue` and binds it to `exchange` (the host queue's retry exchange)
/// by its name.
async fn declare(channel: &Channel, exchange: &str, name: &str) -> Result<()> {
    let mut args = FieldTable::default();
    QueueType::Quorum.add_arguments(&mut args, false);
    declare_queue(channel, name, args).await?;
    bind(channel, name, exchange, name, FieldTable::default()).await
}

/// Publishes `delivery`, with `headers`, to the held queue of `queue` through `exchange`, due after
/// `delay`; returns once the broker has confirmed it.
pub(crate) async fn publish_held(
    publisher: &Publisher,
    exchange: &str,
    queue: &str,
    delivery: &Delivery,
    mut headers: FieldTable,
    delay: Duration,
) -> Result<()> {
    let name = held_queue_name(queue);
    declare(publisher.channel(), exchange, &name).await?;
    let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    headers.insert(DUE_HEADER.into(), AMQPValue::LongLongInt(due));
    let properties = carried(&delivery.properties).with_headers(headers);
    let what = format!("held retry queue {name}");
    if !publisher.fits(&properties) {
        return Err(Error::DoesNotFit { target: what });
    }
    let to = Destination::new(exchange, &name, &what);
    publisher.publish(to, &delivery.data, properties).await
}

/// A subscriber's consumer of its host queue's held retries.
pub struct Holder {
    consumer: Consumer,
    publisher: Publisher,
    exchange: String,
    queue: String,
    name: String,
}

impl Holder {
    /// Declares the held queue of `queue` and consumes it on a channel of its own; what it forwards
    /// goes through `publisher` and `exchange`, the host queue's retry exchange.
    pub async fn open(
        connection: &Connection,
        publisher: Publisher,
        exchange: &str,
        queue: &str,
        tag: &str,
    ) -> Result<Self> {
        let name = held_queue_name(queue);
        let channel = crate::mq::open_channel(connection).await?;
        declare(&channel, exchange, &name).await?;
        channel
            .basic_qos(HOLD_WINDOW, BasicQosOptions::default())
            .await
            .context(|| "setting the prefetch of held retries".into())?;
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .context(|| format!("consuming held retry queue {name}"))?;
        Ok(Self {
            consumer,
            publisher,
            exchange: exchange.to_owned(),
            queue: queue.to_owned(),
            name,
        })
    }

    /// Holds and forwards retries until the consumer or a publish fails; returns why. What it holds
    /// then goes back to the queue when the channel closes.
    pub async fn run(&self) -> Error {
        let mut consumer = self.consumer.clone();
        let mut held = FuturesUnordered::new();
        loop {
            tokio::select! {
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => held.push(self.hold(delivery)),
                    Some(Err(e)) => {
                        return Error::Amqp { context: format!("consuming held retry queue {}", self.name), source: e };
                    }
                    None => return Error::ConsumerEnded { queue: self.name.clone() },
                },
                // Every outcome must match: a pattern that fails would leave this branch out of
                // the select until the next delivery, and the held retries' timers unheard.
                Some(outcome) = held.next(), if !held.is_empty() => {
                    if let Err(e) = outcome {
                        return e;
                    }
                }
            }
        }
    }

    /// Holds `delivery` until it is due, then forwards and acknowledges it.
    async fn hold(&self, delivery: Delivery) -> Result<()> {
        let wait = self.wait_of(&delivery);
        if wait > HOLD_MAX {
            tokio::time::sleep(HOLD_MAX).await;
            let properties = carried(&delivery.properties);
            let what = format!("held retry queue {}", self.name);
            let to = Destination::new(&self.exchange, &self.name, &what);
            self.publisher
                .publish(to, &delivery.data, properties)
                .await?;
        } else {
            tokio::time::sleep(wait).await;
            let properties = forwarded(&delivery);
            let what = format!("queue {}", self.queue);
            let to = Destination::new(&self.exchange, &self.queue, &what);
            self.publisher
                .publish(to, &delivery.data, properties)
                .await?;
        }
        delivery
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .context(|| format!("acknowledging a held retry of {}", self.name))
    }

    /// How long `delivery` waits yet. One without a due time, or due later than any retry can be,
    /// is due now: it was not published by a subscriber.
    fn wait_of(&self, delivery: &Delivery) -> Duration {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str());
        let Some(due) = header_i64(&delivery.properties, DUE_HEADER) else {
            warn!(queue = %self.queue, message_id, "a held retry without {DUE_HEADER}: forwarding it now");
            return Duration::ZERO;
        };
        let wait = Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0));
        if wait > MAX_RETRY_DELAY {
            warn!(queue = %self.queue, message_id, due, "a held retry due later than any retry can be: forwarding it now");
            return Duration::ZERO;
        }
        wait
    }
}

/// The properties a held retry goes back to its host queue with: without its due time, and marked
/// published again when it was handed out before (the holder may have forwarded it then).
fn forwarded(delivery: &Delivery) -> BasicProperties {
    let headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut kept = FieldTable::default();
    for (key, value) in headers.inner() {
        if key.as_str() != DUE_HEADER {
            kept.insert(key.clone(), value.clone());
        }
    }
    if delivery.redelivered {
        kept.insert(AGAIN_HEADER.into(), AMQPValue::Boolean(true));
    }
    carried(&delivery.properties).with_headers(kept)
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_held_queue_per_host_queue() {
        assert_eq!(held_queue_name("h1"), "h1.qwait");
    }
}
