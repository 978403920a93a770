//! The original PQX's column types in PostgreSQL, so that its subscribers and pqx's can write to
//! the same tables during a switch: `mailing_to` and `cmd` are `json` (the original reads them
//! back as JSON), and `result` may be NULL (the original writes none for a success). Tables the
//! original made have them already; this changes only pqx's own. SQLite's columns take any text,
//! so there is nothing to change there.

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "ALTER TABLE message_history \
    ALTER COLUMN mailing_to TYPE json USING mailing_to::json, \
    ALTER COLUMN cmd TYPE json USING cmd::json; \
    ALTER TABLE message_result ALTER COLUMN result DROP NOT NULL";

const DOWN: &str = "ALTER TABLE message_history \
    ALTER COLUMN mailing_to TYPE text, ALTER COLUMN cmd TYPE text; \
    UPDATE message_result SET result = '' WHERE result IS NULL; \
    ALTER TABLE message_result ALTER COLUMN result SET NOT NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, DOWN).await
    }
}

async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_unprepared(sql).await.map(|_| ())
}
