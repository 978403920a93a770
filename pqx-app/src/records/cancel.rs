//! Cancelled messages: `publisher cancel` writes one row, subscribers read it before running a
//! delivery of the message and while they run it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use super::{storable, Store};
use crate::entities::message_cancel;
use crate::error::DbContext;
use crate::Result;

impl Store {
    /// Marks message `message_id` cancelled (once: cancelling it again keeps the first time);
    /// returns when it was cancelled and whether that was now.
    pub async fn cancel(&self, message_id: &str) -> Result<(DateTime<Utc>, bool)> {
        if let Some(at) = self.cancelled(message_id).await? {
            return Ok((at, false));
        }
        let now = Utc::now();
        let row = message_cancel::ActiveModel {
            message_id: Set(storable(message_id).into_owned()),
            time: Set(now),
            ..Default::default()
        };
        let keep_first = OnConflict::column(message_cancel::Column::MessageId)
            .do_nothing()
            .to_owned();
        let inserted = message_cancel::Entity::insert(row)
            .on_conflict(keep_first)
            .exec(&*self.pool().await)
            .await;
        match inserted {
            Ok(_) => Ok((now, true)),
            Err(sea_orm::DbErr::RecordNotInserted) => {
                let at = self.cancelled(message_id).await?.unwrap_or(now);
                Ok((at, false))
            }
            Err(e) => Err(e).context(|| format!("cancelling {message_id} in {}", self.url)),
        }
    }

    /// When message `message_id` was cancelled, if it was.
    pub async fn cancelled(&self, message_id: &str) -> Result<Option<DateTime<Utc>>> {
        let found = message_cancel::Entity::find()
            .filter(message_cancel::Column::MessageId.eq(storable(message_id)))
            .one(&*self.pool().await)
            .await
            .context(|| {
                format!(
                    "looking up whether {message_id} was cancelled in {}",
                    self.url
                )
            })?;
        Ok(found.map(|row| row.time))
    }
}
