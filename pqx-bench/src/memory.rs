//! Subscriber memory: resident set size idle after start, and after it ran 1,000 commands.

use std::time::Duration;

use anyhow::Result;

use pqx_testkit::Env;

use crate::env::{wait_results, BenchEnv};

/// (RSS idle, RSS after `n` commands), in MiB, of one subscriber started with `extra` arguments.
pub async fn rss_mib(env: &Env, n: usize, extra: &[&str]) -> Result<(f64, f64)> {
    let sub = env.bench_subscriber(0, extra)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = sub.rss_kib()? as f64 / 1024.0;
    let file = env.tasks("memory.jsonl", n, 0, "true")?;
    env.publish_lines(&file)?;
    let db = env.db().await?;
    wait_results(&db, n as u64, 300).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = sub.rss_kib()? as f64 / 1024.0;
    Ok((idle, after))
}
