//! The original PQX tables with the columns that say which message, queue, host and attempt a row is.
//! Where the original PQX made the tables already, they are kept with every row, and pqx's
//! columns are added, empty for the original's rows.

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
        for column in ["message_id", "queue", "host"] {
            add_missing(manager, string_null(column)).await?;
        }
        add_missing(manager, integer_null("attempt")).await?;
        manager
            .create_index(super::index(
                "message_history_message_id",
                "message_history",
                &["message_id"],
            ))
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
            .create_index(super::index(
                "message_result_history_id",
                "message_result",
                &["history_id"],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["message_result", "message_history"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Adds `column` to message_history unless it is there (in a table the original PQX made, it is not).
async fn add_missing(manager: &SchemaManager<'_>, mut column: ColumnDef) -> Result<(), DbErr> {
    let name = column.get_column_name();
    if manager.has_column("message_history", &name).await? {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table("message_history")
                .add_column(&mut column)
                .to_owned(),
        )
        .await
}
