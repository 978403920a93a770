//! What an operator sees without a SQL shell: `inspector hist` filtered by queue, host, status,
//! time and message id, and every inspector view as one JSON document, parsed back here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::{Context, Result};
use common::{ready_env, As, DbKind, Env, Records};
use serde_json::Value;

/// `inspector args --json`, parsed.
fn json(env: &Env, args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = env.ok("inspector", &all)?;
    serde_json::from_str(&out).with_context(|| format!("not one JSON document: {out}"))
}

/// The message ids of `hist --json` with `filters`, newest first.
fn ids(env: &Env, filters: &[&str]) -> Result<Vec<String>> {
    let mut args = vec!["-o", "hist"];
    args.extend_from_slice(filters);
    let doc = json(env, &args)?;
    let attempts = doc["attempts"].as_array().context("attempts")?;
    Ok(attempts
        .iter()
        .map(|a| a["message_id"].as_str().unwrap_or_default().to_owned())
        .collect())
}

fn task(env: &Env, name: &str, body: &str) -> Result<Vec<String>> {
    let task = env.write(name, body)?;
    env.publish(&task)
}

async fn history_is_filtered_and_read_as_json(db: DbKind) -> Result<()> {
    let env = ready_env(db, As::Admin).await?;
    let _h1 = env.subscriber("h1")?;
    let _h2 = env.subscriber("h2")?;
    let ok = task(
        &env,
        "ok.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"dedupe_key":"k"},"cmd":{"Bash":{"cmd":["printf 'ok\\033[31m\\n'"]}}}"#,
    )?;
    let failed = task(
        &env,
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"cmd":{"Bash":{"cmd":["exit 3"]}}}"#,
    )?;
    env.wait_attempts(&ok[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    env.wait_attempts(&failed[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    let skipped = task(
        &env,
        "again.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"dedupe_key":"k"},"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let running = task(
        &env,
        "sleep.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"cmd":{"Bash":{"cmd":["sleep 30"]}}}"#,
    )?;
    env.wait_attempts(&skipped[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    env.wait_attempts(&running[0], 30, |a| a.len() == 1).await?;

    let all = json(&env, &["hist"])?;
    let attempts = all["attempts"].as_array().context("attempts")?;
    assert_eq!(attempts.len(), 4, "{all:#}");
    let first = attempts
        .iter()
        .find(|a| a["message_id"] == ok[0].as_str())
        .context("the first attempt")?;
    for field in [
        "id",
        "message_id",
        "queue",
        "host",
        "attempt",
        "status",
        "started",
        "ended",
        "exit_code",
        "result",
        "stdout",
        "stderr",
        "mailing_to",
        "cmd",
        "dedupe_key",
    ] {
        assert!(first.get(field).is_some(), "no {field}: {first:#}");
    }
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["queue"], "h1");
    assert_eq!(first["exit_code"], 0);
    // What the command printed, escape and all, as JSON text: never a raw escape sequence.
    assert_eq!(first["stdout"], "ok\u{1b}[31m\n");
    let raw = env.ok("inspector", &["hist", "--json"])?;
    assert!(!raw.contains('\u{1b}'), "{raw}");
    let host = first["host"].as_str().context("host")?.to_owned();

    assert_eq!(ids(&env, &["--status", "failed"])?, failed);
    assert_eq!(ids(&env, &["--status", "running"])?, running);
    assert_eq!(ids(&env, &["--status", "skipped"])?, skipped);
    assert_eq!(ids(&env, &["--status", "succeeded"])?, ok);
    assert_eq!(
        ids(&env, &["--queue", "h2"])?,
        [running[0].clone(), failed[0].clone()]
    );
    assert_eq!(
        ids(&env, &["--queue", "h1", "--status", "skipped"])?,
        skipped
    );
    assert_eq!(ids(&env, &["--host", &host])?.len(), 4);
    assert!(ids(&env, &["--host", "elsewhere"])?.is_empty());
    assert_eq!(ids(&env, &["--since", "1h"])?.len(), 4);
    assert!(ids(&env, &["--since", "2099-01-01T00:00"])?.is_empty());
    assert_eq!(ids(&env, &["--message-id", &failed[0]])?, failed);
    // The table view takes the same filters.
    let table = env.ok("inspector", &["-o", "hist", "--status", "failed"])?;
    assert!(
        table.contains(&failed[0]) && !table.contains(&ok[0]),
        "{table}"
    );

    // The management API counts consumers with a delay: asked until it does.
    let deadline = common::Deadline::after_secs(30);
    let topology = loop {
        let topology = json(&env, &["insp"])?;
        let queues = topology["queues"].as_array().context("queues")?;
        let h1 = queues
            .iter()
            .find(|q| q["name"] == "h1")
            .context("queue h1")?;
        if h1["consumers"] == 1 {
            break topology;
        }
        deadline
            .tick(|| format!("h1 without its consumer: {h1:#}"))
            .await?;
    };
    assert_eq!(topology["tables"]["exist"], true, "{topology:#}");
    assert!(topology["exchanges"]
        .as_array()
        .context("exchanges")?
        .iter()
        .any(|x| x["name"] == "pqx.test" && x["type"] == "headers"));
    assert!(topology["bindings"].as_array().context("bindings")?.len() >= 3);
    Ok(())
}

#[tokio::test]
async fn history_is_filtered_and_read_as_json_sqlite() -> Result<()> {
    history_is_filtered_and_read_as_json(DbKind::Sqlite).await
}

#[tokio::test]
async fn history_is_filtered_and_read_as_json_postgres() -> Result<()> {
    history_is_filtered_and_read_as_json(DbKind::Postgres).await
}

#[tokio::test]
async fn a_since_or_show_that_cannot_be_answered_is_named_and_dlq_needs_no_database() -> Result<()>
{
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    let out = env.run("inspector", &["hist", "--since", "yesterday"])?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'yesterday' for '--since <SINCE>'")
            && stderr.contains("neither a duration (1h, 30m, 2d) nor a time"),
        "{stderr}"
    );
    // show without an id, or with one nothing is recorded of.
    let out = env.run("inspector", &["-o", "show"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("say which message: inspector show ID"),
        "{stderr}"
    );
    let out = env.run("inspector", &["-o", "show", "no-such-id"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-id"), "{stderr}");
    // The dead letters are read from the broker alone: a database away does not matter.
    env.write_conn(
        "postgres://pqx@127.0.0.1:1/away",
        env.vhost.broker.amqp_port,
    )?;
    let doc = json(&env, &["-o", "dlq"])?;
    assert_eq!(doc["total"], 0, "{doc}");
    Ok(())
}

#[tokio::test]
async fn hosts_show_who_consumes_what_runs_and_what_failed() -> Result<()> {
    let env = ready_env(DbKind::Postgres, As::Admin).await?;
    let _h1 = env.subscriber("h1")?;
    let _h2 = env.subscriber("h2")?;
    let ok = task(
        &env,
        "ok.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let failed = task(
        &env,
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"cmd":{"Bash":{"cmd":["exit 3"]}}}"#,
    )?;
    env.wait_attempts(&failed[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    let running = task(
        &env,
        "sleep.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"cmd":{"Bash":{"cmd":["sleep 30"]}}}"#,
    )?;
    env.wait_attempts(&ok[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    env.wait_attempts(&running[0], 30, |a| a.len() == 1).await?;

    let host_of = |doc: &Value, queue: &str| -> Result<Value> {
        let hosts = doc["hosts"].as_array().context("hosts")?;
        Ok(hosts
            .iter()
            .find(|h| h["queue"] == queue)
            .with_context(|| format!("no row for {queue}: {doc:#}"))?
            .clone())
    };
    let machine = gethostname::gethostname().to_string_lossy().into_owned();
    let deadline = common::Deadline::after_secs(30);
    let doc = loop {
        let doc = json(&env, &["hosts"])?;
        // The management API lists a consumer before the connection that names its machine (a
        // moment in which the machine shows as its address).
        let consumed = |q: &str| -> Result<bool> {
            let consumers = host_of(&doc, q)?["consumers"].clone();
            Ok(consumers.as_array().map(Vec::len) == Some(1)
                && consumers[0]["host"] == machine.as_str())
        };
        if consumed("h1")? && consumed("h2")? {
            break doc;
        }
        deadline
            .tick(|| format!("subscribers not listed yet: {doc:#}"))
            .await?;
    };
    let (h1, h2, h3) = (
        host_of(&doc, "h1")?,
        host_of(&doc, "h2")?,
        host_of(&doc, "h3")?,
    );
    assert_eq!(h1["consumers"][0]["host"], machine.as_str(), "{h1:#}");
    assert!(h1["consumers"][0]["since"].is_string(), "{h1:#}");
    assert_eq!(h1["last"]["status"], "succeeded", "{h1:#}");
    assert_eq!(h1["last"]["message_id"], ok[0].as_str(), "{h1:#}");
    assert_eq!(h1["running"], serde_json::json!([]), "{h1:#}");
    assert_eq!(h1["failures_last_hour"], 0, "{h1:#}");
    assert_eq!(
        h2["running"][0]["message_id"],
        running[0].as_str(),
        "{h2:#}"
    );
    assert_eq!(h2["last"]["status"], "failed", "{h2:#}");
    assert_eq!(h2["last"]["exit_code"], 3, "{h2:#}");
    assert_eq!(h2["failures_last_hour"], 1, "{h2:#}");
    assert_eq!(h3["consumers"], serde_json::json!([]), "{h3:#}");
    assert!(h3["last"].is_null(), "{h3:#}");

    let table = env.ok("inspector", &["-o", "hosts"])?;
    assert!(
        table.contains("NONE: nobody consumes this queue"),
        "{table}"
    );
    assert!(
        table.contains("1 of 3 host queues have no subscriber: what is sent there waits"),
        "{table}"
    );
    assert!(
        table.contains(&running[0]) && table.contains(&machine),
        "{table}"
    );
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_as_the_operator_without_taking_them() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let h1 = env.subscriber("h1")?;
    // Fails with no retry left: pqx dead-letters it, saying why.
    let failed = task(
        &env,
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["exit 4"]}}}"#,
    )?;
    env.wait_attempts(&failed[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    // Nobody consumes h3: it expires there, and the broker dead-letters it.
    let expired = task(
        &env,
        "late.json",
        r#"{"mailing_to":[{"unique_key":"h3","zone":"eu"}],"config":{"waiting_timeout":1},"cmd":{"Sshpass":{"ip":"127.0.0.1","user":"u","pass":"hunter2","cmd":["true"]}}}"#,
    )?;
    let deadline = common::Deadline::after_secs(30);
    while env.vhost.queue_len(common::DLQ).await? < 2 {
        deadline
            .tick(|| "waiting for 2 dead letters".into())
            .await?;
    }
    drop(h1);

    let first = json(&env, &["-o", "dlq"])?;
    assert_eq!(first["total"], 2, "{first:#}");
    assert_eq!(first["queue"], common::DLQ);
    let letters = first["dead_letters"].as_array().context("dead_letters")?;
    assert_eq!(letters.len(), 2, "{first:#}");
    let (a, b) = (&letters[0], &letters[1]);
    assert_eq!(
        a["message_id"],
        failed[0].as_str(),
        "oldest first: {first:#}"
    );
    assert_eq!(a["queue"], "h1", "{a:#}");
    let why = a["reason"].as_str().unwrap_or_default();
    assert!(why.contains("exit code 4"), "{why}");
    assert!(
        a["command"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Bash "),
        "{a:#}"
    );
    assert!(
        a["age_secs"]
            .as_i64()
            .is_some_and(|s| (0..120).contains(&s)),
        "{a:#}"
    );
    assert_eq!(b["message_id"], expired[0].as_str(), "{b:#}");
    assert_eq!(b["queue"], "h3", "{b:#}");
    assert_eq!(b["reason"], "expired", "{b:#}");
    let command = b["command"].as_str().unwrap_or_default();
    assert!(
        command.starts_with("Sshpass ") && !command.contains("hunter2"),
        "{command}"
    );

    // Read again: the same, in the same order, and nothing taken.
    let again = json(&env, &["-o", "dlq"])?;
    let ids = |doc: &Value| -> Vec<Value> {
        doc["dead_letters"]
            .as_array()
            .map(|l| l.iter().map(|d| d["message_id"].clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(env.vhost.queue_len(common::DLQ).await?, 2);
    let table = env.ok("inspector", &["-o", "dlq", "--limit", "1"])?;
    assert!(
        table.contains("dead-letter queue pqx.test.dlq: 2 messages (showing 1, oldest first)"),
        "{table}"
    );
    assert!(
        table.contains(&failed[0]) && !table.contains(&expired[0]),
        "{table}"
    );
    assert_eq!(env.vhost.queue_len(common::DLQ).await?, 2);
    Ok(())
}

/// `publisher args` as the operator: its exit code and stdout.
fn publisher(env: &Env, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = env.run("publisher", args)?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn dead_letters_go_back_to_their_host_queue_or_stay_and_are_named() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let h1 = env.subscriber("h1")?;
    let mark = env.path("ran-once");
    // Fails the first time only: once sent back, it succeeds.
    let flaky = task(
        &env,
        "flaky.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h1"}}],"cmd":{{"Bash":{{"cmd":["test -e {0} || {{ touch {0}; exit 4; }}"]}}}}}}"#,
            mark.display()
        ),
    )?;
    env.wait_attempts(&flaky[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    // Nobody consumes h2 and h3: both expire and are dead-lettered.
    let to_h2 = task(
        &env,
        "h2.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"config":{"waiting_timeout":1},"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let to_h3 = task(
        &env,
        "h3.json",
        r#"{"mailing_to":[{"unique_key":"h3","zone":"eu"}],"config":{"waiting_timeout":1},"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let deadline = common::Deadline::after_secs(30);
    while env.vhost.queue_len(common::DLQ).await? < 3 {
        deadline
            .tick(|| "waiting for 3 dead letters".into())
            .await?;
    }
    // h3 is gone by the time its dead letter is sent back.
    let admin = env.vhost.connect().await?;
    let channel = admin.create_channel().await?;
    channel
        .queue_delete("h3".into(), lapin::options::QueueDeleteOptions::default())
        .await?;

    let (code, _, stderr) = publisher(&env, &["-o", "redrive"])?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "say which dead letters to send back: --message-id ID, --queue QUEUE or --all"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = publisher(&env, &["-o", "redrive", "--message-id", "nope"])?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no dead letter has message id \"nope\" in pqx.test.dlq"),
        "{stderr}"
    );
    assert_eq!(env.vhost.queue_len(common::DLQ).await?, 3);

    let (code, stdout, stderr) = publisher(&env, &["-o", "redrive", "--message-id", &flaky[0]])?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{}: sent back to queue h1", flaky[0])),
        "{stdout}"
    );
    let attempts = env
        .wait_attempts(&flaky[0], 30, |a| common::count_ended(a) == 2)
        .await?;
    assert_eq!(common::ended(&attempts[1]).exit_code, 0, "{attempts:#?}");
    assert_eq!(env.vhost.queue_len(common::DLQ).await?, 2);
    drop(h1);

    let (code, stdout, stderr) = publisher(&env, &["-o", "redrive", "--all"])?;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{}: sent back to queue h2", to_h2[0])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}: left in the dead-letter queue: host queue h3 does not exist (any more)",
            to_h3[0]
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("re-drove 1 dead letters, left 1"),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 dead letters were left in the dead-letter queue"),
        "{stderr}"
    );
    // Sent back without its expiration: it waits in h2 for a subscriber.
    assert_eq!(env.vhost.queue_len(common::DLQ).await?, 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(env.vhost.queue_len("h2").await?, 1);
    let left = json(&env, &["-o", "dlq"])?;
    assert_eq!(
        left["dead_letters"][0]["message_id"],
        to_h3[0].as_str(),
        "{left:#}"
    );
    let _ = admin.close(200, "".into()).await;
    Ok(())
}

#[tokio::test]
async fn one_message_is_shown_with_every_attempt_and_followed_to_its_end() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    let _h1 = env.subscriber("h1")?;
    let _h2 = env.subscriber("h2")?;
    // Runs on h1 and h2; the first of them to run fails once, then succeeds on its retry.
    let mark = env.path("failed-once");
    let both = task(
        &env,
        "both.json",
        &format!(
            r#"{{"mailing_to":[{{"common_key":"dev"}}],"config":{{"retry":1,"poke":1}},"cmd":{{"Bash":{{"cmd":["printf '\\033]0;title\\007%s\\n' \"$(hostname)\"; mkdir {0} 2>/dev/null && exit 5; true"]}}}}}}"#,
            mark.display()
        ),
    )?;
    env.wait_attempts(&both[0], 30, |a| common::count_ended(a) == 3)
        .await?;
    let shown = env.ok("inspector", &["show", &both[0]])?;
    assert_eq!(shown.matches("attempt ").count(), 3, "{shown}");
    assert!(shown.contains("attempt 2 on queue h"), "{shown}");
    // Each attempt a line of its own, its output under it.
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("attempt ")).count(),
        3,
        "{shown}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "--- stdout").count(),
        3,
        "{shown}"
    );
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    let doc = json(&env, &["show", "--message-id", &both[0]])?;
    assert_eq!(doc["attempts"].as_array().map(Vec::len), Some(3), "{doc:#}");

    // Followed while it runs: printed as it ends, and the exit status is the command's.
    let slow = task(
        &env,
        "slow.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 2; echo done; exit 7"]}}}"#,
    )?;
    env.wait_attempts(&slow[0], 30, |a| a.len() == 1).await?;
    let out = env.run("inspector", &["show", &slow[0], "--follow"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{stdout}");
    assert!(
        stdout.contains("exit code 7") && stdout.contains("done"),
        "{stdout}"
    );
    // On a finished one, at once, and so again.
    let again = env.run("inspector", &["show", &slow[0], "--follow"])?;
    assert_eq!(again.status.code(), Some(7));
    let ok = env.run("inspector", &["show", &both[0], "--follow"])?;
    assert_eq!(ok.status.code(), Some(0));

    let unknown = env.run("inspector", &["show", "nope"])?;
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr
            .contains("inspector: error: no attempt of message \"nope\" is recorded in sqlite://"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_host_added_without_init_yml_gets_commands_at_once_and_goes_again() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    let added = env.ok(
        "initiator",
        &["add-host", "h4", "--kv", "unique_key=h4", "--kv", "rack=r9"],
    )?;
    assert!(added.contains("queue h4"), "{added}");
    let h4 = env.subscriber("h4")?;
    let sent = task(
        &env,
        "h4.json",
        r#"{"mailing_to":[{"rack":"r9"}],"cmd":{"Bash":{"cmd":["echo new"]}}}"#,
    )?;
    assert_eq!(sent.len(), 1);
    let attempts = env
        .wait_attempts(&sent[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    assert_eq!(attempts[0].history.queue.as_deref(), Some("h4"));
    // A retry of a failure comes back through its own retry exchange.
    let flaky = task(
        &env,
        "h4-retry.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h4"}}],"config":{{"retry":1,"poke":1}},"cmd":{{"Bash":{{"cmd":["mkdir {} 2>/dev/null && exit 1; true"]}}}}}}"#,
            env.path("h4-once").display()
        ),
    )?;
    env.wait_attempts(&flaky[0], 30, |a| common::count_ended(a) == 2)
        .await?;
    drop(h4);

    // Bad input: no queue, no pairs, a name init.yml could not hold.
    for (args, said) in [
        (
            vec!["add-host"],
            "say which host queue to add: initiator add-host QUEUE --kv KEY=VALUE",
        ),
        (
            vec!["add-host", "h5"],
            "host queue h5: give the pairs that reach it: --kv KEY=VALUE",
        ),
        (
            vec!["add-host", "h5", "--kv", "novalue"],
            "\"novalue\": expected KEY=VALUE",
        ),
        (
            vec!["add-host", "h1.retry", "--kv", "k=v"],
            "host queue h1.retry: ",
        ),
    ] {
        let out = env.run("initiator", &args)?;
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }

    let removed = env.ok("rectifier", &["del-host", "h4"])?;
    assert!(removed.contains("deleted queue h4 ("), "{removed}");
    assert!(removed.contains("deleted exchange h4.retry"), "{removed}");
    assert!(removed.contains("deleted queue h4.wait."), "{removed}");
    let out = env.run(
        "publisher",
        &[
            "-o",
            "pub",
            "-t",
            env.path("h4.json").to_str().context("path")?,
        ],
    )?;
    assert_eq!(out.status.code(), Some(1));
    let out = env.run("rectifier", &["del-host"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("say which host queue to remove"));
    Ok(())
}

#[tokio::test]
async fn shell_habits_completions_progress_in_a_terminal_only_and_no_color() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    for (binary, word) in [
        ("initiator", "add-host"),
        ("inspector", "dlq"),
        ("publisher", "redrive"),
        ("rectifier", "del-host"),
        ("subscriber", "--recorder"),
    ] {
        for shell in ["bash", "zsh", "fish"] {
            let script = env.ok(binary, &["completions", shell])?;
            assert!(script.contains(word), "{binary} {shell}: {script}");
        }
    }
    let out = env.run("inspector", &["completions", "tcsh"])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("say which shell"));

    // 200 commands as JSON lines, published under a terminal (script(1) gives one) and in a pipe.
    let line =
        r#"{"mailing_to":[{"unique_key":"h3","zone":"eu"}],"cmd":{"Bash":{"cmd":["true"]}}}"#;
    let lines = env.write("many.jsonl", &format!("{line}\n").repeat(200))?;
    let publisher = env.binary("publisher");
    let conn = env.path("conn.yml");
    let init = env.path("init.yml");
    let under_terminal = |no_color: bool| -> Result<String> {
        let command = format!(
            "{} --conn {} --init {} -o pub --quiet -t {} 2>&1 >/dev/null",
            publisher.display(),
            conn.display(),
            init.display(),
            lines.display()
        );
        let mut script = std::process::Command::new("script");
        // Run where the test's files are, its log with them.
        script
            .args(["-qec", &command, "/dev/null"])
            .current_dir(env.path(""))
            .env("PQX_LOG_DIR", env.path("logs"))
            .env("RUST_LOG", "info");
        if no_color {
            script.env("NO_COLOR", "1");
        }
        let out = script.output()?;
        assert!(out.status.success(), "{out:?}");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let shown = under_terminal(false)?;
    assert!(shown.contains("/200 published"), "{shown:?}");
    // Log lines are coloured on a terminal, and not with NO_COLOR.
    assert!(shown.contains("\u{1b}[3"), "{shown:?}");
    let plain = under_terminal(true)?;
    assert!(plain.contains("all publishes confirmed"), "{plain:?}");
    assert!(!plain.contains("\u{1b}[3"), "{plain:?}");
    // In a pipe: no bar, no escapes.
    let out = env.run(
        "publisher",
        &[
            "-o",
            "pub",
            "--quiet",
            "-t",
            lines.to_str().context("path")?,
        ],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("published (") && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_cancelled_message_is_killed_where_it_runs_and_not_run_where_it_waits() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let _h1 = env.subscriber("h1")?;
    let ran = env.path("ran");
    let both = task(
        &env,
        "both.json",
        &format!(
            r#"{{"mailing_to":[{{"common_key":"dev"}}],"config":{{"retry":2,"poke":1}},"cmd":{{"Bash":{{"cmd":["[ -e /nonexistent ] || touch {0}.$RANDOM; echo started; sleep 60"]}}}}}}"#,
            ran.display()
        ),
    )?;
    // Running on h1; waiting in h2, which nobody consumes yet.
    env.wait_attempts(&both[0], 30, |a| a.len() == 1).await?;
    let marks = || -> Result<usize> {
        Ok(std::fs::read_dir(env.path(""))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("ran."))
            .count())
    };
    // Its start is recorded as it starts: its first line may come a moment later.
    let deadline = common::Deadline::after_secs(10);
    while marks()? < 1 {
        deadline
            .tick(|| "the command on h1 did not start".into())
            .await?;
    }
    assert_eq!(marks()?, 1);
    let (code, stdout, stderr) = publisher(&env, &["-o", "cancel", &both[0]])?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("h1: attempt 1 runs on "), "{stdout}");
    assert!(stdout.contains("killed within 2 s"), "{stdout}");
    assert!(
        stdout.contains(&format!("cancelled {} at ", both[0])),
        "{stdout}"
    );
    let attempts = env
        .wait_attempts(&both[0], 20, |a| common::count_ended(a) == 1)
        .await?;
    let killed = common::ended(&attempts[0]);
    assert_eq!(killed.exit_code, 130, "{killed:#?}");
    assert!(
        killed
            .result
            .as_deref()
            .unwrap_or_default()
            .starts_with("cancelled: killed"),
        "{killed:#?}"
    );
    assert_eq!(killed.stdout.as_deref(), Some("started\n"));

    // The copy waiting in h2 is not run when it arrives.
    let _h2 = env.subscriber("h2")?;
    let attempts = env
        .wait_attempts(&both[0], 20, |a| common::count_ended(a) == 2)
        .await?;
    let h2 = attempts
        .iter()
        .find(|a| a.history.queue.as_deref() == Some("h2"))
        .context("h2's attempt")?;
    assert!(common::ended(h2)
        .result
        .as_deref()
        .unwrap_or_default()
        .starts_with("cancelled: not run"));
    assert_eq!(marks()?, 1, "it ran on h2");
    // No retry follows on h1: a command sent after it runs, and the cancelled one stays at 2.
    let after = task(
        &env,
        "after.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    env.wait_attempts(&after[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(env.attempts(&both[0]).await?.len(), 2);
    assert_eq!(ids(&env, &["--status", "cancelled"])?.len(), 2);

    let (code, stdout, _) = publisher(&env, &["-o", "cancel", &both[0]])?;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("was already cancelled at"), "{stdout}");
    let (code, _, stderr) = publisher(&env, &["-o", "cancel", &after[0]])?;
    assert_eq!(code, Some(1));
    assert!(
        stderr
            .contains("already ended on every queue it went to (h1: succeeded): nothing to cancel"),
        "{stderr}"
    );
    let (code, _, stderr) = publisher(&env, &["-o", "cancel"])?;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("say which message to cancel"), "{stderr}");
    Ok(())
}

/// A copy cancelled while it waits is recorded as not run when it arrives, whether the subscriber
/// asks the database (the look-up and the start's record are one statement) or the recorders;
/// the next command runs.
async fn a_cancelled_copy_is_not_run_when_it_arrives(
    db: DbKind,
    through_recorders: bool,
) -> Result<()> {
    let env = ready_env(db, As::HostUsers).await?;
    let _recorder = match through_recorders {
        true => {
            common::records_through_recorders(&env, "h2")?;
            Some(env.recorder()?)
        }
        false => None,
    };
    let ran = env.path("ran");
    let waiting = task(
        &env,
        "waiting.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h2"}}],"cmd":{{"Bash":{{"cmd":["touch {}"]}}}}}}"#,
            ran.display()
        ),
    )?;
    let (code, stdout, stderr) = publisher(&env, &["-o", "cancel", &waiting[0]])?;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let _h2 = env.subscriber("h2")?;
    let next = task(
        &env,
        "next.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"cmd":{"Bash":{"cmd":["echo next"]}}}"#,
    )?;
    let attempts = env
        .wait_attempts(&next[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    assert_eq!(common::ended(&attempts[0]).exit_code, 0);
    let attempts = env.attempts(&waiting[0]).await?;
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    let result = common::ended(&attempts[0]);
    assert!(
        result
            .result
            .as_deref()
            .unwrap_or_default()
            .starts_with("cancelled: not run"),
        "{result:#?}"
    );
    assert!(!ran.exists(), "it ran");
    Ok(())
}

#[tokio::test]
async fn a_cancelled_copy_is_not_run_when_it_arrives_sqlite() -> Result<()> {
    a_cancelled_copy_is_not_run_when_it_arrives(DbKind::Sqlite, false).await
}

#[tokio::test]
async fn a_cancelled_copy_is_not_run_when_it_arrives_postgres() -> Result<()> {
    a_cancelled_copy_is_not_run_when_it_arrives(DbKind::Postgres, false).await
}

#[tokio::test]
async fn a_cancelled_copy_is_not_run_when_it_arrives_through_the_recorders() -> Result<()> {
    a_cancelled_copy_is_not_run_when_it_arrives(DbKind::Postgres, true).await
}

#[tokio::test]
async fn a_running_command_is_followed_line_by_line_as_it_prints() -> Result<()> {
    let env = ready_env(DbKind::Postgres, As::HostUsers).await?;
    let _h1 = env.subscriber("h1")?;
    let slow = task(
        &env,
        "slow.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["for i in 1 2 3 4 5 6; do echo \"line $i\"; sleep 1; done; printf '\\033[2Jbye\\n' >&2; exit 3"]}}}"#,
    )?;
    env.wait_attempts(&slow[0], 30, |a| a.len() == 1).await?;
    let (mut follower, rx) = follow(&env, &slow[0])?;
    // A line comes while the command still runs: its result is not recorded yet.
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(15))
        .context("no line followed")?;
    assert!(first.starts_with("h1| line "), "{first}");
    let attempts = env.attempts(&slow[0]).await?;
    assert!(
        attempts[0].result.is_none(),
        "it ended before its lines came: {attempts:#?}"
    );
    let status = tokio::task::spawn_blocking(move || follower.wait()).await??;
    assert_eq!(status.code(), Some(3));
    // The reader thread may still hold the last lines: take them until it sees the pipe's end.
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(10)) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l == "h1| line 6"), "{rest:?}");
    // stderr's line, its escape sequence shown as text.
    assert!(
        rest.iter().any(|l| l == "h1 stderr| \\x1b[2Jbye"),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.starts_with("attempt 1 on queue h1")),
        "{rest:?}"
    );
    assert!(rest.iter().all(|l| !l.contains('\u{1b}')), "{rest:?}");
    Ok(())
}

/// `inspector show ID --follow`, started, and the lines it prints as they come.
fn follow(env: &Env, id: &str) -> Result<(std::process::Child, std::sync::mpsc::Receiver<String>)> {
    use std::io::BufRead;
    let mut follower = env
        .command("inspector")
        .args(["-o", "show", "--message-id", id, "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stdout = follower.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((follower, rx))
}

/// Publishes one message of the output exchange's, as a subscriber does.
async fn send_output(channel: &lapin::Channel, key: &str, kind: &str, body: &str) -> Result<()> {
    channel
        .basic_publish(
            "pqx.test.output".into(),
            key.into(),
            lapin::options::BasicPublishOptions::default(),
            body.as_bytes(),
            lapin::BasicProperties::default().with_type(kind.into()),
        )
        .await?
        .await?;
    Ok(())
}

/// A subscriber sends a run's lines from a task of its own, which may be behind the run's
/// record: `--follow` must not take the result as the end of the lines, but wait for the run's
/// end mark. Here the test is the subscriber, and its last line comes well after the result.
#[tokio::test]
async fn a_followed_run_s_last_line_coming_after_its_result_is_printed_before_it() -> Result<()> {
    a_last_line_after_the_result(true).await
}

/// A run's end mark may never come (its subscriber lost the broker): the follower waits for it a
/// bounded time, then prints the result and exits all the same.
#[tokio::test]
async fn a_followed_run_whose_end_mark_never_comes_is_ended_all_the_same() -> Result<()> {
    a_last_line_after_the_result(false).await
}

/// Follows a run whose last line comes 1.5 s after its result, then its end mark if `marked`.
async fn a_last_line_after_the_result(marked: bool) -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::Admin).await?;
    let store = env.store().await?;
    let id = common::unique("late");
    let command =
        pqx_app::Command::from_json(r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#)?;
    let history = store
        .record_start(&pqx_app::AttemptStart {
            command: &command,
            message_id: Some(&id),
            queue: "h1",
            host: "vm",
            attempt: 1,
        })
        .await?;
    let (mut follower, rx) = follow(&env, &id)?;
    // It listens once its queue is bound to the output exchange.
    let api = env.vhost.broker.api(&env.vhost.name)?;
    let deadline = common::Deadline::after_secs(15);
    let bound = format!("{id}.#");
    while !api
        .bindings_from("pqx.test.output")
        .await?
        .iter()
        .any(|b| b.routing_key == bound)
    {
        deadline.tick(|| "the follower never bound".into()).await?;
    }
    let connection = env.vhost.connect().await?;
    let channel = connection.create_channel().await?;
    let key = format!("{id}.h1");
    send_output(&channel, &key, "stdout", "first").await?;
    let first = rx.recv_timeout(std::time::Duration::from_secs(15))?;
    assert_eq!(first, "h1| first");
    let outcome = pqx_app::Outcome {
        success: true,
        exit_code: 0,
        summary: "exit status 0".into(),
        stdout: "first\nlast\n".into(),
        stderr: String::new(),
        ended_at: chrono::Utc::now(),
    };
    store.record_end(history, &outcome).await?;
    // Another run's end mark is not this one's.
    send_output(&channel, &format!("{id}.h2"), "end", "1").await?;
    send_output(&channel, &key, "end", "2").await?;
    // A sender that lags behind the record: the follower reads the records every half second.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    send_output(&channel, &key, "stdout", "last").await?;
    if marked {
        send_output(&channel, &key, "end", "1").await?;
    }
    let deadline = common::Deadline::after_secs(20);
    let status = loop {
        match follower.try_wait()? {
            Some(status) => break status,
            None => deadline.tick(|| "the follower never ended".into()).await?,
        }
    };
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = rx.iter().collect();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert_eq!(rest[0], "h1| last");
    assert!(
        rest[1].starts_with("attempt 1 on queue h1 (host vm)")
            && rest[1].ends_with(": exit status 0"),
        "{rest:?}"
    );
    Ok(())
}

/// What a subscriber sends to the output exchange: a run's lines in order, then its end mark
/// with the attempt's number; a run that printed nothing sends nothing.
#[tokio::test]
async fn a_run_s_lines_end_with_its_mark_and_a_silent_run_sends_nothing() -> Result<()> {
    let env = ready_env(DbKind::Sqlite, As::HostUsers).await?;
    let connection = env.vhost.connect().await?;
    let channel = connection.create_channel().await?;
    let probe = common::unique("probe");
    channel
        .queue_declare(
            probe.as_str().into(),
            lapin::options::QueueDeclareOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            probe.as_str().into(),
            "pqx.test.output".into(),
            "#".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    let _h1 = env.subscriber("h1")?;
    let silent = task(
        &env,
        "silent.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    env.wait_attempts(&silent[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    let talking = task(
        &env,
        "talking.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo one; echo two >&2; echo three"]}}}"#,
    )?;
    env.wait_attempts(&talking[0], 30, |a| common::count_ended(a) == 1)
        .await?;
    let sent: Vec<(String, String, String)> = env
        .vhost
        .take_all(&probe, 2)
        .await?
        .into_iter()
        .map(|d| {
            let kind = d.properties.kind().as_ref().map(|k| k.to_string());
            (
                d.routing_key.to_string(),
                kind.unwrap_or_default(),
                String::from_utf8_lossy(&d.data).into_owned(),
            )
        })
        .collect();
    let key = format!("{}.h1", talking[0]);
    let said = |kind: &str, body: &str| (key.clone(), kind.to_owned(), body.to_owned());
    // stdout's lines in their order, stderr's among them; the mark last.
    assert_eq!(sent.len(), 4, "{sent:?}");
    let stdout: Vec<_> = sent.iter().filter(|s| s.1 == "stdout").collect();
    assert_eq!(stdout, [&said("stdout", "one"), &said("stdout", "three")]);
    assert!(sent.contains(&said("stderr", "two")), "{sent:?}");
    assert_eq!(sent[3], said("end", "1"));
    Ok(())
}
