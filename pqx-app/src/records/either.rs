//! Where a subscriber's records go: the database itself, or the recorders behind the broker
//! (conn.yml's `db.protocol: broker`). Both answer the same operations the same way.

use std::sync::Arc;

use super::relay::proto::{Answer, RefusedMessage, Request, Start};
use super::relay::Relay;
use super::{AttemptStart, Gate, Refused, Store};
use crate::entities::message_result;
use crate::{Error, Outcome, Result};

/// A subscriber's records.
#[derive(Debug, Clone)]
pub enum Records {
    Database(Store),
    Recorders(Arc<Relay>),
}

impl Records {
    /// Fails with the command that fixes it when the tables are missing.
    pub async fn ensure_tables(&self) -> Result<()> {
        match self {
            Records::Database(store) => store.ensure_tables().await,
            Records::Recorders(relay) => {
                let queue = relay.queue().to_owned();
                done(relay.ask(&Request::Ready { queue }).await?)
            }
        }
    }

    /// Fails unless an attempt can be recorded (the recorders check it as they answer
    /// [`Records::ensure_tables`]).
    pub async fn ensure_writable(&self) -> Result<()> {
        match self {
            Records::Database(store) => store.ensure_writable().await,
            Records::Recorders(_) => Ok(()),
        }
    }

    pub async fn ended_attempt(
        &self,
        message_id: &str,
        queue: &str,
        attempt: u32,
    ) -> Result<Option<message_result::Model>> {
        let relay = match self {
            Records::Database(store) => {
                return store.ended_attempt(message_id, queue, attempt).await
            }
            Records::Recorders(relay) => relay,
        };
        let request = Request::EndedAttempt {
            message_id: message_id.to_owned(),
            queue: queue.to_owned(),
            attempt,
        };
        match relay.ask(&request).await? {
            Answer::Ended { result } => Ok(result),
            other => Err(unexpected(&request, other)),
        }
    }

    pub async fn attempts_here(
        &self,
        message_id: &str,
        queue: &str,
    ) -> Result<Vec<(u32, Option<i32>)>> {
        let relay = match self {
            Records::Database(store) => return store.attempts_here(message_id, queue).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::AttemptsHere {
            message_id: message_id.to_owned(),
            queue: queue.to_owned(),
        };
        match relay.ask(&request).await? {
            Answer::Attempts { attempts } => Ok(attempts),
            other => Err(unexpected(&request, other)),
        }
    }

    /// When message `message_id` was cancelled, if it was.
    pub async fn cancelled(
        &self,
        message_id: &str,
        queue: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let relay = match self {
            Records::Database(store) => return store.cancelled(message_id).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::Cancelled {
            message_id: message_id.to_owned(),
            queue: queue.to_owned(),
        };
        match relay.ask(&request).await? {
            Answer::CancelledAt { at } => Ok(at),
            other => Err(unexpected(&request, other)),
        }
    }

    pub async fn succeeded_before(&self, queue: &str, dedupe_key: &str) -> Result<Option<i64>> {
        let relay = match self {
            Records::Database(store) => return store.succeeded_before(queue, dedupe_key).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::SucceededBefore {
            queue: queue.to_owned(),
            dedupe_key: dedupe_key.to_owned(),
        };
        history_id(relay, &request).await
    }

    pub async fn record_start(&self, start: &AttemptStart<'_>) -> Result<i64> {
        let relay = match self {
            Records::Database(store) => return store.record_start(start).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::RecordStart {
            start: Start::of(start),
        };
        history_id(relay, &request)
            .await?
            .ok_or_else(|| unexpected(&request, Answer::HistoryId { id: None }))
    }

    /// Records the start of an attempt unless its message was cancelled. The recorders are asked
    /// only whether it was: the start goes to them while the command runs, as a round trip
    /// through the broker is not cheap enough to make before.
    pub async fn record_start_unless_cancelled(&self, start: &AttemptStart<'_>) -> Result<Gate> {
        match self {
            Records::Database(store) => store.record_start_unless_cancelled(start).await,
            Records::Recorders(_) => {
                let Some(message_id) = start.message_id else {
                    return Ok(Gate::Open);
                };
                Ok(match self.cancelled(message_id, start.queue).await? {
                    Some(at) => Gate::Cancelled(at),
                    None => Gate::Open,
                })
            }
        }
    }

    pub async fn record_start_unless_ran(
        &self,
        start: &AttemptStart<'_>,
        redelivered: bool,
    ) -> Result<Option<i64>> {
        let relay = match self {
            Records::Database(store) => {
                return store.record_start_unless_ran(start, redelivered).await
            }
            Records::Recorders(relay) => relay,
        };
        let request = Request::RecordStartUnlessRan {
            start: Start::of(start),
            redelivered,
        };
        history_id(relay, &request).await
    }

    pub async fn record_end(&self, history_id: i64, outcome: &Outcome) -> Result<()> {
        let relay = match self {
            Records::Database(store) => return store.record_end(history_id, outcome).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::RecordEnd {
            queue: relay.queue().to_owned(),
            history_id,
            outcome: outcome.clone(),
        };
        done(relay.ask(&request).await?)
    }

    pub async fn record_not_run(&self, start: &AttemptStart<'_>, outcome: &Outcome) -> Result<()> {
        let relay = match self {
            Records::Database(store) => return store.record_not_run(start, outcome).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::RecordNotRun {
            start: Start::of(start),
            outcome: outcome.clone(),
        };
        done(relay.ask(&request).await?)
    }

    pub async fn record_refused(&self, refused: &Refused<'_>, outcome: &Outcome) -> Result<()> {
        let relay = match self {
            Records::Database(store) => return store.record_refused(refused, outcome).await,
            Records::Recorders(relay) => relay,
        };
        let request = Request::RecordRefused {
            refused: RefusedMessage::of(refused),
            outcome: outcome.clone(),
        };
        done(relay.ask(&request).await?)
    }
}

async fn history_id(relay: &Relay, request: &Request) -> Result<Option<i64>> {
    match relay.ask(request).await? {
        Answer::HistoryId { id } => Ok(id),
        other => Err(unexpected(request, other)),
    }
}

fn done(answer: Answer) -> Result<()> {
    match answer {
        Answer::Done => Ok(()),
        other => Err(Error::Recorder {
            what: "carry out a request",
            why: format!("answered {other:?}"),
            refused: false,
        }),
    }
}

/// An answer of the wrong kind: a recorder of another version, most likely.
fn unexpected(request: &Request, answer: Answer) -> Error {
    Error::Recorder {
        what: request.what(),
        why: format!("answered {answer:?}, which is no answer to it"),
        refused: false,
    }
}
