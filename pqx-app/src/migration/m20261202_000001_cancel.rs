//! `message_cancel`: the messages an operator cancelled (`publisher cancel ID`), one row each. A
//! subscriber looks a delivery up here before it runs it, and looks again while it runs.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("message_cancel")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string_uniq("message_id"))
                    .col(timestamp_with_time_zone("time"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("message_cancel").if_exists().to_owned())
            .await
    }
}
