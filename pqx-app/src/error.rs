//! The error type of pqx-app. Messages name the file, field, queue or table they are about and, where
//! there is one, the command that fixes it.

use std::path::PathBuf;

/// Errors raised by pqx-app.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task file is not a valid command.
    #[error("{path}: {message}")]
    Task { path: PathBuf, message: String },
    /// A config file is not what pqx needs.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// The database refused a statement.
    #[error("{context}: {source}")]
    Db {
        context: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// The tables are not there.
    #[error("the tables message_history and message_result do not exist in {url}: run `initiator -o crt_tbl` (or `-o init`)")]
    NoTables { url: String },
    /// An error from the pqx library.
    #[error(transparent)]
    Pqx(#[from] pqx::Error),
    /// An error from pqx-util.
    #[error(transparent)]
    Util(#[from] pqx_util::Error),
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
