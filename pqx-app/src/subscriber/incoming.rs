//! Step 1 of a delivery: decoding it. Its properties say which message and attempt it is and where
//! its result goes; its body is a command, or it is poison (dead-lettered with the reason). A
//! subscriber that trusts keys first checks the signature over the body as it came, then what the
//! signed command says (`trust.rs`): a refused command is poison too, told apart from an invalid
//! one.

use lapin::message::Delivery;
use pqx::mq::attempt_of;

use super::trust::{Refusal, Trust};
use crate::signing::Seal;
use crate::{Command, InvalidTask};

/// What a delivery's properties say, whatever its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The id all attempts of one publish share; a message published by hand may have none.
    pub message_id: Option<String>,
    /// 1 for the first run, 2 for the first retry, ...
    pub attempt: u32,
    /// The broker handed it out before (a subscriber died or a channel closed before the ack).
    pub redelivered: bool,
    /// The publisher sent it again after losing the broker before its confirm: the broker may
    /// have taken the first copy too.
    pub published_again: bool,
    /// The queue its result goes to, as the message asks (`publisher --wait`).
    pub reply_to: Option<String>,
    /// What the result is correlated by: the correlation id, else the message id.
    pub correlation_id: Option<String>,
}

/// What every log line about one delivery names: the host queue and the message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids<'a> {
    pub queue: &'a str,
    pub message_id: Option<&'a str>,
}

/// A delivery that holds a command.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub envelope: Envelope,
    pub command: Command,
    /// Its signature, where the subscriber trusts keys.
    pub seal: Option<Seal>,
}

/// A delivery that holds no command to run, and why; the command, when it is one (a refused
/// command is recorded with it).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub envelope: Envelope,
    pub reason: Poison,
    pub command: Option<Command>,
}

/// Why a body is not a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Poison {
    #[error("not a valid command: body is not UTF-8: {0}")]
    NotUtf8(std::str::Utf8Error),
    #[error("not a valid command: {0}")]
    Invalid(InvalidTask),
    /// Its properties do not fit in pqx's frames: it was taken on a connection with large ones.
    #[error("its properties take {0} bytes: more than fit in the {frame} frames pqx subscribers use", frame = pqx_util::human_bytes(u64::from(pqx::mq::FRAME_MAX)))]
    TooLarge(usize),
    /// A subscriber that trusts keys does not run it.
    #[error("refused: {0}")]
    Refused(Refusal),
}

impl Incoming {
    /// Decodes a delivery (a poison one, which is rare, in a box), checking it against `trust`
    /// when the subscriber trusts keys.
    pub fn decode(delivery: &Delivery, trust: Option<&Trust>) -> Result<Self, Box<Rejected>> {
        let envelope = Envelope::of(delivery);
        let rejected = |envelope, reason, command| {
            Box::new(Rejected {
                envelope,
                reason,
                command,
            })
        };
        if !pqx::mq::fits_in_a_frame(&delivery.properties) {
            let size = pqx::mq::properties_size(&delivery.properties).unwrap_or(usize::MAX);
            return Err(rejected(envelope, Poison::TooLarge(size), None));
        }
        let sealed = trust.map(|t| t.unseal(&delivery.properties, &delivery.data));
        let command = std::str::from_utf8(&delivery.data)
            .map_err(Poison::NotUtf8)
            .and_then(|text| Command::from_json(text).map_err(Poison::Invalid));
        let seal = match sealed {
            None => None,
            Some(Ok(seal)) => Some(seal),
            Some(Err(refusal)) => {
                return Err(rejected(envelope, Poison::Refused(refusal), command.ok()))
            }
        };
        let command = match command {
            Ok(command) => command,
            Err(reason) => return Err(rejected(envelope, reason, None)),
        };
        if let (Some(trust), Some(seal)) = (trust, &seal) {
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(refusal) = trust.check(&command, &delivery.properties, seal, now) {
                return Err(rejected(envelope, Poison::Refused(refusal), Some(command)));
            }
        }
        // Only the command says how many retries it has, which an original PQX subscriber's
        // countdown is read against.
        let retry = command.config.retry.unwrap_or(0);
        let envelope = Envelope {
            attempt: attempt_of(&delivery.properties, retry),
            ..envelope
        };
        Ok(Self {
            envelope,
            command,
            seal,
        })
    }

    /// Where the final result goes: the message's `reply_to`, else the command's.
    pub fn reply_to(&self) -> Option<&str> {
        self.envelope
            .reply_to
            .as_deref()
            .or(self.command.config.reply_to.as_deref())
    }
}

impl Envelope {
    fn of(delivery: &Delivery) -> Self {
        let props = &delivery.properties;
        let text = |value: &Option<lapin::types::ShortString>| {
            value.as_ref().map(|v| v.as_str().to_owned())
        };
        let message_id = text(props.message_id());
        Self {
            attempt: attempt_of(props, 0),
            redelivered: delivery.redelivered,
            published_again: pqx::mq::is_published_again(props),
            reply_to: text(props.reply_to()),
            correlation_id: text(props.correlation_id()).or_else(|| message_id.clone()),
            message_id,
        }
    }
}
