//! The original PQX tables with the columns that say which message, queue, host and attempt a row is.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("message_history")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(text("mailing_to"))
                    .col(small_integer_null("retry"))
                    .col(integer_null("poke"))
                    .col(big_integer_null("waiting_timeout"))
                    .col(big_integer_null("consuming_timeout"))
                    .col(text("cmd"))
                    .col(timestamp_with_time_zone("time"))
                    .col(string_null("message_id"))
                    .col(string_null("queue"))
                    .col(string_null("host"))
                    .col(integer_null("attempt"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("message_history_message_id")
                    .table("message_history")
                    .col("message_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("message_result")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(big_integer("history_id"))
                    .col(integer("exit_code"))
                    .col(text("result"))
                    .col(timestamp_with_time_zone("time"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("message_result_history_id")
                            .from("message_result", "history_id")
                            .to("message_history", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("message_result_history_id")
                    .table("message_result")
                    .col("history_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("message_result").if_exists().to_owned())
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table("message_history")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
