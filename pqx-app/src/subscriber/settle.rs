//! The last step of a delivery: settling it, once its attempt is recorded. Every way a delivery can
//! end is a [`Settlement`], applied here and nowhere else: acknowledged (done), handed back to the
//! queue (the subscriber is stopping, or the database is away), published to come back to this
//! host queue after a wait, or published to the dead letters with the reason. A delivery is
//! acknowledged only once what replaces it is routed and confirmed.

use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::Connection;
use pqx::mq::{
    dead_letter, schedule_retry, Destination, Publisher, Retry, RetryDecision, RetryPolicy,
};
use tracing::{error, info, warn};

use super::incoming::Ids;
use super::route::Routes;
use crate::Outcome;

/// What becomes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: it succeeded, was skipped, or its retries are the broker's business no more.
    Ack,
    /// Back to the queue, to run again (here or on another subscriber of the queue).
    Requeue,
    /// Run again, on this queue only, as the retry says.
    Retry(Retry),
    /// To the dead-letter queue with this reason.
    DeadLetter(String),
}

impl Settlement {
    /// The settlement of attempt `attempt`, which ended as `outcome`, by the command's retry policy.
    pub fn after(outcome: &Outcome, policy: &RetryPolicy, attempt: u32) -> Self {
        match policy.decide(outcome.success, attempt) {
            RetryDecision::Done => Settlement::Ack,
            RetryDecision::RetryAfter { attempt, delay } => Settlement::Retry(Retry {
                attempt,
                retry: policy.retries(),
                delay,
                again: false,
            }),
            RetryDecision::GiveUp => {
                Settlement::DeadLetter(format!("failed on attempt {attempt}: {}", outcome.summary))
            }
        }
    }

    /// Whether the command's story ends here, so that a caller waiting for its result gets it.
    pub fn is_final(&self) -> bool {
        matches!(self, Settlement::Ack | Settlement::DeadLetter(_))
    }
}

/// The longest the broker may take to answer while a delivery is settled or its result sent. A
/// connection lost at the moment of an acknowledgement can leave lapin waiting for good (seen in
/// the chaos test: a subscriber silent, holding its deliveries, after its node was killed).
const BROKER_ANSWER: Duration = Duration::from_secs(60);

/// Runs `step` (`what` it does, for the log) unless the broker leaves it without an answer for
/// [`BROKER_ANSWER`]: then the connection is dropped, so that the session ends and the broker hands
/// out again what was not settled (an attempt already recorded is settled from its record).
pub async fn within_broker_answer(
    outbound: &Outbound,
    ids: Ids<'_>,
    what: &str,
    step: impl std::future::Future<Output = ()>,
) {
    if tokio::time::timeout(BROKER_ANSWER, step).await.is_ok() {
        return;
    }
    let (queue, message_id) = (ids.queue, ids.message_id);
    let secs = BROKER_ANSWER.as_secs();
    warn!(queue, message_id, secs, "no answer from the broker while {what}: dropping the connection; the broker hands the message out again");
    let connection = outbound.connection.clone();
    // Not awaited here: closing may wait for the same broker.
    tokio::spawn(async move {
        let _ = connection.close(320, "no answer".into()).await;
    });
}

/// The pause before a dead letter that no queue took is handed back to its queue: the
/// dead-letter queue is missing, and a loop must not be a hot one.
const UNROUTED_PAUSE: Duration = Duration::from_secs(5);

/// Where a subscriber's deliveries go when they are not done.
#[derive(Debug, Clone)]
pub struct Settler {
    /// The host queue the deliveries come from.
    pub queue: String,
    pub dead_letter_exchange: String,
    /// Where a dead letter goes when the exchange does not route it.
    pub dead_letter_queue: String,
}

/// What one connection publishes with: its publishing channel, the ways its retries and results
/// take, and the connection itself, for a channel of its own where the broker may refuse a
/// publish (a refusal closes the channel it came on).
#[derive(Debug, Clone)]
pub struct Outbound {
    pub publisher: Publisher,
    pub routes: Routes,
    pub connection: Arc<Connection>,
    /// The broker user this connection is, set as the `user_id` of what it publishes itself
    /// (results, dead letters): the broker refuses a `user_id` that is not the connection's, so
    /// a reader can tell which host sent it.
    pub user: Option<String>,
    /// Where running commands' output lines go, when the output exchange exists.
    pub lines: Option<super::lines::LineOut>,
}

impl Outbound {
    /// A publishing channel of its own, for a publish a least-privileged user may be refused
    /// (straight to a queue through the default exchange): the refusal closes that channel
    /// only. The caller closes it when done.
    pub async fn spare(&self) -> pqx::Result<Publisher> {
        Publisher::open(&self.connection).await
    }
}

impl Settler {
    /// Applies `settlement` to `delivery`. A retry or dead letter is confirmed by the broker before
    /// the delivery is acknowledged. A retry that cannot be published hands the delivery back, but
    /// one that can never be (too large for a frame with its attempt header) is dead-lettered; a
    /// dead letter that cannot be published rejects the delivery, which the broker dead-letters
    /// itself, without the reason.
    pub async fn apply(
        &self,
        outbound: &Outbound,
        delivery: &Delivery,
        ids: Ids<'_>,
        settlement: Settlement,
    ) {
        let settling = self.settle(outbound, delivery, ids, settlement);
        within_broker_answer(outbound, ids, "settling it", settling).await;
    }

    async fn settle(
        &self,
        outbound: &Outbound,
        delivery: &Delivery,
        ids: Ids<'_>,
        settlement: Settlement,
    ) {
        match settlement {
            Settlement::Ack => ack(delivery, ids).await,
            Settlement::Requeue => requeue(delivery, ids).await,
            Settlement::Retry(next) => self.retry(outbound, delivery, ids, next).await,
            Settlement::DeadLetter(reason) => {
                self.dead_letter(outbound, delivery, ids, &reason).await
            }
        }
    }

    async fn retry(&self, outbound: &Outbound, delivery: &Delivery, ids: Ids<'_>, next: Retry) {
        let (queue, message_id) = (ids.queue, ids.message_id);
        let publisher = &outbound.publisher;
        let route = &outbound.routes.retry;
        match schedule_retry(publisher, route, &self.queue, delivery, next).await {
            Ok(()) => {
                let delay_ms = next.delay.as_millis() as u64;
                let next_attempt = next.attempt;
                info!(queue, message_id, next_attempt, delay_ms, "retry scheduled");
                ack(delivery, ids).await;
            }
            Err(e @ pqx::Error::DoesNotFit { .. }) => {
                error!(queue, message_id, error = %e, "cannot schedule the retry: dead-lettering it");
                let reason = format!("cannot be retried as attempt {}: {e}", next.attempt);
                self.dead_letter(outbound, delivery, ids, &reason).await;
            }
            Err(e) => {
                error!(queue, message_id, error = %e, "cannot schedule the retry");
                requeue(delivery, ids).await;
            }
        }
    }

    /// To the dead-letter exchange (routing key `""`, which pqx's fanout ignores and the original
    /// PQX's direct exchange is bound with); where it routes nothing, straight to the dead-letter
    /// queue (on a spare channel: a user without rights on the default exchange is refused);
    /// where that is missing too, back to the queue after a pause, loudly.
    async fn dead_letter(
        &self,
        outbound: &Outbound,
        delivery: &Delivery,
        ids: Ids<'_>,
        reason: &str,
    ) {
        let (queue, message_id) = (ids.queue, ids.message_id);
        let exchange = &self.dead_letter_exchange;
        let what = format!("dead-letter exchange {exchange}");
        let user = outbound.user.as_deref();
        let to = Destination::new(exchange, "", &what);
        let mut sent = dead_letter(&outbound.publisher, to, queue, delivery, reason, user).await;
        if let Err(e @ (pqx::Error::Unroutable { .. } | pqx::Error::Missing { .. })) = &sent {
            warn!(queue, message_id, error = %e, "the dead-letter exchange routes nothing: publishing to the dead-letter queue itself");
            let dlq = &self.dead_letter_queue;
            let what = format!("dead-letter queue {dlq}");
            let to = Destination::new("", dlq, &what);
            sent = match outbound.spare().await {
                Ok(spare) => {
                    let sent = dead_letter(&spare, to, queue, delivery, reason, user).await;
                    let _ = spare.close().await;
                    sent
                }
                Err(e) => Err(e),
            };
        }
        match sent {
            Ok(()) => ack(delivery, ids).await,
            Err(e @ pqx::Error::DoesNotFit { .. }) => {
                warn!(queue, message_id, error = %e, "rejecting it instead: the broker dead-letters it without the reason");
                let options = BasicRejectOptions { requeue: false };
                if let Err(e) = delivery.reject(options).await {
                    lost_channel(ids, &e);
                }
            }
            Err(e) => {
                error!(queue, message_id, error = %e, "cannot dead-letter it: handing it back to the queue (run `initiator -o init` to declare the dead-letter queue)");
                tokio::time::sleep(UNROUTED_PAUSE).await;
                requeue(delivery, ids).await;
            }
        }
    }
}

async fn ack(delivery: &Delivery, ids: Ids<'_>) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        lost_channel(ids, &e);
    }
}

async fn requeue(delivery: &Delivery, ids: Ids<'_>) {
    let (queue, message_id) = (ids.queue, ids.message_id);
    info!(queue, message_id, "returning the message to the queue");
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(e) = delivery.nack(options).await {
        lost_channel(ids, &e);
    }
}

fn lost_channel(ids: Ids<'_>, e: &lapin::Error) {
    // The channel is gone with its deliveries: the broker requeues them by itself, and a
    // redelivered attempt that is already recorded is settled from the record.
    let (queue, message_id) = (ids.queue, ids.message_id);
    warn!(queue, message_id, error = %e, "cannot settle the delivery; the broker will redeliver it");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(success: bool) -> Outcome {
        Outcome {
            success,
            exit_code: if success { 0 } else { 7 },
            summary: if success {
                "succeeded"
            } else {
                "failed: exit code 7"
            }
            .into(),
            stdout: String::new(),
            stderr: String::new(),
            ended_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn the_retry_policy_decides_and_only_the_end_is_final() {
        let policy = RetryPolicy::new(1).with_poke(Some(2));
        let done = Settlement::after(&outcome(true), &policy, 1);
        assert_eq!(done, Settlement::Ack);
        let retry = Settlement::after(&outcome(false), &policy, 1);
        assert_eq!(
            retry,
            Settlement::Retry(Retry {
                attempt: 2,
                retry: 1,
                delay: Duration::from_secs(2),
                again: false,
            })
        );
        let give_up = Settlement::after(&outcome(false), &policy, 2);
        assert_eq!(
            give_up,
            Settlement::DeadLetter("failed on attempt 2: failed: exit code 7".into())
        );
        assert!(done.is_final() && give_up.is_final());
        assert!(!retry.is_final() && !Settlement::Requeue.is_final());
    }
}
