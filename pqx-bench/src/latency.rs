//! Publish-to-start latency: commands published one at a time at a modest rate; each records its
//! own start with bash's `$EPOCHREALTIME` (no extra process is timed), which the record keeps as
//! its stdout; the latency is that start minus the moment just before the publish.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pqx::mq::{command_properties, field_table, Destination, Publisher};
use pqx_testkit::Env;

use crate::env::{wait_results, BenchEnv};

/// The latencies in milliseconds of `n` commands published every `gap` to a subscriber started
/// with `extra` arguments.
pub async fn latencies_ms(env: &Env, n: usize, gap: Duration, extra: &[&str]) -> Result<Vec<f64>> {
    let sub = env.bench_subscriber(0, extra)?;
    let conn = pqx::mq::connect(&env.vhost.url(), "pqx bench").await?;
    let publisher = Publisher::open(&conn).await?;
    let command = serde_json::json!({
        "mailing_to": [{"unique_key": "q0"}],
        "cmd": {"Bash": {"cmd": ["echo $EPOCHREALTIME"]}},
    });
    let body = serde_json::to_vec(&command)?;
    let pairs = std::collections::BTreeMap::from([("unique_key".to_owned(), "q0".to_owned())]);
    let mut published = HashMap::new();
    for _ in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let properties = command_properties(&id, field_table(&pairs), None, None);
        let at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        let to = Destination::new("pqx.bench", "", "q0");
        publisher.publish(to, &body, properties).await?;
        published.insert(id, at);
        tokio::time::sleep(gap).await;
    }
    let db = env.db().await?;
    wait_results(&db, n as u64, 120).await?;
    let store = pqx_app::Store::connect(&env.db.url).await?;
    let mut latencies = Vec::with_capacity(n);
    for attempt in store.attempts(None, n as u64).await? {
        let id = attempt.history.message_id.context("no message id")?;
        let stdout = attempt.result.and_then(|r| r.stdout).context("no stdout")?;
        let started: f64 = stdout
            .trim()
            .parse()
            .with_context(|| format!("start time {stdout:?}"))?;
        let sent = published.get(&id).context("unknown message")?;
        latencies.push((started - sent) * 1000.0);
    }
    let _ = publisher.close().await;
    let _ = conn.close(200, "".into()).await;
    if let Ok(keep) = std::env::var("PQX_BENCH_KEEP") {
        std::fs::copy(&sub.log, &keep)?;
    }
    Ok(latencies)
}
