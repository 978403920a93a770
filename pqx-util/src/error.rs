//! The error type of pqx-util: every variant names the file, key, host or resource it is about.

use std::path::PathBuf;

/// Errors raised by pqx-util.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: crate::ReadText,
    },
    /// A config file is not what was expected.
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    /// A variable named in a value is not set: named only in its `${VAR}` form, since after a
    /// bare `$` may come part of a password.
    #[error("{context}: {}", match var {
        Some(var) => format!("environment variable {var} is not set"),
        None => "a $ is followed by a name that is not a set environment variable (write $$ for a literal $)".to_owned(),
    })]
    UnsetVariable {
        context: String,
        var: Option<String>,
    },
    /// A `${` without its `}`.
    #[error("{context}: a ${{ has no closing }} (write $$ for a literal $)")]
    UnclosedVariable { context: String },
    /// A database could not be reached or refused a statement.
    #[error("database {url}: {source}")]
    Db {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// A TLS handshake with the database server failed on its certificate.
    #[error("database {url}: TLS: {why}")]
    DbTls { url: String, why: String },
    /// Nothing answers at the database server's address.
    #[error("database {url}: cannot reach {host}:{port}: {why}")]
    DbUnreachable {
        url: String,
        host: String,
        port: u16,
        why: String,
    },
    /// The system's random source failed.
    #[error("cannot get random bytes from the system: {0}")]
    Random(String),
    /// The RabbitMQ management API could not be reached or answered with an error.
    #[error("RabbitMQ management API {url}: {message}")]
    MqApi { url: String, message: String },
}

/// The result type of pqx-util.
pub type Result<T> = std::result::Result<T, Error>;
