//! `dedupe_key` on each attempt, looked up by queue and key; and at most one result per attempt, so
//! that a result written again after a lost database answer is not recorded twice.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("message_history")
                    .add_column(string_null("dedupe_key"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(super::index(
                "message_history_queue_dedupe_key",
                "message_history",
                &["queue", "dedupe_key"],
            ))
            .await?;
        let mut one_per_attempt = super::index(
            "message_result_one_per_attempt",
            "message_result",
            &["history_id"],
        );
        manager
            .create_index(one_per_attempt.unique().to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(super::drop_index(
                "message_result_one_per_attempt",
                "message_result",
            ))
            .await?;
        manager
            .drop_index(super::drop_index(
                "message_history_queue_dedupe_key",
                "message_history",
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("message_history")
                    .drop_column("dedupe_key")
                    .to_owned(),
            )
            .await
    }
}
