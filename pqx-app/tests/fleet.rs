//! Hosts on a network of their own: each subscriber in a network namespace with its own address
//! and host name, reaching the broker and PostgreSQL over the fleet network
//! (`scripts/services.sh --fleet-net`), never over 127.0.0.1. What matters end to end holds there:
//! routing by mailing_to, a retry on the failing host only, records naming each host.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{Context, Result};
use common::{count_ended, ready_env, As, DbKind, NetHost, Records, FLEET_GATEWAY};

/// The TCP connections of `host`'s namespace, open or lately closed: a subscriber lets its
/// database connection go once idle for 2 s, and the closed one waits in TIME-WAIT for a minute.
fn connections(host: &NetHost) -> Result<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.ns,
            "ss",
            "-Htn",
            "state",
            "connected",
        ])
        .output()
        .context("running ss in the host's namespace")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn hosts_on_their_own_network_run_what_is_mailed_to_them_and_record_their_names() -> Result<()>
{
    let env = ready_env(DbKind::Postgres, As::Admin).await?;
    let names = [("h1", "web-1"), ("h2", "web-2"), ("h3", "db-1")];
    let mut hosts = Vec::new();
    let mut subs = Vec::new();
    for (queue, name) in names {
        let host = NetHost::create(name)?;
        subs.push(env.subscriber_on(&host, queue)?);
        hosts.push(host);
    }
    // Each reached the broker and the database from its own address, by the fleet network.
    for host in &hosts {
        let established = connections(host)?;
        for port in [5672, 5432] {
            let local_to_remote = format!("{}:", host.addr);
            let remote = format!("{FLEET_GATEWAY}:{port}");
            assert!(
                established
                    .lines()
                    .any(|l| l.contains(&local_to_remote) && l.contains(&remote)),
                "{} has no connection to {remote}: {established}",
                host.name
            );
        }
    }

    // Routing: common_key dev reaches h1 and h2, not h3; each records its own host name.
    let task = env.write(
        "who.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"cmd":{"Bash":{"cmd":["hostname"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 2).await?;
    let ran: BTreeMap<String, (String, String)> = attempts
        .iter()
        .map(|a| {
            let queue = a.history.queue.clone().unwrap_or_default();
            let host = a.history.host.clone().unwrap_or_default();
            let said = a.result.as_ref().and_then(|r| r.stdout.clone());
            (queue, (host, said.unwrap_or_default().trim().to_owned()))
        })
        .collect();
    let expected = |name: &str| (name.to_owned(), name.to_owned());
    assert_eq!(
        ran,
        BTreeMap::from([
            ("h1".to_owned(), expected("web-1")),
            ("h2".to_owned(), expected("web-2")),
        ])
    );

    // A retry on the failing host only: fails once on web-2.
    let mark = env.path("failed-once");
    let task = env.write(
        "flaky.json",
        &format!(
            r#"{{"mailing_to":[{{"common_key":"dev"}}],"config":{{"retry":1,"poke":1}},"cmd":{{"Bash":{{"cmd":["[ \"$(hostname)\" != web-2 ] || [ -e {m} ] || {{ : > {m}; exit 1; }}"]}}}}}}"#,
            m = mark.display()
        ),
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 3).await?;
    let mut runs: BTreeMap<(String, String), Vec<i32>> = BTreeMap::new();
    for a in &attempts {
        let key = (
            a.history.queue.clone().unwrap_or_default(),
            a.history.host.clone().unwrap_or_default(),
        );
        let code = a.result.as_ref().map(|r| r.exit_code).unwrap_or(-1);
        runs.entry(key).or_default().push(code);
    }
    assert_eq!(
        runs,
        BTreeMap::from([
            (("h1".to_owned(), "web-1".to_owned()), vec![0]),
            (("h2".to_owned(), "web-2".to_owned()), vec![1, 0]),
        ])
    );
    // Nothing ever reached db-1.
    let all = env.store().await?.attempts(None, 100).await?;
    assert!(
        all.iter().all(|a| a.history.queue.as_deref() != Some("h3")),
        "{all:?}"
    );
    drop(subs);
    Ok(())
}

/// Connections to database `name` now, as the server counts them: all of them, and those from
/// the fleet network.
fn connections_to(name: &str) -> Result<(usize, usize)> {
    let query = format!(
        "select count(*), count(*) filter (where client_addr << '10.231.0.0/16') \
         from pg_stat_activity where datname = '{name}'"
    );
    let out = Command::new("psql")
        .arg(common::pg_admin_url())
        .args(["-qAtc", &query])
        .output()
        .context("running psql")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parse = |part: Option<&str>| -> Result<usize> {
        part.unwrap_or_default()
            .trim()
            .parse()
            .with_context(|| format!("psql said {text:?}"))
    };
    let mut parts = text.split('|');
    Ok((parse(parts.next())?, parse(parts.next())?))
}

/// What a broadcast to a fleet saw: the publisher's output, and the most connections to the
/// database (all, from the fleet network) while it ran.
struct Broadcast {
    stdout: String,
    peak: (usize, usize),
}

/// Broadcasts `hostname` to every host with `publisher --wait`, watching the database's
/// connections meanwhile.
async fn broadcast(env: &common::Env, db_name: &str) -> Result<Broadcast> {
    let task = env.write(
        "all.json",
        r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["hostname"]}}}"#,
    )?;
    let publisher = env
        .command("publisher")
        .args(["-o", "pub", "--quiet", "--wait", "60", "-t"])
        .arg(&task)
        .output();
    let watch = async {
        let mut peak = (0, 0);
        for _ in 0..100 {
            let now = connections_to(db_name).unwrap_or_default();
            peak = (peak.0.max(now.0), peak.1.max(now.1));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        peak
    };
    let (out, peak) = tokio::join!(tokio::task::spawn_blocking(move || publisher), watch);
    let out = out??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Broadcast { stdout, peak })
}

/// Every one of `hosts` hosts recorded one successful run, under its own name.
async fn each_host_recorded_its_run(env: &common::Env, hosts: usize) -> Result<()> {
    let all = env.store().await?.attempts(None, 1000).await?;
    let mut names: Vec<String> = all
        .iter()
        .filter(|a| a.result.as_ref().is_some_and(|r| r.exit_code == 0))
        .filter_map(|a| a.history.host.clone())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..hosts).map(|i| format!("node-{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    Ok(())
}

/// Waits until database `db_name` has no connection from the fleet network (`fleet`), or none
/// at all.
async fn connections_let_go(db_name: &str, fleet: bool, what: &str) -> Result<()> {
    let deadline = common::Deadline::after_secs(30);
    loop {
        let (all, from_fleet) = connections_to(db_name)?;
        if (if fleet { from_fleet } else { all }) == 0 {
            return Ok(());
        }
        deadline.tick(|| what.to_owned()).await?;
    }
}

#[tokio::test]
async fn a_broadcast_to_fifty_hosts_is_recorded_by_each_holding_at_most_one_connection(
) -> Result<()> {
    const HOSTS: usize = 50;
    let env = common::env(DbKind::Postgres).await?;
    let fleet = env.start_fleet(HOSTS, "fleet.x")?;
    let db_name = env.db.pg_name().context("the database's name")?.to_owned();
    // Idle subscribers hold no connection once their first is idle for long enough.
    connections_let_go(&db_name, false, "idle subscribers still hold connections").await?;

    let sent = broadcast(&env, &db_name).await?;
    assert_eq!(
        sent.stdout.trim(),
        format!("summary: {HOSTS} of {HOSTS} results: {HOSTS} succeeded, 0 failed"),
        "one line, not one per host"
    );
    let peak = sent.peak.0;
    println!("fleet of {HOSTS}: peak PostgreSQL connections during the broadcast: {peak}");
    assert!(peak <= HOSTS, "{peak} connections for {HOSTS} hosts");
    each_host_recorded_its_run(&env, HOSTS).await?;
    // And let go of their connections again.
    let what = "subscribers still hold connections after the broadcast";
    connections_let_go(&db_name, false, what).await?;
    drop(fleet);
    Ok(())
}

#[tokio::test]
async fn through_two_recorders_fifty_hosts_record_a_broadcast_without_a_database_connection(
) -> Result<()> {
    const HOSTS: usize = 50;
    let env = common::env(DbKind::Postgres).await?;
    let fleet = env.start_fleet_with(HOSTS, "fleet.r", pqx_testkit::Records::Recorders, 2)?;
    let db_name = env.db.pg_name().context("the database's name")?.to_owned();
    let sent = broadcast(&env, &db_name).await?;
    assert_eq!(
        sent.stdout.trim(),
        format!("summary: {HOSTS} of {HOSTS} results: {HOSTS} succeeded, 0 failed"),
    );
    let (peak, from_fleet) = sent.peak;
    println!("fleet of {HOSTS} through 2 recorders: peak PostgreSQL connections: {peak}");
    assert_eq!(from_fleet, 0, "a host connected to the database itself");
    // The recorders' pools (4 each), and nothing more however many hosts there are.
    assert!(peak <= 8, "{peak} connections for 2 recorders");
    each_host_recorded_its_run(&env, HOSTS).await?;
    // No host's namespace ever reached PostgreSQL's port.
    for host in &fleet.hosts {
        let seen = connections(host)?;
        let database = format!("{FLEET_GATEWAY}:5432");
        let reached = seen.split_whitespace().any(|peer| peer == database);
        assert!(!reached, "{}: {seen}", host.name);
    }
    drop(fleet);
    Ok(())
}

#[tokio::test]
async fn a_host_cut_off_while_its_command_runs_records_that_attempt_once() -> Result<()> {
    let env = ready_env(DbKind::Postgres, As::Admin).await?;
    // Heartbeats every 2 s: the broker gives up on a silent host within seconds.
    env.write(
        "conn.yml",
        &format!(
            "mq:\n  url: amqp://{u}:{p}@127.0.0.1:5672/{v}?heartbeat=2\nmq_api:\n  host: 127.0.0.1\n  port: 15672\n  user: {u}\n  pass: {p}\n  vhost: {v}\ndb:\n  url: \"{db}\"\n",
            u = common::MQ_USER,
            p = common::MQ_PASS,
            v = env.vhost.name,
            db = env.db.url,
        ),
    )?;
    let host = NetHost::create("cut-1")?;
    let sub = env.subscriber_on(&host, "h1")?;
    let task = env.write(
        "slow.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 3; echo done"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    // Cut off while it runs: it finishes there, but can reach neither the broker nor the records.
    host.link(false)?;
    let deadline = common::Deadline::after_secs(60);
    while env.vhost.queue_len("h1").await? == 0 {
        deadline
            .tick(|| "the broker did not take the message back from the silent host".to_owned())
            .await?;
    }
    host.link(true)?;
    // Back: it records the attempt it finished, and settles the copy handed out again from that
    // record instead of running it again.
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 1).await?;
    let deadline = common::Deadline::after_secs(60);
    while !sub
        .log()
        .contains("already recorded: settling it from the record")
    {
        deadline
            .tick(|| {
                format!(
                    "the redelivered copy was not settled from the record: {}",
                    sub.log()
                )
            })
            .await?;
    }
    let attempts_now = env.attempts(&id).await?;
    assert_eq!(attempts_now.len(), 1, "{attempts_now:?}");
    assert_eq!(attempts.len(), 1);
    assert_eq!(env.vhost.queue_len("h1").await?, 0);
    Ok(())
}
