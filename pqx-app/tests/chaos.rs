//! Chaos: 5,000 commands (ok, flaky with retries, doomed) from two publishers to four quorum host
//! queues on the three-node cluster, six subscribers recording into PostgreSQL, while in a fixed
//! schedule the node that leads most host queues is killed (SIGKILL to its VM) and brought back,
//! another node's app is stopped and started, and two subscribers are SIGKILLed and started again.
//! Then every command must have succeeded on each queue it was mailed to, or be in the dead
//! letters; nothing may run on a queue it was not mailed to, nothing be lost, and every publish the
//! publishers reported done must be accounted for. Prints the reconciliation. Delivery is at least
//! once (DESIGN.md): a copy sent again, or redelivered, in the moment between its twin's start on
//! another subscriber and that start's record runs as well; such second successes are printed
//! with their attempts and may be no more than the node losses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{
    cluster_ctl, kill_node, kind, leader_of, restore_cluster, DbKind, Deadline, Env, Kind,
    Subscriber,
};
use nix::sys::signal::Signal;
use pqx_app::entities::{message_history, message_result};
use sea_orm::EntityTrait;
use serde_json::json;

const COMMANDS: usize = 5_000;
const PUBLISHERS: usize = 2;
const QUEUES: [&str; 4] = ["q1", "q2", "q3", "q4"];
/// The queues of the six subscribers.
const SUBSCRIBERS: [&str; 6] = ["q1", "q2", "q3", "q4", "q1", "q2"];
const DLQ: &str = "chaos.dlq";
/// Which two subscribers are killed: a fixed seed, so that every run does the same.
const SEED: usize = 14;

/// The queues command `i` is mailed to: one, or every ninth a pair through a common key.
fn mailing(i: usize) -> (serde_json::Value, Vec<&'static str>) {
    if i % 9 == 4 {
        let (key, queues) = match i % 2 {
            0 => ("front", vec!["q1", "q2"]),
            _ => ("back", vec!["q3", "q4"]),
        };
        (json!([{ "common_key": key }]), queues)
    } else {
        let q = QUEUES[i % QUEUES.len()];
        (json!([{ "unique_key": q }]), vec![q])
    }
}

/// A disturbance, at a time after the publishers started.
#[derive(Debug, Clone, Copy)]
enum Event {
    KillLeader,
    RestoreCluster,
    StopApp,
    StartApp,
    KillSubscriber(usize),
    StartSubscriber(usize),
}

fn schedule() -> Vec<(Duration, Event)> {
    let a = SEED % SUBSCRIBERS.len();
    let b = (SEED / SUBSCRIBERS.len() + a + 1) % SUBSCRIBERS.len();
    let at = Duration::from_secs;
    vec![
        (at(2), Event::KillLeader),
        (at(4), Event::KillSubscriber(a)),
        (at(5), Event::StartSubscriber(a)),
        (at(8), Event::RestoreCluster),
        (at(12), Event::StopApp),
        (at(14), Event::KillSubscriber(b)),
        (at(15), Event::StartSubscriber(b)),
        (at(17), Event::StartApp),
    ]
}

fn start(env: &Env, n: usize) -> Result<Subscriber> {
    let queue = SUBSCRIBERS[n];
    env.subscriber_with(queue, &[], &[("PQX_CHAOS_QUEUE", queue)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_commands_survive_the_loss_of_nodes_and_subscribers() -> Result<()> {
    restore_cluster()?;
    let bins = Path::new(env!("CARGO_BIN_EXE_subscriber"))
        .parent()
        .context("the binaries' directory")?;
    let env = Env::on_cluster(bins, DbKind::Postgres).await?;
    let queues: String = QUEUES
        .iter()
        .map(|q| {
            let common = if *q <= "q2" { "front" } else { "back" };
            format!("  - {{queue: {q}, kv: {{unique_key: {q}, common_key: {common}}}}}\n")
        })
        .collect();
    env.write(
        "init.yml",
        &format!("header_exchange: chaos\ndead_letter_queue: {DLQ}\nqueue_type: quorum\nheader_queues:\n{queues}"),
    )?;
    env.init()?;
    let marks = env.path("marks");
    std::fs::create_dir_all(&marks)?;

    // Each command echoes its number; a flaky one keeps a mark per queue.
    let mut files = vec![String::new(); PUBLISHERS];
    let mut planned: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for i in 0..COMMANDS {
        let (script, config) = match kind(i) {
            Kind::Ok => (format!("echo c{i}"), json!({})),
            Kind::Flaky => (
                format!(
                    r#"echo c{i}; f={}/c{i}-$PQX_CHAOS_QUEUE; [ -e $f ] || {{ : > $f; exit 1; }}"#,
                    marks.display()
                ),
                json!({"retry": 2, "poke": 1}),
            ),
            Kind::Doomed => (format!("echo c{i}; exit 3"), json!({"retry": 1, "poke": 1})),
        };
        let (mailing_to, queues) = mailing(i);
        planned.insert(i, queues);
        let line =
            json!({"mailing_to": mailing_to, "config": config, "cmd": {"Bash": {"cmd": [script]}}});
        files[i % PUBLISHERS].push_str(&line.to_string());
        files[i % PUBLISHERS].push('\n');
    }

    let mut subscribers: Vec<Option<Subscriber>> = Vec::new();
    for n in 0..SUBSCRIBERS.len() {
        subscribers.push(Some(start(&env, n)?));
    }
    let leader = {
        let mut led = [0usize; 3];
        for q in QUEUES {
            led[leader_of(&env.vhost.name, q).await?] += 1;
        }
        (0..3).max_by_key(|n| led[*n]).unwrap_or(0)
    };
    let stopped = (leader + 1) % 3;

    let started = Instant::now();
    let mut publishers = Vec::new();
    for (n, text) in files.iter().enumerate() {
        let path = env.write(&format!("chaos-{n}.jsonl"), text)?;
        let publisher = env
            .command("publisher")
            .args(["-o", "pub", "--retry-for", "120", "-t"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        publishers.push(publisher);
    }

    // The disturbances, in order, while the publishers publish and the subscribers run.
    let (mut node_kills, mut subscriber_kills) = (0, 0);
    let mut log = Vec::new();
    for (at, event) in schedule() {
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let when = started.elapsed().as_secs_f64();
        match event {
            Event::KillLeader => {
                kill_node(leader)?;
                node_kills += 1;
                log.push(format!(
                    "{when:.1}s kill -9 node {} (leads the most host queues)",
                    leader + 1
                ));
            }
            Event::RestoreCluster => {
                tokio::task::spawn_blocking(restore_cluster).await??;
                log.push(format!("{when:.1}s node {} back", leader + 1));
            }
            Event::StopApp => {
                cluster_ctl(stopped, "stop_app")?;
                node_kills += 1;
                log.push(format!("{when:.1}s stop_app node {}", stopped + 1));
            }
            Event::StartApp => {
                cluster_ctl(stopped, "start_app")?;
                log.push(format!("{when:.1}s start_app node {}", stopped + 1));
            }
            Event::KillSubscriber(n) => {
                if let Some(sub) = &subscribers[n] {
                    sub.signal(Signal::SIGKILL)?;
                }
                subscribers[n] = None;
                subscriber_kills += 1;
                log.push(format!(
                    "{when:.1}s SIGKILL subscriber {n} ({})",
                    SUBSCRIBERS[n]
                ));
            }
            Event::StartSubscriber(n) => {
                subscribers[n] = Some(start(&env, n)?);
                log.push(format!(
                    "{when:.1}s subscriber {n} ({}) again",
                    SUBSCRIBERS[n]
                ));
            }
        }
    }

    // What each publisher reported done: a line per copy, with its message id and queue.
    let mut copies: HashMap<(String, String), usize> = HashMap::new();
    let mut by_number: HashMap<String, usize> = HashMap::new();
    for publisher in publishers {
        let out = publisher.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "a publisher failed: {stderr}");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let rest = line
                .strip_prefix("published ")
                .context("a published line")?;
            let (id, target) = rest.split_once(" to queue ").context("a copy to a queue")?;
            let queue = target.split_whitespace().next().context("its queue")?;
            copies.insert((id.to_owned(), queue.to_owned()), 0);
            by_number.entry(id.to_owned()).or_default();
        }
    }
    let published_in = started.elapsed();
    let expected_copies: usize = planned.values().map(Vec::len).sum();
    assert_eq!(
        copies.len(),
        expected_copies,
        "every planned copy was reported published"
    );

    eprintln!(
        "chaos: {} copies published in {published_in:.1?}; waiting for them to settle",
        copies.len()
    );
    // Wait until every copy succeeded or failed for the last time on its queue.
    let db = pqx_util::connect_db(&env.db.url).await?;
    let deadline = Deadline::after_secs(240);
    let rows = loop {
        let rows = message_history::Entity::find()
            .find_also_related(message_result::Entity)
            .all(&db)
            .await?;
        let mut settled = BTreeSet::new();
        for (h, r) in &rows {
            let (Some(id), Some(queue), Some(r)) = (&h.message_id, &h.queue, r) else {
                continue;
            };
            let last = h.attempt.unwrap_or(1) > i32::from(h.retry.unwrap_or(0));
            if r.exit_code == 0 || last {
                settled.insert((id.clone(), queue.clone()));
            }
        }
        // Settled is not drained: a copy the publisher sent again after a node was lost, or one a
        // lost channel handed back, may still wait in its queue, to be skipped as a duplicate.
        if settled.len() >= expected_copies && host_queues_drained(&env).await? {
            break rows;
        }
        if deadline.passed() {
            let unsettled: Vec<&(String, String)> =
                copies.keys().filter(|c| !settled.contains(*c)).collect();
            let mut sample = String::new();
            for (id, queue) in unsettled.iter().take(8) {
                let attempts: Vec<String> = rows
                    .iter()
                    .filter(|(h, _)| {
                        h.message_id.as_ref() == Some(id) && h.queue.as_ref() == Some(queue)
                    })
                    .map(|(h, r)| {
                        format!(
                            "attempt {:?} exit {:?}",
                            h.attempt,
                            r.as_ref().map(|r| r.exit_code)
                        )
                    })
                    .collect();
                sample.push_str(&format!("\n  {id} on {queue}: {attempts:?}"));
                for entry in std::fs::read_dir(env.dir.path())? {
                    let path = entry?.path();
                    if path.extension().is_some_and(|e| e == "log") {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        for line in text.lines().filter(|l| l.contains(id.as_str())) {
                            sample.push_str(&format!("\n    {}: {line}", path.display()));
                        }
                    }
                }
            }
            let api = common::CLUSTER[0].api(&env.vhost.name)?;
            let queues: Vec<String> = api
                .queues()
                .await?
                .into_iter()
                .map(|q| {
                    format!(
                        "{} {:?} msgs {:?} consumers {:?}",
                        q.name, q.kind, q.messages, q.consumers
                    )
                })
                .collect();
            let logs: Vec<String> = subscribers
                .iter()
                .flatten()
                .map(|s| {
                    let tail = s
                        .log()
                        .lines()
                        .rev()
                        .take(15)
                        .collect::<Vec<_>>()
                        .join("\n");
                    format!("{tail}\n{}", threads_of(s.child.id()))
                })
                .collect();
            anyhow::bail!(
                "{} of {expected_copies} copies settled; {} unsettled, e.g.:{sample}\nqueues: {queues:#?}\nlogs:\n{}",
                settled.len(),
                unsettled.len(),
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let elapsed = started.elapsed();
    eprintln!("chaos: settled in {elapsed:.1?}; reconciling");

    // Reconcile: each copy by the number its command echoes, the queue it ran on, its results.
    let mut successes: HashMap<(String, String), usize> = HashMap::new();
    let mut number_of: HashMap<String, usize> = HashMap::new();
    let mut attempts_of: HashMap<(String, String), Vec<String>> = HashMap::new();
    let (mut wrong_queue, mut without_result) = (0, 0);
    for (h, r) in &rows {
        let id = h.message_id.clone().context("a message id")?;
        let queue = h.queue.clone().context("a queue")?;
        let script = h.cmd["Bash"]["cmd"][0].as_str().context("a Bash script")?;
        let digits: String = script
            .trim_start_matches("echo c")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let i: usize = digits.parse()?;
        number_of.insert(id.clone(), i);
        if !copies.contains_key(&(id.clone(), queue.clone()))
            || !planned[&i].contains(&queue.as_str())
        {
            wrong_queue += 1;
        }
        // How each attempt went, to say so of a copy that ran to success twice.
        let ran = format!(
            "attempt {} on {} at {}: {:?}",
            h.attempt.unwrap_or(0),
            h.host.as_deref().unwrap_or("?"),
            h.time,
            r.as_ref().map(|r| (r.exit_code, r.time))
        );
        attempts_of
            .entry((id.clone(), queue.clone()))
            .or_default()
            .push(ran);
        match r {
            Some(r) if r.exit_code == 0 => *successes.entry((id, queue)).or_default() += 1,
            Some(_) => {}
            None => without_result += 1,
        }
    }
    let mut dead: HashMap<(String, String), usize> = HashMap::new();
    let mut dead_letters = 0;
    eprintln!("chaos: taking the dead letters");
    for letter in env.vhost.take_all(DLQ, 3).await? {
        dead_letters += 1;
        let id = letter
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let queue =
            pqx::mq::header_string(&letter.properties, pqx::mq::QUEUE_HEADER).unwrap_or_default();
        *dead.entry((id, queue)).or_default() += 1;
    }
    let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
    let (mut lost, mut twice, mut expected_dead) = (0, 0, 0);
    for (id, queue) in copies.keys() {
        let i = number_of.get(id).copied();
        let k = i.map(kind);
        *counts.entry(k.unwrap_or(Kind::Ok)).or_default() += 1;
        let ok = successes
            .get(&(id.clone(), queue.clone()))
            .copied()
            .unwrap_or(0);
        let dead_here = dead.contains_key(&(id.clone(), queue.clone()));
        match k {
            Some(Kind::Doomed) => {
                expected_dead += 1;
                if !dead_here || ok > 0 {
                    lost += 1;
                }
            }
            Some(_) if ok == 1 => {}
            Some(_) if ok > 1 => {
                twice += 1;
                let ran = &attempts_of[&(id.clone(), queue.clone())];
                println!("chaos: {id} on {queue} ran to success twice: {ran:#?}");
            }
            _ => lost += 1,
        }
    }
    let duplicate_letters = dead_letters - dead.len();
    println!("chaos schedule: {}", log.join("; "));
    println!(
        "chaos reconciliation: sent {COMMANDS} commands as {} copies ({} ok / {} flaky / {} doomed) from {PUBLISHERS} publishers \
         to {} quorum queues on 3 nodes with {} subscribers, published in {:.1}s; node kills {node_kills}; subscriber kills \
         {subscriber_kills}; every command succeeded once per queue it was mailed to or is dead-lettered (expected {expected_dead}, \
         found {}, {duplicate_letters} dead letters more than once); attempts without a result: {without_result} (each explained \
         by a subscriber kill: at most {subscriber_kills}); {wrong_queue} on a wrong queue; {lost} lost; {twice} run to success \
         twice; 0 publishes unconfirmed without an error; all settled in {:.1}s",
        copies.len(),
        counts.get(&Kind::Ok).unwrap_or(&0),
        counts.get(&Kind::Flaky).unwrap_or(&0),
        counts.get(&Kind::Doomed).unwrap_or(&0),
        QUEUES.len(),
        SUBSCRIBERS.len(),
        published_in.as_secs_f64(),
        dead.len(),
        elapsed.as_secs_f64(),
    );
    assert_eq!(
        wrong_queue, 0,
        "attempts on a queue the command was not mailed to"
    );
    assert_eq!(lost, 0, "lost copies");
    assert!(
        twice <= node_kills,
        "{twice} copies succeeded twice, more than the {node_kills} node losses explain"
    );
    assert_eq!(dead.len(), expected_dead, "dead-lettered copies");
    assert!(
        without_result <= subscriber_kills,
        "{without_result} attempts without a result, {subscriber_kills} subscriber kills"
    );
    Ok(())
}

/// Whether no host queue holds a ready message.
async fn host_queues_drained(env: &Env) -> Result<bool> {
    for q in QUEUES {
        if env.vhost.queue_len(q).await? > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Where each thread of process `pid` is, as gdb sees it: for a subscriber that went silent.
fn threads_of(pid: u32) -> String {
    // Bounded: gdb may wait on a process that is stuck itself.
    let out = std::process::Command::new("timeout")
        .args([
            "20",
            "gdb",
            "-batch",
            "-p",
            &pid.to_string(),
            "-ex",
            "thread apply all bt 30",
        ])
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with('#') || l.starts_with("Thread"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(no gdb: {e})"),
    }
}
