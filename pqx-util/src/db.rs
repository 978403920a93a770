//! Connecting to the records' database (SQLite or PostgreSQL) by URL, with the pool settings pqx
//! needs, and keeping passwords out of what is shown.

use std::time::Duration;

use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::{redact_url, Error, Result};

/// How many connections a pool keeps to a PostgreSQL server.
#[derive(Debug, Clone, Copy)]
struct Pool {
    max: u32,
    min: u32,
    /// A connection idle this long is closed.
    idle: Option<Duration>,
}

/// Connects to the database at `url`, for a binary that runs and ends (initiator, inspector, ...).
pub async fn connect_db(url: &str) -> Result<DatabaseConnection> {
    let pool = Pool {
        max: 4,
        min: 1,
        idle: None,
    };
    connect_db_with(url, pool).await
}

/// Connects to the database at `url` for one host of a fleet (a subscriber): hundreds share one
/// PostgreSQL, whose default `max_connections` is 100, so each holds at most one connection, and
/// none while it has been idle for [`HOST_IDLE`]. A server that has no connection to spare at the
/// start is asked again for a while ([`HOST_CONNECT_FOR`]); later, a write it refuses so is held
/// and tried again by the subscriber, as when the database is away.
pub async fn connect_db_for_host(url: &str) -> Result<DatabaseConnection> {
    let pool = Pool {
        max: 1,
        min: 0,
        idle: Some(HOST_IDLE),
    };
    let until = std::time::Instant::now() + HOST_CONNECT_FOR;
    let mut backoff = crate::Backoff::new(Duration::from_millis(200), Duration::from_secs(3));
    loop {
        match connect_db_with(url, pool).await {
            Err(Error::Db { source, .. })
                if is_too_many_connections(&source) && std::time::Instant::now() < until =>
            {
                tokio::time::sleep(backoff.next_wait()).await;
            }
            done => return done,
        }
    }
}

/// How long a fleet host's connection may stay idle before it is closed.
pub const HOST_IDLE: Duration = Duration::from_secs(2);
/// How long a fleet host asks for its first connection while the server has none to spare.
const HOST_CONNECT_FOR: Duration = Duration::from_secs(60);

/// The pragmas pqx sets on every SQLite connection it opens, sqlx's or its own. WAL: readers
/// (inspector) and several subscribers on one file do not block each other; NORMAL: a commit is
/// durable across a crash of pqx, and costs no fsync; pqx appends rows and reads few back, so a
/// small page cache is enough.
pub const SQLITE_PRAGMAS: [(&str, &str); 3] = [
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("cache_size", "-512"),
];

/// How long a statement on SQLite waits for another connection's write to end.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How pqx opens a SQLite file, on top of what its URL says.
pub fn sqlite_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    SQLITE_PRAGMAS
        .iter()
        .fold(options, |options, (name, value)| {
            options.pragma(*name, *value)
        })
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
}

/// Whether `error` is PostgreSQL refusing a connection because it has as many as it takes
/// (SQLSTATE 53300, `too_many_connections`).
pub fn is_too_many_connections(error: &sea_orm::DbErr) -> bool {
    let Some(e) = sqlx_error(error) else {
        return false;
    };
    let Some(sqlx) = e.downcast_ref::<sea_orm::sqlx::Error>() else {
        return false;
    };
    sqlx.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "53300")
}

async fn connect_db_with(url: &str, pool: Pool) -> Result<DatabaseConnection> {
    let shown = redact_url(url);
    let sqlite = url.starts_with("sqlite:");
    if !sqlite {
        probe(url, &shown).await?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // SQLite takes one writer at a time: more connections only cost memory and threads.
        .max_connections(if sqlite { 1 } else { pool.max })
        .min_connections(if sqlite { 1 } else { pool.min })
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(sqlite_options);
    if sqlite {
        // An embedded file does not hang up: the check before each query only cost a round trip
        // to sqlx's SQLite thread.
        options.test_before_acquire(false);
    } else {
        // A connection that was busy a moment ago is alive; one idle for long may have been cut
        // (server restart, proxy, firewall) and is checked, and replaced, before use.
        options.test_before_acquire_if_idle_for(Duration::from_millis(250));
    }
    if let (false, Some(idle)) = (sqlite, pool.idle) {
        options.idle_timeout(idle);
    }
    let db = Database::connect(options).await.map_err(|source| {
        match sqlx_error(&source).and_then(|e| tls_refusal(e, url)) {
            Some(why) => Error::DbTls {
                url: shown.clone(),
                why,
            },
            None => Error::Db {
                url: shown.clone(),
                source,
            },
        }
    })?;
    Ok(db)
}

/// The sqlx error under a sea-orm one (which does not give it as its source).
fn sqlx_error(error: &sea_orm::DbErr) -> Option<&(dyn std::error::Error + 'static)> {
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        DbErr::Conn(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => {
            Some(e.as_ref())
        }
        _ => None,
    }
}

/// What a TLS failure under `error` means, said plainly, if there is one.
fn tls_refusal(error: &(dyn std::error::Error + 'static), url: &str) -> Option<String> {
    use rustls::CertificateError;
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            let host = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_default();
            return Some(match tls {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    "the server's certificate is not signed by the CA in sslrootcert (or the system's CAs without one)".to_owned()
                }
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                ) => format!("the server's certificate is not valid for the host name {host:?} the URL names"),
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => "the server's certificate has expired".to_owned(),
                other => other.to_string(),
            });
        }
        // An IO error's source is its inner error's source: the inner error is its `get_ref`.
        cause = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Opens and drops one TCP connection to the server, so that an unreachable server is reported as
/// such at once, rather than as a pool timeout after the acquire timeout.
async fn probe(url: &str, shown: &str) -> Result<()> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    let Some(host) = parsed.host_str() else {
        return Ok(());
    };
    let port = parsed.port().unwrap_or(5432);
    let unreachable = |why: String| Error::DbUnreachable {
        url: shown.to_owned(),
        host: host.to_owned(),
        port,
        why,
    };
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable("no answer in 5s".into())),
    }
}
