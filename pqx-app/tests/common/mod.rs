//! What the integration tests share beyond the test kit: the standard init.yml with three host
//! queues, an environment with it on the real broker and database, and reading the records back.

#![allow(dead_code)] // each test file uses a part of it

use std::path::Path;

use anyhow::{Context, Result};
use pqx_app::entities::message_result;
use pqx_app::{Attempt, Store};
pub use pqx_testkit::*;

/// h1 and h2 (any of their pairs) share common_key=dev; h3 needs both of its pairs (all).
pub const INIT_YML: &str = r#"header_exchange: pqx.test
delayed_exchange: pqx.test.delayed
dead_letter_exchange: pqx.test.dlx
dead_letter_queue: pqx.test.dlq
dead_message_ttl: 10m
header_queues:
  - queue: h1
    match_type: any
    kv: { unique_key: h1, common_key: dev }
  - queue: h2
    match_type: any
    kv: { unique_key: h2, common_key: dev }
  - queue: h3
    match_type: all
    kv: { unique_key: h3, zone: eu }
"#;

pub const DLQ: &str = "pqx.test.dlq";

/// A test environment on the main node with the standard init.yml.
pub async fn env(db: DbKind) -> Result<Env> {
    env_on(MAIN, db).await
}

/// A test environment on `broker` with the standard init.yml.
pub async fn env_on(broker: Broker, db: DbKind) -> Result<Env> {
    let bins = Path::new(env!("CARGO_BIN_EXE_subscriber"))
        .parent()
        .context("the binaries' directory")?;
    let env = Env::new(bins, broker, db).await?;
    env.write("init.yml", INIT_YML)?;
    Ok(env)
}

/// Who the binaries run as: the administrator's user of conn.yml, or each host's and the
/// operator's least-privileged users (`initiator -o decl_users`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum As {
    Admin,
    HostUsers,
}

/// A test environment on the main node, laid out by `initiator -o init`, its binaries run as `who`.
pub async fn ready_env(db: DbKind, who: As) -> Result<Env> {
    let mut env = env(db).await?;
    env.init()?;
    if who == As::HostUsers {
        env.use_host_users()?;
    }
    Ok(env)
}

/// Makes `host` keep its records through the recorders (`db.protocol: broker` in its conn.yml,
/// which then names no database); returns its conn.yml as written.
pub fn records_through_recorders(env: &Env, host: &str) -> Result<String> {
    let path = env.path("hosts").join(host).join("conn.yml");
    let mut conn: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    conn["db"] = serde_yaml::from_str("protocol: broker")?;
    std::fs::write(&path, serde_yaml::to_string(&conn)?)?;
    Ok(std::fs::read_to_string(&path)?)
}

/// Reading a test environment's records.
pub(crate) trait Records {
    async fn store(&self) -> Result<Store>;

    /// The attempts of one message, oldest first.
    async fn attempts(&self, message_id: &str) -> Result<Vec<Attempt>>;

    /// Polls until `done` holds for the attempts of `message_id` (oldest first), or fails.
    async fn wait_attempts(
        &self,
        message_id: &str,
        secs: u64,
        done: impl Fn(&[Attempt]) -> bool,
    ) -> Result<Vec<Attempt>>;
}

impl Records for Env {
    async fn store(&self) -> Result<Store> {
        Ok(Store::connect(&self.db.url).await?)
    }

    async fn attempts(&self, message_id: &str) -> Result<Vec<Attempt>> {
        let mut all = self.store().await?.attempts(Some(message_id), 1000).await?;
        all.reverse();
        Ok(all)
    }

    async fn wait_attempts(
        &self,
        message_id: &str,
        secs: u64,
        done: impl Fn(&[Attempt]) -> bool,
    ) -> Result<Vec<Attempt>> {
        let deadline = Deadline::after_secs(secs);
        let store = self.store().await?;
        loop {
            let mut all = store.attempts(Some(message_id), 1000).await?;
            all.reverse();
            if done(&all) {
                return Ok(all);
            }
            deadline
                .tick(|| format!("waiting on the attempts of {message_id}: {all:#?}"))
                .await?;
        }
    }
}

/// The result row of an attempt, which must have ended.
pub fn ended(attempt: &Attempt) -> &message_result::Model {
    attempt.result.as_ref().expect("the attempt has a result")
}

/// How many of `attempts` have ended.
pub fn count_ended(attempts: &[Attempt]) -> usize {
    attempts.iter().filter(|a| a.result.is_some()).count()
}

/// The kinds of command the load and chaos tests mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Succeeds at once: one attempt.
    Ok,
    /// Fails the first time (on each queue), succeeds on the retry: two attempts.
    Flaky,
    /// Always fails, retry 1: two attempts, then the dead letters.
    Doomed,
}

/// The kind of command `i`: every tenth flaky, every twenty-fifth (but those) doomed.
pub fn kind(i: usize) -> Kind {
    match (i % 10, i % 25) {
        (0, _) => Kind::Flaky,
        (_, 1) => Kind::Doomed,
        _ => Kind::Ok,
    }
}
