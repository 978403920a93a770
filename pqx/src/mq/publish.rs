//! Publishing with publisher confirms and the mandatory flag: a publish is done only once the broker
//! has taken the message, and a message that no queue takes is an error, not a silent drop.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

use crate::error::AmqpContext;
use crate::{Error, Result};

/// The properties of a command message: persistent JSON with its message id, its headers and, for a
/// waiting timeout, an expiration after which the broker dead-letters it.
pub fn command_properties(
    message_id: &str,
    headers: FieldTable,
    waiting_timeout_secs: Option<u32>,
) -> BasicProperties {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message_id.into())
        .with_timestamp(now)
        .with_headers(headers);
    match waiting_timeout_secs {
        Some(secs) => {
            properties.with_expiration((u64::from(secs) * 1000).to_string().as_str().into())
        }
        None => properties,
    }
}

/// A channel in confirm mode.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
}

impl Publisher {
    /// Opens a channel on `connection` and turns on publisher confirms.
    pub async fn open(connection: &Connection) -> Result<Self> {
        let channel = crate::mq::open_channel(connection).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context(|| "turning on publisher confirms".into())?;
        Ok(Self { channel })
    }

    /// The channel, for declarations that go with publishing.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Closes the channel. Dropping it closes it too, but in the background, where it can race a
    /// connection close that follows.
    pub async fn close(&self) -> Result<()> {
        self.channel
            .close(200, "done".into())
            .await
            .context(|| "closing the publishing channel".into())
    }

    /// Publishes `body` and waits for the broker's confirm. `target` describes the destination in
    /// errors ("queue h1", "mailing_to {unique_key: h1}").
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        target: &str,
    ) -> Result<()> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                body,
                properties,
            )
            .await
            .context(|| format!("publishing to {target}"))?
            .await
            .context(|| format!("waiting for the broker to confirm the message to {target}"))?;
        if confirm.is_nack() {
            return Err(Error::Nacked {
                target: target.to_owned(),
            });
        }
        if confirm.take_message().is_some() {
            return Err(Error::Unroutable {
                target: target.to_owned(),
            });
        }
        Ok(())
    }
}
