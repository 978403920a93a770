//! Sending a command's final result to the queue its caller named (`reply_to`), as JSON correlated
//! by the message id. A caller that is gone is logged, not an error: the result is in the records.

use lapin::BasicProperties;
use pqx::mq::{Destination, Publisher};
use tracing::warn;

use super::incoming::{Envelope, Ids};
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
        publisher: &Publisher,
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
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(envelope.correlation_id.clone().unwrap_or_default().into());
        let what = format!("reply queue {to}");
        let sent = publisher
            .publish(Destination::new("", to, &what), &body, properties)
            .await;
        if let Err(e) = sent {
            warn!(queue, message_id, error = %e, "cannot send the result back");
        }
    }
}
