//! Recording attempts: the history row when one starts (while the command starts, so that the
//! database is not on the way from delivery to run), the result row when it ends. A result written
//! twice, after the database's answer to the first write was lost, is recorded once.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, DbErr, EntityTrait, Set};

use super::{storable, storable_json, AttemptStart, Store};
use crate::entities::{message_history, message_result};
use crate::error::DbContext;
use crate::{Outcome, Result};

impl Store {
    /// Records the start of an attempt; returns its history id.
    pub async fn record_start(&self, start: &AttemptStart<'_>) -> Result<i64> {
        let config = &start.command.config;
        let row = message_history::ActiveModel {
            mailing_to: Set(storable_json(start.command.mailing_to_json())),
            retry: Set(config.retry.map(i16::from)),
            poke: Set(config.poke.map(i32::from)),
            waiting_timeout: Set(config.waiting_timeout.map(i64::from)),
            consuming_timeout: Set(config.consuming_timeout.map(i64::from)),
            cmd: Set(storable_json(start.command.redacted_cmd_json())),
            time: Set(Utc::now()),
            message_id: Set(start.message_id.map(|id| storable(id).into_owned())),
            queue: Set(Some(storable(start.queue).into_owned())),
            host: Set(Some(storable(start.host).into_owned())),
            attempt: Set(i32::try_from(start.attempt).ok()),
            dedupe_key: Set(config
                .dedupe_key
                .as_deref()
                .map(|k| storable(k).into_owned())),
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
    pub async fn record_end(&self, history_id: i64, outcome: &Outcome) -> Result<()> {
        let row = message_result::ActiveModel {
            history_id: Set(history_id),
            exit_code: Set(outcome.exit_code),
            result: Set(Some(storable(&outcome.summary).into_owned())),
            time: Set(outcome.ended_at),
            stdout: Set(Some(storable(&outcome.stdout).into_owned())),
            stderr: Set(Some(storable(&outcome.stderr).into_owned())),
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

    /// Records an attempt that was not run, with how it ended: both rows at once.
    pub async fn record_not_run(&self, start: &AttemptStart<'_>, outcome: &Outcome) -> Result<()> {
        let history_id = self.record_start(start).await?;
        self.record_end(history_id, outcome).await
    }
}
