//! Connecting to RabbitMQ by URL, with the frame size pqx needs, and opening channels.

use lapin::{Channel, Connection, ConnectionProperties};

use crate::error::AmqpContext;
use crate::Result;

/// The largest AMQP frame pqx asks the broker for, unless the URL names one. lapin keeps 32 frames of
/// zero-filled buffer each way per connection: at RabbitMQ's default frame of 128 KiB that is 8 MiB
/// of resident memory per connection, for messages of a few KiB; a larger message is only sent in
/// more frames.
pub const FRAME_MAX: u32 = 16 * 1024;

/// `url` asking for frames of at most [`FRAME_MAX`], unless it asks for a size itself.
fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&frame_max={FRAME_MAX}")
    } else {
        format!("{url}?frame_max={FRAME_MAX}")
    }
}

/// Opens a connection to the broker at `url` named `name` (shown in the management UI); errors
/// show the URL as given, password redacted.
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect(&with_frame_max(url), properties)
        .await
        .context(|| format!("RabbitMQ {}", pqx_util::redact_url(url)))
}

/// Opens a channel on `connection`.
pub async fn open_channel(connection: &Connection) -> Result<Channel> {
    connection
        .create_channel()
        .await
        .context(|| "opening a channel".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_is_asked_for_unless_given() {
        let frame = format!("frame_max={FRAME_MAX}");
        assert_eq!(with_frame_max("amqp://h/v"), format!("amqp://h/v?{frame}"));
        assert_eq!(
            with_frame_max("amqp://h/v?heartbeat=10"),
            format!("amqp://h/v?heartbeat=10&{frame}")
        );
        assert_eq!(
            with_frame_max("amqp://h/v?frame_max=131072"),
            "amqp://h/v?frame_max=131072"
        );
    }
}
