//! The error types of pqx-app: [`Error`], and what can be wrong with a task ([`InvalidTask`],
//! [`TaskProblem`]). Messages name the file, field, queue or table they are about and, where there
//! is one, the command that fixes it.

use std::path::PathBuf;

use pqx::InvalidField;

/// Errors raised by pqx-app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task file cannot be read or is not a valid command.
    #[error("{}: {problem}", path.display())]
    Task { path: PathBuf, problem: TaskProblem },
    /// A config file holds a value pqx cannot use.
    #[error("{}: {source}", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: InvalidField,
    },
    /// The database refused a statement.
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// The subscriber cannot write its records.
    #[error("database {url}: cannot write there ({source}): the subscriber would run commands it cannot record")]
    ReadOnly {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// A recorder could not carry out a record operation, or did not answer.
    #[error("cannot {what} through the recorders: {why}")]
    Recorder {
        what: &'static str,
        why: String,
        /// The request itself is at fault: sending it again fails again.
        refused: bool,
    },
    /// A host asked to record the end of an attempt of another queue.
    #[error("attempt {history_id} is not one of queue {queue:?}")]
    NotHisAttempt { history_id: i64, queue: String },
    /// conn.yml sends the records through the broker, and this needs the database itself.
    #[error("conn.yml's db.protocol is broker: this host's records go through the broker to the recorders (`subscriber --recorder`), and this needs the database itself: run it with a conn.yml that names the database")]
    RecordsViaBroker,
    /// `publisher cancel` without a message id.
    #[error("say which message to cancel: publisher cancel ID")]
    CancelWhich,
    /// `publisher cancel` of a message that ended everywhere.
    #[error(
        "message {message_id:?} already ended on every queue it went to ({how}): nothing to cancel"
    )]
    NothingToCancel { message_id: String, how: String },
    /// `initiator add-host` without a queue.
    #[error("say which host queue to add: initiator add-host QUEUE --kv KEY=VALUE")]
    AddHostWhich,
    /// `initiator add-host` without pairs.
    #[error("host queue {queue}: give the pairs that reach it: --kv KEY=VALUE (one or more)")]
    AddHostPairs { queue: String },
    /// `initiator add-host` of a queue init.yml could not hold.
    #[error("host queue {queue}: {source}")]
    AddHost {
        queue: String,
        #[source]
        source: InvalidField,
    },
    /// `rectifier del-host` without a queue.
    #[error("say which host queue to remove: rectifier del-host QUEUE")]
    DelHostWhich,
    /// `inspector show` of a message with no attempt recorded.
    #[error("no attempt of message {message_id:?} is recorded in {url}")]
    NoSuchMessage { message_id: String, url: String },
    /// `inspector serve` could not listen, or stopped serving.
    #[error("inspector serve on {bind}: {source}")]
    Serve {
        bind: String,
        #[source]
        source: std::io::Error,
    },
    /// `inspector serve` on an address other hosts reach, with no token.
    #[error("inspector serve --bind {bind}: an address that is not loopback needs a token (--token-file FILE, or PQX_DASHBOARD_TOKEN)")]
    ServeNeedsToken { bind: String },
    /// The dashboard's token is unusable.
    #[error("the dashboard token in {whence} {why}")]
    BadToken { whence: String, why: String },
    /// `inspector show` without a message id.
    #[error("say which message: inspector show ID")]
    ShowWhich,
    /// `inspector show --follow`: the last attempt did not succeed.
    #[error("the last attempt ended with exit code {0}")]
    Followed(u8),
    /// `publisher redrive --message-id` found no such dead letter.
    #[error("no dead letter has message id {message_id:?} in {queue}")]
    NoDeadLetter { message_id: String, queue: String },
    /// `publisher redrive` left dead letters where they were.
    #[error("{left} dead letters were left in the dead-letter queue (see above)")]
    DeadLettersLeft { left: usize },
    /// `publisher redrive` without saying which dead letters.
    #[error("say which dead letters to send back: --message-id ID, --queue QUEUE or --all")]
    RedriveWhich,
    /// The tables are not there.
    #[error("the tables message_history and message_result do not exist in {url}: run `initiator -o crt_tbl` (or `-o init`)")]
    NoTables { url: String },
    /// The subscriber could not set up its SIGINT/SIGTERM handling.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// A subscriber that checks signatures needs its queue's pairs.
    #[error("conn.yml lists signing.trusted_keys, but init.yml has no header_queues entry for queue {queue}: a subscriber that checks signatures also checks that each command is addressed to its queue's pairs")]
    NotInInit { queue: String },
    /// A user init.yml names is not pqx's to make, change or remove.
    #[error("user {user}: not changed: {why}; name another user in init.yml")]
    UserTaken { user: String, why: String },
    /// A file pqx writes could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The subscriber could not say it is ready.
    #[error("cannot write the ready file {}: {source}", path.display())]
    ReadyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The broker holds exchanges or queues of init.yml's names that pqx cannot work with (each
    /// said on a line of its own before).
    #[error("initiator changed nothing: {count} of the exchanges and queues init.yml names differ from what pqx can work with (above); remove them with rectifier (`-o del_exg`, or `-o del_que`, which drops their messages), or name others in init.yml")]
    Conflicts { count: usize },
    /// A command with an empty `mailing_to` has no host queue to go to.
    #[error(
        "mailing_to is empty and init.yml lists no header_queues: there is nowhere to send it"
    )]
    NowhereToSend,
    /// A command could not be encoded for the wire.
    #[error("cannot encode the command as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The broker stayed out of reach for the whole `--retry-for`.
    #[error("gave up after {tries} tries: {source}")]
    GaveUp {
        tries: u32,
        #[source]
        source: pqx::Error,
    },
    /// Publishing stopped part way.
    #[error("{source} ({published} of {planned} publishes were confirmed before it)")]
    PartlyPublished {
        published: usize,
        planned: usize,
        #[source]
        source: Box<Error>,
    },
    /// `publisher --batch`: a copy goes to the exchange, not to one host queue.
    #[error("--batch: {target}: the hosts it reaches are not known (the management API's bindings could not be read), so they cannot be taken a batch at a time")]
    BatchNeedsQueues { target: String },
    /// `publisher --wait`: some commands failed.
    #[error("{failed} of {total} results are failures")]
    ResultsFailed { failed: usize, total: usize },
    /// `publisher --wait`: some results did not come in time.
    #[error("{missing} of {total} results did not come within {wait_secs}s ({failed} failures among the others)")]
    ResultsMissing {
        missing: usize,
        total: usize,
        wait_secs: u64,
        failed: usize,
    },
    /// A signing key cannot be read or written.
    #[error(transparent)]
    Key(#[from] crate::signing::KeyError),
    /// An error from the pqx library.
    #[error(transparent)]
    Pqx(#[from] pqx::Error),
    /// An error from pqx-util.
    #[error(transparent)]
    Util(#[from] pqx_util::Error),
}

/// Why some JSON is not a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidTask {
    /// Not JSON, or JSON that ends early or goes on after the command.
    #[error("{0}")]
    Syntax(String),
    /// A field is missing, unknown, of the wrong type or has a value pqx cannot use.
    #[error(transparent)]
    Field(#[from] InvalidField),
}

/// What is wrong with a task file.
#[derive(Debug, thiserror::Error)]
pub enum TaskProblem {
    #[error("cannot read: {0}")]
    Unreadable(#[source] pqx_util::ReadText),
    #[error(transparent)]
    Invalid(InvalidTask),
    /// A line of a JSON-lines file.
    #[error("line {line}: {source}")]
    OnLine {
        line: usize,
        #[source]
        source: InvalidTask,
    },
    #[error("no commands in it")]
    Empty,
}

impl Error {
    /// Whether the database refused the data itself (a value out of range, too long for an
    /// index, against a constraint): writing the same again would fail again, so it is not worth
    /// holding a delivery for, unlike an outage.
    pub fn is_refused_data(&self) -> bool {
        if let Error::Recorder { refused, .. } = self {
            return *refused;
        }
        let Error::Db { source, .. } = self else {
            return false;
        };
        let runtime = match source {
            sea_orm::DbErr::Exec(e) | sea_orm::DbErr::Query(e) => e,
            _ => return false,
        };
        let sea_orm::RuntimeErr::SqlxError(e) = runtime else {
            return false;
        };
        let sea_orm::sqlx::Error::Database(db) = e.as_ref() else {
            return false;
        };
        if let Some(failure) = db.try_downcast_ref::<crate::records::SqliteFailure>() {
            return failure.is_refused_data();
        }
        let Some(code) = db.code() else {
            return false;
        };
        if db
            .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
            .is_some()
        {
            // SQLite's TOOBIG, CONSTRAINT, MISMATCH, RANGE: primary codes, in the low byte.
            let primary = code.parse::<u32>().map(|c| c & 0xff);
            matches!(primary, Ok(18 | 19 | 20 | 25))
        } else {
            // PostgreSQL's SQLSTATE classes: data exception, integrity constraint, program limit.
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        }
    }
}

/// The result type of pqx-app.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to a database error.
pub(crate) trait DbContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, sea_orm::DbErr> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Db {
            context: context(),
            source,
        })
    }
}
