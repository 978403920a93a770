//! The AMQP properties of a command message: persistent JSON with a message id that all its
//! attempts share, its routing headers, and optionally a priority, an expiration (the waiting
//! timeout) and where to send its result.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::types::FieldTable;
use lapin::BasicProperties;

/// The properties of a newly published command.
pub fn command_properties(
    message_id: &str,
    headers: FieldTable,
    waiting_timeout_secs: Option<u32>,
    priority: Option<u8>,
) -> BasicProperties {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_timestamp(now)
        .with_headers(headers);
    if let Some(secs) = waiting_timeout_secs {
        let ms = (u64::from(secs) * 1000).to_string();
        properties = properties.with_expiration(ms.as_str().into());
    }
    if let Some(priority) = priority {
        properties = properties.with_priority(priority);
    }
    properties
}

/// The properties a command keeps when pqx publishes it again (to a retry wait queue or to the
/// dead letters): all but the expiration, which bounds only the first wait in a host queue.
pub fn carried(source: &BasicProperties) -> BasicProperties {
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if let Some(v) = source.content_type() {
        properties = properties.with_content_type(v.clone());
    }
    if let Some(v) = source.headers() {
        properties = properties.with_headers(v.clone());
    }
    if let Some(v) = source.message_id() {
        properties = properties.with_message_id(v.clone());
    }
    if let Some(v) = source.timestamp() {
        properties = properties.with_timestamp(*v);
    }
    if let Some(v) = source.priority() {
        properties = properties.with_priority(*v);
    }
    if let Some(v) = source.correlation_id() {
        properties = properties.with_correlation_id(v.clone());
    }
    if let Some(v) = source.reply_to() {
        properties = properties.with_reply_to(v.clone());
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_keep_all_but_the_expiration() {
        let first = command_properties("id-1", FieldTable::default(), Some(5), Some(7))
            .with_reply_to("replies".into())
            .with_correlation_id("c".into());
        assert_eq!(
            first.expiration().as_ref().map(|e| e.as_str()),
            Some("5000")
        );
        let again = carried(&first);
        assert_eq!(again.expiration(), &None);
        assert_eq!(again.priority(), &Some(7));
        assert_eq!(again.message_id(), first.message_id());
        assert_eq!(again.reply_to(), first.reply_to());
        assert_eq!(again.delivery_mode(), &Some(2));
    }
}
