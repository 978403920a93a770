//! The topology `initiator` lays out and `rectifier` removes: the headers exchange with one durable
//! queue per host, bound by `x-match` any/all and the host's pairs; the dead-letter exchange (fanout,
//! so that it routes whatever the last routing key was) and queue; and the delayed exchange that
//! the retry wait queues hang off. Every declaration is idempotent.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::error::AmqpContext;
use crate::mq::{field_table, HeadersBinding};
use crate::Result;

/// Declares the durable headers exchange that commands are published to.
pub async fn declare_headers_exchange(channel: &Channel, name: &str) -> Result<()> {
    declare_exchange(channel, name, ExchangeKind::Headers, "headers exchange").await
}

/// Declares the durable direct exchange that retry wait queues are bound to.
pub async fn declare_delayed_exchange(channel: &Channel, name: &str) -> Result<()> {
    declare_exchange(channel, name, ExchangeKind::Direct, "delayed exchange").await
}

/// Declares the dead-letter exchange (fanout) and its queue, whose messages live `ttl_secs` seconds
/// when given.
pub async fn declare_dead_letter(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    ttl_secs: Option<u32>,
) -> Result<()> {
    declare_exchange(
        channel,
        exchange,
        ExchangeKind::Fanout,
        "dead-letter exchange",
    )
    .await?;
    let mut args = FieldTable::default();
    if let Some(ttl) = ttl_secs {
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::from(ttl) * 1000),
        );
    }
    declare_queue(channel, queue, args).await?;
    bind(channel, queue, exchange, "", FieldTable::default()).await
}

/// Declares a host queue that dead-letters to `dead_letter_exchange` and orders by priority up to
/// `max_priority` (none when 0), and binds it to the headers exchange with its match type and pairs.
pub async fn declare_host_queue(
    channel: &Channel,
    headers_exchange: &str,
    binding: &HeadersBinding,
    dead_letter_exchange: &str,
    max_priority: u8,
) -> Result<()> {
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
    declare_queue(channel, &binding.queue, args).await?;
    let mut arguments = field_table(&binding.pairs);
    arguments.insert(
        "x-match".into(),
        AMQPValue::LongString(binding.match_type.as_str().into()),
    );
    bind(channel, &binding.queue, headers_exchange, "", arguments).await
}

async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    what: &str,
) -> Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
        .declaring(|| format!("declaring {what} {name}"))
}

/// Declares a durable queue with `args`.
pub(crate) async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map(|_| ())
        .declaring(|| format!("declaring queue {name}"))
}

/// Binds `queue` to `exchange` with `routing_key` and `arguments`.
pub(crate) async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    routing_key: &str,
    arguments: FieldTable,
) -> Result<()> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            arguments,
        )
        .await
        .context(|| format!("binding queue {queue} to {exchange}"))
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
