//! One row per finished attempt: how it ended.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "message_result")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub history_id: i64,
    /// The exit code; 124 for a consuming timeout, 127 when the program could not start, 128+N for
    /// a signal.
    pub exit_code: i32,
    /// One line saying how the attempt ended; the original PQX writes none for a success.
    pub result: Option<String>,
    /// When the attempt ended.
    pub time: DateTimeUtc,
    /// The last 64 KiB of stdout (for Http, of the response body).
    pub stdout: Option<String>,
    /// The last 64 KiB of stderr.
    pub stderr: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::message_history::Entity",
        from = "Column::HistoryId",
        to = "super::message_history::Column::Id",
        on_delete = "Cascade"
    )]
    MessageHistory,
}

impl Related<super::message_history::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MessageHistory.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The line saying how the attempt ended: as recorded, or, for a row the original PQX wrote
    /// without one, what its exit code says.
    pub fn summary(&self) -> std::borrow::Cow<'_, str> {
        match (&self.result, self.exit_code) {
            (Some(result), _) => result.into(),
            (None, 0) => "succeeded".into(),
            (None, code) => format!("failed: exit code {code}").into(),
        }
    }
}
