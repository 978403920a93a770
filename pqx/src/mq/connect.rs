//! Connecting to RabbitMQ from conn.yml's `mq` section: a `url`, or the original PQX's
//! `host`/`port`/`user`/`pass`/`vhost`.

use lapin::{Channel, Connection, ConnectionProperties};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;

use crate::error::AmqpContext;
use crate::Result;

/// Broker settings, as in conn.yml's `mq` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqConfig {
    /// A full AMQP URL (`amqp://user:pass@127.0.0.1:5672/vhost`); wins over the parts.
    pub url: Option<String>,
    /// Default `127.0.0.1`.
    pub host: Option<String>,
    /// Default 5672.
    pub port: Option<u16>,
    /// Default `guest`.
    pub user: Option<String>,
    /// Default `guest`.
    pub pass: Option<String>,
    /// Default `/`.
    pub vhost: Option<String>,
}

impl MqConfig {
    /// The AMQP URL to connect to.
    pub fn url(&self) -> String {
        if let Some(url) = &self.url {
            return url.clone();
        }
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        format!(
            "amqp://{}:{}@{}:{}/{}",
            enc(self.user.as_deref().unwrap_or("guest")),
            enc(self.pass.as_deref().unwrap_or("guest")),
            self.host.as_deref().unwrap_or("127.0.0.1"),
            self.port.unwrap_or(5672),
            enc(self.vhost.as_deref().unwrap_or("/")),
        )
    }
}

/// Where and as whom a connection goes, whichever way conn.yml gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqParts {
    pub host: String,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

impl MqConfig {
    /// The host, user, password and vhost of the connection: from the URL when there is one.
    pub fn parts(&self) -> MqParts {
        if let Some(Ok(uri)) = self.url.as_deref().map(str::parse::<lapin::uri::AMQPUri>) {
            let user = uri.authority.userinfo;
            return MqParts {
                host: uri.authority.host,
                user: user.username,
                pass: user.password,
                vhost: uri.vhost,
            };
        }
        let or = |value: &Option<String>, default: &str| {
            value.clone().unwrap_or_else(|| default.to_owned())
        };
        MqParts {
            host: or(&self.host, "127.0.0.1"),
            user: or(&self.user, "guest"),
            pass: or(&self.pass, "guest"),
            vhost: or(&self.vhost, "/"),
        }
    }
}

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

/// Opens a connection named `name` (shown in the management UI).
pub async fn connect(config: &MqConfig, name: &str) -> Result<Connection> {
    let url = config.url();
    let properties = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect(&with_frame_max(&url), properties)
        .await
        .context(|| format!("RabbitMQ {}", pqx_util::redact_url(&url)))
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
    fn parts_make_an_escaped_url() {
        let c = MqConfig {
            host: Some("localhost".into()),
            port: Some(5677),
            user: Some("dev".into()),
            pass: Some("p/ss".into()),
            vhost: Some("devhost".into()),
            ..MqConfig::default()
        };
        assert_eq!(c.url(), "amqp://dev:p%2Fss@localhost:5677/devhost");
        assert_eq!(
            MqConfig::default().url(),
            "amqp://guest:guest@127.0.0.1:5672/%2F"
        );
    }

    #[test]
    fn parts_come_from_the_url_when_there_is_one() {
        let c = MqConfig {
            url: Some("amqp://dev:p%2Fss@broker:5677/ops%2Fa".into()),
            host: Some("ignored".into()),
            ..MqConfig::default()
        };
        let parts = c.parts();
        assert_eq!(parts.host, "broker");
        assert_eq!(parts.user, "dev");
        assert_eq!(parts.pass, "p/ss");
        assert_eq!(parts.vhost, "ops/a");
        assert_eq!(MqConfig::default().parts().vhost, "/");
    }

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
