//! The last step of a delivery: settling it, once its attempt is recorded. Every way a delivery can
//! end is a [`Settlement`], applied here and nowhere else: acknowledged (done), handed back to the
//! queue (the subscriber is stopping, or the database is away), published to this host queue's
//! retry wait queue, or published to the dead letters with the reason.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use pqx::mq::{dead_letter, schedule_retry, Publisher, RetryDecision, RetryPolicy};
use tracing::{error, info, warn};

use super::incoming::Ids;
use crate::Outcome;

/// What becomes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: it succeeded, was skipped, or its retries are the broker's business no more.
    Ack,
    /// Back to the queue, to run again (here or on another subscriber of the queue).
    Requeue,
    /// Run again as attempt `attempt` after `delay`, on this queue only.
    Retry { attempt: u32, delay: Duration },
    /// To the dead-letter queue with this reason.
    DeadLetter(String),
}

impl Settlement {
    /// The settlement of attempt `attempt`, which ended as `outcome`, by the command's retry policy.
    pub fn after(outcome: &Outcome, policy: &RetryPolicy, attempt: u32) -> Self {
        match policy.decide(outcome.success, attempt) {
            RetryDecision::Done => Settlement::Ack,
            RetryDecision::RetryAfter { attempt, delay } => Settlement::Retry { attempt, delay },
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

/// Where a subscriber's deliveries go when they are not done.
#[derive(Debug, Clone)]
pub struct Settler {
    /// The host queue the deliveries come from.
    pub queue: String,
    /// The exchange the retry wait queues hang off.
    pub delayed_exchange: String,
    pub dead_letter_exchange: String,
}

impl Settler {
    /// Applies `settlement` to `delivery`. A retry or dead letter is confirmed by the broker before
    /// the delivery is acknowledged. A retry that cannot be published hands the delivery back, but
    /// one that can never be (too large for a frame with its attempt header) is dead-lettered; a
    /// dead letter that cannot be published rejects the delivery, which the broker dead-letters
    /// itself, without the reason.
    pub async fn apply(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        ids: Ids<'_>,
        settlement: Settlement,
    ) {
        match settlement {
            Settlement::Ack => ack(delivery, ids).await,
            Settlement::Requeue => requeue(delivery, ids).await,
            Settlement::Retry { attempt, delay } => {
                self.retry(publisher, delivery, ids, attempt, delay).await
            }
            Settlement::DeadLetter(reason) => {
                self.dead_letter(publisher, delivery, ids, &reason).await
            }
        }
    }

    async fn retry(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        ids: Ids<'_>,
        attempt: u32,
        delay: Duration,
    ) {
        let (queue, message_id) = (ids.queue, ids.message_id);
        let delayed = &self.delayed_exchange;
        match schedule_retry(publisher, delayed, &self.queue, delivery, attempt, delay).await {
            Ok(()) => {
                let delay_ms = delay.as_millis() as u64;
                info!(
                    queue,
                    message_id,
                    next_attempt = attempt,
                    delay_ms,
                    "retry scheduled"
                );
                ack(delivery, ids).await;
            }
            Err(e @ pqx::Error::DoesNotFit { .. }) => {
                error!(queue, message_id, error = %e, "cannot schedule the retry: dead-lettering it");
                let reason = format!("cannot be retried as attempt {attempt}: {e}");
                self.dead_letter(publisher, delivery, ids, &reason).await;
            }
            Err(e) => {
                error!(queue, message_id, error = %e, "cannot schedule the retry");
                requeue(delivery, ids).await;
            }
        }
    }

    async fn dead_letter(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        ids: Ids<'_>,
        reason: &str,
    ) {
        let exchange = &self.dead_letter_exchange;
        match dead_letter(publisher, exchange, &self.queue, delivery, reason).await {
            Ok(()) => ack(delivery, ids).await,
            Err(e) => {
                let (queue, message_id) = (ids.queue, ids.message_id);
                warn!(queue, message_id, error = %e, "cannot publish to the dead-letter exchange: rejecting instead");
                let options = BasicRejectOptions { requeue: false };
                if let Err(e) = delivery.reject(options).await {
                    lost_channel(ids, &e);
                }
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
            Settlement::Retry {
                attempt: 2,
                delay: Duration::from_secs(2)
            }
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
