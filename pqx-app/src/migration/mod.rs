//! The schema, as sea-orm migrations: `initiator -o crt_tbl` applies them, `rectifier -o del_tbl`
//! rolls them back. Later changes are new migrations; the original columns are never dropped.

use sea_orm_migration::prelude::*;

mod m20240601_000001_create_tables;
mod m20240602_000001_result_output;
mod m20240603_000001_dedupe_and_unique_result;
mod m20240604_000001_drop_redundant_result_index;
mod m20240605_000001_original_column_types;
mod m20261202_000001_cancel;

/// An index named `name` on `columns` of `table`, made only if it is missing.
fn index(name: &str, table: &'static str, columns: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.if_not_exists().name(name).table(table);
    for column in columns {
        index.col(*column);
    }
    index.to_owned()
}

/// Drops index `name` of `table`.
fn drop_index(name: &str, table: &'static str) -> IndexDropStatement {
    Index::drop().name(name).table(table).to_owned()
}

/// All migrations, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20240601_000001_create_tables::Migration),
            Box::new(m20240602_000001_result_output::Migration),
            Box::new(m20240603_000001_dedupe_and_unique_result::Migration),
            Box::new(m20240604_000001_drop_redundant_result_index::Migration),
            Box::new(m20240605_000001_original_column_types::Migration),
            Box::new(m20261202_000001_cancel::Migration),
        ]
    }
}
