//! Connecting to RabbitMQ by URL, with the frame size pqx needs, and opening channels.

use lapin::protocol::{AMQPErrorKind, AMQPHardError};
use lapin::{Channel, Connection, ConnectionProperties};

use crate::error::AmqpContext;
use crate::Result;

/// The largest AMQP frame pqx asks the broker for, unless the URL names one. lapin keeps 32 frames of
/// zero-filled buffer each way per connection: at RabbitMQ's default frame of 128 KiB that is 8 MiB
/// of resident memory per connection, for messages of a few KiB; a larger message is only sent in
/// more frames.
pub const FRAME_MAX: u32 = 16 * 1024;

/// The frame size RabbitMQ allows by default, the largest any message it holds was published with:
/// what a subscriber asks for to take one message too large for [`FRAME_MAX`] (the broker sends
/// such a message anyway, and a connection with smaller frames is then closed).
pub const LARGE_FRAME_MAX: u32 = 128 * 1024;

/// `url` asking for frames of at most [`FRAME_MAX`], unless it asks for a size itself.
fn with_frame_max(url: &str) -> String {
    if url.contains("frame_max=") {
        url.to_owned()
    } else {
        with_param(url, &format!("frame_max={FRAME_MAX}"))
    }
}

/// `url` asking for frames of `frame_max`, whatever it asked for.
fn forcing_frame_max(url: &str, frame_max: u32) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("frame_max="))
        .collect();
    let base = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    with_param(&base, &format!("frame_max={frame_max}"))
}

fn with_param(url: &str, param: &str) -> String {
    match url.contains('?') {
        true => format!("{url}&{param}"),
        false => format!("{url}?{param}"),
    }
}

/// Opens a connection to the broker at `url` named `name` (shown in the management UI); errors
/// show the URL as given, password redacted.
pub async fn connect(url: &str, name: &str) -> Result<Connection> {
    open(&with_frame_max(url), url, name).await
}

/// [`connect`] with frames of `frame_max` bytes.
pub async fn connect_with_frame_max(url: &str, name: &str, frame_max: u32) -> Result<Connection> {
    open(&forcing_frame_max(url, frame_max), url, name).await
}

async fn open(url: &str, as_given: &str, name: &str) -> Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect(url, properties)
        .await
        .context(|| format!("RabbitMQ {}", pqx_util::redact_url(as_given)))
}

/// The user an AMQP URL connects as, if it parses.
pub fn user_of(url: &str) -> Option<String> {
    let uri = url.parse::<lapin::uri::AMQPUri>().ok()?;
    Some(uri.authority.userinfo.username)
}

/// Whether a lost connection was closed because a frame was larger than the connection's frames:
/// a message too large for them, which the broker sends anyway.
pub fn is_frame_too_large(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => {
            *e.kind() == AMQPErrorKind::Hard(AMQPHardError::FRAMEERROR)
        }
        _ => false,
    }
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
        assert_eq!(
            forcing_frame_max("amqp://h/v?frame_max=4096&heartbeat=5", LARGE_FRAME_MAX),
            "amqp://h/v?heartbeat=5&frame_max=131072"
        );
        assert_eq!(forcing_frame_max("amqp://h/v", 9), "amqp://h/v?frame_max=9");
    }
}
