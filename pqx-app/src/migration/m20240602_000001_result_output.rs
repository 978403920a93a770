//! The end of each attempt's stdout and stderr, kept with its result, so that an operator can see
//! why something failed without the subscriber's log file.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in ["stdout", "stderr"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("message_result")
                        .add_column(text_null(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["stdout", "stderr"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("message_result")
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
