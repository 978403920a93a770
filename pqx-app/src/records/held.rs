//! The statements a subscriber makes for every command on SQLite (its start, its result), on a
//! connection it holds, beneath sea-orm. Through sea-orm's pool each statement also cost a ping of
//! sqlx's SQLite thread as the connection went back to the pool, and a task to send it back:
//! twice the hand-offs between threads that the statement needs, which were most of a command's
//! cost in the subscriber. The statements are still built by sea-orm (sea-query), their values
//! bound as sea-orm binds them, and errors come back as sea-orm's, so callers cannot tell.

use std::str::FromStr;
use std::sync::Arc;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{self, Connection};
use sea_orm::{DbErr, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// One SQLite connection, opened when first used and again after it failed.
#[derive(Debug)]
pub struct HeldSqlite {
    options: SqliteConnectOptions,
    conn: Mutex<Option<SqliteConnection>>,
}

impl HeldSqlite {
    /// A connection to the file of `url` (a `sqlite:` URL), opened as pqx opens SQLite.
    pub fn new(url: &str) -> Result<Self, DbErr> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| sqlx_error(e, DbErr::Conn))?;
        Ok(Self {
            options: pqx_util::sqlite_options(options),
            conn: Mutex::new(None),
        })
    }

    /// Runs `statement`, an insert of at most one row; returns the row's id, if it inserted one.
    /// (Without `RETURNING`, for which SQLite builds a temporary table on every run.)
    pub async fn insert(&self, statement: &Statement) -> Result<Option<i64>, DbErr> {
        let mut held = self.conn.lock().await;
        let conn = self.open(&mut held).await?;
        let done = query(statement).execute(conn).await;
        let done = kept(&mut held, done).map_err(|e| sqlx_error(e, DbErr::Exec))?;
        Ok((done.rows_affected() == 1).then(|| done.last_insert_rowid()))
    }

    /// Runs `statement`; returns how many rows it changed.
    pub async fn execute(&self, statement: &Statement) -> Result<u64, DbErr> {
        let mut held = self.conn.lock().await;
        let conn = self.open(&mut held).await?;
        let done = query(statement).execute(conn).await;
        let done = kept(&mut held, done).map_err(|e| sqlx_error(e, DbErr::Exec))?;
        Ok(done.rows_affected())
    }

    /// The connection, opened if need be.
    async fn open<'h>(
        &self,
        held: &'h mut Option<SqliteConnection>,
    ) -> Result<&'h mut SqliteConnection, DbErr> {
        if let Some(conn) = held {
            return Ok(conn);
        }
        let opened = SqliteConnection::connect_with(&self.options)
            .await
            .map_err(|e| sqlx_error(e, DbErr::Conn))?;
        Ok(held.insert(opened))
    }
}

/// `statement` with its values bound, as sea-orm binds them.
fn query(statement: &Statement) -> sqlx::query::Query<'_, sqlx::Sqlite, SqlxValues> {
    let values = statement
        .values
        .clone()
        .unwrap_or(sea_orm::Values(Vec::new()));
    sqlx::query_with(
        sqlx::AssertSqlSafe(statement.sql.as_str()),
        SqlxValues(values),
    )
}

/// `done`, after closing the connection if it failed other than by the database's refusal: the
/// next statement opens another.
fn kept<T>(
    held: &mut Option<SqliteConnection>,
    done: Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if let Err(e) = &done {
        if !matches!(e, sqlx::Error::Database(_)) {
            *held = None;
        }
    }
    done
}

/// `error` as sea-orm reports sqlx's errors, so that pqx reads it as it reads those.
fn sqlx_error(error: sqlx::Error, kind: fn(RuntimeErr) -> DbErr) -> DbErr {
    kind(RuntimeErr::SqlxError(Arc::new(error)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use sea_orm::DbBackend;

    fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    #[tokio::test]
    async fn a_connection_that_cannot_open_is_opened_again_once_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("later").join("pqx.db");
        let held = HeldSqlite::new(&format!("sqlite://{}?mode=rwc", file.display())).unwrap();
        let create = statement("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", vec![]);
        let failed = held.execute(&create).await.unwrap_err();
        assert!(matches!(failed, DbErr::Conn(_)), "{failed:?}");
        std::fs::create_dir(dir.path().join("later")).unwrap();
        held.execute(&create).await.unwrap();
        let insert = statement("INSERT INTO t (v) VALUES (?)", vec!["a".into()]);
        assert_eq!(held.insert(&insert).await.unwrap(), Some(1));
        assert_eq!(held.insert(&insert).await.unwrap(), Some(2));
        let unless = "INSERT INTO t (v) SELECT ? WHERE NOT EXISTS (SELECT 1 FROM t WHERE v = ?)";
        let first_b = statement(unless, vec!["b".into(), "b".into()]);
        assert_eq!(held.insert(&first_b).await.unwrap(), Some(3));
        assert_eq!(
            held.insert(&first_b).await.unwrap(),
            None,
            "nothing inserted"
        );
    }

    #[tokio::test]
    async fn what_the_database_refuses_comes_back_as_sea_orm_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pqx.db");
        let held = HeldSqlite::new(&format!("sqlite://{}?mode=rwc", file.display())).unwrap();
        let create = statement("CREATE TABLE t (v TEXT CHECK (v <> 'no'))", vec![]);
        held.execute(&create).await.unwrap();
        let insert = statement("INSERT INTO t (v) VALUES (?)", vec!["no".into()]);
        let refused = held.execute(&insert).await.unwrap_err();
        let error = crate::Error::Db {
            context: "test".into(),
            source: refused,
        };
        assert!(error.is_refused_data(), "{error:?}");
        let fine = statement("INSERT INTO t (v) VALUES (?)", vec!["yes".into()]);
        assert_eq!(
            held.execute(&fine).await.unwrap(),
            1,
            "the connection is kept"
        );
    }
}
