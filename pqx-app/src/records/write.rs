//! Recording attempts: the history row when one starts (in the statement that asks whether its
//! message was cancelled, which a subscriber must ask before running it anyway), the result row
//! when it ends. A result written
//! twice, after the database's answer to the first write was lost, is recorded once.

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, JoinType, OnConflict, Query, SelectStatement};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbErr, EntityTrait, ExprTrait, Iterable,
    QueryTrait, Set,
};

use super::{storable, storable_json, AttemptStart, Held, Store};
use crate::entities::{message_cancel, message_history, message_result};
use crate::error::DbContext;
use crate::{Command, Outcome, Result};

/// Whether an attempt may run, as its start is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// It may: its start is recorded with this history id.
    Recorded(i64),
    /// It may, and its start is not recorded yet (the recorders behind the broker record it
    /// while it runs).
    Open,
    /// Its message was cancelled at this time: nothing was recorded.
    Cancelled(chrono::DateTime<Utc>),
}

/// A message that was not run because it was refused.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// Its command, when its body is one.
    pub command: Option<&'a Command>,
    pub body: &'a [u8],
    pub message_id: Option<&'a str>,
    pub queue: &'a str,
    pub host: &'a str,
    pub attempt: u32,
}

/// The attempts recorded on `start`'s queue that mean running `start` would run its message
/// again: one that succeeded, one later, or this one, unless it is a redelivery and this attempt was
/// cut off before its end.
fn ran_before(start: &AttemptStart<'_>, redelivered: bool) -> SelectStatement {
    let (h, r) = (Alias::new("h"), Alias::new("r"));
    let history = |c: message_history::Column| Expr::col((h.clone(), c));
    let attempt = i32::try_from(start.attempt).unwrap_or(i32::MAX);
    let this_attempt = history(message_history::Column::Attempt).eq(attempt);
    let this_one = match redelivered {
        true => this_attempt.and(Expr::col((r.clone(), message_result::Column::Id)).is_not_null()),
        false => this_attempt,
    };
    let message_id = start.message_id.map(|id| storable(id).into_owned());
    Query::select()
        .expr(Expr::val(1))
        .from_as(message_history::Entity, h.clone())
        .join_as(
            JoinType::LeftJoin,
            message_result::Entity,
            r.clone(),
            Expr::col((r.clone(), message_result::Column::HistoryId))
                .equals((h.clone(), message_history::Column::Id)),
        )
        .and_where(history(message_history::Column::MessageId).eq(message_id))
        .and_where(history(message_history::Column::Queue).eq(storable(start.queue).into_owned()))
        .and_where(
            Expr::col((r, message_result::Column::ExitCode))
                .eq(0)
                .or(history(message_history::Column::Attempt).gt(attempt))
                .or(this_one),
        )
        .to_owned()
}

/// The history row of an attempt as it starts.
fn start_row(start: &AttemptStart<'_>) -> message_history::ActiveModel {
    let (message_id, queue, host) = (start.message_id, start.queue, start.host);
    history_row(start.command, message_id, queue, host, start.attempt)
}

/// The history row of attempt `attempt` of `command`.
fn history_row(
    command: &Command,
    message_id: Option<&str>,
    queue: &str,
    host: &str,
    attempt: u32,
) -> message_history::ActiveModel {
    let config = &command.config;
    let mut row = history_row_parts(message_id, queue, host, attempt);
    row.mailing_to = Set(storable_json(command.mailing_to_json()));
    row.retry = Set(config.retry.map(i16::from));
    row.poke = Set(config.poke.map(i32::from));
    row.waiting_timeout = Set(config.waiting_timeout.map(i64::from));
    row.consuming_timeout = Set(config.consuming_timeout.map(i64::from));
    row.cmd = Set(storable_json(command.redacted_cmd_json()));
    row.dedupe_key = Set(config
        .dedupe_key
        .as_deref()
        .map(|k| storable(k).into_owned()));
    row
}

/// The parts of a history row that do not come from the command.
fn history_row_parts(
    message_id: Option<&str>,
    queue: &str,
    host: &str,
    attempt: u32,
) -> message_history::ActiveModel {
    message_history::ActiveModel {
        time: Set(Utc::now()),
        message_id: Set(message_id.map(|id| storable(id).into_owned())),
        queue: Set(Some(storable(queue).into_owned())),
        host: Set(Some(storable(host).into_owned())),
        attempt: Set(i32::try_from(attempt).ok()),
        ..Default::default()
    }
}

/// How much of a body that is not a command is kept in the record of its refusal.
pub(crate) const UNPARSED_KEPT: usize = 200;

impl Store {
    /// Records the start of an attempt; returns its history id.
    pub async fn record_start(&self, start: &AttemptStart<'_>) -> Result<i64> {
        let row = start_row(start);
        self.insert_history(row).await
    }

    /// Records a message that was not run because it was refused, with how it ended: its command
    /// when it is one, else the start of its body.
    pub async fn record_refused(&self, refused: &Refused<'_>, outcome: &Outcome) -> Result<()> {
        let (message_id, queue, host, attempt) = (
            refused.message_id,
            refused.queue,
            refused.host,
            refused.attempt,
        );
        let row = match refused.command {
            Some(command) => history_row(command, message_id, queue, host, attempt),
            None => {
                let start: String = String::from_utf8_lossy(refused.body)
                    .chars()
                    .take(UNPARSED_KEPT)
                    .collect();
                let mut row = history_row_parts(message_id, queue, host, attempt);
                row.mailing_to = Set(serde_json::json!([]));
                row.cmd = Set(storable_json(serde_json::json!({ "Unparsed": start })));
                row
            }
        };
        let history_id = self.insert_history(row).await?;
        self.record_end(history_id, outcome).await
    }

    /// Records the start of an attempt unless it would run a signed message again: when this
    /// message id already succeeded on the queue, or an attempt of it as late or later was
    /// recorded there (but for a redelivery of this attempt that was cut off before its end).
    /// Returns its history id, or `None` when nothing was recorded. The check and the record are
    /// one statement: a signed command costs no more round trips to the database than another.
    pub async fn record_start_unless_ran(
        &self,
        start: &AttemptStart<'_>,
        redelivered: bool,
    ) -> Result<Option<i64>> {
        self.record_start_unless(start, ran_before(start, redelivered))
            .await
    }

    /// Records the start of an attempt unless its message was cancelled (`publisher cancel`), in
    /// one statement: the look-up a subscriber makes before running costs no round trip of its
    /// own. Returns its history id, or when the message was cancelled.
    pub async fn record_start_unless_cancelled(&self, start: &AttemptStart<'_>) -> Result<Gate> {
        let Some(message_id) = start.message_id else {
            return Ok(Gate::Recorded(self.record_start(start).await?));
        };
        let cancels = Query::select()
            .expr(Expr::val(1))
            .from(message_cancel::Entity)
            .and_where(
                Expr::col(message_cancel::Column::MessageId).eq(storable(message_id).into_owned()),
            )
            .to_owned();
        if let Some(id) = self.record_start_unless(start, cancels).await? {
            return Ok(Gate::Recorded(id));
        }
        // Cancel rows are never removed: the one that stopped the insert is there.
        let at = self.cancelled(message_id).await?.unwrap_or_else(Utc::now);
        Ok(Gate::Cancelled(at))
    }

    /// Records the start of an attempt unless `select` finds a row; returns its history id, or
    /// `None` when it found one and nothing was recorded.
    async fn record_start_unless(
        &self,
        start: &AttemptStart<'_>,
        select: SelectStatement,
    ) -> Result<Option<i64>> {
        let row = start_row(start);
        let (columns, values): (Vec<_>, Vec<_>) = message_history::Column::iter()
            .filter_map(|column| match row.get(column) {
                ActiveValue::Set(value) => Some((column, Expr::val(value))),
                _ => None,
            })
            .unzip();
        let mut unless_found = Query::select();
        unless_found
            .exprs(values)
            .and_where(Expr::exists(select).not());
        let mut insert = Query::insert();
        insert
            .into_table(message_history::Entity)
            .columns(columns)
            .select_from(unless_found)
            .map_err(|e| crate::Error::Db {
                context: "recording the start of an attempt".into(),
                source: DbErr::Custom(e.to_string()),
            })?;
        let backend = self.db.get_database_backend();
        let context = || format!("recording the start of an attempt in {}", self.url);
        if let Some(Held::Sqlite(held)) = &self.held {
            return held.insert(&backend.build(&insert)).await.context(context);
        }
        let statement = backend.build(insert.returning_col(message_history::Column::Id));
        if let Some(Held::Postgres(held)) = &self.held {
            return held.insert(&statement).await.context(context);
        }
        let inserted = self.pool().await.query_one_raw(statement).await;
        let inserted = inserted.context(context)?;
        match inserted {
            Some(row) => Ok(Some(row.try_get_by_index::<i64>(0).context(|| {
                format!("reading the id of a recorded attempt in {}", self.url)
            })?)),
            None => Ok(None),
        }
    }

    async fn insert_history(&self, row: message_history::ActiveModel) -> Result<i64> {
        let row = row
            .insert(&*self.pool().await)
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
        let insert = message_result::Entity::insert(row).on_conflict(on_conflict);
        let inserted = match &self.held {
            Some(held) => {
                let statement = insert.build(self.db.get_database_backend());
                held.execute(&statement).await.map(drop)
            }
            None => insert.exec(&*self.pool().await).await.map(drop),
        };
        match inserted {
            Ok(()) | Err(DbErr::RecordNotInserted) => Ok(()),
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
