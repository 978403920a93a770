//! Subscribing to a host queue: manual acknowledgement and a prefetch of as many deliveries as the
//! subscriber runs at once, so that it holds only what it is running and the rest stay available to
//! other subscribers.

use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};

use lapin::protocol::AMQPSoftError;

use crate::error::{soft_error, AmqpContext};
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
        return Err(if soft_error(&e) == Some(&AMQPSoftError::NOTFOUND) {
            Error::NoSuchQueue {
                queue: queue.to_owned(),
            }
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
