//! Load: 10,000 commands from three publishers at once to four host queues served by six
//! subscribers, some failing once and retried, some failing for good. Every command must reach
//! exactly the final state its kind implies, every attempt must have run on the queue it was mailed
//! to, and the counts in the database must reconcile with what was sent. Prints the reconciliation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Db, TestEnv};
use pqx_app::entities::{message_history, message_result};
use sea_orm::{EntityTrait, PaginatorTrait};

const COMMANDS: usize = 10_000;
const PUBLISHERS: usize = 3;
const QUEUES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Succeeds at once: one attempt.
    Ok,
    /// Fails the first time, succeeds on the retry: two attempts.
    Flaky,
    /// Always fails, retry 1: two attempts, then the dead letters.
    Doomed,
}

fn kind(i: usize) -> Kind {
    match (i % 10, i % 25) {
        (0, _) => Kind::Flaky,
        (_, 1) => Kind::Doomed,
        _ => Kind::Ok,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_commands_reconcile() {
    let env = TestEnv::new(Db::Sqlite).await;
    let queues: String = (1..=QUEUES)
        .map(|q| format!("  - {{queue: q{q}, kv: {{unique_key: q{q}}}}}\n"))
        .collect();
    std::fs::write(
        env.path("init.yml"),
        format!(
            "header_exchange: pqx.load\ndead_letter_queue: {}\nheader_queues:\n{queues}",
            common::DLQ
        ),
    )
    .unwrap();
    env.init();
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks).unwrap();

    // Which queue and kind each command is, by the marker it echoes.
    let mut files = vec![String::new(); PUBLISHERS];
    for i in 0..COMMANDS {
        let queue = format!("q{}", i % QUEUES + 1);
        let (script, config) = match kind(i) {
            Kind::Ok => (format!("echo c{i}"), String::new()),
            Kind::Flaky => (
                format!(
                    r#"echo c{i}; f={}/c{i}; [ -e $f ] || {{ : > $f; exit 1; }}"#,
                    marks.display()
                ),
                r#","config":{"retry":2,"poke":1}"#.to_owned(),
            ),
            Kind::Doomed => (
                format!("echo c{i}; exit 3"),
                r#","config":{"retry":1,"poke":1}"#.to_owned(),
            ),
        };
        let line = serde_json::json!({
            "mailing_to": [{"unique_key": queue}],
            "cmd": {"Bash": {"cmd": [script]}},
        })
        .to_string();
        let line = format!("{}{config}}}", &line[..line.len() - 1]);
        files[i % PUBLISHERS].push_str(&line);
        files[i % PUBLISHERS].push('\n');
    }

    let mut subscribers = Vec::new();
    for q in [1, 2, 3, 4, 1, 2] {
        subscribers.push(env.subscriber(&format!("q{q}"), &[]));
    }
    let started = Instant::now();
    let publishers: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(n, text)| {
            let path = env.task(&format!("load-{n}.jsonl"), text);
            env.command("publisher")
                .args(["-o", "pub", "--quiet", "-t", path.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for publisher in publishers {
        let out = publisher.wait_with_output().unwrap();
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
    let db = pqx_util::connect_db(&pqx_util::DbConfig::new(env.db_url.clone()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let results = message_result::Entity::find().count(&db).await.unwrap() as usize;
        if results >= expected_attempts {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{results} of {expected_attempts} attempts ended in time"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed();

    // Reconcile each command's attempts with its kind and queue.
    let rows = message_history::Entity::find()
        .find_also_related(message_result::Entity)
        .all(&db)
        .await
        .unwrap();
    let mut by_command: HashMap<usize, Vec<(String, i32, i32)>> = HashMap::new();
    let mut wrong_queue = 0;
    for (history, result) in &rows {
        let cmd: serde_json::Value = serde_json::from_str(&history.cmd).unwrap();
        let script = cmd["Bash"]["cmd"][0].as_str().unwrap();
        let i: usize = script[6..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let queue = history.queue.clone().unwrap();
        if queue != format!("q{}", i % QUEUES + 1) {
            wrong_queue += 1;
        }
        let result = result.as_ref().expect("every attempt ended");
        by_command
            .entry(i)
            .or_default()
            .push((queue, history.attempt.unwrap(), result.exit_code));
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
    let dead = env.drain_dead_letters(3).await;
    assert_eq!(dead, counts[&Kind::Doomed], "dead letters");
    for q in 1..=QUEUES {
        assert_eq!(env.queue_len(&format!("q{q}")).await, 0);
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
}
