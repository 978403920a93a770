//! One row per attempt, written when the run starts: what was asked, where and which attempt.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The command's `mailing_to`.
    pub mailing_to: Json,
    pub retry: Option<i16>,
    pub poke: Option<i32>,
    pub waiting_timeout: Option<i64>,
    pub consuming_timeout: Option<i64>,
    /// The command's `cmd`, secrets redacted.
    pub cmd: Json,
    /// When the attempt started.
    pub time: DateTimeUtc,
    /// The message id all attempts of one publish share. This and the columns after it are pqx's:
    /// rows the original PQX wrote have none of them.
    pub message_id: Option<String>,
    /// The host queue the attempt ran from.
    pub queue: Option<String>,
    /// The machine that ran it.
    pub host: Option<String>,
    /// 1 for the first run, 2 for the first retry, ...
    pub attempt: Option<i32>,
    /// The command's `dedupe_key`, if it has one.
    pub dedupe_key: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::message_result::Entity")]
    MessageResult,
}

impl Related<super::message_result::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MessageResult.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
