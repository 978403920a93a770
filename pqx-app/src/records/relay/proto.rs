//! What a host asks a recorder and what it answers, as JSON: one [`Request`] per record operation,
//! one [`Answer`] per request.

use serde::{Deserialize, Serialize};

use crate::entities::message_result;
use crate::records::{AttemptStart, Refused};
use crate::{Command, Outcome};

/// The start of an attempt, as sent: its command with its secrets already redacted, since the
/// records keep no more of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Start {
    pub command: Command,
    pub message_id: Option<String>,
    pub queue: String,
    pub host: String,
    pub attempt: u32,
}

impl Start {
    pub fn of(start: &AttemptStart<'_>) -> Self {
        let mut command = start.command.clone();
        command.cmd = command.cmd.redacted();
        Self {
            command,
            message_id: start.message_id.map(str::to_owned),
            queue: start.queue.to_owned(),
            host: start.host.to_owned(),
            attempt: start.attempt,
        }
    }

    pub fn as_start(&self) -> AttemptStart<'_> {
        AttemptStart {
            command: &self.command,
            message_id: self.message_id.as_deref(),
            queue: &self.queue,
            host: &self.host,
            attempt: self.attempt,
        }
    }
}

/// A refused message, as sent: its command (redacted) when its body is one, else the start of its
/// body, which is all the records keep of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedMessage {
    pub command: Option<Command>,
    pub body: String,
    pub message_id: Option<String>,
    pub queue: String,
    pub host: String,
    pub attempt: u32,
}

impl RefusedMessage {
    pub fn of(refused: &Refused<'_>) -> Self {
        let command = refused.command.map(|c| {
            let mut command = c.clone();
            command.cmd = command.cmd.redacted();
            command
        });
        let body = String::from_utf8_lossy(refused.body)
            .chars()
            .take(crate::records::UNPARSED_KEPT)
            .collect();
        Self {
            command,
            body,
            message_id: refused.message_id.map(str::to_owned),
            queue: refused.queue.to_owned(),
            host: refused.host.to_owned(),
            attempt: refused.attempt,
        }
    }

    pub fn as_refused(&self) -> Refused<'_> {
        Refused {
            command: self.command.as_ref(),
            body: self.body.as_bytes(),
            message_id: self.message_id.as_deref(),
            queue: &self.queue,
            host: &self.host,
            attempt: self.attempt,
        }
    }
}

/// One record operation, for the host queue it names (a recorder carries it out only for that
/// queue's own broker user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Whether the recorder can write the records: asked once as a subscriber starts.
    Ready {
        queue: String,
    },
    EndedAttempt {
        message_id: String,
        queue: String,
        attempt: u32,
    },
    AttemptsHere {
        message_id: String,
        queue: String,
    },
    /// When the message was cancelled, if it was (`publisher cancel`).
    Cancelled {
        message_id: String,
        queue: String,
    },
    SucceededBefore {
        queue: String,
        dedupe_key: String,
    },
    RecordStart {
        start: Start,
    },
    RecordStartUnlessRan {
        start: Start,
        redelivered: bool,
    },
    RecordEnd {
        queue: String,
        history_id: i64,
        outcome: Outcome,
    },
    RecordNotRun {
        start: Start,
        outcome: Outcome,
    },
    RecordRefused {
        refused: RefusedMessage,
        outcome: Outcome,
    },
}

impl Request {
    /// The host queue the operation is for.
    pub fn queue(&self) -> &str {
        match self {
            Request::Ready { queue }
            | Request::EndedAttempt { queue, .. }
            | Request::AttemptsHere { queue, .. }
            | Request::Cancelled { queue, .. }
            | Request::SucceededBefore { queue, .. }
            | Request::RecordEnd { queue, .. } => queue,
            Request::RecordStart { start }
            | Request::RecordStartUnlessRan { start, .. }
            | Request::RecordNotRun { start, .. } => &start.queue,
            Request::RecordRefused { refused, .. } => &refused.queue,
        }
    }

    /// What it does, for errors and logs ("record the start of an attempt").
    pub fn what(&self) -> &'static str {
        match self {
            Request::Ready { .. } => "check that the records can be written",
            Request::EndedAttempt { .. } => "look up the attempt",
            Request::AttemptsHere { .. } => "look up the attempts of the message",
            Request::SucceededBefore { .. } => "look up the dedupe key",
            Request::Cancelled { .. } => "look up whether the message was cancelled",
            Request::RecordStart { .. } | Request::RecordStartUnlessRan { .. } => {
                "record the start of an attempt"
            }
            Request::RecordEnd { .. } => "record the result of an attempt",
            Request::RecordNotRun { .. } => "record an attempt that was not run",
            Request::RecordRefused { .. } => "record a refused message",
        }
    }
}

/// A recorder's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Done,
    Ended {
        result: Option<message_result::Model>,
    },
    Attempts {
        attempts: Vec<(u32, Option<i32>)>,
    },
    CancelledAt {
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    HistoryId {
        id: Option<i64>,
    },
    /// It failed. `refused`: the request itself is at fault (not this host's queue, data the
    /// database refuses), so sending it again fails again; otherwise the database is away.
    Failed {
        why: String,
        refused: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_queue_and_round_trips() {
        let command =
            Command::from_json(r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#).unwrap();
        let start = AttemptStart {
            command: &command,
            message_id: Some("m1"),
            queue: "h1",
            host: "node-1",
            attempt: 2,
        };
        let request = Request::RecordStartUnlessRan {
            start: Start::of(&start),
            redelivered: true,
        };
        assert_eq!(request.queue(), "h1");
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""op":"record_start_unless_ran""#), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
    }

    #[test]
    fn secrets_are_redacted_before_they_leave_the_host() {
        let command = Command::from_json(
            r#"{"mailing_to":[],"cmd":{"Sshpass":{"ip":"127.0.0.1","user":"u","pass":"hunter2","cmd":["true"]}}}"#,
        )
        .unwrap();
        let start = AttemptStart {
            command: &command,
            message_id: None,
            queue: "h1",
            host: "n",
            attempt: 1,
        };
        let json = serde_json::to_string(&Request::RecordStart {
            start: Start::of(&start),
        })
        .unwrap();
        assert!(!json.contains("hunter2"), "{json}");
    }
}
