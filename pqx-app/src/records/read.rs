//! Reading attempts back: for `inspector -o hist`, for the subscriber's look-ups before it runs a
//! delivery (was this attempt already recorded to its end? did this dedupe key already succeed
//! here?), and for the tests.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use sea_orm::sea_query::ExprTrait;

use super::{storable, Attempt, Status, Store, Wanted, CANCELLED_PREFIX, SKIPPED_PREFIX};
use crate::entities::{message_history, message_result};
use crate::error::DbContext;
use crate::Result;

impl Store {
    /// The result of attempt `attempt` of message `message_id` on `queue`, if it was recorded to
    /// its end.
    pub async fn ended_attempt(
        &self,
        message_id: &str,
        queue: &str,
        attempt: u32,
    ) -> Result<Option<message_result::Model>> {
        let attempt = i32::try_from(attempt).unwrap_or(i32::MAX);
        let found = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .filter(message_history::Column::MessageId.eq(storable(message_id)))
            .filter(message_history::Column::Queue.eq(storable(queue)))
            .filter(message_history::Column::Attempt.eq(attempt))
            .filter(message_result::Column::Id.is_not_null())
            .one(&*self.pool().await)
            .await
            .context(|| {
                format!(
                    "looking up attempt {attempt} of {message_id} in {}",
                    self.url
                )
            })?;
        Ok(found.and_then(|(_, result)| result))
    }

    /// Every attempt of message `message_id` recorded on `queue`: its number and, once it ended,
    /// its exit code.
    pub async fn attempts_here(
        &self,
        message_id: &str,
        queue: &str,
    ) -> Result<Vec<(u32, Option<i32>)>> {
        let rows = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .filter(message_history::Column::MessageId.eq(storable(message_id)))
            .filter(message_history::Column::Queue.eq(storable(queue)))
            .all(&*self.pool().await)
            .await
            .context(|| format!("looking up the attempts of {message_id} in {}", self.url))?;
        Ok(rows
            .into_iter()
            .map(|(history, result)| {
                let attempt = history.attempt.and_then(|a| u32::try_from(a).ok());
                (attempt.unwrap_or(1), result.map(|r| r.exit_code))
            })
            .collect())
    }

    /// The history id of an attempt on `queue` with `dedupe_key` that succeeded, if there is one.
    pub async fn succeeded_before(&self, queue: &str, dedupe_key: &str) -> Result<Option<i64>> {
        let found = message_history::Entity::find()
            .inner_join(message_result::Entity)
            .filter(message_history::Column::Queue.eq(storable(queue)))
            .filter(message_history::Column::DedupeKey.eq(storable(dedupe_key)))
            .filter(message_result::Column::ExitCode.eq(0))
            .one(&*self.pool().await)
            .await
            .context(|| format!("looking up dedupe_key {dedupe_key:?} in {}", self.url))?;
        Ok(found.map(|history| history.id))
    }

    /// The queue attempt `history_id` was recorded on (as the records keep it), if it exists.
    pub async fn queue_of_attempt(&self, history_id: i64) -> Result<Option<String>> {
        let found = message_history::Entity::find_by_id(history_id)
            .one(&*self.pool().await)
            .await
            .context(|| format!("looking up attempt {history_id} in {}", self.url))?;
        Ok(found.and_then(|history| history.queue))
    }

    /// The newest `limit` attempts, newest first, of one message when `message_id` is given.
    pub async fn attempts(&self, message_id: Option<&str>, limit: u64) -> Result<Vec<Attempt>> {
        let wanted = Wanted {
            message_id: message_id.map(str::to_owned),
            ..Wanted::default()
        };
        self.find(&wanted, limit).await
    }

    /// The newest `limit` attempts that are `wanted`, newest first.
    pub async fn find(&self, wanted: &Wanted, limit: u64) -> Result<Vec<Attempt>> {
        use message_history::Column as H;
        use message_result::Column as R;
        let mut query = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .order_by_desc(H::Id)
            .limit(limit);
        let text = |t: &Option<String>| t.as_deref().map(|t| storable(t).into_owned());
        if let Some(id) = text(&wanted.message_id) {
            query = query.filter(H::MessageId.eq(id));
        }
        if let Some(queue) = text(&wanted.queue) {
            query = query.filter(H::Queue.eq(queue));
        }
        if let Some(host) = text(&wanted.host) {
            query = query.filter(H::Host.eq(host));
        }
        if let Some(since) = wanted.since {
            query = query.filter(H::Time.gte(since));
        }
        let skipped = || R::Result.like(format!("{SKIPPED_PREFIX}%"));
        let cancelled = || R::Result.like(format!("{CANCELLED_PREFIX}%"));
        query = match wanted.status {
            None => query,
            Some(Status::Running) => query.filter(R::Id.is_null()),
            Some(Status::Cancelled) => query.filter(R::ExitCode.eq(130)).filter(cancelled()),
            Some(Status::Failed) => query
                .filter(R::ExitCode.ne(0))
                .filter(R::Result.is_null().or(cancelled().not())),
            Some(Status::Skipped) => query.filter(R::ExitCode.eq(0)).filter(skipped()),
            Some(Status::Succeeded) => query
                .filter(R::ExitCode.eq(0))
                .filter(R::Result.is_null().or(skipped().not())),
        };
        let rows = query
            .all(&*self.pool().await)
            .await
            .context(|| format!("reading attempts from {}", self.url))?;
        Ok(rows
            .into_iter()
            .map(|(history, result)| Attempt { history, result })
            .collect())
    }
}
