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
    /// A `${VAR}` named in a value is not set.
    #[error("{context}: environment variable {var} is not set")]
    UnsetVariable { context: String, var: String },
    /// A database could not be reached or refused a statement.
    #[error("database {url}: {source}")]
    Db {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// Nothing answers at the database server's address.
    #[error("database {url}: cannot reach {host}:{port}: {why}")]
    DbUnreachable {
        url: String,
        host: String,
        port: u16,
        why: String,
    },
    /// The RabbitMQ management API could not be reached or answered with an error.
    #[error("RabbitMQ management API {url}: {message}")]
    MqApi { url: String, message: String },
}

/// The result type of pqx-util.
pub type Result<T> = std::result::Result<T, Error>;
