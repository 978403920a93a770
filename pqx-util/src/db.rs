//! The database connection. conn.yml's `db` takes either a `url` or the original PQX's
//! `protocol`/`host`/`port`/`user`/`pass`/`db`; SQLite is the embedded default.

use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde::Deserialize;

use crate::{Error, Result};

/// The SQLite file used when conn.yml names no database.
pub const DEFAULT_DB_URL: &str = "sqlite://pqx.db?mode=rwc";

/// Database settings, as in conn.yml's `db` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// A full URL (`sqlite://pqx.db?mode=rwc`, `postgres://user:pass@host:5432/db`); wins over the parts.
    pub url: Option<String>,
    /// `postgres` or `sqlite`, with the parts below (the original PQX's form).
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub pass: Option<String>,
    pub db: Option<String>,
}

impl DbConfig {
    /// A config for one URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// The URL to connect to; defaults to [`DEFAULT_DB_URL`] when nothing is set.
    pub fn url(&self) -> Result<String> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        let Some(protocol) = self.protocol.as_deref() else {
            return Ok(DEFAULT_DB_URL.to_owned());
        };
        let missing = |key: &str| {
            Error::DbConfig(format!(
                "db.{key} is required with db.protocol {protocol} (or give db.url)"
            ))
        };
        match protocol {
            "sqlite" => {
                let file = self.db.as_deref().ok_or_else(|| missing("db"))?;
                Ok(format!("sqlite://{file}?mode=rwc"))
            }
            "postgres" | "postgresql" => {
                let host = self.host.as_deref().ok_or_else(|| missing("host"))?;
                let user = self.user.as_deref().ok_or_else(|| missing("user"))?;
                let db = self.db.as_deref().ok_or_else(|| missing("db"))?;
                let port = self.port.unwrap_or(5432);
                let user = utf8_percent_encode(user, NON_ALPHANUMERIC);
                let auth = match self.pass.as_deref() {
                    Some(pass) => format!("{user}:{}", utf8_percent_encode(pass, NON_ALPHANUMERIC)),
                    None => user.to_string(),
                };
                Ok(format!("postgres://{auth}@{host}:{port}/{db}"))
            }
            other => Err(Error::DbConfig(format!(
                "db.protocol {other:?} is not supported: expected postgres or sqlite"
            ))),
        }
    }
}

/// The URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Connects to the configured database.
pub async fn connect_db(config: &DbConfig) -> Result<DatabaseConnection> {
    let url = config.url()?;
    let shown = redact_url(&url);
    if !url.starts_with("sqlite:") {
        probe(&url, &shown).await?;
    }
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.clone());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        // SQLite takes one writer at a time: more connections only cost memory and threads.
        .max_connections(if sqlite { 1 } else { 4 })
        .min_connections(1)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            // WAL: readers (inspector) and several subscribers on one file do not block each
            // other; NORMAL: a commit is durable across a crash of pqx, and costs no fsync.
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                // pqx appends rows and reads few back: a small page cache is enough.
                .pragma("cache_size", "-512")
        });
    if sqlite {
        // An embedded file does not hang up: the check before each query only cost a round trip
        // to sqlx's SQLite thread.
        options.test_before_acquire(false);
    } else {
        // A connection that was busy a moment ago is alive; one idle for long may have been cut
        // (server restart, proxy, firewall) and is checked, and replaced, before use.
        options.test_before_acquire_if_idle_for(Duration::from_millis(250));
    }
    let db = Database::connect(options)
        .await
        .map_err(|source| Error::Db {
            url: shown.clone(),
            source,
        })?;
    Ok(db)
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
    let unreachable = |why: String| {
        Error::DbConfig(format!(
            "database {shown}: cannot reach {host}:{port}: {why}"
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_sqlite() {
        assert_eq!(DbConfig::default().url().unwrap(), DEFAULT_DB_URL);
    }

    #[test]
    fn original_parts_make_a_postgres_url() {
        let c = DbConfig {
            protocol: Some("postgres".into()),
            host: Some("127.0.0.1".into()),
            port: Some(5433),
            user: Some("dev".into()),
            pass: Some("p@ss word".into()),
            db: Some("pqx".into()),
            ..DbConfig::default()
        };
        assert_eq!(
            c.url().unwrap(),
            "postgres://dev:p%40ss%20word@127.0.0.1:5433/pqx"
        );
    }

    #[test]
    fn missing_part_is_named() {
        let c = DbConfig {
            protocol: Some("postgres".into()),
            host: Some("h".into()),
            ..DbConfig::default()
        };
        let err = c.url().unwrap_err().to_string();
        assert_eq!(
            err,
            "db.user is required with db.protocol postgres (or give db.url)"
        );
    }

    #[test]
    fn unknown_protocol_is_rejected() {
        let c = DbConfig {
            protocol: Some("mysql".into()),
            ..DbConfig::default()
        };
        assert!(c
            .url()
            .unwrap_err()
            .to_string()
            .contains("\"mysql\" is not supported"));
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:1/d"),
            "postgres://u:***@h:1/d"
        );
        assert_eq!(
            redact_url("sqlite://pqx.db?mode=rwc"),
            "sqlite://pqx.db?mode=rwc"
        );
    }
}
