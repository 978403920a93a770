//! The error type of the pqx library: each variant says which queue, exchange or program it is about.

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
    /// The broker does not have an exchange or queue that the operation needs.
    #[error("{context}: {reply} (run `initiator -o init` to declare it)")]
    Missing { context: String, reply: String },
    /// A mandatory publish matched no queue.
    #[error("no queue matches {target}: nothing was delivered (check header_queues in init.yml and run `initiator -o init`)")]
    Unroutable { target: String },
    /// The broker did not take a published message.
    #[error("the broker refused the message for {target} (negative publisher confirm)")]
    Nacked { target: String },
    /// A command cannot be started as given (unset variable, no such program).
    #[error("{0}")]
    Command(String),
    /// A broker setting is not what pqx needs.
    #[error("{0}")]
    Config(String),
    /// An error from pqx-util.
    #[error(transparent)]
    Util(#[from] pqx_util::Error),
}

impl Error {
    /// Whether the error is the broker or the network going away (worth reconnecting for), rather
    /// than something a retry cannot fix (credentials, a missing queue, a refused argument).
    pub fn is_transient(&self) -> bool {
        let Error::Amqp { source, .. } = self else {
            return false;
        };
        match source.kind() {
            lapin::ErrorKind::IOError(_)
            | lapin::ErrorKind::InvalidConnectionState(_)
            | lapin::ErrorKind::InvalidChannelState(..)
            | lapin::ErrorKind::MissingHeartbeatError => true,
            lapin::ErrorKind::ProtocolError(e) => e.to_string().contains("CONNECTION_FORCED"),
            _ => false,
        }
    }
}

/// The result type of the pqx library.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds a description of what was being done to a lapin error.
pub(crate) trait AmqpContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> AmqpContext<T> for std::result::Result<T, lapin::Error> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| {
            let context = context();
            let text = source.to_string();
            if text.contains("PRECONDITION_FAILED") {
                Error::Differs {
                    context,
                    reply: text,
                }
            } else if text.contains("NOT_FOUND") {
                Error::Missing {
                    context,
                    reply: text,
                }
            } else {
                Error::Amqp { context, source }
            }
        })
    }
}
