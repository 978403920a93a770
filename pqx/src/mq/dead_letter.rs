//! Sending a delivery to the dead-letter exchange with the reason it is there. Rejecting it would
//! dead-letter it too, but the broker's `x-death` header only says "rejected"; an operator looking
//! at the dead-letter queue needs to know why (not valid JSON, unknown command, failed N times).
//! A dead letter must fit in one frame with the headers it gains: the broker's `x-death` history
//! goes first, then most of the reason; what still does not fit is an error, and the caller rejects
//! the delivery instead, which the broker dead-letters itself.

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};

use crate::mq::{carried, Destination, Publisher};
use crate::{Error, Result};

/// Why pqx dead-lettered a message.
pub const ERROR_HEADER: &str = "x-pqx-error";
/// The host queue it was taken from.
pub const QUEUE_HEADER: &str = "x-pqx-queue";

/// The longest reason kept in the header, in bytes; and what is left of it when a large message
/// needs the room.
const MAX_REASON: usize = 1000;
const SHORT_REASON: usize = 100;

/// Publishes `delivery` to `to` (the dead-letter exchange, or the dead-letter queue itself) with
/// `reason` and `queue` in its headers and waits for the broker's confirm: mandatory, so that a
/// dead letter no queue takes is an error ([`Error::Unroutable`]), never a silent drop. The
/// caller then acknowledges the delivery, so that it is dead-lettered once. `user`, the broker
/// user publishing it, becomes its `user_id`, which the broker checks: whoever reads the dead
/// letters can tell which host's user put it there.
pub async fn dead_letter(
    publisher: &Publisher,
    to: Destination<'_>,
    queue: &str,
    delivery: &Delivery,
    reason: &str,
    user: Option<&str>,
) -> Result<()> {
    let reason = pqx_util::escape_control(reason);
    let original = delivery.properties.headers().clone().unwrap_or_default();
    let tries = [
        (original.clone(), MAX_REASON),
        (without_death_history(&original), MAX_REASON),
        (without_death_history(&original), SHORT_REASON),
    ];
    for (mut headers, max_reason) in tries {
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(cut(&reason, max_reason).into()),
        );
        headers.insert(QUEUE_HEADER.into(), AMQPValue::LongString(queue.into()));
        // Its time in a queue is over: an expiration would only make it vanish from the dead letters.
        let mut properties = carried(&delivery.properties).with_headers(headers);
        if let Some(user) = user {
            properties = properties.with_user_id(user.into());
        }
        if publisher.fits(&properties) {
            return publisher.publish(to, &delivery.data, properties).await;
        }
    }
    Err(Error::DoesNotFit {
        target: to.what.to_owned(),
    })
}

/// `headers` without what the broker adds each time it dead-letters a message.
pub fn without_death_history(headers: &FieldTable) -> FieldTable {
    let kept = headers
        .inner()
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k != "x-death" && !k.starts_with("x-first-death-") && !k.starts_with("x-last-death-")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<std::collections::BTreeMap<_, _>>();
    FieldTable::from(kept)
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_character_boundaries() {
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("ééé", 4), "éé");
    }

    #[test]
    fn death_history_is_dropped_and_the_rest_kept() {
        let mut headers = FieldTable::default();
        for key in [
            "x-death",
            "x-first-death-queue",
            "x-last-death-reason",
            "unique_key",
            "x-pqx-attempt",
        ] {
            headers.insert(key.into(), AMQPValue::LongString("v".into()));
        }
        let kept = without_death_history(&headers);
        let kept: Vec<&str> = kept.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(kept, ["unique_key", "x-pqx-attempt"]);
    }
}
