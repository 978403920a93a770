//! A bench environment: the test kit's [`Env`] (a vhost, a database and a working directory of its
//! own) with N host queues q0..q{N-1} laid out by `initiator -o init`, the release binaries beside
//! the bench, and what the figures need of it: task files, publishing, subscribers, counts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pqx_testkit::{DbKind, Deadline, Env, Subscriber, MAIN};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// A vhost with `queues` host queues q0..q{N-1} (q_i bound by unique_key=q_i), laid out by
/// `initiator -o init`; the binaries log warnings only.
pub async fn env(db: DbKind, queues: usize) -> Result<Env> {
    let exe = std::env::current_exe()?;
    let bins = exe.parent().context("the bench binary has no directory")?;
    let env = Env::new(bins, MAIN, db)
        .await
        .context("build the release binaries first (make bench does)")?
        .with_log_filter("warn");
    let mut init = String::from(
        "header_exchange: pqx.bench\ndead_letter_queue: pqx.bench.dlq\nheader_queues:\n",
    );
    for q in 0..queues {
        init.push_str(&format!("  - {{queue: q{q}, kv: {{unique_key: q{q}}}}}\n"));
    }
    env.write("init.yml", &init)?;
    env.init()?;
    Ok(env)
}

/// What the figures do with an environment.
pub(crate) trait BenchEnv {
    /// Writes a JSON-lines file of `n` commands mailed to queue q`queue`.
    fn tasks(&self, name: &str, n: usize, queue: usize, script: &str) -> Result<PathBuf>;
    /// Publishes a JSON-lines file with the publisher binary; returns the wall time.
    fn publish_lines(&self, file: &std::path::Path) -> Result<Duration>;
    /// Starts a subscriber of q`queue` logging at its default level, as deployed (or at
    /// `PQX_BENCH_SUBSCRIBER_LOG`); returns once it consumes.
    fn bench_subscriber(&self, queue: usize, extra: &[&str]) -> Result<Subscriber>;
    /// A connection to the records.
    async fn db(&self) -> Result<DatabaseConnection>;
}

impl BenchEnv for Env {
    fn tasks(&self, name: &str, n: usize, queue: usize, script: &str) -> Result<PathBuf> {
        let line = serde_json::json!({
            "mailing_to": [{"unique_key": format!("q{queue}")}],
            "cmd": {"Bash": {"cmd": [script]}},
        })
        .to_string();
        let mut text = String::with_capacity((line.len() + 1) * n);
        for _ in 0..n {
            text.push_str(&line);
            text.push('\n');
        }
        self.write(name, &text)
    }

    fn publish_lines(&self, file: &std::path::Path) -> Result<Duration> {
        let started = Instant::now();
        let path = file.to_str().context("task file path")?;
        self.ok(
            "publisher",
            &["-o", "pub", "--quiet", "--lines", "-t", path],
        )?;
        Ok(started.elapsed())
    }

    fn bench_subscriber(&self, queue: usize, extra: &[&str]) -> Result<Subscriber> {
        let filter = std::env::var("PQX_BENCH_SUBSCRIBER_LOG").unwrap_or_else(|_| "info".into());
        self.subscriber_with(&format!("q{queue}"), extra, &[("RUST_LOG", &filter)])
    }

    async fn db(&self) -> Result<DatabaseConnection> {
        Ok(pqx_util::connect_db(&self.db.url).await?)
    }
}

/// Polls until `n` results are recorded, or fails after `secs`.
pub async fn wait_results(db: &DatabaseConnection, n: u64, secs: u64) -> Result<()> {
    let deadline = Deadline::after_secs(secs);
    loop {
        let done = count(db, "select count(*) from message_result").await?;
        if done >= n {
            return Ok(());
        }
        if deadline.passed() {
            bail!("only {done} of {n} results recorded within {secs}s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A count from SQL (`select count(*) ...`).
pub async fn count(db: &DatabaseConnection, sql: &str) -> Result<u64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await?
        .context("no row")?;
    let n: i64 = row.try_get_by_index(0)?;
    Ok(u64::try_from(n).unwrap_or_default())
}
