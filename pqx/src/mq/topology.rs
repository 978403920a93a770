//! The topology `initiator` lays out and `rectifier` removes: the headers exchange with one durable
//! queue per host, bound by `x-match` any/all and the host's pairs; the dead-letter exchange (fanout,
//! so that it routes whatever the last routing key was) and queue; and the delayed exchange that
//! the retry wait queues hang off. Every declaration is idempotent.

use std::collections::BTreeMap;

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use serde::Deserialize;

use crate::error::AmqpContext;
use crate::mq::field_table;
use crate::{Error, Result};

/// How a host queue's pairs must match a message's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// One pair in common is enough.
    #[default]
    Any,
    /// Every pair of the binding must be in the message.
    All,
}

impl MatchType {
    /// `any` or `all`, as RabbitMQ spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Any => "any",
            MatchType::All => "all",
        }
    }
}

/// One host queue, as in init.yml's `header_queues`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderQueue {
    /// The queue's name; `subscriber -q NAME` consumes it.
    pub queue: String,
    /// Default `any`.
    #[serde(default)]
    pub match_type: MatchType,
    /// The pairs a `mailing_to` entry must carry to reach this queue.
    pub kv: BTreeMap<String, String>,
    /// Accepted and ignored: the original template's `- header_queue:` line parses as this key.
    #[serde(default, rename = "header_queue")]
    _header_queue: Option<serde::de::IgnoredAny>,
}

impl HeaderQueue {
    /// A queue bound with `match_type` and `kv`.
    pub fn new(
        queue: impl Into<String>,
        match_type: MatchType,
        kv: BTreeMap<String, String>,
    ) -> Self {
        Self {
            queue: queue.into(),
            match_type,
            kv,
            _header_queue: None,
        }
    }

    /// Whether a message with headers `pairs` reaches this queue, as the headers exchange decides.
    pub fn matches(&self, pairs: &BTreeMap<String, String>) -> bool {
        let has = |(k, v): (&String, &String)| pairs.get(k) == Some(v);
        match self.match_type {
            MatchType::Any => self.kv.iter().any(has),
            MatchType::All => self.kv.iter().all(has),
        }
    }

    /// Checks the queue can be bound as pqx expects.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.queue.is_empty() {
            return Err("header_queues: a queue has an empty name".into());
        }
        if self.kv.is_empty() {
            return Err(format!(
                "header_queues: queue {} has no kv pairs to match on",
                self.queue
            ));
        }
        if let Some(key) = self.kv.keys().find(|k| k.starts_with("x-")) {
            return Err(format!(
                "header_queues: queue {}: key {key} starts with x-, which the headers exchange ignores",
                self.queue
            ));
        }
        Ok(())
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares the durable headers exchange that commands are published to.
pub async fn declare_header_exchange(channel: &Channel, name: &str) -> Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Headers,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .context(|| format!("declaring headers exchange {name}"))
}

/// Declares the durable direct exchange that retry wait queues are bound to.
pub async fn declare_delayed_exchange(channel: &Channel, name: &str) -> Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .context(|| format!("declaring delayed exchange {name}"))
}

/// Declares the dead-letter exchange (fanout) and its queue, whose messages live `ttl_secs` seconds
/// when given.
pub async fn declare_dead_letter(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    ttl_secs: Option<u32>,
) -> Result<()> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .context(|| format!("declaring dead-letter exchange {exchange}"))?;
    let mut args = FieldTable::default();
    if let Some(ttl) = ttl_secs {
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::from(ttl) * 1000),
        );
    }
    declare_queue(channel, queue, args).await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .context(|| format!("binding dead-letter queue {queue} to {exchange}"))
}

/// Declares a host queue that dead-letters to `dead_letter_exchange` and orders by priority up to
/// `max_priority` (none when 0), and binds it to the headers exchange with its match type and pairs.
pub async fn declare_host_queue(
    channel: &Channel,
    header_exchange: &str,
    queue: &HeaderQueue,
    dead_letter_exchange: &str,
    max_priority: u8,
) -> Result<()> {
    queue.validate().map_err(Error::Config)?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter_exchange.into()),
    );
    if max_priority > 0 {
        args.insert(
            "x-max-priority".into(),
            AMQPValue::LongLongInt(i64::from(max_priority)),
        );
    }
    declare_queue(channel, &queue.queue, args).await?;
    let mut binding = field_table(&queue.kv);
    binding.insert(
        "x-match".into(),
        AMQPValue::LongString(queue.match_type.as_str().into()),
    );
    channel
        .queue_bind(
            queue.queue.as_str().into(),
            header_exchange.into(),
            "".into(),
            QueueBindOptions::default(),
            binding,
        )
        .await
        .context(|| format!("binding queue {} to {header_exchange}", queue.queue))
}

async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map(|_| ())
        .context(|| format!("declaring queue {name}"))
}

/// Deletes a queue and the messages in it; a queue that does not exist is not an error.
pub async fn delete_queue(channel: &Channel, name: &str) -> Result<u32> {
    channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await
        .context(|| format!("deleting queue {name}"))
}

/// Deletes an exchange; one that does not exist is not an error.
pub async fn delete_exchange(channel: &Channel, name: &str) -> Result<()> {
    channel
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await
        .context(|| format!("deleting exchange {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_and_all_match_like_the_exchange() {
        let kv = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let any = HeaderQueue::new(
            "h1",
            MatchType::Any,
            kv(&[("unique_key", "h1"), ("common_key", "dev")]),
        );
        let all = HeaderQueue::new(
            "h3",
            MatchType::All,
            kv(&[("unique_key", "h3"), ("zone", "eu")]),
        );
        assert!(any.matches(&kv(&[("common_key", "dev")])));
        assert!(!any.matches(&kv(&[("common_key", "prod")])));
        assert!(all.matches(&kv(&[("unique_key", "h3"), ("zone", "eu"), ("x", "y")])));
        assert!(!all.matches(&kv(&[("unique_key", "h3")])));
    }
}
