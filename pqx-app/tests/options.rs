//! The task options beyond the original four: priority, backoff with max_poke, dedupe_key, and
//! results sent back to a caller (reply_to, `publisher --wait`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::{Context, Result};
use common::{count_ended, ended, env, ready_env, As, DbKind, Deadline, Records};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

#[tokio::test]
async fn higher_priority_overtakes_waiting_commands() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let low = env.write(
        "low.jsonl",
        &(0..5)
            .map(|i| format!(r#"{{"mailing_to":[{{"unique_key":"h2"}}],"config":{{"priority":1}},"cmd":{{"Bash":{{"cmd":["echo low {i}"]}}}}}}"#))
            .collect::<Vec<_>>()
            .join("\n"),
    )?;
    env.publish(&low)?;
    let high = env.write(
        "high.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"config":{"priority":9},"cmd":{"Bash":{"cmd":["echo high"]}}}"#,
    )?;
    let high_id = env.publish(&high)?.remove(0);
    let _sub = env.subscriber("h2")?;
    let store = env.store().await?;
    let deadline = Deadline::after_secs(30);
    let all = loop {
        let all = store.attempts(None, 100).await?;
        if count_ended(&all) == 6 {
            break all;
        }
        deadline.tick(|| format!("6 attempts: {all:#?}")).await?;
    };
    let first = all.iter().min_by_key(|a| a.history.id).unwrap();
    assert_eq!(
        first.history.message_id.as_deref(),
        Some(high_id.as_str()),
        "the priority 9 command ran first"
    );
    Ok(())
}

#[tokio::test]
async fn backoff_grows_the_wait_up_to_max_poke() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "backoff.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":3,"poke":1,"backoff":2,"max_poke":3},"cmd":{"Bash":{"cmd":["exit 1"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 4).await?;
    let gaps: Vec<i64> = attempts
        .windows(2)
        .map(|w| (w[1].history.time - ended(&w[0]).time).num_milliseconds())
        .collect();
    assert_eq!(gaps.len(), 3);
    // 1 s, then 2 s, then 4 s capped at 3 s.
    for (gap, want) in gaps.iter().zip([1000, 2000, 3000]) {
        assert!(*gap >= want - 100 && *gap < want + 1500, "gaps {gaps:?}");
    }
    Ok(())
}

#[tokio::test]
async fn dedupe_key_runs_a_command_once_per_queue() -> Result<()> {
    dedupe_key_runs_once(As::Admin).await
}

#[tokio::test]
async fn dedupe_key_runs_a_command_once_per_queue_as_host_users() -> Result<()> {
    dedupe_key_runs_once(As::HostUsers).await
}

async fn dedupe_key_runs_once(who: As) -> Result<()> {
    let env = ready_env(DbKind::Sqlite, who).await?;
    let _sub = env.subscriber("h1")?;
    let marker = env.path("ran.txt");
    let task = env.write(
        "once.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h1"}}],"config":{{"dedupe_key":"migrate-42"}},"cmd":{{"Bash":{{"cmd":["echo ran >> {}"]}}}}}}"#,
            marker.display()
        ),
    )?;
    let first = env.publish(&task)?.remove(0);
    env.wait_attempts(&first, 30, |a| count_ended(a) == 1)
        .await?;
    let second = env.publish(&task)?.remove(0);
    let attempts = env
        .wait_attempts(&second, 30, |a| count_ended(a) == 1)
        .await?;
    let result = ended(&attempts[0]);
    assert_eq!(result.exit_code, 0);
    assert!(
        result
            .summary()
            .starts_with("skipped: dedupe_key \"migrate-42\" already succeeded on queue h1"),
        "{}",
        result.summary()
    );
    assert_eq!(
        std::fs::read_to_string(&marker)?,
        "ran\n",
        "the command ran once"
    );
    assert_eq!(env.vhost.queue_len("h1").await?, 0);
    Ok(())
}

#[tokio::test]
async fn publisher_wait_prints_results_and_fails_on_failures() -> Result<()> {
    publisher_wait(As::Admin).await
}

#[tokio::test]
async fn publisher_wait_prints_results_and_fails_on_failures_as_host_users() -> Result<()> {
    publisher_wait(As::HostUsers).await
}

async fn publisher_wait(who: As) -> Result<()> {
    let env = ready_env(DbKind::Sqlite, who).await?;
    let _h1 = env.subscriber("h1")?;
    let _h2 = env.subscriber("h2")?;
    let ok = env.write(
        "ok.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"cmd":{"Bash":{"cmd":["echo hi"]}}}"#,
    )?;
    let out = env.run(
        "publisher",
        &["-o", "pub", "--wait", "30", "-t", ok.to_str().unwrap()],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Successes are summed up, not listed, unless asked.
    assert!(!stdout.contains("result "), "{stdout}");
    assert!(
        stdout.contains("summary: 2 of 2 results: 2 succeeded, 0 failed\n"),
        "{stdout}"
    );
    let out = env.run(
        "publisher",
        &[
            "-o",
            "pub",
            "--wait",
            "30",
            "--verbose",
            "-t",
            ok.to_str().unwrap(),
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("result "))
        .collect();
    assert_eq!(results.len(), 2, "one result per queue reached: {stdout}");
    assert!(
        results
            .iter()
            .any(|l| l.contains(" on h1 (attempt 1, exit code 0): succeeded")),
        "{stdout}"
    );
    assert!(
        results
            .iter()
            .any(|l| l.contains(" on h2 (attempt 1, exit code 0): succeeded")),
        "{stdout}"
    );

    let bad = env.write(
        "bad.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":1,"poke":1},"cmd":{"Bash":{"cmd":["echo no >&2; exit 3"]}}}"#,
    )?;
    let out = env.run(
        "publisher",
        &["-o", "pub", "--wait", "30", "-t", bad.to_str().unwrap()],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(" on h1 (attempt 2, exit code 3): failed: exit code 3: no"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary: 1 of 1 results: 0 succeeded, 1 failed\n"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("publisher: error: 1 of 1 results are failures"));
    Ok(())
}

#[tokio::test]
async fn a_rolling_batch_takes_the_next_host_as_each_result_comes_and_stops_at_a_failure(
) -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    let mut subs = Vec::new();
    for q in ["h1", "h2", "h3"] {
        subs.push(env.subscriber_with(q, &[], &[("BATCH_HOST", q)])?);
    }
    // To every host, in init.yml's order; fails on h2.
    let task = env.write(
        "rolling.json",
        r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["sleep 0.5; [ \"$BATCH_HOST\" != h2 ]"]}}}"#,
    )?;
    let task = task.to_str().unwrap();
    let out = env.run(
        "publisher",
        &[
            "-o",
            "pub",
            "--batch",
            "1",
            "--wait",
            "30",
            "--fail-fast",
            "-t",
            task,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let published: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("published "))
        .collect();
    assert_eq!(published.len(), 2, "{stdout}");
    assert!(published[0].ends_with(" to queue h1"), "{stdout}");
    assert!(published[1].ends_with(" to queue h2"), "{stdout}");
    assert!(
        stdout.contains("summary: 2 of 2 results: 1 succeeded, 1 failed; never sent (stopped after a failure) to 1: h3\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("publisher: error: 1 of 2 results are failures"),
        "{stderr}"
    );
    // One at a time: h2 started after h1's result; h3 got nothing.
    let id = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    let h1 = env
        .wait_attempts(&id(published[0]), 10, |a| count_ended(a) == 1)
        .await?;
    let h2 = env
        .wait_attempts(&id(published[1]), 10, |a| count_ended(a) == 1)
        .await?;
    let h1_ended = h1[0].result.as_ref().context("h1's result")?.time;
    assert!(h2[0].history.time >= h1_ended, "h2 started before h1 ended");
    assert_eq!(env.vhost.queue_len("h3").await?, 0);
    let everything = env.store().await?.attempts(None, 100).await?;
    assert!(
        everything
            .iter()
            .all(|a| a.history.queue.as_deref() != Some("h3")),
        "{everything:?}"
    );

    // Without --fail-fast the batch rolls on over the failure; 10% of three hosts is one.
    let out = env.run(
        "publisher",
        &["-o", "pub", "--batch", "10%", "--wait", "30", "-t", task],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(stdout.matches("published ").count(), 3, "{stdout}");
    assert!(
        stdout.contains("summary: 3 of 3 results: 2 succeeded, 1 failed\n"),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test]
async fn a_batch_needs_the_hosts_each_copy_reaches() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    // The management API out of reach: the publisher cannot tell which hosts a copy reaches.
    let conn = std::fs::read_to_string(env.path("conn.yml"))?;
    let nowhere = common::free_port()?;
    env.write(
        "conn.yml",
        &conn.replace("port: 15672", &format!("port: {nowhere}")),
    )?;
    let task = env.write(
        "dev.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let task = task.to_str().unwrap();
    let out = env.run(
        "publisher",
        &["-o", "pub", "--batch", "1", "--wait", "5", "-t", task],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("publisher: error: --batch: ")
            && line.ends_with(": the hosts it reaches are not known (the management API's bindings could not be read), so they cannot be taken a batch at a time"),
        "{stderr}"
    );
    assert_eq!(env.vhost.queue_len("h1").await?, 0, "nothing was published");
    Ok(())
}

#[test]
fn batch_options_are_checked() -> Result<()> {
    let bins = std::path::Path::new(env!("CARGO_BIN_EXE_publisher"));
    let run = |args: &[&str]| -> Result<(Option<i32>, String)> {
        let out = std::process::Command::new(bins).args(args).output()?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let (code, err) = run(&["-o", "pub", "--batch", "0", "--wait", "5"])?;
    assert_eq!(code, Some(2));
    assert!(
        err.contains(
            "\"0\": expected a number of hosts (1 or more) or a percentage of them (1% to 100%)"
        ),
        "{err}"
    );
    let (code, err) = run(&["-o", "pub", "--batch", "101%", "--wait", "5"])?;
    assert_eq!(code, Some(2));
    assert!(err.contains("\"101%\": expected"), "{err}");
    let (code, err) = run(&["-o", "pub", "--fail-fast", "--wait", "5"])?;
    assert_eq!(code, Some(2));
    assert!(err.contains("--batch"), "{err}");
    let (code, err) = run(&["-o", "pub", "--batch", "2"])?;
    assert_eq!(code, Some(2));
    assert!(err.contains("--wait"), "{err}");
    Ok(())
}

#[tokio::test]
async fn reply_to_sends_the_result_to_a_queue() -> Result<()> {
    reply_to_a_queue(As::Admin).await
}

#[tokio::test]
async fn reply_to_sends_the_result_to_a_queue_as_host_users() -> Result<()> {
    reply_to_a_queue(As::HostUsers).await
}

async fn reply_to_a_queue(who: As) -> Result<()> {
    let env = ready_env(DbKind::Sqlite, who).await?;
    let conn = env.vhost.connect().await?;
    let channel = conn.create_channel().await?;
    channel
        .queue_declare(
            "results".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    if who == As::HostUsers {
        // A host may publish results only through the reply exchange: the queue is bound to it
        // by its name, as `publisher --wait` binds its own.
        channel
            .queue_bind(
                "results".into(),
                "pqx.test.reply".into(),
                "results".into(),
                Default::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "rpc.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"reply_to":"results"},"cmd":{"Bash":{"cmd":["echo answer"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let message = env.vhost.take("results", 30).await?.expect("a result came");
    assert_eq!(
        message
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.as_str()),
        Some(id.as_str())
    );
    let reply: pqx_app::Reply = serde_json::from_slice(&message.data)?;
    assert!(reply.success);
    assert_eq!(reply.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(reply.queue, "h1");
    assert_eq!(reply.attempt, 1);
    assert_eq!(reply.result, "succeeded");
    assert_eq!(reply.stdout, "answer\n");
    // The broker vouches for who sent it: user_id is checked against the connection's user.
    let sender = message
        .properties
        .user_id()
        .as_ref()
        .map(|u| u.as_str().to_owned());
    let expected = match who {
        As::Admin => common::MQ_USER.to_owned(),
        As::HostUsers => format!("h1@{}", env.vhost.name),
    };
    assert_eq!(sender.as_deref(), Some(expected.as_str()));
    let _ = conn.close(200, "".into()).await;
    Ok(())
}

#[tokio::test]
async fn changing_max_priority_is_left_and_the_fix_is_named() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    env.write(
        "init.yml",
        &format!("{}max_priority: 5\n", common::INIT_YML),
    )?;
    let out = env.ok("initiator", &["-o", "decl_x"])?;
    assert!(
        out.contains("differs: queue h1: priorities up to 9, not 5 as init.yml says: left as it is (to change it, `rectifier -o del_que` drops it with its messages, then `initiator -o decl_x`)"),
        "{out}"
    );
    Ok(())
}
