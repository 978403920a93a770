//! Message headers. A `mailing_to` entry's pairs are the headers the headers exchange matches on;
//! pqx's own headers start with `x-` so that the exchange ignores them when matching.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

/// The attempt number (1 for the first run), set on retries.
pub const ATTEMPT_HEADER: &str = "x-pqx-attempt";

/// The pairs of a `mailing_to` entry as AMQP headers.
pub fn field_table(pairs: &BTreeMap<String, String>) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
    }
    table
}

/// A string header's value, if the message has it.
pub fn header_string(properties: &BasicProperties, key: &str) -> Option<String> {
    let value = properties.headers().as_ref()?.inner().get(key)?;
    match value {
        AMQPValue::LongString(s) => Some(long_string(s)),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn long_string(s: &LongString) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// Set on a copy the publisher sent again after losing the broker before its confirm: the broker may
/// hold the first one too.
pub const AGAIN_HEADER: &str = "x-pqx-published-again";

/// `properties` marked as published again ([`AGAIN_HEADER`]).
pub fn published_again(properties: BasicProperties) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(AGAIN_HEADER.into(), AMQPValue::Boolean(true));
    properties.with_headers(headers)
}

/// Whether a message is a copy published again ([`AGAIN_HEADER`]).
pub fn is_published_again(properties: &BasicProperties) -> bool {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(AGAIN_HEADER));
    matches!(value, Some(AMQPValue::Boolean(true)))
}

/// The retries left, counted down by the original PQX's subscribers.
pub const RETRIES_HEADER: &str = "x-retries";

/// An integer header's value, whatever integer type it was sent as.
pub fn header_i64(properties: &BasicProperties, key: &str) -> Option<i64> {
    header_int(properties, key)
}

fn header_int(properties: &BasicProperties, key: &str) -> Option<i64> {
    match properties.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// Which attempt a delivery of a command with `retry` retries is, between 1 and `retry + 1`.
///
/// pqx's attempt header says so; an original PQX subscriber's `x-retries` countdown says so too:
/// it retries while `x-retries - 1 > 0` and republishes with `x-retries - 1`, so a message it
/// failed `k` times holds `retry - k` and is attempt `retry + 1 - x-retries`. Where both are
/// there, the later one wins: an original subscriber retried the message since pqx did, keeping
/// pqx's (now stale) header.
pub fn attempt_of(properties: &BasicProperties, retry: u8) -> u32 {
    let last = i64::from(retry) + 1;
    let by_header = header_int(properties, ATTEMPT_HEADER);
    let by_countdown = header_int(properties, RETRIES_HEADER).map(|left| last - left);
    let attempt = by_header.max(by_countdown).unwrap_or(1).clamp(1, last);
    u32::try_from(attempt).unwrap_or(1)
}

/// The `x-retries` that says attempt `attempt` of a command with `retry` retries to an original
/// PQX subscriber: read back by [`attempt_of`] as the same attempt, and, since the original runs
/// a command at most `max(retry, 1)` times, never more runs than pqx would make.
pub fn legacy_retries(retry: u8, attempt: u32) -> i16 {
    let left = i64::from(retry) + 1 - i64::from(attempt);
    i16::try_from(left.max(0)).unwrap_or(i16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(key: &str, value: AMQPValue) -> BasicProperties {
        let mut h = FieldTable::default();
        h.insert(key.into(), value);
        BasicProperties::default().with_headers(h)
    }

    #[test]
    fn attempt_from_pqx_or_the_original_countdown() {
        assert_eq!(attempt_of(&BasicProperties::default(), 3), 1);
        assert_eq!(
            attempt_of(&with(ATTEMPT_HEADER, AMQPValue::LongLongInt(3)), 5),
            3
        );
        // The original's first failure of a command with 5 retries republishes it with 4.
        assert_eq!(
            attempt_of(&with(RETRIES_HEADER, AMQPValue::ShortInt(4)), 5),
            2
        );
        assert_eq!(
            attempt_of(&with(RETRIES_HEADER, AMQPValue::ShortInt(-3)), 2),
            3
        );
        assert_eq!(
            attempt_of(&with(ATTEMPT_HEADER, AMQPValue::LongLongInt(99)), 1),
            2
        );
    }

    #[test]
    fn the_countdown_pqx_sends_reads_back_and_an_original_retry_moves_it_on() {
        for attempt in 2..=6 {
            let left = legacy_retries(5, attempt);
            let mut h = FieldTable::default();
            h.insert(
                ATTEMPT_HEADER.into(),
                AMQPValue::LongLongInt(attempt.into()),
            );
            h.insert(RETRIES_HEADER.into(), AMQPValue::ShortInt(left));
            let sent = BasicProperties::default().with_headers(h.clone());
            assert_eq!(attempt_of(&sent, 5), attempt);
            // An original subscriber fails it and republishes it with one less, keeping the
            // rest: it is the next attempt.
            h.insert(RETRIES_HEADER.into(), AMQPValue::ShortInt(left - 1));
            let retried = BasicProperties::default().with_headers(h);
            assert_eq!(attempt_of(&retried, 5), (attempt + 1).min(6));
        }
        assert_eq!(legacy_retries(5, 6), 0);
        assert_eq!(legacy_retries(0, 9), 0);
    }

    #[test]
    fn pairs_become_string_headers() {
        let pairs = BTreeMap::from([("unique_key".to_owned(), "h1".to_owned())]);
        let props = BasicProperties::default().with_headers(field_table(&pairs));
        assert_eq!(header_string(&props, "unique_key").as_deref(), Some("h1"));
    }
}
