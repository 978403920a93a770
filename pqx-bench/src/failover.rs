//! Failover: the time from the kill of a broker node to the next command starting on a subscriber
//! that was connected to it. A subscriber of a quorum host queue on the three-node cluster runs a
//! command; its node is killed (SIGKILL to the Erlang VM) and, at once, a command that prints its
//! own start (`$EPOCHREALTIME`) is published through the surviving nodes; the figure is that start
//! minus the moment of the kill. The cluster is brought back between repetitions.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pqx_testkit::{connected_node, kill_node, restore_cluster, DbKind, Env};

use crate::env::{count, BenchEnv};

/// One repetition: seconds from the kill to the command's start.
pub async fn kill_to_start_secs() -> Result<f64> {
    let exe = std::env::current_exe()?;
    let bins = exe.parent().context("the bench binary has no directory")?;
    let env = Env::on_cluster(bins, DbKind::Sqlite)
        .await
        .context("start the cluster first (scripts/services.sh --cluster; make bench does)")?;
    env.write(
        "init.yml",
        "header_exchange: pqx.bench\ndead_letter_queue: pqx.bench.dlq\nqueue_type: quorum\nheader_queues:\n  - {queue: q0, kv: {unique_key: q0}}\n",
    )?;
    env.init()?;
    let sub = env.subscriber("q0")?;
    let warm = env.write(
        "warm.json",
        r#"{"mailing_to":[{"unique_key":"q0"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    env.publish(&warm)?;
    let db = env.db().await?;
    wait_results(&db, 1).await?;
    let node = connected_node(&sub.log()).context("the node the subscriber connected to")?;
    let task = env.write(
        "timed.json",
        r#"{"mailing_to":[{"unique_key":"q0"}],"cmd":{"Bash":{"cmd":["echo $EPOCHREALTIME"]}}}"#,
    )?;
    let killed_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    kill_node(node)?;
    let result = async {
        env.publish(&task)?;
        wait_results(&db, 2).await?;
        let store = pqx_app::Store::connect(&env.db.url).await?;
        let latest = store.attempts(None, 1).await?;
        let stdout = latest
            .first()
            .and_then(|a| a.result.as_ref())
            .and_then(|r| r.stdout.clone())
            .context("the timed command's output")?;
        let started: f64 = stdout
            .trim()
            .parse()
            .with_context(|| format!("start time {stdout:?}"))?;
        Ok(started - killed_at)
    }
    .await;
    restore_cluster()?;
    result
}

/// Waits until `n` results are recorded.
async fn wait_results(db: &sea_orm::DatabaseConnection, n: u64) -> Result<()> {
    crate::env::wait_results(db, n, 120).await?;
    let done = count(db, "select count(*) from message_result").await?;
    anyhow::ensure!(done == n, "{done} results, not {n}: a command ran twice");
    Ok(())
}
