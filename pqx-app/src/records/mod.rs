//! The records: one `message_history` row when an attempt starts and one `message_result` row when it
//! ends, in SQLite or PostgreSQL. This module connects and manages the tables (through the
//! migrations); `write.rs` records attempts, `read.rs` reads them back.

mod read;
mod write;

use sea_orm::DatabaseConnection;
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

impl Store {
    /// Connects to the database at `url`.
    pub async fn connect(url: &str) -> Result<Self> {
        let db = pqx_util::connect_db(url).await?;
        Ok(Self {
            db,
            url: pqx_util::redact_url(url),
        })
    }

    /// The database URL, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies the migrations that are not applied yet.
    pub async fn create_tables(&self) -> Result<()> {
        Migrator::up(&self.db, None)
            .await
            .context(|| format!("creating tables in {}", self.url))
    }

    /// Rolls back every migration, dropping the tables and their rows.
    pub async fn drop_tables(&self) -> Result<()> {
        Migrator::down(&self.db, None)
            .await
            .context(|| format!("dropping tables in {}", self.url))
    }

    /// Whether both tables exist.
    pub async fn tables_exist(&self) -> Result<bool> {
        let manager = SchemaManager::new(&self.db);
        for table in ["message_history", "message_result"] {
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
