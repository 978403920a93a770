//! A database of one test's own: a SQLite file in its directory, or a PostgreSQL database created
//! for it on the server `scripts/services.sh --postgres` starts, dropped on drop.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::unique;

/// Which database the records go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// A database made for one test.
pub struct TestDb {
    /// Where the binaries find it (conn.yml's `db.url`).
    pub url: String,
    pg_name: Option<String>,
}

/// The PostgreSQL server tests create their databases on: `PQX_TEST_PG_URL`.
pub fn pg_admin_url() -> String {
    std::env::var("PQX_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://pqx:pqx@127.0.0.1:5432/pqx".into())
}

impl TestDb {
    /// The PostgreSQL database's name (none for SQLite).
    pub fn pg_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    /// A new database of `kind`; a SQLite file goes in `dir`.
    pub fn create(kind: DbKind, dir: &Path) -> Result<Self> {
        match kind {
            DbKind::Sqlite => Ok(Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("pqx.db").display()),
                pg_name: None,
            }),
            DbKind::Postgres => {
                let name = unique("pqx_test");
                psql(&format!("CREATE DATABASE {name}"))?;
                let admin = pg_admin_url();
                let server = admin
                    .rsplit_once('/')
                    .map(|(server, _)| server)
                    .context("PQX_TEST_PG_URL has no database name")?;
                Ok(Self {
                    url: format!("{server}/{name}"),
                    pg_name: Some(name),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            if let Err(e) = psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")) {
                eprintln!("pqx-testkit: {e:#}");
            }
        }
    }
}

/// Runs one statement on the admin database.
fn psql(sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([&pg_admin_url(), "-qAtc", sql])
        .output()
        .context("running psql (is PostgreSQL's client installed?)")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
