//! Publishing with publisher confirms and the mandatory flag: a publish is done only once the broker
//! has taken the message, and a message that no queue takes is an error, not a silent drop.

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection, PublisherConfirm};

use crate::error::AmqpContext;
use crate::mq::limits::fits_in;
use crate::{Error, Result};

/// Where a message is published: an exchange and routing key, and how errors name the place
/// ("queue h1", "retry wait queue h1.retry.1000").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub what: &'a str,
    /// Whether a message no queue takes is an error (it always is, but on a delayed-message
    /// exchange, which routes only once the delay is over).
    pub mandatory: bool,
}

impl<'a> Destination<'a> {
    /// `routing_key` on `exchange`, named `what` in errors.
    pub fn new(exchange: &'a str, routing_key: &'a str, what: &'a str) -> Self {
        Self {
            exchange,
            routing_key,
            what,
            mandatory: true,
        }
    }

    /// A delayed-message exchange: not mandatory, since the plugin returns every message it
    /// delays as unroutable; whoever publishes there checks the binding beforehand instead.
    pub fn delayed(exchange: &'a str, what: &'a str) -> Self {
        Self {
            mandatory: false,
            ..Self::new(exchange, "", what)
        }
    }
}

/// A channel in confirm mode.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    frame_max: u32,
}

impl Publisher {
    /// Opens a channel on `connection` and turns on publisher confirms.
    pub async fn open(connection: &Connection) -> Result<Self> {
        let channel = crate::mq::open_channel(connection).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context(|| "turning on publisher confirms".into())?;
        let frame_max = connection.configuration().frame_max();
        Ok(Self { channel, frame_max })
    }

    /// Whether a message with `properties` can be sent on this connection: its content header
    /// must fit in one frame, or the broker closes the connection.
    pub fn fits(&self, properties: &BasicProperties) -> bool {
        fits_in(properties, self.frame_max)
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

    /// Publishes `body` to `to` and waits for the broker's confirm.
    pub async fn publish(
        &self,
        to: Destination<'_>,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<()> {
        let pending = self.send(to, body, properties).await?;
        confirmed(pending, to.what).await
    }

    /// Publishes `body` to `to` without waiting for the confirm, so that many publishes can be in
    /// flight; [`confirmed`] waits for one.
    pub async fn send(
        &self,
        to: Destination<'_>,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<PublisherConfirm> {
        let options = BasicPublishOptions {
            mandatory: to.mandatory,
            ..BasicPublishOptions::default()
        };
        self.channel
            .basic_publish(
                to.exchange.into(),
                to.routing_key.into(),
                options,
                body,
                properties,
            )
            .await
            .context(|| format!("publishing to {}", to.what))
    }
}

/// Waits for the broker's confirm of a publish to `target`: an error if the broker refused it or no
/// queue took it.
pub async fn confirmed(pending: PublisherConfirm, target: &str) -> Result<()> {
    let confirm = pending
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
