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

/// Which attempt a delivery is: the attempt header, or 1 when there is none.
pub fn attempt_of(properties: &BasicProperties) -> u32 {
    let value = properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(ATTEMPT_HEADER));
    let n = match value {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        _ => 1,
    };
    u32::try_from(n).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_defaults_to_one() {
        assert_eq!(attempt_of(&BasicProperties::default()), 1);
        let mut h = FieldTable::default();
        h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(3));
        assert_eq!(attempt_of(&BasicProperties::default().with_headers(h)), 3);
    }

    #[test]
    fn pairs_become_string_headers() {
        let pairs = BTreeMap::from([("unique_key".to_owned(), "h1".to_owned())]);
        let props = BasicProperties::default().with_headers(field_table(&pairs));
        assert_eq!(header_string(&props, "unique_key").as_deref(), Some("h1"));
    }
}
