//! What a subscriber does with one delivery: parse it, record the attempt's start, run the command,
//! record how it ended, and only then settle the delivery: acknowledge it, hand it to the retry wait
//! queue of this host queue, or send it to the dead-letter queue with the reason. A delivery is
//! never acknowledged before its record is committed: while the database cannot be written the
//! delivery is held (and the write retried), and a stopping subscriber hands it back to the queue.
//! A redelivered message whose attempt was already recorded to its end is settled from the record
//! instead of being run again, so that no attempt is recorded twice.

use std::future::Future;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use lapin::BasicProperties;
use pqx::ec::{execute, CancellationToken, RunEnd, RunReport, Settings};
use pqx::mq::{attempt_of, dead_letter, schedule_retry, Publisher, RetryDecision};
use serde::Serialize;
use tracing::{error, info, warn};

use crate::{AttemptStart, Command, Result, Store};

/// The first wait before writing a record again after the database failed; it doubles up to
/// [`HOLD_MAX`].
const HOLD_FIRST: Duration = Duration::from_millis(500);
const HOLD_MAX: Duration = Duration::from_secs(30);

/// Runs the deliveries of one host queue.
#[derive(Debug)]
pub struct Executor {
    store: Store,
    queue: String,
    host: String,
    delayed_exchange: String,
    dead_letter_exchange: String,
    settings: Settings,
}

/// The result a caller that asked for it (`reply_to`) receives, as JSON.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub message_id: Option<String>,
    pub queue: String,
    pub host: String,
    pub attempt: u32,
    pub success: bool,
    pub exit_code: i32,
    pub result: String,
    pub stdout: String,
    pub stderr: String,
}

/// What one delivery is, for logs.
struct Seen<'a> {
    queue: &'a str,
    id: &'a str,
    attempt: u32,
}

impl Executor {
    /// An executor for `queue`: records in `store`, retries through `delayed_exchange`, dead-letters
    /// to `dead_letter_exchange`, and runs commands with this machine's `settings`.
    pub fn new(
        store: Store,
        queue: &str,
        delayed_exchange: &str,
        dead_letter_exchange: &str,
        settings: Settings,
    ) -> Self {
        Self {
            store,
            queue: queue.to_owned(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            delayed_exchange: delayed_exchange.to_owned(),
            dead_letter_exchange: dead_letter_exchange.to_owned(),
            settings,
        }
    }

    /// Handles one delivery to the end; every outcome is logged, none is returned. `cancel` stops a
    /// running command (the subscriber is stopping): the delivery then goes back to the queue.
    pub async fn handle(
        &self,
        delivery: Delivery,
        publisher: &Publisher,
        cancel: &CancellationToken,
    ) {
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned());
        let seen = Seen {
            queue: &self.queue,
            id: message_id.as_deref().unwrap_or("-"),
            attempt: attempt_of(&delivery.properties),
        };
        let (queue, id, attempt) = (seen.queue, seen.id, seen.attempt);

        let parsed = std::str::from_utf8(&delivery.data)
            .map_err(|e| format!("body is not UTF-8: {e}"))
            .and_then(Command::from_json);
        let command = match parsed {
            Ok(command) => command,
            Err(reason) => {
                error!(queue, message_id = id, %reason, "not a valid command: dead-lettering it");
                let reason = format!("not a valid command: {reason}");
                let outcome = self.outcome(&seen, &RunReport::not_started(reason.clone()));
                self.reply(publisher, &delivery, None, &outcome).await;
                self.give_up(publisher, &delivery, &seen, &reason).await;
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

        if delivery.redelivered {
            if let Some(id_) = message_id.as_deref() {
                let recorded = self
                    .hold(&seen, "look up the attempt", cancel, || {
                        self.store.ended_attempt(id_, queue, attempt)
                    })
                    .await;
                match recorded {
                    None => return requeue(&delivery, &seen).await,
                    Some(Some(result)) => {
                        info!(queue, message_id = id, attempt, "redelivered, but this attempt is already recorded: settling it from the record");
                        let outcome = Reply {
                            success: result.exit_code == 0,
                            exit_code: result.exit_code,
                            result: result.result,
                            stdout: result.stdout.unwrap_or_default(),
                            stderr: result.stderr.unwrap_or_default(),
                            ..self.outcome(&seen, &RunReport::not_started(""))
                        };
                        self.settle(publisher, &delivery, &command, &seen, &outcome)
                            .await;
                        return;
                    }
                    Some(None) => {}
                }
            }
        }

        if let Some(key) = command.config.dedupe_key.as_deref() {
            let earlier = self
                .hold(&seen, "look up the dedupe key", cancel, || {
                    self.store.succeeded_before(queue, key)
                })
                .await;
            match earlier {
                None => return requeue(&delivery, &seen).await,
                Some(Some(earlier)) => {
                    let skipped = self
                        .hold(&seen, "record the skipped attempt", cancel, || {
                            self.store.record_skipped(&start, earlier)
                        })
                        .await;
                    if skipped.is_none() {
                        return requeue(&delivery, &seen).await;
                    }
                    info!(
                        queue,
                        message_id = id,
                        dedupe_key = key,
                        earlier,
                        "already succeeded here: skipped"
                    );
                    let outcome = Reply {
                        success: true,
                        exit_code: 0,
                        result: format!(
                            "skipped: dedupe_key {key:?} already succeeded (attempt id {earlier})"
                        ),
                        ..self.outcome(&seen, &RunReport::not_started(""))
                    };
                    self.reply(publisher, &delivery, Some(&command), &outcome)
                        .await;
                    ack(&delivery, &seen).await;
                    return;
                }
                Some(None) => {}
            }
        }

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
        // The start is recorded while the command starts, not before: the database is not on the
        // way from delivery to run. Either way both are done before the delivery is settled.
        let recording = self.hold(&seen, "record the attempt", cancel, || {
            self.store.record_start(&start)
        });
        let running = execute(
            &command.cmd,
            &self.settings,
            timeout,
            cancel,
            |stream, line| info!(queue, message_id = id, stream = stream.as_str(), "{line}"),
        );
        // The run is polled first, so that the process is spawned before the insert is prepared.
        let (report, history_id) = tokio::join!(running, recording);
        let Some(history_id) = history_id else {
            return requeue(&delivery, &seen).await;
        };
        let summary = report.summary();
        info!(
            queue,
            message_id = id,
            attempt,
            exit_code = report.exit_code(),
            "{summary}"
        );

        if report.end == RunEnd::Interrupted {
            // Stopping: one try at the record, then the message goes back to run again elsewhere.
            if let Err(e) = self.store.record_end(history_id, &report).await {
                warn!(queue, message_id = id, error = %e, "cannot record the interrupted attempt");
            }
            return requeue(&delivery, &seen).await;
        }
        let recorded = self
            .hold(&seen, "record the result", cancel, || {
                self.store.record_end(history_id, &report)
            })
            .await;
        if recorded.is_none() {
            return requeue(&delivery, &seen).await;
        }
        let outcome = self.outcome(&seen, &report);
        self.settle(publisher, &delivery, &command, &seen, &outcome)
            .await;
    }

    /// The result of an attempt as a caller receives it.
    fn outcome(&self, seen: &Seen<'_>, report: &RunReport) -> Reply {
        Reply {
            message_id: (seen.id != "-").then(|| seen.id.to_owned()),
            queue: seen.queue.to_owned(),
            host: self.host.clone(),
            attempt: seen.attempt,
            success: report.success(),
            exit_code: report.exit_code(),
            result: report.summary(),
            stdout: report.stdout.text(),
            stderr: report.stderr.text(),
        }
    }

    /// Settles a delivery whose attempt is recorded: done, retried on this queue, or given up.
    async fn settle(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        command: &Command,
        seen: &Seen<'_>,
        outcome: &Reply,
    ) {
        let (queue, id) = (seen.queue, seen.id);
        match command
            .config
            .retry_policy()
            .decide(outcome.success, seen.attempt)
        {
            RetryDecision::Done => {
                self.reply(publisher, delivery, Some(command), outcome)
                    .await;
                ack(delivery, seen).await;
            }
            RetryDecision::RetryAfter { attempt, delay } => {
                let scheduled = schedule_retry(
                    publisher,
                    &self.delayed_exchange,
                    queue,
                    delivery,
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
                            delay_ms = delay.as_millis() as u64,
                            "retry scheduled"
                        );
                        ack(delivery, seen).await;
                    }
                    Err(e) => {
                        error!(queue, message_id = id, error = %e, "cannot schedule the retry");
                        requeue(delivery, seen).await;
                    }
                }
            }
            RetryDecision::GiveUp => {
                self.reply(publisher, delivery, Some(command), outcome)
                    .await;
                let reason = format!("failed on attempt {}: {}", seen.attempt, outcome.result);
                warn!(
                    queue,
                    message_id = id,
                    attempt = seen.attempt,
                    "no retries left: dead-lettering it"
                );
                self.give_up(publisher, delivery, seen, &reason).await;
            }
        }
    }

    /// Sends the delivery to the dead letters with `reason`; if that cannot be done, rejects it,
    /// which dead-letters it too, without the reason.
    async fn give_up(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        seen: &Seen<'_>,
        reason: &str,
    ) {
        match dead_letter(
            publisher,
            &self.dead_letter_exchange,
            seen.queue,
            delivery,
            reason,
        )
        .await
        {
            Ok(()) => ack(delivery, seen).await,
            Err(e) => {
                warn!(queue = seen.queue, message_id = seen.id, error = %e, "cannot publish to the dead-letter exchange: rejecting instead");
                if let Err(e) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                    lost_channel(seen, &e);
                }
            }
        }
    }

    /// Sends the final result where the message or the command asks for it; a caller that is gone
    /// is logged, not an error.
    async fn reply(
        &self,
        publisher: &Publisher,
        delivery: &Delivery,
        command: Option<&Command>,
        outcome: &Reply,
    ) {
        let props = &delivery.properties;
        let reply_to = props
            .reply_to()
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .or_else(|| command.and_then(|c| c.config.reply_to.clone()));
        let Some(reply_to) = reply_to else { return };
        let correlation = props
            .correlation_id()
            .clone()
            .or_else(|| props.message_id().clone())
            .unwrap_or_default();
        let body = serde_json::to_vec(outcome).unwrap_or_default();
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id(correlation);
        let target = format!("reply queue {reply_to}");
        if let Err(e) = publisher
            .publish("", &reply_to, &body, properties, &target)
            .await
        {
            warn!(queue = outcome.queue, message_id = ?outcome.message_id, error = %e, "cannot send the result back");
        }
    }

    /// Runs `op` until it succeeds, waiting longer after each failure; gives up (None) only when
    /// `cancel` fires. Used for the records: a delivery is held, not settled, while the database is
    /// away.
    async fn hold<T, F, Fut>(
        &self,
        seen: &Seen<'_>,
        what: &str,
        cancel: &CancellationToken,
        op: F,
    ) -> Option<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut wait = HOLD_FIRST;
        let mut tries = 1u32;
        loop {
            match op().await {
                Ok(value) => {
                    if tries > 1 {
                        info!(
                            queue = seen.queue,
                            message_id = seen.id,
                            tries,
                            "the database answers again: could {what}"
                        );
                    }
                    return Some(value);
                }
                Err(e) => {
                    warn!(queue = seen.queue, message_id = seen.id, tries, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot {what}: holding the message and trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = cancel.cancelled() => return None,
                    }
                    wait = (wait * 2).min(HOLD_MAX);
                    tries += 1;
                }
            }
        }
    }
}

async fn ack(delivery: &Delivery, seen: &Seen<'_>) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        lost_channel(seen, &e);
    }
}

async fn requeue(delivery: &Delivery, seen: &Seen<'_>) {
    info!(
        queue = seen.queue,
        message_id = seen.id,
        "returning the message to the queue"
    );
    let options = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(e) = delivery.nack(options).await {
        lost_channel(seen, &e);
    }
}

fn lost_channel(seen: &Seen<'_>, e: &lapin::Error) {
    // The channel is gone with its deliveries: the broker requeues them by itself, and a
    // redelivered attempt that is already recorded is settled from the record.
    warn!(queue = seen.queue, message_id = seen.id, error = %e, "cannot settle the delivery; the broker will redeliver it");
}
