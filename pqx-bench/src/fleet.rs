//! A fleet on one machine: N subscribers, each on its own host queue in a network namespace of its
//! own (the test kit's `Env::start_fleet`), recording into one PostgreSQL with its default
//! `max_connections`. Figures: their memory idle (total PSS, subscribers and their guards; RSS per
//! subscriber), a broadcast's time from the publish to the last result recorded, the hosts' start
//! latencies, and the PostgreSQL connections in use at the broadcast's peak.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pqx_testkit::{children_of, pss_kib, rss_kib, DbKind, Env, Fleet, Records};

/// What one fleet measured.
pub struct Figures {
    pub pss_mib: f64,
    pub rss_per_subscriber_mib: f64,
    pub broadcast_secs: f64,
    /// Each host's start, from the publish, in milliseconds.
    pub starts_ms: Vec<f64>,
    pub peak_connections: usize,
}

/// Recorders for a fleet whose records go through the broker.
const RECORDERS: usize = 2;

/// Starts `hosts` subscribers in namespaces keeping their `records` so, measures them idle, then
/// one broadcast.
pub async fn measure(hosts: usize, records: Records) -> Result<Figures> {
    let exe = std::env::current_exe()?;
    let bins = exe.parent().context("the bench binary has no directory")?;
    let env = Env::new(bins, pqx_testkit::MAIN, DbKind::Postgres)
        .await?
        .with_log_filter("warn");
    let recorders = match records {
        Records::Database => 0,
        Records::Recorders => RECORDERS,
    };
    let fleet = env.start_fleet_with(hosts, "fleet.bench", records, recorders)?;
    // Idle: past the time a subscriber lets its database connection go.
    tokio::time::sleep(pqx_util::HOST_IDLE + Duration::from_secs(2)).await;
    let (pss, rss) = idle_memory_kib(&fleet)?;
    let (broadcast_secs, starts_ms, peak) = broadcast(&env, hosts).await?;
    drop(fleet);
    Ok(Figures {
        pss_mib: pss as f64 / 1024.0,
        rss_per_subscriber_mib: rss as f64 / 1024.0 / hosts as f64,
        broadcast_secs,
        starts_ms,
        peak_connections: usize::try_from(peak).unwrap_or(usize::MAX),
    })
}

/// The PSS of the fleet's subscribers, their guards and its recorders, and the subscribers' RSS,
/// in KiB.
fn idle_memory_kib(fleet: &Fleet) -> Result<(u64, u64)> {
    let (mut pss, mut rss) = (0u64, 0u64);
    for sub in &fleet.subscribers {
        let pid = sub.child.id();
        rss += rss_kib(pid)?;
        pss += pss_kib(pid)?;
        for guard in children_of(pid) {
            pss += pss_kib(guard).unwrap_or(0);
        }
    }
    for recorder in &fleet.recorders {
        pss += pss_kib(recorder.child.id())?;
    }
    Ok((pss, rss))
}

/// One broadcast to the `hosts` hosts: seconds to the last result recorded, each host's start
/// (ms from the publish), and the most connections PostgreSQL had in use meanwhile.
async fn broadcast(env: &Env, hosts: usize) -> Result<(f64, Vec<f64>, u64)> {
    let db_name = env.db.pg_name().context("database name")?.to_owned();
    let task = env.write(
        "all.json",
        r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["echo $EPOCHREALTIME"]}}}"#,
    )?;
    let sent = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let started = Instant::now();
    let mut publisher = env
        .command("publisher")
        .args(["-o", "pub", "--quiet", "-t"])
        .arg(&task)
        .spawn()?;
    // Counted as PostgreSQL's superuser, who has connections of its own at the peak, when the
    // server may take no other.
    let in_use = format!("select count(*) from pg_stat_activity where datname = '{db_name}'");
    let mut peak = 0;
    let deadline = started + Duration::from_secs(300);
    let secs = loop {
        // Less the one asking; a server that turns even its superuser away is at its limit.
        peak = match as_superuser(&db_name, &in_use) {
            Ok(n) => peak.max(n.saturating_sub(1)),
            Err(e) if format!("{e:#}").contains("too many clients") => peak.max(100),
            Err(e) => return Err(e),
        };
        // Turned away too: asked again at the next turn.
        let done = as_superuser(&db_name, "select count(*) from message_result").unwrap_or(0);
        if done >= hosts as u64 {
            break started.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {hosts} results in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    anyhow::ensure!(publisher.wait()?.success(), "the publisher failed");
    let store = pqx_app::Store::connect(&env.db.url).await?;
    let mut starts_ms = Vec::with_capacity(hosts);
    for attempt in store.attempts(None, hosts as u64).await? {
        let out = attempt.result.and_then(|r| r.stdout).context("no output")?;
        let at: f64 = out
            .trim()
            .parse()
            .with_context(|| format!("start {out:?}"))?;
        starts_ms.push((at - sent) * 1000.0);
    }
    Ok((secs, starts_ms, peak))
}

/// A count from SQL on database `db`, asked as PostgreSQL's superuser on this machine.
fn as_superuser(db: &str, sql: &str) -> Result<u64> {
    let out = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-qAt", "-d", db, "-c", sql])
        .output()
        .context("running psql as postgres")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| {
        format!(
            "psql said {text:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}
