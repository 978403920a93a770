//! Subscribing to a host queue: manual acknowledgement and a prefetch of as many deliveries as the
//! subscriber runs at once, so that it holds only what it is running and the rest stay available to
//! other subscribers.

use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use crate::error::AmqpContext;
use crate::{Error, Result};

/// Opens a channel and starts consuming `queue`, which must exist (initiator declares it), holding at
/// most `prefetch` unacknowledged deliveries.
pub async fn subscribe(
    connection: &Connection,
    queue: &str,
    tag: &str,
    prefetch: u16,
) -> Result<(Channel, Consumer)> {
    let channel = crate::mq::open_channel(connection).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    if let Err(e) = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        return Err(if e.to_string().contains("NOT_FOUND") {
            Error::Config(format!(
                "queue {queue} does not exist: add it to header_queues in init.yml and run `initiator -o init`"
            ))
        } else {
            Error::Amqp {
                context: format!("checking queue {queue}"),
                source: e,
            }
        });
    }
    channel
        .basic_qos(prefetch.max(1), BasicQosOptions::default())
        .await
        .context(|| "setting prefetch".into())?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context(|| format!("consuming queue {queue}"))?;
    Ok((channel, consumer))
}
