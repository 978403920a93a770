//! Sending a command's final result to the queue its caller named (`reply_to`), as JSON correlated
//! by the message id. Where `initiator` made the reply exchange, the result goes through it, routed
//! by the queue's name (the caller's queue is bound to it so): a subscriber then needs no right to
//! publish through the default exchange, which reaches every queue. A queue nobody bound there gets
//! it through the default exchange, on a spare channel (a least-privileged user is refused that,
//! and the refusal closes the channel it came on). A caller that is gone is logged, not an error:
//! the result is in the records.

use lapin::BasicProperties;
use pqx::mq::{Destination, Publisher};
use tracing::warn;

use super::incoming::{Envelope, Ids};
use super::settle::Outbound;
use crate::{Outcome, Reply};

/// Who sends results: this subscriber's queue and machine.
#[derive(Debug, Clone)]
pub struct Replier {
    pub queue: String,
    pub host: String,
}

impl Replier {
    /// Sends `outcome` of the delivery with `envelope` to queue `to`.
    pub async fn send(
        &self,
        outbound: &Outbound,
        to: &str,
        envelope: &Envelope,
        ids: Ids<'_>,
        outcome: &Outcome,
    ) {
        let (queue, message_id) = (ids.queue, ids.message_id);
        let reply = Reply::new(
            envelope.message_id.as_deref(),
            &self.queue,
            &self.host,
            envelope.attempt,
            outcome,
        );
        let body = match serde_json::to_vec(&reply) {
            Ok(body) => body,
            Err(e) => return warn!(queue, message_id, error = %e, "cannot encode the result"),
        };
        let mut properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(envelope.correlation_id.clone().unwrap_or_default().into());
        if let Some(user) = &outbound.user {
            properties = properties.with_user_id(user.as_str().into());
        }
        let what = format!("reply queue {to}");
        let sent = match &outbound.routes.replies {
            Some(exchange) => {
                let through = Destination::new(exchange, to, &what);
                let sent = outbound
                    .publisher
                    .publish(through, &body, properties.clone())
                    .await;
                match sent {
                    Err(pqx::Error::Unroutable { .. }) => {
                        straight(outbound, to, &what, &body, properties).await
                    }
                    sent => sent,
                }
            }
            None => {
                let to = Destination::new("", to, &what);
                outbound.publisher.publish(to, &body, properties).await
            }
        };
        if let Err(e) = sent {
            warn!(queue, message_id, error = %e, "cannot send the result back");
        }
    }
}

/// Publishes a result straight to queue `to`, on a spare channel.
async fn straight(
    outbound: &Outbound,
    to: &str,
    what: &str,
    body: &[u8],
    properties: BasicProperties,
) -> pqx::Result<()> {
    let spare: Publisher = outbound.spare().await?;
    let sent = spare
        .publish(Destination::new("", to, what), body, properties)
        .await;
    let _ = spare.close().await;
    sent
}
