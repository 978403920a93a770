//! Sending a delivery to the dead-letter exchange with the reason it is there. Rejecting it would
//! dead-letter it too, but the broker's `x-death` header only says "rejected"; an operator looking
//! at the dead-letter queue needs to know why (not valid JSON, unknown command, failed N times).

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};

use crate::mq::{carried, Destination, Publisher};
use crate::Result;

/// Why pqx dead-lettered a message.
pub const ERROR_HEADER: &str = "x-pqx-error";
/// The host queue it was taken from.
pub const QUEUE_HEADER: &str = "x-pqx-queue";

/// The longest reason kept in the header.
const MAX_REASON: usize = 1000;

/// Publishes `delivery` to `exchange` with `reason` and `queue` in its headers and waits for the
/// broker's confirm; the caller then acknowledges the delivery, so that it is dead-lettered once.
pub async fn dead_letter(
    publisher: &Publisher,
    exchange: &str,
    queue: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<()> {
    let mut headers: FieldTable = delivery.properties.headers().clone().unwrap_or_default();
    let reason: String = reason.chars().take(MAX_REASON).collect();
    headers.insert(
        ERROR_HEADER.into(),
        AMQPValue::LongString(reason.as_str().into()),
    );
    headers.insert(QUEUE_HEADER.into(), AMQPValue::LongString(queue.into()));
    // Its time in a queue is over: an expiration would only make it vanish from the dead letters.
    let properties = carried(&delivery.properties).with_headers(headers);
    let what = format!("dead-letter exchange {exchange}");
    publisher
        .publish(
            Destination::new(exchange, queue, &what),
            &delivery.data,
            properties,
        )
        .await
}
