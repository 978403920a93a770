//! What the records say of each host queue, for `inspector hosts`: what runs there now, how the
//! last attempt ended, how many failed lately. Each is one query for every queue at once, so a
//! fleet of hundreds of queues costs three queries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait};

use super::{Attempt, Store};
use crate::entities::{message_history, message_result};
use crate::error::DbContext;
use crate::Result;

/// At most this many running attempts are read: more is no longer an overview.
const RUNNING_READ: u64 = 10_000;

/// The records of one host queue.
#[derive(Debug, Clone, Default)]
pub struct QueueRecords {
    /// Attempts started with no result yet and no later attempt of their message here, newest
    /// first: running now, or cut off by a subscriber that died and not handed out again yet.
    pub running: Vec<Attempt>,
    /// The attempt that ended last.
    pub last: Option<Attempt>,
    /// Attempts that failed since the time asked.
    pub failures: u64,
}

impl Store {
    /// The records of every host queue that has any, by queue; failures counted since `since`.
    pub async fn per_queue(&self, since: DateTime<Utc>) -> Result<BTreeMap<String, QueueRecords>> {
        let mut queues: BTreeMap<String, QueueRecords> = BTreeMap::new();
        for attempt in self.running().await? {
            if let Some(queue) = attempt.history.queue.clone() {
                queues.entry(queue).or_default().running.push(attempt);
            }
        }
        for attempt in self.last_ended().await? {
            if let Some(queue) = attempt.history.queue.clone() {
                queues.entry(queue).or_default().last = Some(attempt);
            }
        }
        for (queue, failures) in self.failures_since(since).await? {
            queues.entry(queue).or_default().failures = failures;
        }
        Ok(queues)
    }

    async fn running(&self) -> Result<Vec<Attempt>> {
        use message_history::Column as H;
        let later = Alias::new("later");
        let outer = |c: H| Expr::col((message_history::Entity, c));
        let mut later_here = Query::select();
        later_here
            .expr(Expr::val(1))
            .from_as(message_history::Entity, later.clone())
            .and_where(
                Expr::col((later.clone(), H::MessageId))
                    .equals((message_history::Entity, H::MessageId)),
            )
            .and_where(
                Expr::col((later.clone(), H::Queue)).equals((message_history::Entity, H::Queue)),
            )
            .and_where(Expr::col((later, H::Id)).gt(outer(H::Id)));
        let rows = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .filter(message_result::Column::Id.is_null())
            .filter(H::Queue.is_not_null())
            .filter(Expr::exists(later_here).not())
            .order_by_desc(H::Id)
            .limit(RUNNING_READ)
            .all(&*self.pool().await)
            .await
            .context(|| format!("reading the running attempts from {}", self.url))?;
        Ok(rows
            .into_iter()
            .map(|(history, result)| Attempt { history, result })
            .collect())
    }

    async fn last_ended(&self) -> Result<Vec<Attempt>> {
        let last: Vec<Option<i64>> = message_result::Entity::find()
            .select_only()
            .column_as(message_result::Column::Id.max(), "last")
            .join(
                sea_orm::JoinType::InnerJoin,
                message_result::Relation::MessageHistory.def(),
            )
            .group_by(message_history::Column::Queue)
            .into_tuple()
            .all(&*self.pool().await)
            .await
            .context(|| format!("reading the last results from {}", self.url))?;
        let ids: Vec<i64> = last.into_iter().flatten().collect();
        let rows = message_result::Entity::find()
            .find_also_related(message_history::Entity)
            .filter(message_result::Column::Id.is_in(ids))
            .all(&*self.pool().await)
            .await
            .context(|| format!("reading the last results from {}", self.url))?;
        Ok(rows
            .into_iter()
            .filter_map(|(result, history)| {
                Some(Attempt {
                    history: history?,
                    result: Some(result),
                })
            })
            .collect())
    }

    async fn failures_since(&self, since: DateTime<Utc>) -> Result<Vec<(String, u64)>> {
        let counts: Vec<(Option<String>, i64)> = message_result::Entity::find()
            .select_only()
            .column(message_history::Column::Queue)
            .column_as(message_result::Column::Id.count(), "failures")
            .join(
                sea_orm::JoinType::InnerJoin,
                message_result::Relation::MessageHistory.def(),
            )
            .filter(message_result::Column::ExitCode.ne(0))
            .filter(message_result::Column::Time.gte(since))
            .group_by(message_history::Column::Queue)
            .into_tuple()
            .all(&*self.pool().await)
            .await
            .context(|| format!("counting the failures in {}", self.url))?;
        Ok(counts
            .into_iter()
            .filter_map(|(queue, n)| Some((queue?, u64::try_from(n).unwrap_or_default())))
            .collect())
    }
}
