//! The statements a subscriber makes for every command on SQLite (its start, its result), on a
//! connection it holds, beneath sea-orm, run on the thread that asks for them. Through sea-orm
//! (sqlx) every statement was handed to the driver's own thread and its answer handed back: the
//! wake-ups of those hand-offs were a large part of what a command cost the subscriber, for a
//! statement that SQLite runs in tens of microseconds. When another connection is writing, the
//! statement waits for it on a blocking thread instead, so that the subscriber's runtime never
//! waits on a lock. The statements are still built by sea-orm (sea-query), their values stored as
//! sea-orm (sqlx) stores them, and errors come back as sea-orm's, so callers cannot tell.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::SecondsFormat;
use rusqlite::types::Value as Stored;
use rusqlite::{Connection, OpenFlags};
use sea_orm::sqlx::error::{DatabaseError, ErrorKind};
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{DbErr, RuntimeErr, Statement, Value};
use tracing::warn;

/// How many statements the held connection writes between two checkpoints (copies of the WAL
/// into the database file). A statement writes 3 or 4 pages of the WAL: about SQLite's own
/// interval of 1,000 pages.
const CHECKPOINT_EVERY: u32 = 256;

/// One SQLite connection, opened when first used and again after it failed.
#[derive(Debug)]
pub struct HeldSqlite {
    file: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    checkpoints: Arc<Checkpoints>,
}

/// The checkpoints of what the held connection wrote, made on a blocking thread. SQLite makes
/// them itself at the commit that fills its interval, on the thread that commits: there they
/// held the subscriber's runtime for the copy and its fsyncs (6 ms on this machine), while every
/// command waited; the held connection leaves them to this.
#[derive(Debug, Default)]
struct Checkpoints {
    written: AtomicU32,
    running: AtomicBool,
    /// A connection of their own: a passive checkpoint lets the held connection go on writing.
    conn: Mutex<Option<Connection>>,
}

impl HeldSqlite {
    /// A connection to the file of `url` (a `sqlite:` URL), opened as pqx opens SQLite; none for
    /// a database in memory, which only the pool that made it can see.
    pub fn for_file(url: &str) -> Result<Option<Self>, DbErr> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))))?;
        let file = options.get_filename();
        // sqlx names `sqlite::memory:` so; `mode=memory` keeps the name given.
        let in_memory = file.to_string_lossy().starts_with("file:sqlx-in-memory-")
            || url
                .split_once('?')
                .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=memory"));
        Ok((!in_memory).then(|| Self {
            file: file.to_owned(),
            conn: Arc::new(Mutex::new(None)),
            checkpoints: Arc::default(),
        }))
    }

    /// Runs `statement`, an insert of at most one row; returns the row's id, if it inserted one.
    /// (Without `RETURNING`, for which SQLite builds a temporary table on every run.)
    pub async fn insert(&self, statement: &Statement) -> Result<Option<i64>, DbErr> {
        self.run(statement, |conn, changed| {
            (changed == 1).then(|| conn.last_insert_rowid())
        })
        .await
    }

    /// Runs `statement`; returns how many rows it changed.
    pub async fn execute(&self, statement: &Statement) -> Result<u64, DbErr> {
        self.run(statement, |_, changed| changed as u64).await
    }

    /// Runs `statement` here when no other connection is writing; otherwise on a blocking thread
    /// that waits for it.
    async fn run<T: Send + 'static>(
        &self,
        statement: &Statement,
        done: fn(&Connection, usize) -> T,
    ) -> Result<T, DbErr> {
        let values = stored(statement)?;
        if let Ok(mut held) = self.conn.try_lock() {
            match execute(
                &self.file,
                &mut held,
                &statement.sql,
                &values,
                Duration::ZERO,
                done,
            ) {
                Err(Failed::Running(e)) if e.is_busy() => {}
                ran => {
                    drop(held);
                    return self.wrote(ran);
                }
            }
        }
        let (file, conn) = (self.file.clone(), Arc::clone(&self.conn));
        let sql = statement.sql.clone();
        let waited = tokio::task::spawn_blocking(move || {
            let mut held = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let timeout = pqx_util::SQLITE_BUSY_TIMEOUT;
            execute(&file, &mut held, &sql, &values, timeout, done)
        })
        .await
        .map_err(|e| internal(format!("the thread that waited for SQLite: {e}")))?;
        self.wrote(waited)
    }

    /// Counts a statement that ran, and starts a checkpoint on a blocking thread when its
    /// interval is full and none is running.
    fn wrote<T>(&self, ran: Result<T, Failed>) -> Result<T, DbErr> {
        let ran = ran.map_err(Failed::into_db_err)?;
        let checkpoints = &self.checkpoints;
        let written = checkpoints.written.fetch_add(1, Ordering::Relaxed) + 1;
        if written >= CHECKPOINT_EVERY && !checkpoints.running.swap(true, Ordering::AcqRel) {
            checkpoints.written.store(0, Ordering::Relaxed);
            let (file, checkpoints) = (self.file.clone(), Arc::clone(checkpoints));
            tokio::task::spawn_blocking(move || {
                if let Err(e) = checkpoints.make(&file) {
                    // The next interval tries again; the WAL grows meanwhile, nothing is lost.
                    warn!(file = %file.display(), error = %e, "cannot checkpoint the SQLite WAL");
                }
                checkpoints.running.store(false, Ordering::Release);
            });
        }
        Ok(ran)
    }
}

impl Checkpoints {
    /// Copies what it can of the WAL into the database file, waiting for nobody. A connection
    /// that failed is closed, and the next checkpoint opens another.
    fn make(&self, file: &Path) -> rusqlite::Result<()> {
        let mut held = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match &mut *held {
            Some(conn) => conn,
            None => held.insert(open(file)?),
        };
        let made = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if made.is_err() {
            *held = None;
        }
        made
    }
}

/// Runs `sql` with `values` on the held connection (opened if need be), waiting up to `busy` for
/// another connection's write; the connection is closed when it failed other than by SQLite's
/// refusal of the statement, and the next statement opens another.
fn execute<T>(
    file: &Path,
    held: &mut Option<Connection>,
    sql: &str,
    values: &[Stored],
    busy: Duration,
    done: fn(&Connection, usize) -> T,
) -> Result<T, Failed> {
    let conn = match held {
        Some(conn) => conn,
        None => held.insert(open(file).map_err(|e| Failed::Opening(e.into()))?),
    };
    let ran = conn.busy_timeout(busy).and_then(|()| {
        let mut statement = conn.prepare_cached(sql)?;
        let changed = statement.execute(rusqlite::params_from_iter(values))?;
        Ok(done(conn, changed))
    });
    ran.map_err(|e| {
        let failure = SqliteFailure::from(e);
        if !failure.keeps_the_connection() {
            *held = None;
        }
        Failed::Running(failure)
    })
}

/// Opens `file` as pqx opens SQLite (and with foreign keys enforced, as sqlx opens it).
fn open(file: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, flags)?;
    for (name, value) in pqx_util::SQLITE_PRAGMAS {
        // Some pragmas answer with a row (journal_mode), which a plain update refuses.
        conn.pragma_update_and_check(None, name, value, |_| Ok(()))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(()),
                e => Err(e),
            })?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints are made apart ([`Checkpoints`]), never by a commit of this connection.
    conn.pragma_update_and_check(None, "wal_autocheckpoint", 0, |_| Ok(()))?;
    Ok(conn)
}

/// `statement`'s values as sqlx stores them in SQLite (sea-orm binds them through sqlx): what
/// sea-orm reads back must be what it would have written.
fn stored(statement: &Statement) -> Result<Vec<Stored>, DbErr> {
    let Some(values) = &statement.values else {
        return Ok(Vec::new());
    };
    values.0.iter().map(store).collect()
}

fn store(value: &Value) -> Result<Stored, DbErr> {
    let integer = |i: Option<i64>| i.map_or(Stored::Null, Stored::Integer);
    let text = |t: Option<String>| t.map_or(Stored::Null, Stored::Text);
    Ok(match value {
        Value::Bool(b) => integer(b.map(i64::from)),
        Value::TinyInt(i) => integer(i.map(i64::from)),
        Value::SmallInt(i) => integer(i.map(i64::from)),
        Value::Int(i) => integer(i.map(i64::from)),
        Value::BigInt(i) => integer(*i),
        Value::TinyUnsigned(i) => integer(i.map(i64::from)),
        Value::SmallUnsigned(i) => integer(i.map(i64::from)),
        Value::Unsigned(i) => integer(i.map(i64::from)),
        Value::BigUnsigned(i) => match i {
            Some(i) => Stored::Integer(
                i64::try_from(*i).map_err(|_| internal(format!("{i} is too large for SQLite")))?,
            ),
            None => Stored::Null,
        },
        Value::Float(f) => f.map_or(Stored::Null, |f| Stored::Real(f64::from(f))),
        Value::Double(f) => f.map_or(Stored::Null, Stored::Real),
        Value::String(s) => text(s.clone()),
        Value::Char(c) => text(c.map(String::from)),
        Value::Bytes(b) => b.clone().map_or(Stored::Null, Stored::Blob),
        Value::Json(j) => text(
            j.as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| internal(format!("a JSON value: {e}")))?,
        ),
        Value::ChronoDateTimeUtc(t) => {
            text(t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, false)))
        }
        other => return Err(internal(format!("no SQLite form for the value {other:?}"))),
    })
}

fn internal(what: String) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(what))
}

/// Why a statement did not run.
enum Failed {
    Opening(SqliteFailure),
    Running(SqliteFailure),
}

impl Failed {
    /// As sea-orm reports a failure of sqlx's SQLite driver, so that pqx reads it as it reads
    /// those.
    fn into_db_err(self) -> DbErr {
        let as_sqlx = |e: SqliteFailure| {
            RuntimeErr::SqlxError(Arc::new(sea_orm::sqlx::Error::Database(Box::new(e))))
        };
        match self {
            Failed::Opening(e) => DbErr::Conn(as_sqlx(e)),
            Failed::Running(e) => DbErr::Exec(as_sqlx(e)),
        }
    }
}

/// What SQLite said when it refused or could not run a statement: its extended result code.
#[derive(Debug, thiserror::Error)]
#[error("(code: {code}) {message}")]
pub(crate) struct SqliteFailure {
    code: i32,
    message: String,
}

/// SQLite's primary result codes that pqx tells apart.
const BUSY: i32 = 5;
const LOCKED: i32 = 6;
const TOOBIG: i32 = 18;
const CONSTRAINT: i32 = 19;
const MISMATCH: i32 = 20;
const RANGE: i32 = 25;

impl SqliteFailure {
    fn primary(&self) -> i32 {
        self.code & 0xff
    }

    fn is_busy(&self) -> bool {
        matches!(self.primary(), BUSY | LOCKED)
    }

    /// Whether SQLite refused the data itself (a value too big, against a constraint, of the
    /// wrong type, out of range): writing the same again would fail again.
    pub(crate) fn is_refused_data(&self) -> bool {
        matches!(self.primary(), TOOBIG | CONSTRAINT | MISMATCH | RANGE)
    }

    /// Whether the connection is fine after this failure.
    fn keeps_the_connection(&self) -> bool {
        self.is_busy() || self.is_refused_data()
    }
}

impl From<rusqlite::Error> for SqliteFailure {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::SqliteFailure(e, message) => Self {
                code: e.extended_code,
                message: message.unwrap_or_else(|| e.to_string()),
            },
            // Not SQLite's failure but rusqlite's (a value it could not pass on): SQLITE_ERROR.
            other => Self {
                code: 1,
                message: other.to_string(),
            },
        }
    }
}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    /// The extended result code, as sqlx's SQLite errors give it.
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        // Extended codes of SQLITE_CONSTRAINT, as sqlx tells them apart.
        match self.code {
            1555 | 2067 => ErrorKind::UniqueViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use sea_orm::DbBackend;

    fn statement(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    /// A held connection to `file`, made if missing.
    fn held_at(file: &Path) -> HeldSqlite {
        let url = format!("sqlite://{}?mode=rwc", file.display());
        HeldSqlite::for_file(&url).unwrap().unwrap()
    }

    /// A held connection to a new file with a table `t (id, v)`; the directory goes with the first.
    async fn table_t() -> (tempfile::TempDir, PathBuf, HeldSqlite) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pqx.db");
        let held = held_at(&file);
        let create = statement("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", vec![]);
        held.execute(&create).await.unwrap();
        (dir, file, held)
    }

    #[tokio::test]
    async fn a_connection_that_cannot_open_is_opened_again_once_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("later").join("pqx.db");
        let held = held_at(&file);
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

    #[test]
    fn a_database_in_memory_is_not_held_apart_from_its_pool() {
        assert!(HeldSqlite::for_file("sqlite::memory:").unwrap().is_none());
        assert!(HeldSqlite::for_file("sqlite://pqx.db?mode=memory")
            .unwrap()
            .is_none());
        assert!(HeldSqlite::for_file("sqlite://pqx.db?mode=rwc")
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn values_read_back_through_sea_orm_as_they_were_written() {
        use chrono::{DateTime, TimeZone, Utc};
        use sea_orm::ConnectionTrait;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pqx.db").display());
        let held = HeldSqlite::for_file(&url).unwrap().unwrap();
        let create = "CREATE TABLE t (at TEXT, doc TEXT, small INTEGER, big INTEGER, \
                      none TEXT, flag INTEGER, real REAL, s TEXT)";
        held.execute(&statement(create, vec![])).await.unwrap();
        let at = Utc.timestamp_micros(1_764_745_200_123_456).unwrap();
        let doc = serde_json::json!({"cmd": ["echo", "\u{e9}\u{1b}[31m"], "n": 1.5, "k": null});
        let values = vec![
            Value::ChronoDateTimeUtc(Some(at)),
            Value::Json(Some(Box::new(doc.clone()))),
            7i16.into(),
            i64::MAX.into(),
            Value::String(None),
            true.into(),
            0.25f64.into(),
            "it's \"quoted\"".into(),
        ];
        let insert = statement("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values);
        assert_eq!(held.insert(&insert).await.unwrap(), Some(1));

        let db = pqx_util::connect_db(&url).await.unwrap();
        let select = Statement::from_string(DbBackend::Sqlite, "SELECT * FROM t");
        let row = db.query_one_raw(select).await.unwrap().unwrap();
        assert_eq!(row.try_get::<DateTime<Utc>>("", "at").unwrap(), at);
        assert_eq!(row.try_get::<serde_json::Value>("", "doc").unwrap(), doc);
        assert_eq!(row.try_get::<i16>("", "small").unwrap(), 7);
        assert_eq!(row.try_get::<i64>("", "big").unwrap(), i64::MAX);
        assert_eq!(row.try_get::<Option<String>>("", "none").unwrap(), None);
        assert!(row.try_get::<bool>("", "flag").unwrap());
        assert_eq!(row.try_get::<f64>("", "real").unwrap(), 0.25);
        assert_eq!(row.try_get::<String>("", "s").unwrap(), "it's \"quoted\"");
    }

    #[tokio::test]
    async fn a_statement_waits_for_another_writer_off_the_runtime() {
        let (_dir, file, held) = table_t().await;
        let other = rusqlite::Connection::open(&file).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES ('other');")
            .unwrap();

        let held = Arc::new(held);
        let writer = Arc::clone(&held);
        let insert = statement("INSERT INTO t (v) VALUES (?)", vec!["held".into()]);
        let waiting = tokio::spawn(async move { writer.insert(&insert).await });
        // This test's runtime has one thread: the sleep ends only if the insert does not hold it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the insert waits for the other writer"
        );
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), Some(2));
        let fine = statement("INSERT INTO t (v) VALUES (?)", vec!["again".into()]);
        assert_eq!(
            held.insert(&fine).await.unwrap(),
            Some(3),
            "and runs here again"
        );
    }

    #[tokio::test]
    async fn what_the_held_connection_writes_is_checkpointed_apart() {
        let (_dir, file, held) = table_t().await;
        let before = std::fs::metadata(&file).unwrap().len();
        // A page each: without checkpoints they would all stay in the WAL, as the held
        // connection's commits never make one.
        let insert = statement(
            "INSERT INTO t (v) VALUES (?)",
            vec!["x".repeat(3000).into()],
        );
        for _ in 1..CHECKPOINT_EVERY {
            held.insert(&insert).await.unwrap();
        }
        let pages = u64::from(CHECKPOINT_EVERY - 1);
        let copied = || std::fs::metadata(&file).unwrap().len() >= before + pages * 4096;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !copied() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(copied(), "the rows reached the database file");
        let count = "SELECT count(*) FROM t";
        let other = rusqlite::Connection::open(&file).unwrap();
        let rows: u32 = other.query_row(count, [], |row| row.get(0)).unwrap();
        assert_eq!(rows, CHECKPOINT_EVERY - 1);
    }

    #[test]
    fn a_checkpoint_that_cannot_open_says_why_and_the_next_one_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("later").join("pqx.db");
        let checkpoints = Checkpoints::default();
        let failed = checkpoints.make(&file).unwrap_err();
        assert!(
            failed.to_string().contains("unable to open database file"),
            "{failed}"
        );
        std::fs::create_dir(dir.path().join("later")).unwrap();
        checkpoints.make(&file).unwrap();
    }

    #[tokio::test]
    async fn what_the_database_refuses_comes_back_as_sea_orm_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pqx.db");
        let held = held_at(&file);
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
