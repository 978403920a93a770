//! The pieces of the topology `initiator` lays out and `rectifier` removes: exchanges of the types
//! pqx uses, queues with their arguments, bindings. What goes where is the initiator's plan; this
//! module only declares, and every declaration is idempotent.
//!
//! pqx's own layout: a durable headers exchange with one durable queue per host, bound by `x-match`
//! any/all and the host's pairs; a fanout dead-letter exchange (so that it routes whatever the
//! routing key) and its queue; a direct delayed exchange for the original PQX's subscribers'
//! retries.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::error::AmqpContext;
use crate::mq::{field_table, HeadersBinding, RETRY_QUEUE_HEADER};
use crate::Result;

/// The delayed-message plugin's exchange type, which pqx adopts where the original PQX made one.
pub const DELAYED_MESSAGE_TYPE: &str = "x-delayed-message";

/// The exchange types pqx declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    Headers,
    Fanout,
    Direct,
    Topic,
}

impl ExchangeType {
    /// How `initiator` and `inspector` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Headers => "headers",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Direct => "direct",
            ExchangeType::Topic => "topic",
        }
    }

    fn kind(self) -> ExchangeKind {
        match self {
            ExchangeType::Headers => ExchangeKind::Headers,
            ExchangeType::Fanout => ExchangeKind::Fanout,
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Topic => ExchangeKind::Topic,
        }
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Declares a durable exchange of type `kind`.
pub async fn declare_exchange(channel: &Channel, name: &str, kind: ExchangeType) -> Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind.kind(), options, FieldTable::default())
        .await
        .declaring(|| format!("declaring exchange {name} ({})", kind.as_str()))
}

/// How pqx's queues keep their messages: on one node (classic, RabbitMQ's default) or replicated
/// on the nodes of a cluster (quorum), which survive the loss of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    #[default]
    Classic,
    Quorum,
}

impl QueueType {
    /// `classic` or `quorum`, as RabbitMQ names it.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }

    /// Adds what a queue of this type needs to `args`: for quorum, its type and, when it
    /// dead-letters, at-least-once dead-lettering (which RabbitMQ takes only with
    /// `x-overflow: reject-publish`; without it, it falls back to at-most-once, silently).
    pub fn add_arguments(self, args: &mut FieldTable, dead_letters: bool) {
        if self == QueueType::Quorum {
            args.insert("x-queue-type".into(), string("quorum"));
            if dead_letters {
                args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
                args.insert("x-overflow".into(), string("reject-publish"));
            }
        }
    }
}

/// The arguments of a host queue: it dead-letters to `dead_letter_exchange`; a classic one orders
/// by priority up to `max_priority` (none when 0); a quorum one dead-letters at least once and
/// hands a message out at most `delivery_limit` times (a command that keeps killing its subscriber
/// ends in the dead letters). The broker counts the times it hands a message out again.
pub fn host_queue_arguments(
    dead_letter_exchange: &str,
    max_priority: u8,
    queue_type: QueueType,
    delivery_limit: u32,
) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        string(dead_letter_exchange),
    );
    match queue_type {
        QueueType::Classic if max_priority > 0 => {
            args.insert(
                "x-max-priority".into(),
                AMQPValue::LongLongInt(i64::from(max_priority)),
            );
        }
        QueueType::Classic => {}
        QueueType::Quorum => {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(delivery_limit)),
            );
        }
    }
    queue_type.add_arguments(&mut args, true);
    args
}

/// The arguments of the dead-letter queue, whose messages live `ttl_ms` when given.
pub fn dead_letter_queue_arguments(ttl_ms: Option<u32>, queue_type: QueueType) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(ttl) = ttl_ms {
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl.into()));
    }
    queue_type.add_arguments(&mut args, false);
    args
}

/// The arguments of a queue where messages wait `ttl_ms`, then go to `exchange` with the routing
/// key they came with.
pub fn waiting_queue_arguments(ttl_ms: u32, exchange: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(ttl_ms.into()),
    );
    args.insert("x-dead-letter-exchange".into(), string(exchange));
    args
}

/// The arguments that bind a host queue to a headers exchange: its match type and pairs.
pub fn headers_binding_arguments(binding: &HeadersBinding) -> FieldTable {
    let mut arguments = field_table(&binding.pairs);
    arguments.insert("x-match".into(), string(binding.match_type.as_str()));
    arguments
}

/// The arguments that bind `queue` to a delayed headers exchange for its own retries only.
pub fn retry_binding_arguments(queue: &str) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-match".into(), string("all"));
    arguments.insert(RETRY_QUEUE_HEADER.into(), string(queue));
    arguments
}

/// Declares a durable queue with `args`.
pub async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> Result<()> {
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

/// Binds `queue` to `exchange` with `routing_key` and `arguments`; binding again is harmless.
pub async fn bind(
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

/// What a passive declare looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Exchange,
    Queue,
}

/// Whether the exchange or queue `name` exists: a passive declare, on a channel of its own since
/// a missing one closes the channel.
pub async fn exists(
    connection: &lapin::Connection,
    declared: Declared,
    name: &str,
) -> Result<bool> {
    let channel = crate::mq::open_channel(connection).await?;
    let none = FieldTable::default;
    let found = match declared {
        Declared::Exchange => {
            let options = ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            };
            let kind = ExchangeKind::Direct;
            channel
                .exchange_declare(name.into(), kind, options, none())
                .await
        }
        Declared::Queue => {
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let declared = channel.queue_declare(name.into(), options, none()).await;
            declared.map(|_| ())
        }
    };
    let what = match declared {
        Declared::Exchange => "exchange",
        Declared::Queue => "queue",
    };
    match found.context(|| format!("looking for {what} {name}")) {
        Ok(()) => {
            let _ = channel.close(200, "looked".into()).await;
            Ok(true)
        }
        Err(crate::Error::Missing { .. }) => Ok(false),
        Err(e) => Err(e),
    }
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
