//! The error type of pqx-util: every variant names the file, key, host or resource it is about.

use std::path::PathBuf;

/// Errors raised by pqx-util.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file is not what was expected.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A `${VAR}` named in a config value is not set.
    #[error("{context}: {message}")]
    Expand { context: String, message: String },
    /// A database could not be reached or refused a statement.
    #[error("database {url}: {source}")]
    Db {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// The database settings are incomplete.
    #[error("{0}")]
    DbConfig(String),
    /// The RabbitMQ management API could not be reached or answered with an error.
    #[error("RabbitMQ management API {url}: {message}")]
    MqApi { url: String, message: String },
    /// Logging could not be set up.
    #[error("logging: {0}")]
    Log(String),
}

/// The result type of pqx-util.
pub type Result<T> = std::result::Result<T, Error>;
