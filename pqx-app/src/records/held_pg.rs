//! The statements a subscriber makes for every command on PostgreSQL (its start, its result), on
//! the one connection its pool may hold, kept between them. sqlx checks every connection given
//! back to its pool with a round trip to the server (a ping, on a task of its own): two more round
//! trips for every command, over TLS when the server offers it, for two statements that need one
//! each. The kept connection is the pool's own: it goes back to the pool whenever the subscriber
//! reads or writes anything else through sea-orm ([`HeldPg::lend`]), and is closed once idle as
//! long as the pool closes its own ([`pqx_util::HOST_IDLE`]), so that a host still holds at most
//! one connection, and none while idle. The statements are built by sea-orm (sea-query) and bound
//! as sea-orm binds them, and errors come back as sea-orm's, so callers cannot tell.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::postgres::{PgPool, Postgres};
use sea_orm::sqlx::{self, AssertSqlSafe, Connection, Row};
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

/// A connection idle this long is checked with a round trip before it is used again, as the pool
/// checks its own before lending them (`pqx_util::connect_db_for_host`): one a server restart or
/// a proxy cut is replaced before the statement, instead of failing it.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(250);

/// The connection kept for a subscriber's statements.
#[derive(Debug)]
pub struct HeldPg {
    pool: PgPool,
    slot: Arc<RwLock<Slot>>,
}

#[derive(Debug)]
struct Slot {
    conn: Option<PoolConnection<Postgres>>,
    used: Instant,
    /// Whether a task closes the connection once it is idle.
    watched: bool,
}

impl Slot {
    /// Closes a connection that failed, rather than give it back to the pool.
    fn forget(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

/// The pool, lent to sea-orm: no statement keeps a connection until this is dropped.
#[derive(Debug)]
pub struct Lent {
    _slot: OwnedRwLockReadGuard<Slot>,
}

impl HeldPg {
    /// Keeps connections of `pool`, which should be the store's own.
    pub fn of(pool: PgPool) -> Self {
        let slot = Slot {
            conn: None,
            used: Instant::now(),
            watched: false,
        };
        Self {
            pool,
            slot: Arc::new(RwLock::new(slot)),
        }
    }

    /// Runs `statement`, an insert of at most one row returning its id; returns the id, if it
    /// inserted a row.
    pub async fn insert(&self, statement: &Statement) -> Result<Option<i64>, DbErr> {
        let mut slot = self.slot.write().await;
        let conn = self.connection(&mut slot).await?;
        let ran = query(statement).fetch_optional(&mut **conn).await;
        let row = used(&mut slot, ran).map_err(query_failed)?;
        row.map(|row| row.try_get::<i64, _>(0))
            .transpose()
            .map_err(query_failed)
    }

    /// Runs `statement`; returns how many rows it changed.
    pub async fn execute(&self, statement: &Statement) -> Result<u64, DbErr> {
        let mut slot = self.slot.write().await;
        let conn = self.connection(&mut slot).await?;
        let ran = query(statement).execute(&mut **conn).await;
        let done = used(&mut slot, ran).map_err(exec_failed)?;
        Ok(done.rows_affected())
    }

    /// Gives the kept connection back to the pool, for sea-orm's use of it until the returned
    /// [`Lent`] is dropped.
    pub async fn lend(&self) -> Lent {
        let mut slot = Arc::clone(&self.slot).write_owned().await;
        drop(slot.conn.take());
        Lent {
            _slot: slot.downgrade(),
        }
    }

    /// The kept connection, checked if it was idle a while; another from the pool if there is
    /// none.
    async fn connection<'s>(
        &self,
        slot: &'s mut Slot,
    ) -> Result<&'s mut PoolConnection<Postgres>, DbErr> {
        let idle = slot.used.elapsed() >= CHECK_AFTER_IDLE;
        if let (true, Some(conn)) = (idle, slot.conn.as_mut()) {
            if conn.ping().await.is_err() {
                slot.forget();
            }
        }
        let conn = match slot.conn.take() {
            Some(conn) => conn,
            None => self.pool.acquire().await.map_err(acquire_failed)?,
        };
        if !slot.watched {
            slot.watched = true;
            tokio::spawn(close_when_idle(Arc::downgrade(&self.slot)));
        }
        Ok(slot.conn.insert(conn))
    }
}

/// Notes the use of the connection; one that failed other than by the server's refusal of the
/// statement is closed, and the next statement takes another.
fn used<T>(slot: &mut Slot, ran: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
    slot.used = Instant::now();
    if let Err(e) = &ran {
        if !matches!(e, sqlx::Error::Database(_)) {
            slot.forget();
        }
    }
    ran
}

/// Closes the kept connection once it has not been used for [`pqx_util::HOST_IDLE`].
async fn close_when_idle(slot: Weak<RwLock<Slot>>) {
    loop {
        let Some(held) = slot.upgrade() else { return };
        let left = pqx_util::HOST_IDLE.saturating_sub(held.read().await.used.elapsed());
        drop(held);
        tokio::time::sleep(left.max(Duration::from_millis(100))).await;
        let Some(held) = slot.upgrade() else { return };
        let mut slot = held.write().await;
        if slot.conn.is_some() && slot.used.elapsed() < pqx_util::HOST_IDLE {
            continue;
        }
        slot.watched = false;
        if let Some(conn) = slot.conn.take() {
            drop(slot);
            // Closed, not given back: the pool would keep it idle as long again.
            let _ = conn.close().await;
        }
        return;
    }
}

/// `statement` as sea-orm sends it to PostgreSQL.
fn query(statement: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = statement
        .values
        .clone()
        .unwrap_or_else(|| sea_orm::Values(Vec::new()));
    sqlx::query_with(AssertSqlSafe(statement.sql.as_str()), SqlxValues(values))
}

// As sea-orm reports sqlx's errors, so that pqx reads them as it reads those.
fn query_failed(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

fn exec_failed(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

fn acquire_failed(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use pqx_testkit::{DbKind, Deadline, TestDb};
    use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

    fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    }

    /// A database of the test's own with a table `t`, the pool a subscriber has, and the kept
    /// connection on it.
    async fn held_on_table_t() -> (TestDb, tempfile::TempDir, DatabaseConnection, HeldPg) {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::create(DbKind::Postgres, dir.path()).unwrap();
        let conn = pqx_util::connect_db_for_host(&db.url).await.unwrap();
        conn.execute_unprepared(
            "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT CHECK (v <> 'no'))",
        )
        .await
        .unwrap();
        let held = HeldPg::of(conn.get_postgres_connection_pool().clone());
        (db, dir, conn, held)
    }

    fn insert(v: &str) -> Statement {
        statement("INSERT INTO t (v) VALUES ($1) RETURNING id", vec![v.into()])
    }

    #[tokio::test]
    async fn statements_keep_the_pool_s_one_connection_until_it_is_idle() {
        let (_db, _dir, conn, held) = held_on_table_t().await;
        let pool = conn.get_postgres_connection_pool();
        assert_eq!(held.insert(&insert("a")).await.unwrap(), Some(1));
        assert_eq!(held.insert(&insert("b")).await.unwrap(), Some(2));
        let update = statement("UPDATE t SET v = 'c'", vec![]);
        assert_eq!(held.execute(&update).await.unwrap(), 2);
        // Kept, not given back: the pool has its one connection, and none idle in it.
        assert_eq!((pool.size(), pool.num_idle()), (1, 0));
        let deadline = Deadline::after_secs(10);
        while pool.size() != 0 {
            deadline
                .tick(|| "the idle connection was not closed".into())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn sea_orm_gets_the_kept_connection_when_it_needs_the_pool() {
        let (_db, _dir, conn, held) = held_on_table_t().await;
        held.insert(&insert("a")).await.unwrap();
        let lent = held.lend().await;
        // The pool holds one connection: without it back, this waits for the pool's timeout.
        let count = Statement::from_string(DbBackend::Postgres, "SELECT count(*) FROM t");
        let read = tokio::time::timeout(Duration::from_secs(5), conn.query_one_raw(count));
        let row = read.await.expect("the pool lent at once").unwrap().unwrap();
        assert_eq!(row.try_get_by_index::<i64>(0).unwrap(), 1);
        drop(lent);
        assert_eq!(held.insert(&insert("b")).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_connection_the_server_ended_is_replaced_before_the_next_statement() {
        let (db, _dir, _conn, held) = held_on_table_t().await;
        held.insert(&insert("a")).await.unwrap();
        let admin = pqx_util::connect_db(&db.url).await.unwrap();
        let end_others = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                          WHERE datname = current_database() AND pid <> pg_backend_pid()";
        admin.execute_unprepared(end_others).await.unwrap();
        // Idle long enough to be checked, as the pool checks its own.
        tokio::time::sleep(CHECK_AFTER_IDLE * 2).await;
        assert_eq!(held.insert(&insert("b")).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn what_the_server_refuses_comes_back_as_sea_orm_reports_it_and_the_connection_stays() {
        let (_db, _dir, conn, held) = held_on_table_t().await;
        let refused = held.insert(&insert("no")).await.unwrap_err();
        let error = crate::Error::Db {
            context: "test".into(),
            source: refused,
        };
        assert!(error.is_refused_data(), "{error:?}");
        assert_eq!(held.insert(&insert("yes")).await.unwrap(), Some(2));
        let pool = conn.get_postgres_connection_pool();
        assert_eq!((pool.size(), pool.num_idle()), (1, 0), "the same one kept");
    }
}
