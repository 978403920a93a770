//! The error types of the pqx library: [`Error`], whose variants say which queue, exchange or setting
//! they are about, and [`InvalidField`], a value of a command or config that pqx cannot use.

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// Errors raised by the pqx library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker could not be reached or refused an operation.
    #[error("{context}: {source}")]
    Amqp {
        context: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker refused a declaration because an existing exchange or queue differs.
    #[error("{context}: it already exists with other settings ({reply}); remove it with `rectifier -o del_que` / `del_exg` and run initiator again")]
    Differs { context: String, reply: String },
    /// No node of a cluster could be reached: why, for each.
    #[error("cannot reach any RabbitMQ node: {}", tried.join("; "))]
    NoNode { tried: Vec<String> },
    /// A TLS handshake with the broker failed on a certificate or a setting: not worth retrying.
    #[error("{broker}: {refused}")]
    Tls {
        broker: String,
        refused: crate::mq::TlsRefused,
    },
    /// The broker does not have an exchange or queue that the operation needs.
    #[error("{context}: {reply} (run `initiator -o init` to declare it)")]
    Missing { context: String, reply: String },
    /// The host queue a subscriber was told to consume does not exist.
    #[error("queue {queue} does not exist: add it to header_queues in init.yml and run `initiator -o init`")]
    NoSuchQueue { queue: String },
    /// The broker ended a consumer: its queue was deleted, or its node is going away.
    #[error("the broker cancelled the consumer of queue {queue} (was it deleted?)")]
    ConsumerEnded { queue: String },
    /// A mandatory publish matched no queue.
    #[error("no queue matches {target}: nothing was delivered (check header_queues in init.yml and run `initiator -o init`)")]
    Unroutable { target: String },
    /// The broker did not take a published message.
    #[error("the broker refused the message for {target} (negative publisher confirm)")]
    Nacked { target: String },
    /// A message, with the headers pqx must add, does not fit in one frame of the connection.
    #[error("the message for {target} does not fit in one frame with the headers pqx adds")]
    DoesNotFit { target: String },
    /// A per-machine setting in the subscriber's environment is not usable.
    #[error("{var}: {problem}")]
    Setting { var: &'static str, problem: String },
    /// An error from pqx-util.
    #[error(transparent)]
    Util(#[from] pqx_util::Error),
}

impl Error {
    /// Whether the broker said what was asked for does not exist (NOT_FOUND): an exchange
    /// published to, a queue consumed.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Missing { .. } => true,
            Error::Amqp { source, .. } => soft_error(source) == Some(&AMQPSoftError::NOTFOUND),
            _ => false,
        }
    }

    /// Whether the error is the broker or the network going away (worth reconnecting for), rather
    /// than something a retry cannot fix (credentials, a missing queue, a refused argument).
    pub fn is_transient(&self) -> bool {
        // A queue that refuses a message for a while: a quorum queue electing a leader after its
        // node was lost. Nothing was taken, so sending it again is safe.
        if let Error::NoNode { .. } | Error::Nacked { .. } = self {
            return true;
        }
        let Error::Amqp { source, .. } = self else {
            return false;
        };
        match source.kind() {
            lapin::ErrorKind::IOError(_)
            | lapin::ErrorKind::InvalidConnectionState(_)
            | lapin::ErrorKind::InvalidChannelState(..)
            | lapin::ErrorKind::MissingHeartbeatError => true,
            lapin::ErrorKind::ProtocolError(e) => {
                *e.kind() == AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)
            }
            _ => false,
        }
    }
}

/// The result type of the pqx library.
pub type Result<T> = std::result::Result<T, Error>;

/// A field of a command or config file whose value pqx cannot use, named by its path
/// (`cmd.Bash.cmd`, `config.priority`, `header_queues[1].queue`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    pub field: String,
    pub problem: String,
}

impl InvalidField {
    /// `field` has a value that `problem` describes.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Adds a description of what was being done to a lapin error, telling a missing exchange or queue
/// (NOT_FOUND) by its reply code; for a declaration also one that differs from what exists
/// (PRECONDITION_FAILED with "inequivalent arg"): only then is removing it the fix.
pub(crate) trait AmqpContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
    fn declaring(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> AmqpContext<T> for std::result::Result<T, lapin::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| classify(source, context(), false))
    }

    fn declaring(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| classify(source, context(), true))
    }
}

pub(crate) fn classify(source: lapin::Error, context: String, declaring: bool) -> Error {
    let reply = source.to_string();
    match soft_error(&source) {
        Some(AMQPSoftError::PRECONDITIONFAILED)
            if declaring && reply.contains("inequivalent arg") =>
        {
            Error::Differs { context, reply }
        }
        Some(AMQPSoftError::NOTFOUND) => Error::Missing { context, reply },
        _ => Error::Amqp { context, source },
    }
}

/// The channel-level reply code the broker answered with, if it was one.
pub(crate) fn soft_error(error: &lapin::Error) -> Option<&AMQPSoftError> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Soft(soft) => Some(soft),
            AMQPErrorKind::Hard(_) => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lapin::protocol::AMQPError;

    use super::*;

    fn refused(text: &str) -> lapin::Error {
        let kind = AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED);
        lapin::Error::from(lapin::ErrorKind::ProtocolError(AMQPError::new(
            kind,
            text.into(),
        )))
    }

    #[test]
    fn only_a_differing_declaration_gets_the_rectifier_hint() {
        let differs = Err::<(), _>(refused(
            "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'h1'",
        ));
        let err = differs
            .declaring(|| "declaring queue h1".into())
            .unwrap_err();
        assert!(matches!(err, Error::Differs { .. }), "{err}");
        assert!(err.to_string().contains("rectifier -o del_que"), "{err}");
        for (text, declaring) in [
            ("PRECONDITION_FAILED - invalid arg 'x-message-ttl'", true),
            (
                "PRECONDITION_FAILED - inequivalent arg 'x-max-priority'",
                false,
            ),
        ] {
            let result = Err::<(), _>(refused(text));
            let err = match declaring {
                true => result.declaring(|| "declaring queue h1".into()),
                false => result.context(|| "publishing to queue h1".into()),
            }
            .unwrap_err();
            assert!(matches!(err, Error::Amqp { .. }), "{err}");
            assert!(!err.to_string().contains("rectifier"), "{err}");
        }
    }
}
