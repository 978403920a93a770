//! pqx's own throughput: the publisher binary publishing a JSON-lines file, commands completed end
//! to end through real subscribers, and publishing with many host queues bound to the exchange.

use std::time::Duration;

use anyhow::{Context, Result};
use lapin::options::QueuePurgeOptions;

use pqx_testkit::{busy_cpu_secs, process_cpu_secs, DbKind, Env};

use crate::env::{env, wait_results, BenchEnv};

/// Commands/s of `publisher --lines` for `n` commands to q0 (wall time of the process).
pub async fn bulk_publish_rate(env: &Env, n: usize) -> Result<f64> {
    let file = env.tasks("bulk.jsonl", n, 0, "true")?;
    let took = env.publish_lines(&file)?;
    purge(env, "q0").await?;
    Ok(n as f64 / took.as_secs_f64())
}

/// Empties a queue.
pub async fn purge(env: &Env, queue: &str) -> Result<()> {
    let conn = env.vhost.connect().await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await?;
    let _ = conn.close(200, "".into()).await;
    Ok(())
}

/// One end-to-end run: how fast, and where the CPU went.
#[derive(Debug, Clone, Copy)]
pub struct EndToEnd {
    /// Completed commands/s.
    pub rate: f64,
    /// Microseconds of CPU per command, all cores, every process (from /proc/stat).
    pub cpu_us: f64,
    /// Of which the subscribers themselves (all their threads).
    pub subscriber_us: f64,
    /// Of which the commands they ran (bash), as reaped.
    pub commands_us: f64,
    /// Of which the broker's (all of RabbitMQ's node, its other vhosts' work too).
    pub broker_us: f64,
}

/// Completed commands/s: `n` `Bash ["true"]` commands queued on q0 first, then `subscribers`
/// subscribers (with `extra` arguments) run them; the rate is taken between the first attempt's
/// start and the last attempt's end as recorded, so that start-up is not counted. The CPU figures
/// cover the subscribers' whole life (start-up included) and, system-wide, the same time.
pub async fn end_to_end(
    db: DbKind,
    n: usize,
    subscribers: usize,
    extra: &[&str],
) -> Result<EndToEnd> {
    end_to_end_in(&env(db, 1).await?, n, subscribers, extra).await
}

/// [`end_to_end`] in an environment made by the caller (with signing keys, say).
pub async fn end_to_end_in(
    env: &Env,
    n: usize,
    subscribers: usize,
    extra: &[&str],
) -> Result<EndToEnd> {
    let file = env.tasks("e2e.jsonl", n, 0, "true")?;
    env.publish_lines(&file)?;
    let conn = env.db().await?;
    let broker = broker_pid(env.vhost.broker.amqp_port)?;
    let broker_before = process_cpu_secs(&broker)?.0;
    let busy_before = busy_cpu_secs()?;
    let mut subs = Vec::new();
    for _ in 0..subscribers {
        subs.push(env.bench_subscriber(0, extra)?);
    }
    wait_results(&conn, n as u64, 600).await?;
    let busy = busy_cpu_secs()? - busy_before;
    let broker = process_cpu_secs(&broker)?.0 - broker_before;
    let (mut own, mut children) = (0.0, 0.0);
    for sub in &subs {
        let (o, c) = sub.cpu_secs()?;
        own += o;
        children += c;
    }
    drop(subs);
    let span = span_secs(&conn).await?;
    let per_command = |secs: f64| secs * 1e6 / n as f64;
    Ok(EndToEnd {
        rate: n as f64 / span,
        cpu_us: per_command(busy),
        subscriber_us: per_command(own),
        commands_us: per_command(children),
        broker_us: per_command(broker),
    })
}

/// The pid of the process listening on 127.0.0.1:`port` (the broker node), as `ss` tells.
fn broker_pid(port: u16) -> Result<String> {
    let out = std::process::Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{port}")])
        .output()
        .context("running ss to find the broker's process")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()));
    pid.map(str::to_owned)
        .with_context(|| format!("no process listens on port {port} by ss: {text:?}"))
}

/// Seconds from the first recorded start to the last recorded end.
async fn span_secs(conn: &sea_orm::DatabaseConnection) -> Result<f64> {
    use pqx_app::entities::{message_history, message_result};
    use sea_orm::{EntityTrait, QueryOrder};
    let first = message_history::Entity::find()
        .order_by_asc(message_history::Column::Time)
        .one(conn)
        .await?
        .map(|h| h.time);
    let last = message_result::Entity::find()
        .order_by_desc(message_result::Column::Time)
        .one(conn)
        .await?
        .map(|r| r.time);
    match (first, last) {
        (Some(first), Some(last)) => {
            Ok(((last - first).num_microseconds().unwrap_or(1) as f64 / 1e6).max(1e-6))
        }
        _ => anyhow::bail!("no records"),
    }
}

/// Publish commands/s of `publisher --lines` with `queues` host queues bound to the exchange.
pub async fn routing_rate(queues: usize, n: usize) -> Result<f64> {
    let env = env(DbKind::Sqlite, queues).await?;
    let rate = bulk_publish_rate(&env, n).await?;
    Ok(rate)
}

/// Waits a little so that a figure is not taken during the previous one's clean-up.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}
