//! Load: 10,000 commands from three publishers at once to four host queues served by six
//! subscribers, some failing once and retried, some failing for good. Every command must reach
//! exactly the final state its kind implies, every attempt must have run on the queue it was mailed
//! to, and the counts in the database must reconcile with what was sent. Prints the reconciliation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{env, kind, DbKind, Deadline, Kind, DLQ};
use pqx_app::entities::{message_history, message_result};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

const COMMANDS: usize = 10_000;
const PUBLISHERS: usize = 3;
const QUEUES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commands_reconcile() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let queues: String = (1..=QUEUES)
        .map(|q| format!("  - {{queue: q{q}, kv: {{unique_key: q{q}}}}}\n"))
        .collect();
    env.write(
        "init.yml",
        &format!("header_exchange: pqx.load\ndead_letter_queue: {DLQ}\nheader_queues:\n{queues}"),
    )?;
    env.init()?;
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks)?;

    // Which queue and kind each command is, by the marker it echoes.
    let mut files = vec![String::new(); PUBLISHERS];
    for i in 0..COMMANDS {
        let queue = format!("q{}", i % QUEUES + 1);
        let (script, config) = match kind(i) {
            Kind::Ok => (format!("echo c{i}"), json!({})),
            Kind::Flaky => (
                format!(
                    r#"echo c{i}; f={}/c{i}; [ -e $f ] || {{ : > $f; exit 1; }}"#,
                    marks.display()
                ),
                json!({"retry": 2, "poke": 1}),
            ),
            Kind::Doomed => (format!("echo c{i}; exit 3"), json!({"retry": 1, "poke": 1})),
        };
        let line = json!({
            "mailing_to": [{"unique_key": queue}],
            "config": config,
            "cmd": {"Bash": {"cmd": [script]}},
        });
        files[i % PUBLISHERS].push_str(&line.to_string());
        files[i % PUBLISHERS].push('\n');
    }

    let mut subscribers = Vec::new();
    for q in [1, 2, 3, 4, 1, 2] {
        subscribers.push(env.subscriber(&format!("q{q}"))?);
    }
    let started = Instant::now();
    let mut publishers = Vec::new();
    for (n, text) in files.iter().enumerate() {
        let path = env.write(&format!("load-{n}.jsonl"), text)?;
        let publisher = env
            .command("publisher")
            .args(["-o", "pub", "--quiet", "-t"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        publishers.push(publisher);
    }
    for publisher in publishers {
        let out = publisher.wait_with_output()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let published_in = started.elapsed();

    let expected_attempts: usize = (0..COMMANDS)
        .map(|i| if kind(i) == Kind::Ok { 1 } else { 2 })
        .sum();
    let db = pqx_util::connect_db(&env.db.url).await?;
    let deadline = Deadline::after_secs(600);
    loop {
        let results = message_result::Entity::find().count(&db).await? as usize;
        if results >= expected_attempts {
            break;
        }
        deadline
            .tick(|| format!("{results} of {expected_attempts} attempts ended in time"))
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();

    // Reconcile each command's attempts with its kind and queue.
    let rows = message_history::Entity::find()
        .find_also_related(message_result::Entity)
        .all(&db)
        .await?;
    let mut by_command: HashMap<usize, Vec<(String, i32, i32)>> = HashMap::new();
    let mut wrong_queue = 0;
    for (history, result) in &rows {
        let cmd = &history.cmd;
        let script = cmd["Bash"]["cmd"][0].as_str().context("a Bash script")?;
        // Every script starts with `echo c<i>`.
        let marker = script
            .strip_prefix("echo c")
            .context("the command's marker")?;
        let digits = marker.len()
            - marker
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let i: usize = marker[..digits].parse()?;
        let queue = history.queue.clone().context("the attempt's queue")?;
        if queue != format!("q{}", i % QUEUES + 1) {
            wrong_queue += 1;
        }
        let result = result.as_ref().expect("every attempt ended");
        by_command.entry(i).or_default().push((
            queue,
            history.attempt.context("attempt")?,
            result.exit_code,
        ));
    }
    assert_eq!(
        wrong_queue, 0,
        "attempts on a queue the command was not mailed to"
    );
    assert_eq!(by_command.len(), COMMANDS, "every command ran");
    let mut counts: HashMap<Kind, usize> = HashMap::new();
    for (i, attempts) in &mut by_command {
        attempts.sort_by_key(|a| a.1);
        let exits: Vec<i32> = attempts.iter().map(|a| a.2).collect();
        let want = match kind(*i) {
            Kind::Ok => vec![0],
            Kind::Flaky => vec![1, 0],
            Kind::Doomed => vec![3, 3],
        };
        assert_eq!(exits, want, "command {i}: {attempts:?}");
        *counts.entry(kind(*i)).or_default() += 1;
    }
    let dead = env.vhost.drain(DLQ, 3).await?;
    assert_eq!(dead, counts[&Kind::Doomed], "dead letters");
    for q in 1..=QUEUES {
        assert_eq!(env.vhost.queue_len(&format!("q{q}")).await?, 0);
    }
    println!(
        "load reconciliation: sent {COMMANDS} commands ({} ok, {} flaky, {} doomed) from {PUBLISHERS} publishers \
         to {QUEUES} queues with {} subscribers; published in {:.1}s; {} attempts recorded (expected \
         {expected_attempts}); {dead} dead letters (expected {}); 0 on a wrong queue; all ended in {:.1}s \
         ({:.0} attempts/s, debug build)",
        counts[&Kind::Ok],
        counts[&Kind::Flaky],
        counts[&Kind::Doomed],
        subscribers.len(),
        published_in.as_secs_f64(),
        rows.len(),
        counts[&Kind::Doomed],
        elapsed.as_secs_f64(),
        rows.len() as f64 / elapsed.as_secs_f64(),
    );
    assert_eq!(rows.len(), expected_attempts, "no attempt recorded twice");
    Ok(())
}
