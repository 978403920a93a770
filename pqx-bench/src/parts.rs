//! What the parts a subscriber is built on cost per command on their own, in CPU of the process
//! that uses them, each on a single-threaded runtime as a subscriber runs: spawning and reaping
//! `bash -c true` with its output piped (tokio), taking a command's message and acking it (lapin,
//! one at a time), and writing a command's two rows (its start, its result: SQLite in WAL mode, or
//! PostgreSQL on one kept connection), as the same statements pqx makes; and the three in one loop,
//! a bare subscriber: the floor under what a subscriber costs per command, above which is pqx's own.

use std::future::Future;
use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, ensure, Context, Result};
use futures_lite::StreamExt;
use lapin::options::BasicAckOptions;
use sea_orm::sqlx::{self, Connection as _, Row as _};

use pqx_testkit::{threads_cpu_secs, threads_switches};

/// A command's start, as pqx records it: in the statement that asks whether it was cancelled.
const START_SQLITE: &str = r#"INSERT INTO "message_history" ("mailing_to", "retry", "poke", "waiting_timeout", "consuming_timeout", "cmd", "time", "message_id", "queue", "host", "attempt", "dedupe_key") SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM "message_cancel" WHERE "message_id" = ?)"#;
const START_PG: &str = r#"INSERT INTO "message_history" ("mailing_to", "retry", "poke", "waiting_timeout", "consuming_timeout", "cmd", "time", "message_id", "queue", "host", "attempt", "dedupe_key") SELECT $1::json, $2, $3, $4, $5, $6::json, $7, $8, $9, $10, $11, $12 WHERE NOT EXISTS (SELECT 1 FROM "message_cancel" WHERE "message_id" = $13) RETURNING "id""#;
/// A command's result, written once however often it is written.
const END_SQLITE: &str = r#"INSERT INTO "message_result" ("history_id", "exit_code", "result", "time", "stdout", "stderr") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ("history_id") DO NOTHING"#;
const END_PG: &str = r#"INSERT INTO "message_result" ("history_id", "exit_code", "result", "time", "stdout", "stderr") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT ("history_id") DO NOTHING"#;

const MAILING_TO: &str = r#"[{"unique_key":"q0"}]"#;
const CMD: &str = r#"{"Bash":{"cmd":["true"]}}"#;

/// What a part cost per command.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Microseconds of this process's CPU (all its threads).
    pub cpu_us: f64,
    /// Context switches of its threads.
    pub switches: f64,
}

/// Runs what `make` makes on a thread of its own, on a single-threaded runtime (as a subscriber's),
/// and returns what each of the `n` commands it took cost.
fn per_command<F, Fut>(n: usize, make: F) -> Result<Cost>
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = Result<Measured>>,
{
    let run = || -> Result<Cost> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let Measured { before, after } = runtime.block_on(make())?;
        Ok(Cost {
            cpu_us: (after.cpu - before.cpu) * 1e6 / n as f64,
            switches: (after.switches - before.switches) as f64 / n as f64,
        })
    };
    std::thread::scope(|s| match s.spawn(run).join() {
        Ok(result) => result,
        Err(_) => bail!("a part's thread panicked"),
    })
}

/// The process before and after a part's commands, its set-up left out.
struct Measured {
    before: Sample,
    after: Sample,
}

struct Sample {
    cpu: f64,
    switches: u64,
}

impl Sample {
    fn now() -> Result<Self> {
        Ok(Self {
            cpu: threads_cpu_secs()?,
            switches: threads_switches()?,
        })
    }
}

/// Spawning `bash -c true` with stdin /dev/null (a duplicate of one kept open) and stdout and
/// stderr piped and read to their end, and reaping it: the spawning process's CPU per run,
/// bash's own not counted.
pub fn spawn_and_reap(n: usize) -> Result<Cost> {
    per_command(n, || async move {
        let null = std::fs::File::open("/dev/null")?;
        let before = Sample::now()?;
        for _ in 0..n {
            run_bash(&null).await?;
        }
        let after = Sample::now()?;
        Ok(Measured { before, after })
    })
}

async fn run_bash(null: &std::fs::File) -> Result<()> {
    let output = tokio::process::Command::new("bash")
        .args(["-c", "true"])
        .stdin(Stdio::from(null.try_clone()?))
        .process_group(0)
        .kill_on_drop(true)
        .output()
        .await?;
    ensure!(output.status.success(), "bash -c true failed");
    Ok(())
}

/// Taking each of `n` messages already on `queue` and acking it, one at a time (prefetch 1, as a
/// subscriber without `--concurrency`): the consumer's CPU per message.
pub fn take_and_ack(url: &str, queue: &str, n: usize) -> Result<Cost> {
    per_command(n, || async move {
        let (conn, mut consumer) = consume(url, queue).await?;
        let before = Sample::now()?;
        for _ in 0..n {
            take(&mut consumer, queue)
                .await?
                .ack(BasicAckOptions::default())
                .await?;
        }
        let after = Sample::now()?;
        let _ = conn.close(200, "".into()).await;
        Ok(Measured { before, after })
    })
}

/// A consumer of `queue` taking one message at a time.
async fn consume(url: &str, queue: &str) -> Result<(lapin::Connection, lapin::Consumer)> {
    let conn = pqx::mq::connect(url, "pqx bench parts").await?;
    let consumer = crate::broker::consumer(&conn, queue, 1).await?;
    Ok((conn, consumer))
}

async fn take(consumer: &mut lapin::Consumer, queue: &str) -> Result<lapin::message::Delivery> {
    match consumer.next().await {
        Some(delivery) => Ok(delivery?),
        None => bail!("the consumer of {queue} ended early"),
    }
}

/// Where a command's rows go.
#[derive(Debug, Clone, Copy)]
pub enum Db<'a> {
    /// A SQLite file with pqx's tables, in WAL mode.
    Sqlite(&'a Path),
    /// The URL of a PostgreSQL database with pqx's tables.
    Postgres(&'a str),
}

impl Db<'_> {
    pub fn kind(&self) -> pqx_testkit::DbKind {
        match self {
            Db::Sqlite(_) => pqx_testkit::DbKind::Sqlite,
            Db::Postgres(_) => pqx_testkit::DbKind::Postgres,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::Postgres(_) => "PostgreSQL",
        }
    }

    /// How pqx writes to it.
    pub fn driver(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "rusqlite, WAL",
            Db::Postgres(_) => "sqlx, one connection kept",
        }
    }
}

/// A command's two rows, each statement committed on its own: the writer's CPU per command (with
/// SQLite, checkpoints included).
pub fn rows(db: Db<'_>, n: usize) -> Result<Cost> {
    per_command(n, || async move {
        let mut rows = Rows::open(db).await?;
        let before = Sample::now()?;
        for _ in 0..n {
            let history_id = rows.start().await?;
            rows.end(history_id).await?;
        }
        let after = Sample::now()?;
        rows.close().await;
        Ok(Measured { before, after })
    })
}

/// The three parts in one loop, as the least a subscriber does with each of `n` messages on
/// `queue`: take it, record its start, run bash, record its result, ack it.
pub fn bare_subscriber(url: &str, queue: &str, db: Db<'_>, n: usize) -> Result<Cost> {
    per_command(n, || async move {
        let (conn, mut consumer) = consume(url, queue).await?;
        let mut rows = Rows::open(db).await?;
        let null = std::fs::File::open("/dev/null")?;
        let before = Sample::now()?;
        for _ in 0..n {
            let delivery = take(&mut consumer, queue).await?;
            let history_id = rows.start().await?;
            run_bash(&null).await?;
            rows.end(history_id).await?;
            delivery.ack(BasicAckOptions::default()).await?;
        }
        let after = Sample::now()?;
        rows.close().await;
        let _ = conn.close(200, "".into()).await;
        Ok(Measured { before, after })
    })
}

/// One connection to the database, opened as pqx opens it (SQLite) or kept as a subscriber keeps
/// it (PostgreSQL), writing a command's rows as pqx writes them.
enum Rows {
    Sqlite(rusqlite::Connection, String),
    Postgres(sqlx::PgConnection, String),
}

impl Rows {
    async fn open(db: Db<'_>) -> Result<Self> {
        match db {
            Db::Sqlite(file) => {
                let conn = rusqlite::Connection::open(file)
                    .with_context(|| format!("opening {}", file.display()))?;
                for (name, value) in pqx_util::SQLITE_PRAGMAS {
                    // journal_mode answers with a row, the others with none.
                    let mut pragma = conn.prepare(&format!("PRAGMA {name} = {value}"))?;
                    pragma.query([])?.next()?;
                }
                conn.pragma_update(None, "foreign_keys", "ON")?;
                Ok(Self::Sqlite(conn, gethostname()))
            }
            Db::Postgres(url) => {
                let conn = sqlx::PgConnection::connect(url)
                    .await
                    .context("connecting to PostgreSQL")?;
                Ok(Self::Postgres(conn, gethostname()))
            }
        }
    }

    /// Records a command's start, unless its message was cancelled; returns its history id.
    async fn start(&mut self) -> Result<i64> {
        let id = uuid::Uuid::new_v4().to_string();
        match self {
            Self::Sqlite(conn, host) => {
                let host = &*host;
                let inserted = conn
                    .prepare_cached(START_SQLITE)?
                    .execute(rusqlite::params![
                        MAILING_TO,
                        None::<i16>,
                        None::<i32>,
                        None::<i64>,
                        None::<i64>,
                        CMD,
                        now_text(),
                        id,
                        "q0",
                        host,
                        1,
                        None::<String>,
                        id
                    ])?;
                ensure!(inserted == 1, "the start row was not inserted");
                Ok(conn.last_insert_rowid())
            }
            Self::Postgres(conn, host) => {
                let row = sqlx::query(START_PG)
                    .bind(MAILING_TO)
                    .bind(None::<i16>)
                    .bind(None::<i32>)
                    .bind(None::<i64>)
                    .bind(None::<i64>)
                    .bind(CMD)
                    .bind(chrono::Utc::now())
                    .bind(&id)
                    .bind("q0")
                    .bind(&*host)
                    .bind(1i32)
                    .bind(None::<String>)
                    .bind(&id)
                    .fetch_one(&mut *conn)
                    .await?;
                Ok(row.try_get(0)?)
            }
        }
    }

    /// Records how the command of `history_id` ended.
    async fn end(&mut self, history_id: i64) -> Result<()> {
        match self {
            Self::Sqlite(conn, _) => {
                let values = rusqlite::params![history_id, 0, "exit code 0", now_text(), "", ""];
                conn.prepare_cached(END_SQLITE)?.execute(values)?;
            }
            Self::Postgres(conn, _) => {
                sqlx::query(END_PG)
                    .bind(history_id)
                    .bind(0i32)
                    .bind("exit code 0")
                    .bind(chrono::Utc::now())
                    .bind("")
                    .bind("")
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    async fn close(self) {
        if let Self::Postgres(conn, _) = self {
            let _ = conn.close().await;
        }
    }
}

fn gethostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A time as sqlx stores one in SQLite's text columns.
fn now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f%:z")
        .to_string()
}
