//! `pqx-bench`: measures pqx on this machine in one run and prints one table (and the same figures
//! as JSON): the fork floor, the raw broker, bulk publishing, what a subscriber's parts cost per
//! command alone and in a bare loop, end-to-end throughput with SQLite and PostgreSQL (with the
//! parts, in section e2e), publish-to-start latency, subscriber memory, routing with many host
//! queues, signed commands, and failover on a broker cluster. Each figure is the median of several
//! repetitions. It needs the services of `scripts/services.sh --postgres --cluster` and the release
//! binaries beside it (`make bench` does both).

mod broker;
mod env;
mod failover;
mod fleet;
mod fork;
mod latency;
mod memory;
mod parts;
mod report;
mod signing;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use pqx_testkit::{DbKind, Records};
use report::{percentile, Report};

/// Measure pqx: throughput, latency, memory and routing scale.
#[derive(Debug, Parser)]
#[command(name = "pqx-bench", version)]
struct Cli {
    /// Repetitions of each figure (the median is reported)
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Commands per end-to-end run (2,000 keeps the whole bench under 10 minutes on 2 cores)
    #[arg(long, default_value_t = 2000)]
    commands: usize,
    /// Messages per publishing run
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Where the JSON goes
    #[arg(long, default_value = "target/bench/bench.json")]
    out: PathBuf,
    /// Leave out the PostgreSQL figures
    #[arg(long)]
    no_postgres: bool,
    /// Only these sections (fork, broker, publish, e2e, latency, memory, routing, signing,
    /// failover, fleet); default all
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Cli {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(report) => {
            println!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pqx-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn reps<T>(n: usize, mut f: impl FnMut() -> Result<T>) -> Result<Vec<T>> {
    (0..n).map(|_| f()).collect()
}

async fn run(cli: &Cli) -> Result<Report> {
    let mut r = Report::default();
    let n = cli.reps.max(1);

    eprintln!("1. fork floor");
    let spawns = 2000;
    let mut floor_figure = |name: &str, parallel: usize| -> Result<f64> {
        let runs = reps(n, || fork::spawn_rate(spawns / parallel, parallel))?;
        let cpu: Vec<f64> = runs.iter().map(|(_, cpu)| *cpu).collect();
        let note = format!(
            "spawn + wait from Rust; bash CPU/run {:.0} us",
            report::median(&cpu)
        );
        let rates = runs.iter().map(|(rate, _)| *rate).collect();
        Ok(r.add("fork floor", name, rates, "runs/s", &note))
    };
    let one = floor_figure("bash -c true, 1 at a time", 1)?;
    let two = floor_figure("bash -c true, 2 in parallel", 2)?;
    let floor = one.max(two);

    if cli.wants("broker") || cli.wants("publish") {
        broker_and_publish(cli, &mut r).await?;
    }
    if cli.wants("e2e") {
        end_to_end(cli, &mut r, floor).await?;
    }
    if cli.wants("latency") {
        latency(cli, &mut r).await?;
    }
    if cli.wants("memory") {
        memory(cli, &mut r).await?;
    }
    if cli.wants("routing") {
        routing(cli, &mut r).await?;
    }
    if cli.wants("signing") {
        signing(cli, &mut r).await?;
    }
    if cli.wants("failover") {
        failover(cli, &mut r).await?;
    }
    if cli.wants("fleet") {
        fleet(&mut r).await?;
    }

    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&cli.out, serde_json::to_string_pretty(&r)?)
        .with_context(|| format!("writing {}", cli.out.display()))?;
    eprintln!("figures written to {}", cli.out.display());
    Ok(r)
}

async fn broker_and_publish(cli: &Cli, r: &mut Report) -> Result<()> {
    let n = cli.reps.max(1);
    eprintln!("2. raw broker");
    let env = env::env(DbKind::Sqlite, 1).await?;
    let body = serde_json::to_vec(&serde_json::json!({
        "mailing_to": [{"unique_key": "q0"}],
        "cmd": {"Bash": {"cmd": ["true"]}},
    }))?;
    let mut raw_pub = Vec::new();
    let mut raw_con = Vec::new();
    let mut raw_pqx = Vec::new();
    for _ in 0..n {
        let (p, c) = broker::raw_rates(&env, &body, cli.messages, false).await?;
        raw_pub.push(p);
        raw_con.push(c);
        raw_pqx.push(broker::raw_rates(&env, &body, cli.messages, true).await?.0);
    }
    let size = format!("{} B persistent messages", body.len());
    let raw = r.add(
        "raw broker",
        "lapin publish, pipelined confirms",
        raw_pub,
        "msg/s",
        &size,
    );
    r.add("raw broker", "lapin consume + ack", raw_con, "msg/s", &size);
    let raw_as_pqx = r.add(
        "raw broker",
        "lapin publish, a pqx command's properties",
        raw_pqx,
        "msg/s",
        "message id, timestamp, headers, mandatory",
    );

    eprintln!("3. bulk publish");
    let mut bulk = Vec::new();
    for _ in 0..n {
        bulk.push(throughput::bulk_publish_rate(&env, cli.messages).await?);
    }
    let note = format!(
        "publisher --lines, one process; {:.0}% of raw, {:.0}% of raw with pqx's properties",
        100.0 * report::median(&bulk) / raw,
        100.0 * report::median(&bulk) / raw_as_pqx
    );
    r.add(
        "publish",
        "publisher, JSON lines, confirms",
        bulk,
        "cmd/s",
        &note,
    );
    Ok(())
}

/// What the three parts cost per command in one loop, with each database measured: the floor
/// under a subscriber's own CPU per command.
struct Floors(Vec<(DbKind, f64)>);

impl Floors {
    fn of(&self, db: DbKind) -> Option<f64> {
        self.0.iter().find(|(kind, _)| *kind == db).map(|(_, f)| *f)
    }
}

/// Each part a subscriber is built on, alone and then all in one loop (a bare subscriber), on the
/// messages and tables of a bench environment.
async fn parts(cli: &Cli, r: &mut Report) -> Result<Floors> {
    use env::BenchEnv;
    use parts::{Cost, Db};
    use tokio::task::block_in_place as alone;
    let (n, commands) = (cli.reps.max(1), cli.commands);
    eprintln!("4. a subscriber's parts alone");
    let sqlite = env::env(DbKind::Sqlite, 1).await?;
    let postgres = match cli.no_postgres {
        true => None,
        false => Some(env::env(DbKind::Postgres, 1).await?),
    };
    let (file, url) = (sqlite.path("pqx.db"), sqlite.vhost.url());
    let mut dbs = vec![Db::Sqlite(&file)];
    if let Some(env) = &postgres {
        dbs.push(Db::Postgres(&env.db.url));
    }
    let publish = || -> Result<()> {
        let tasks = sqlite.tasks("parts.jsonl", commands, 0, "true")?;
        sqlite.publish_lines(&tasks).map(drop)
    };
    let (mut spawn, mut take) = (Vec::new(), Vec::new());
    let mut rows: Vec<Vec<Cost>> = vec![Vec::new(); dbs.len()];
    let mut bare: Vec<Vec<Cost>> = vec![Vec::new(); dbs.len()];
    for _ in 0..n {
        spawn.push(alone(|| parts::spawn_and_reap(commands))?);
        publish()?;
        take.push(alone(|| parts::take_and_ack(&url, "q0", commands))?);
        for (k, db) in dbs.iter().enumerate() {
            rows[k].push(alone(|| parts::rows(*db, commands))?);
            publish()?;
            bare[k].push(alone(|| parts::bare_subscriber(&url, "q0", *db, commands))?);
        }
    }
    let what = "tokio, stdin /dev/null, output piped and read; bash's CPU not counted";
    add_part(r, "spawn and reap bash -c true", &spawn, what);
    let what = "lapin, prefetch 1, the publisher's messages";
    add_part(r, "take a command's message and ack it", &take, what);
    let mut floors = Floors(Vec::new());
    for (k, db) in dbs.iter().enumerate() {
        let name = db.name();
        let note = format!(
            "{}, pqx's tables and statements, each committed",
            db.driver()
        );
        add_part(r, &format!("a command's two rows, {name}"), &rows[k], &note);
        let note = "take, record the start, run bash, record the result, ack: the floor";
        let floor = add_part(r, &format!("all three in one loop, {name}"), &bare[k], note);
        floors.0.push((db.kind(), floor));
    }
    Ok(floors)
}

/// Adds a part's CPU per command, its context switches in the note; returns the median CPU.
fn add_part(r: &mut Report, name: &str, costs: &[parts::Cost], what: &str) -> f64 {
    let switches: Vec<f64> = costs.iter().map(|c| c.switches).collect();
    let note = format!("{what}; {:.1} context switches", report::median(&switches));
    let cpu = costs.iter().map(|c| c.cpu_us).collect();
    let section = "a subscriber's parts, CPU/cmd";
    r.add(section, name, cpu, "us", &note)
}

async fn end_to_end(cli: &Cli, r: &mut Report, floor: f64) -> Result<()> {
    let n = cli.reps.max(1);
    let floors = parts(cli, r).await?;
    eprintln!("5. end to end");
    let mut dbs = vec![(DbKind::Sqlite, "SQLite")];
    if !cli.no_postgres {
        dbs.push((DbKind::Postgres, "PostgreSQL"));
    }
    for (db, name) in dbs {
        for (subs, extra, label) in [
            (1, &[][..], "1 subscriber"),
            (2, &[][..], "2 subscribers"),
            (
                1,
                &["--concurrency", "2"][..],
                "1 subscriber, --concurrency 2",
            ),
            (
                1,
                &["--concurrency", "4"][..],
                "1 subscriber, --concurrency 4",
            ),
            (
                2,
                &["--concurrency", "2"][..],
                "2 subscribers, --concurrency 2",
            ),
        ] {
            let mut runs = Vec::new();
            for _ in 0..n {
                runs.push(throughput::end_to_end(db, cli.commands, subs, extra).await?);
                throughput::settle().await;
            }
            let of =
                |f: fn(&throughput::EndToEnd) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
            let rates = of(|e| e.rate);
            let subscriber = report::median(&of(|e| e.subscriber_us));
            let above = floors
                .of(db)
                .map(|parts| format!(" ({:.0} above the bare loop)", subscriber - parts))
                .unwrap_or_default();
            let note = format!(
                "{} x Bash true; {:.0}% of the fork floor; CPU/cmd: {:.0} us all, {subscriber:.0} subscriber{above}, {:.0} bash, {:.0} broker",
                cli.commands,
                100.0 * report::median(&rates) / floor,
                report::median(&of(|e| e.cpu_us)),
                report::median(&of(|e| e.commands_us)),
                report::median(&of(|e| e.broker_us)),
            );
            r.add(&format!("end to end, {name}"), label, rates, "cmd/s", &note);
        }
    }
    Ok(())
}

async fn latency(cli: &Cli, r: &mut Report) -> Result<()> {
    let n = cli.reps.max(1);
    eprintln!("6. latency");
    let body = serde_json::to_vec(&serde_json::json!({
        "mailing_to": [{"unique_key": "q0"}],
        "cmd": {"Bash": {"cmd": ["echo $EPOCHREALTIME"]}},
    }))?;
    // Each repetition measures pqx and then both floors, so that pqx's share is taken from
    // figures of the same minute: this VM's speed moves between minutes by more than the share.
    let (mut pqx, mut spawn, mut broker_floor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let env = env::env(DbKind::Sqlite, 1).await?;
        pqx.push(latency::latencies_ms(&env, 300, Duration::from_millis(10), &[]).await?);
        spawn.push(fork::spawn_latencies_ms(300)?);
        let env = env::env(DbKind::Sqlite, 1).await?;
        let raw = broker::raw_latencies_ms(&env, &body, 300, Duration::from_millis(10));
        broker_floor.push(raw.await?);
    }
    let note = "publish -> the command's own start ($EPOCHREALTIME), 300 at 100/s, SQLite";
    let all = [("p50", 50.0), ("p99", 99.0), ("max", 100.0)];
    add_percentiles(r, &pqx, &all, note);
    let note = "spawn from Rust -> bash's $EPOCHREALTIME, no broker: the spawn's share";
    let floors = [("spawn floor p50", 50.0), ("spawn floor p99", 99.0)];
    add_percentiles(r, &spawn, &floors, note);
    let note = "lapin publish -> lapin delivery, through the headers exchange: the broker's share";
    let floors = [("broker floor p50", 50.0), ("broker floor p99", 99.0)];
    add_percentiles(r, &broker_floor, &floors, note);
    // What is left once the spawn and the broker are taken away: pqx's own share.
    for (name, p) in [("pqx's share p50", 50.0), ("pqx's share p99", 99.0)] {
        let shares = (0..n)
            .map(|k| {
                percentile(&pqx[k], p) - percentile(&spawn[k], p) - percentile(&broker_floor[k], p)
            })
            .collect();
        let note = "each repetition's latency minus its own two floors (median of repetitions)";
        r.add("latency", name, shares, "ms", note);
    }
    Ok(())
}

/// Adds, for each `(name, p)`, the median over repetitions of each one's `p`th percentile.
fn add_percentiles(r: &mut Report, runs: &[Vec<f64>], figures: &[(&str, f64)], note: &str) {
    for (name, p) in figures {
        let samples = runs.iter().map(|l| percentile(l, *p)).collect();
        r.add("latency", name, samples, "ms", note);
    }
}

async fn memory(cli: &Cli, r: &mut Report) -> Result<()> {
    let n = cli.reps.max(1);
    eprintln!("7. memory");
    let mut idle = Vec::new();
    let mut after = Vec::new();
    for _ in 0..n {
        let env = env::env(DbKind::Sqlite, 1).await?;
        let (i, a) = memory::rss_mib(&env, 1000, &[]).await?;
        idle.push(i);
        after.push(a);
    }
    let growth: Vec<f64> = after.iter().zip(&idle).map(|(a, i)| a - i).collect();
    for (name, samples, note) in [
        ("subscriber RSS idle", idle, "after start, SQLite"),
        ("subscriber RSS after 1,000 commands", after, ""),
        ("growth over 1,000 commands", growth, ""),
    ] {
        r.add("memory", name, samples, "MiB", note);
    }
    Ok(())
}

async fn routing(cli: &Cli, r: &mut Report) -> Result<()> {
    let n = cli.reps.max(1);
    eprintln!("8. routing scale");
    let mut ten = Vec::new();
    let mut thousand = Vec::new();
    for _ in 0..n {
        ten.push(throughput::routing_rate(10, cli.messages).await?);
        thousand.push(throughput::routing_rate(1000, cli.messages).await?);
    }
    let ratio = report::median(&ten) / report::median(&thousand);
    r.add(
        "routing",
        "publish, 10 host queues",
        ten,
        "cmd/s",
        "publisher --lines",
    );
    r.add(
        "routing",
        "publish, 1,000 host queues",
        thousand,
        "cmd/s",
        &format!("10 queues are {ratio:.2}x faster"),
    );
    Ok(())
}

/// The fleet figures: one run each for 100 hosts connecting to PostgreSQL themselves, and for 100
/// and 500 hosts recording through the broker (a run is long; its latencies are many).
async fn fleet(r: &mut Report) -> Result<()> {
    eprintln!("11. fleet");
    let runs = [
        (100, Records::Database, "each to PostgreSQL"),
        (100, Records::Recorders, "through 2 recorders"),
        (500, Records::Recorders, "through 2 recorders"),
    ];
    for (hosts, records, how) in runs {
        let f = fleet::measure(hosts, records).await?;
        let idle = format!(
            "{hosts} subscribers in network namespaces, records {how}, one PostgreSQL (max_connections 100)"
        );
        let started = "publish -> each host's start";
        let figures = [
            (
                "idle, total PSS (with guards, recorders)",
                f.pss_mib,
                "MiB",
                idle.as_str(),
            ),
            (
                "idle, RSS per subscriber",
                f.rss_per_subscriber_mib,
                "MiB",
                &idle,
            ),
            (
                "broadcast, publish -> last result recorded",
                f.broadcast_secs,
                "s",
                "Bash echo $EPOCHREALTIME to every host",
            ),
            (
                "broadcast, start latency p50",
                percentile(&f.starts_ms, 50.0),
                "ms",
                started,
            ),
            (
                "broadcast, start latency p99",
                percentile(&f.starts_ms, 99.0),
                "ms",
                started,
            ),
            (
                "broadcast, peak PostgreSQL connections",
                f.peak_connections as f64,
                "conns",
                "pg_stat_activity, polled every 20 ms",
            ),
        ];
        for (what, value, unit, note) in figures {
            let short = match records {
                Records::Database => "",
                Records::Recorders => ", recorders",
            };
            r.add(
                "fleet",
                &format!("{hosts} hosts{short}: {what}"),
                vec![value],
                unit,
                note,
            );
        }
    }
    Ok(())
}

async fn failover(cli: &Cli, r: &mut Report) -> Result<()> {
    // A few more than the other figures: each one is a single event.
    let n = cli.reps.max(1) + 2;
    eprintln!("10. failover");
    let mut secs = Vec::new();
    for _ in 0..n {
        secs.push(failover::kill_to_start_secs().await?);
    }
    let note = format!(
        "3-node cluster, quorum queue; SIGKILL to the subscriber's node -> its next command starts; median of {n}"
    );
    r.add(
        "failover",
        "node kill -> next command starts",
        secs,
        "s",
        &note,
    );
    Ok(())
}

async fn signing(cli: &Cli, r: &mut Report) -> Result<()> {
    let n = cli.reps.max(1);
    eprintln!("9. signed commands");
    let (sign, verify): (Vec<f64>, Vec<f64>) = reps(n, || signing::sign_and_verify_us(2000))?
        .into_iter()
        .unzip();
    let note = "Ed25519 over one command, in process";
    r.add("signing", "sign, per command", sign, "us", note);
    r.add("signing", "verify, per command", verify, "us", note);
    let mut dbs = vec![(DbKind::Sqlite, "SQLite")];
    if !cli.no_postgres {
        dbs.push((DbKind::Postgres, "PostgreSQL"));
    }
    for (db, name) in dbs {
        // Taken in turns, so that both see the same moments of the machine.
        let (mut plain, mut signed) = (vec![], vec![]);
        for _ in 0..n {
            let env = env::env(db, 1).await?;
            plain.push(
                throughput::end_to_end_in(&env, cli.commands, 2, &[])
                    .await?
                    .rate,
            );
            throughput::settle().await;
            let env = signing::signed_env(db).await?;
            signed.push(
                throughput::end_to_end_in(&env, cli.commands, 2, &[])
                    .await?
                    .rate,
            );
            throughput::settle().await;
        }
        let note = format!(
            "{} x Bash true, {name}, 2 subscribers; signed = {:.1}% of unsigned",
            cli.commands,
            100.0 * report::median(&signed) / report::median(&plain)
        );
        r.add(
            "signing",
            &format!("end to end, {name}, unsigned"),
            plain,
            "cmd/s",
            &note,
        );
        let figure = format!("end to end, {name}, signed and verified");
        r.add("signing", &figure, signed, "cmd/s", &note);
    }
    let (mut bulk_plain, mut bulk_signed) = (vec![], vec![]);
    for _ in 0..n {
        bulk_plain.push(
            throughput::bulk_publish_rate(&env::env(DbKind::Sqlite, 1).await?, cli.messages)
                .await?,
        );
        let env = signing::signed_env(DbKind::Sqlite).await?;
        bulk_signed.push(throughput::bulk_publish_rate(&env, cli.messages).await?);
    }
    let bulk_note = format!(
        "publisher --lines; signed = {:.1}% of unsigned",
        100.0 * report::median(&bulk_signed) / report::median(&bulk_plain)
    );
    r.add(
        "signing",
        "publish, unsigned",
        bulk_plain,
        "cmd/s",
        &bulk_note,
    );
    r.add(
        "signing",
        "publish, signed",
        bulk_signed,
        "cmd/s",
        &bulk_note,
    );
    Ok(())
}
