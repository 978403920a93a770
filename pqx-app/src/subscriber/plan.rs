//! Step 2 of a delivery: deciding what to do with a command before running it, from what the
//! records say. Pure: the look-ups are made by the handler, in the order [`Questions`] gives.
//!
//! - A redelivered message whose attempt is already recorded to its end is settled from the
//!   record, not run again (so that no attempt is recorded twice).
//! - A copy the publisher sent again, whose attempt (or a later one) is already recorded on this
//!   queue, is a duplicate of one that ran: it is dropped.
//! - A command whose `dedupe_key` already succeeded on this queue is skipped.
//! - Anything else runs.

use crate::entities::message_result;

use super::incoming::Incoming;

/// What the records must be asked, in this order, before a delivery is decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Questions<'a> {
    /// Whether this attempt of this message ended already (asked of redeliveries only: a first
    /// delivery cannot have been recorded).
    pub ended: Option<(&'a str, u32)>,
    /// Whether this attempt of this message, or a later one, is recorded on the queue (asked of
    /// copies the publisher sent again).
    pub again: Option<(&'a str, u32)>,
    /// Whether a command with this key already succeeded on the queue.
    pub dedupe_key: Option<&'a str>,
    /// Which attempts of this signed message were recorded on the queue (asked where the
    /// subscriber trusts keys: a signed command runs once).
    pub history: Option<&'a str>,
}

/// What the records answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// The result of this attempt, if it is recorded.
    pub ended: Option<message_result::Model>,
    /// This attempt, or a later one, is recorded on the queue: the copy is a duplicate.
    pub ran_here: bool,
    /// The history id of an earlier attempt with the same dedupe key that succeeded.
    pub succeeded_before: Option<i64>,
    /// The attempts of this message recorded on the queue: number and, once ended, exit code.
    pub history: Vec<(u32, Option<i32>)>,
}

/// What to do with the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Settle it as the recorded attempt ended.
    FromRecord(message_result::Model),
    /// Drop it: a copy of one that ran here.
    Duplicate,
    /// Record it as skipped, because attempt `earlier` already did it.
    Skip { earlier: i64 },
    /// Run it.
    Run,
}

impl<'a> Questions<'a> {
    /// The questions for `incoming`.
    pub fn of(incoming: &'a Incoming) -> Self {
        let envelope = &incoming.envelope;
        Self {
            ended: match (&envelope.message_id, envelope.redelivered) {
                (Some(id), true) => Some((id.as_str(), envelope.attempt)),
                _ => None,
            },
            again: match (&envelope.message_id, envelope.published_again) {
                (Some(id), true) => Some((id.as_str(), envelope.attempt)),
                _ => None,
            },
            dedupe_key: incoming.command.config.dedupe_key.as_deref(),
            history: match (&incoming.seal, &envelope.message_id) {
                (Some(_), Some(id)) => Some(id.as_str()),
                _ => None,
            },
        }
    }
}

impl Answers {
    /// Whether the later questions need no answer: the attempt is settled from the record, or
    /// dropped as a duplicate.
    pub fn settled(&self) -> bool {
        self.ended.is_some() || self.ran_here
    }
}

/// What to do, given the answers.
pub fn plan(answers: Answers) -> Plan {
    match answers {
        Answers {
            ended: Some(result),
            ..
        } => Plan::FromRecord(result),
        Answers { ran_here: true, .. } => Plan::Duplicate,
        Answers {
            succeeded_before: Some(earlier),
            ..
        } => Plan::Skip { earlier },
        _ => Plan::Run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriber::incoming::Envelope;
    use crate::Command;

    fn incoming(redelivered: bool, message_id: Option<&str>, dedupe: Option<&str>) -> Incoming {
        let mut command =
            Command::from_json(r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#).unwrap();
        command.config.dedupe_key = dedupe.map(str::to_owned);
        Incoming {
            envelope: Envelope {
                message_id: message_id.map(str::to_owned),
                attempt: 2,
                redelivered,
                published_again: false,
                reply_to: None,
                correlation_id: None,
            },
            command,
            seal: None,
        }
    }

    fn result(exit_code: i32) -> message_result::Model {
        message_result::Model {
            id: 7,
            history_id: 3,
            exit_code,
            result: Some("recorded".into()),
            time: chrono::DateTime::UNIX_EPOCH,
            stdout: None,
            stderr: None,
        }
    }

    #[test]
    fn only_redeliveries_with_an_id_ask_for_the_record() {
        let first = incoming(false, Some("m"), None);
        assert_eq!(Questions::of(&first).ended, None);
        let again = incoming(true, Some("m"), None);
        assert_eq!(Questions::of(&again).ended, Some(("m", 2)));
        let anonymous = incoming(true, None, None);
        assert_eq!(Questions::of(&anonymous).ended, None);
        let keyed = incoming(false, None, Some("k"));
        assert_eq!(Questions::of(&keyed).dedupe_key, Some("k"));
    }

    #[test]
    fn the_record_wins_then_the_dedupe_key_then_it_runs() {
        let both = Answers {
            ended: Some(result(1)),
            ran_here: false,
            succeeded_before: Some(5),
            history: Vec::new(),
        };
        assert!(both.settled());
        assert_eq!(plan(both), Plan::FromRecord(result(1)));
        let earlier = Answers {
            ended: None,
            ran_here: false,
            succeeded_before: Some(5),
            history: Vec::new(),
        };
        let copy = Answers {
            ran_here: true,
            ..earlier.clone()
        };
        assert!(copy.settled());
        assert_eq!(plan(copy), Plan::Duplicate);
        assert!(!earlier.settled());
        assert_eq!(plan(earlier), Plan::Skip { earlier: 5 });
        assert_eq!(plan(Answers::default()), Plan::Run);
    }
}
