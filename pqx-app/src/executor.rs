//! What a subscriber does with one delivery: parse it, record the attempt's start, run the command,
//! record how it ended, and only then settle the delivery: acknowledge it, hand it to the retry wait
//! queue of this host queue, or reject it to the dead-letter queue. A delivery is never acknowledged
//! before its record is committed; if the record cannot be written it goes back to the queue.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use pqx::ec::{execute, Settings};
use pqx::mq::{attempt_of, decide, schedule_retry, Publisher, RetryDecision};
use tracing::{error, info, warn};

use crate::{AttemptStart, Command, Store};

/// How long to hold a delivery before handing it back when the database fails, so that a database
/// outage does not turn into a hot redelivery loop.
const REQUEUE_PAUSE: Duration = Duration::from_secs(1);

/// Runs the deliveries of one host queue.
#[derive(Debug)]
pub struct Executor {
    store: Store,
    publisher: Publisher,
    queue: String,
    host: String,
    delayed_exchange: String,
    settings: Settings,
}

impl Executor {
    /// An executor for `queue` that records in `store` and publishes retries through `publisher` to
    /// `delayed_exchange`.
    pub fn new(
        store: Store,
        publisher: Publisher,
        queue: &str,
        delayed_exchange: &str,
        settings: Settings,
    ) -> Self {
        Self {
            settings,
            store,
            publisher,
            queue: queue.to_owned(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            delayed_exchange: delayed_exchange.to_owned(),
        }
    }

    /// Handles one delivery to the end; every outcome is logged, none is returned.
    pub async fn handle(&self, delivery: Delivery) {
        let queue = self.queue.as_str();
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        let id = message_id.as_deref().unwrap_or("-");
        let attempt = attempt_of(&delivery.properties);

        let parsed = std::str::from_utf8(&delivery.data)
            .map_err(|e| format!("body is not UTF-8: {e}"))
            .and_then(Command::from_json);
        let command = match parsed {
            Ok(command) => command,
            Err(reason) => {
                error!(queue, message_id = id, %reason, "not a valid command: dead-lettering it");
                settle(&delivery, Settle::Reject, queue, id).await;
                return;
            }
        };

        let start = AttemptStart {
            command: &command,
            message_id: message_id.as_deref(),
            queue,
            host: &self.host,
            attempt,
        };
        let history_id = match self.store.record_start(&start).await {
            Ok(history_id) => history_id,
            Err(e) => {
                error!(queue, message_id = id, error = %e, "cannot record the attempt: returning the message to the queue");
                tokio::time::sleep(REQUEUE_PAUSE).await;
                settle(&delivery, Settle::Requeue, queue, id).await;
                return;
            }
        };

        info!(
            queue,
            message_id = id,
            attempt,
            cmd = command.cmd.kind(),
            "running"
        );
        let timeout = command
            .config
            .consuming_timeout
            .map(|secs| Duration::from_secs(u64::from(secs)));
        let report = execute(&command.cmd, &self.settings, timeout, |stream, line| {
            info!(queue, message_id = id, stream = stream.as_str(), "{line}")
        })
        .await;
        let summary = report.summary();
        info!(
            queue,
            message_id = id,
            attempt,
            exit_code = report.exit_code(),
            "{summary}"
        );

        if let Err(e) = self.store.record_end(history_id, &report).await {
            error!(queue, message_id = id, error = %e, "cannot record the result: returning the message to the queue");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            settle(&delivery, Settle::Requeue, queue, id).await;
            return;
        }

        let config = &command.config;
        match decide(
            report.success(),
            attempt,
            config.retry.unwrap_or(0),
            config.poke,
        ) {
            RetryDecision::Done => settle(&delivery, Settle::Ack, queue, id).await,
            RetryDecision::RetryAfter { attempt, delay } => {
                let scheduled = schedule_retry(
                    &self.publisher,
                    &self.delayed_exchange,
                    queue,
                    &delivery,
                    attempt,
                    delay,
                )
                .await;
                match scheduled {
                    Ok(()) => {
                        info!(
                            queue,
                            message_id = id,
                            next_attempt = attempt,
                            delay_secs = delay.as_secs(),
                            "retry scheduled"
                        );
                        settle(&delivery, Settle::Ack, queue, id).await;
                    }
                    Err(e) => {
                        error!(queue, message_id = id, error = %e, "cannot schedule the retry: returning the message to the queue");
                        tokio::time::sleep(REQUEUE_PAUSE).await;
                        settle(&delivery, Settle::Requeue, queue, id).await;
                    }
                }
            }
            RetryDecision::GiveUp => {
                warn!(
                    queue,
                    message_id = id,
                    attempt,
                    "no retries left: dead-lettering it"
                );
                settle(&delivery, Settle::Reject, queue, id).await;
            }
        }
    }
}

enum Settle {
    Ack,
    Reject,
    Requeue,
}

async fn settle(delivery: &Delivery, how: Settle, queue: &str, id: &str) {
    let result = match how {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        Settle::Reject => delivery.reject(BasicRejectOptions { requeue: false }).await,
        Settle::Requeue => {
            let options = BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            };
            delivery.nack(options).await
        }
    };
    if let Err(e) = result {
        // The channel is gone: the broker requeues the delivery by itself.
        error!(queue, message_id = id, error = %e, "cannot settle the delivery; the broker will redeliver it");
    }
}
