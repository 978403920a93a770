//! The plain index on `message_result.history_id` duplicates the unique one added since: every
//! result written paid for both.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "message_result_history_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut drop = super::drop_index(INDEX, "message_result");
        manager.drop_index(drop.if_exists().to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(super::index(INDEX, "message_result", &["history_id"]))
            .await
    }
}
