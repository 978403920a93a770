//! The records: one `message_history` row when an attempt starts and one `message_result` row when it
//! ends, in SQLite or PostgreSQL. This module connects and manages the tables (through the
//! migrations); `write.rs` records attempts, `read.rs` reads them back. Text is stored as it is but
//! for NUL, which PostgreSQL's text cannot hold: it is stored as `\0`, in both databases alike, and
//! looked up the same way.

mod cancel;
mod either;
mod held;
mod held_pg;
mod overview;
mod read;
pub mod relay;
mod write;

pub use either::Records;

pub(crate) use held::SqliteFailure;
pub(crate) use write::UNPARSED_KEPT;
pub use write::{Gate, Refused};

use std::borrow::Cow;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};
use sea_orm_migration::{MigratorTrait, SchemaManager};

use crate::entities::{message_history, message_result};
use crate::error::DbContext;
use crate::migration::Migrator;
use crate::{Command, Error, Result};

/// The database of records.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The URL, password redacted, for messages.
    url: String,
    /// A subscriber's own connection, for the statements it makes for every command.
    held: Option<Held>,
}

/// A connection held for the statements a subscriber makes for every command.
#[derive(Debug, Clone)]
enum Held {
    Sqlite(std::sync::Arc<held::HeldSqlite>),
    Postgres(std::sync::Arc<held_pg::HeldPg>),
}

impl Held {
    /// Runs `statement` on the held connection; returns how many rows it changed.
    async fn execute(&self, statement: &sea_orm::Statement) -> std::result::Result<u64, DbErr> {
        match self {
            Held::Sqlite(held) => held.execute(statement).await,
            Held::Postgres(held) => held.execute(statement).await,
        }
    }
}

/// The store's pool, for sea-orm; while it is used, no statement keeps its connection.
struct Pool<'a> {
    db: &'a DatabaseConnection,
    _lent: Option<held_pg::Lent>,
}

impl std::ops::Deref for Pool<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.db
    }
}

/// What is known of an attempt when it starts.
#[derive(Debug, Clone)]
pub struct AttemptStart<'a> {
    pub command: &'a Command,
    pub message_id: Option<&'a str>,
    pub queue: &'a str,
    pub host: &'a str,
    pub attempt: u32,
}

/// One attempt as recorded: its history row and, once it ended, its result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub history: message_history::Model,
    pub result: Option<message_result::Model>,
}

/// How an attempt stands, as `inspector hist --status` picks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, no result yet (or cut off: its subscriber was killed).
    Running,
    /// Ended with exit code 0.
    Succeeded,
    /// Ended with another exit code.
    Failed,
    /// Not run: its dedupe key already succeeded on the queue.
    Skipped,
    /// Not run, or killed, because an operator cancelled it.
    Cancelled,
}

/// How a skipped attempt's result begins (`Outcome::skipped`).
pub(crate) const SKIPPED_PREFIX: &str = "skipped: ";
/// How a cancelled attempt's result begins (`Outcome::cancelled`).
pub(crate) const CANCELLED_PREFIX: &str = "cancelled: ";

impl Attempt {
    /// How it stands.
    pub fn status(&self) -> Status {
        match &self.result {
            None => Status::Running,
            Some(r)
                if r.exit_code == crate::outcome::CANCELLED_EXIT_CODE
                    && r.result
                        .as_deref()
                        .is_some_and(|t| t.starts_with(CANCELLED_PREFIX)) =>
            {
                Status::Cancelled
            }
            Some(r) if r.exit_code != 0 => Status::Failed,
            Some(r)
                if r.result
                    .as_deref()
                    .is_some_and(|t| t.starts_with(SKIPPED_PREFIX)) =>
            {
                Status::Skipped
            }
            Some(_) => Status::Succeeded,
        }
    }
}

/// Which attempts to read: each field given narrows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub message_id: Option<String>,
    pub queue: Option<String>,
    pub host: Option<String>,
    pub status: Option<Status>,
    /// Started at or after.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// `text` as the records keep it: NUL as `\0`.
pub(crate) fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\\0"))
    } else {
        Cow::Borrowed(text)
    }
}

/// `value` as the records keep it: NUL in its strings and keys as `\0`, since PostgreSQL's JSON
/// types cannot hold it either.
pub(crate) fn storable_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn text(s: String) -> String {
        match storable(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(escaped) => escaped,
        }
    }
    match value {
        Value::String(s) => Value::String(text(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(storable_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (text(k), storable_json(v)))
                .collect(),
        ),
        other => other,
    }
}

impl Store {
    /// Connects to the database at `url`; a SQLite file that does not exist yet is made readable
    /// by its owner only, since it will hold what commands print.
    pub async fn connect(url: &str) -> Result<Self> {
        refuse_the_broker(url)?;
        create_private_sqlite_file(url);
        Ok(Self::on(pqx_util::connect_db(url).await?, url))
    }

    /// Connects as one host of a fleet (a subscriber): at most one connection to PostgreSQL, none
    /// while idle ([`pqx_util::connect_db_for_host`]).
    pub async fn connect_for_host(url: &str) -> Result<Self> {
        refuse_the_broker(url)?;
        create_private_sqlite_file(url);
        let mut store = Self::on(pqx_util::connect_db_for_host(url).await?, url);
        store.held = if url.starts_with("sqlite:") {
            let held =
                held::HeldSqlite::for_file(url).context(|| format!("opening {}", store.url))?;
            held.map(|held| Held::Sqlite(std::sync::Arc::new(held)))
        } else {
            let pool = store.db.get_postgres_connection_pool().clone();
            Some(Held::Postgres(std::sync::Arc::new(held_pg::HeldPg::of(
                pool,
            ))))
        };
        Ok(store)
    }

    /// The pool, for what is not made on the held connection, which goes back to it first.
    async fn pool(&self) -> Pool<'_> {
        let lent = match &self.held {
            Some(Held::Postgres(held)) => Some(held.lend().await),
            _ => None,
        };
        Pool {
            db: &self.db,
            _lent: lent,
        }
    }

    fn on(db: DatabaseConnection, url: &str) -> Self {
        Self {
            db,
            url: pqx_util::redact_url(url),
            held: None,
        }
    }

    /// The database URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies the migrations that are not applied yet.
    pub async fn create_tables(&self) -> Result<()> {
        Migrator::up(&*self.pool().await, None)
            .await
            .context(|| format!("creating tables in {}", self.url))
    }

    /// Rolls back every migration, dropping the tables and their rows.
    pub async fn drop_tables(&self) -> Result<()> {
        Migrator::down(&*self.pool().await, None)
            .await
            .context(|| format!("dropping tables in {}", self.url))
    }

    /// Whether both tables exist.
    pub async fn tables_exist(&self) -> Result<bool> {
        let pool = self.pool().await;
        let manager = SchemaManager::new(&*pool);
        for table in ["message_history", "message_result", "message_cancel"] {
            let exists = manager
                .has_table(table)
                .await
                .context(|| format!("looking for table {table} in {}", self.url))?;
            if !exists {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Fails unless an attempt can be recorded: a row is written and rolled back, so that a
    /// read-only database, missing privileges or a directory SQLite cannot write its journal in
    /// are found before any command runs.
    pub async fn ensure_writable(&self) -> Result<()> {
        let read_only = |source| Error::ReadOnly {
            url: self.url.clone(),
            source,
        };
        let txn = self.pool().await.begin().await.map_err(read_only)?;
        let probe = sea_orm::Statement::from_string(
            txn.get_database_backend(),
            "INSERT INTO message_history (mailing_to, cmd, time) VALUES ('[]', '{}', CURRENT_TIMESTAMP)",
        );
        txn.execute_raw(probe).await.map_err(read_only)?;
        txn.rollback().await.map_err(read_only)
    }

    /// Fails with the command that fixes it when the tables are missing.
    pub async fn ensure_tables(&self) -> Result<()> {
        if self.tables_exist().await? {
            Ok(())
        } else {
            Err(Error::NoTables {
                url: self.url.clone(),
            })
        }
    }
}

/// The database URL of conn.yml's `db.protocol: broker`: no database, the recorders'.
pub const VIA_BROKER: &str = "broker:";

/// Fails when `url` is [`VIA_BROKER`]: what calls this needs the database itself.
fn refuse_the_broker(url: &str) -> Result<()> {
    match url == VIA_BROKER {
        true => Err(Error::RecordsViaBroker),
        false => Ok(()),
    }
}

/// Makes the file of a `sqlite://` URL, empty and private (0600), when it does not exist: SQLite
/// then keeps those permissions for it and gives them to its journal files.
fn create_private_sqlite_file(url: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return;
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return;
    }
    // Failing here is not an error: connecting says why the database cannot be opened.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_stored_escaped() {
        assert_eq!(storable("a\0b\0"), "a\\0b\\0");
        assert!(matches!(storable("plain"), Cow::Borrowed(_)));
        let json = serde_json::json!({"args": ["a\0", 1], "k\0": {"v": "\0"}});
        assert_eq!(
            storable_json(json),
            serde_json::json!({"args": ["a\\0", 1], "k\\0": {"v": "\\0"}})
        );
    }
}
