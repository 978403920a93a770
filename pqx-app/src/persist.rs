//! The records: creating and dropping the tables through migrations, writing one history row when an
//! attempt starts and one result row when it ends, and reading them back for `inspector`.

use chrono::{DateTime, Utc};
use pqx::ec::RunReport;
use pqx_util::DbConfig;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use sea_orm_migration::{MigratorTrait, SchemaManager};

use crate::entities::{message_history, message_result};
use crate::error::DbContext;
use crate::migration::Migrator;
use crate::{Command, Error, Result};

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
pub type Attempt = (message_history::Model, Option<message_result::Model>);

/// The database of records.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    url: String,
}

impl Store {
    /// Connects to the configured database.
    pub async fn connect(config: &DbConfig) -> Result<Self> {
        let db = pqx_util::connect_db(config).await?;
        let url = pqx_util::redact_url(&config.url()?);
        Ok(Self { db, url })
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

    /// Records the start of an attempt; returns its history id.
    pub async fn record_start(&self, start: &AttemptStart<'_>) -> Result<i64> {
        let config = &start.command.config;
        let row = message_history::ActiveModel {
            mailing_to: Set(start.command.mailing_to_json()),
            retry: Set(config.retry.map(i16::from)),
            poke: Set(config.poke.map(i32::from)),
            waiting_timeout: Set(config.waiting_timeout.map(i64::from)),
            consuming_timeout: Set(config.consuming_timeout.map(i64::from)),
            cmd: Set(start.command.redacted_cmd_json()),
            time: Set(Utc::now()),
            message_id: Set(start.message_id.map(str::to_owned)),
            queue: Set(Some(start.queue.to_owned())),
            host: Set(Some(start.host.to_owned())),
            attempt: Set(i32::try_from(start.attempt).ok()),
            dedupe_key: Set(config.dedupe_key.clone()),
            ..Default::default()
        };
        let row = row
            .insert(&self.db)
            .await
            .context(|| format!("recording the start of an attempt in {}", self.url))?;
        Ok(row.id)
    }

    /// Records how attempt `history_id` ended. Recording it again is harmless: an attempt has one
    /// result, and a second write (after a lost answer from the database) changes nothing.
    pub async fn record_end(&self, history_id: i64, report: &RunReport) -> Result<()> {
        self.insert_result(history_id, report.exit_code(), report.summary(), report)
            .await
    }

    async fn insert_result(
        &self,
        history_id: i64,
        exit_code: i32,
        summary: String,
        report: &RunReport,
    ) -> Result<()> {
        let row = message_result::ActiveModel {
            history_id: Set(history_id),
            exit_code: Set(exit_code),
            result: Set(summary),
            time: Set(DateTime::<Utc>::from(report.ended_at)),
            stdout: Set(Some(report.stdout.text())),
            stderr: Set(Some(report.stderr.text())),
            ..Default::default()
        };
        let on_conflict = OnConflict::column(message_result::Column::HistoryId)
            .do_nothing()
            .to_owned();
        let inserted = message_result::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec(&self.db)
            .await;
        match inserted {
            Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
            Err(e) => Err(e).context(|| {
                format!(
                    "recording the result of attempt {history_id} in {}",
                    self.url
                )
            }),
        }
    }

    /// Records an attempt that was not run because its `dedupe_key` already succeeded on the queue
    /// in attempt `earlier`.
    pub async fn record_skipped(&self, start: &AttemptStart<'_>, earlier: i64) -> Result<()> {
        let history_id = self.record_start(start).await?;
        let key = start
            .command
            .config
            .dedupe_key
            .as_deref()
            .unwrap_or_default();
        let summary = format!(
            "skipped: dedupe_key {key:?} already succeeded on queue {} (attempt id {earlier})",
            start.queue
        );
        self.insert_result(history_id, 0, summary, &RunReport::not_started(""))
            .await
    }

    /// The result of attempt `attempt` of message `message_id` on `queue`, if it was recorded to
    /// its end: a redelivered message whose attempt already ended is settled from the record.
    pub async fn ended_attempt(
        &self,
        message_id: &str,
        queue: &str,
        attempt: u32,
    ) -> Result<Option<message_result::Model>> {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        let found = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .filter(message_history::Column::MessageId.eq(message_id))
            .filter(message_history::Column::Queue.eq(queue))
            .filter(message_history::Column::Attempt.eq(attempt))
            .filter(message_result::Column::Id.is_not_null())
            .one(&self.db)
            .await
            .context(|| {
                format!(
                    "looking up attempt {attempt} of {message_id} in {}",
                    self.url
                )
            })?;
        Ok(found.and_then(|(_, result)| result))
    }

    /// The id of an attempt on `queue` with `dedupe_key` that succeeded, if there is one.
    pub async fn succeeded_before(&self, queue: &str, dedupe_key: &str) -> Result<Option<i64>> {
        let found = message_history::Entity::find()
            .inner_join(message_result::Entity)
            .filter(message_history::Column::Queue.eq(queue))
            .filter(message_history::Column::DedupeKey.eq(dedupe_key))
            .filter(message_result::Column::ExitCode.eq(0))
            .one(&self.db)
            .await
            .context(|| format!("looking up dedupe_key {dedupe_key:?} in {}", self.url))?;
        Ok(found.map(|history| history.id))
    }

    /// The newest `limit` attempts, newest first, of one message when `message_id` is given.
    pub async fn attempts(&self, message_id: Option<&str>, limit: u64) -> Result<Vec<Attempt>> {
        let mut query = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .order_by_desc(message_history::Column::Id)
            .limit(limit);
        if let Some(id) = message_id {
            query = query.filter(message_history::Column::MessageId.eq(id));
        }
        query
            .all(&self.db)
            .await
            .context(|| format!("reading attempts from {}", self.url))
    }
}
