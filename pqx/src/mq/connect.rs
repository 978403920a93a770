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

/// Opens a connection named `name` (shown in the management UI).
pub async fn connect(config: &MqConfig, name: &str) -> Result<Connection> {
    let url = config.url();
    let properties = ConnectionProperties::default().with_connection_name(name.to_owned().into());
    Connection::connect(&url, properties)
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
}
