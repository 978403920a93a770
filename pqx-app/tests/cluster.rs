//! A broker of three nodes (`scripts/services.sh --cluster`): quorum queues and what they need to
//! lose nothing, conn.yml naming several nodes (one that does not answer is skipped, none answering
//! is said naming each), a subscriber that loses its node going on on another, and a command that
//! keeps killing its subscriber ending in the dead letters. The tests that stop a node take turns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use anyhow::{Context, Result};
use common::{
    cluster_ctl, connected_node, count_ended, free_ports, kill_node, leader_of, restore_cluster,
    DbKind, Deadline, Env, Records, CLUSTER, DLQ, INIT_YML, MQ_PASS, MQ_USER,
};

/// A test that stops a node has the cluster to itself; the others share it.
static NODES: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Starts a node's app again even if the test fails half way.
struct StartAgain(usize);

impl Drop for StartAgain {
    fn drop(&mut self) {
        let _ = cluster_ctl(self.0, "start_app");
    }
}

/// An environment on the cluster with the standard init.yml and `extra` lines.
async fn cluster_env(db: DbKind, extra: &str) -> Result<Env> {
    let bins = Path::new(env!("CARGO_BIN_EXE_subscriber"))
        .parent()
        .context("the binaries' directory")?;
    let env = Env::on_cluster(bins, db).await?;
    env.write("init.yml", &format!("{INIT_YML}{extra}"))?;
    Ok(env)
}

fn error_line(env: &Env, binary: &str, args: &[&str]) -> Result<String> {
    let out = env.run(binary, args)?;
    assert_eq!(out.status.code(), Some(1), "{binary} {args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok(stderr
        .lines()
        .find(|l| l.starts_with(&format!("{binary}: error: ")))
        .unwrap_or_else(|| panic!("no error line: {stderr}"))
        .to_owned())
}

#[tokio::test]
async fn quorum_queues_are_laid_out_and_retries_and_dead_letters_go_through_them() -> Result<()> {
    let _nodes = NODES.read().await;
    let mut env = cluster_env(DbKind::Postgres, "queue_type: quorum\n").await?;
    let out = env.ok("initiator", &["-o", "init"])?;
    assert!(
        out.contains("note: queue_type quorum: RabbitMQ 3.10's quorum queues have no priorities: commands run in the order they came, whatever their config.priority"),
        "{out}"
    );
    assert!(
        out.contains("queue h1 (quorum, delivery limit 20) bound to pqx.test"),
        "{out}"
    );
    assert_eq!(
        env.ok("initiator", &["-o", "init"])?,
        out,
        "again: the same"
    );
    let api = CLUSTER[0].api(&env.vhost.name)?;
    let h1 = api.queue("h1").await?;
    assert_eq!(h1.kind.as_deref(), Some("quorum"));
    for (key, value) in [
        ("x-dead-letter-strategy", serde_json::json!("at-least-once")),
        ("x-overflow", serde_json::json!("reject-publish")),
        ("x-delivery-limit", serde_json::json!(20)),
    ] {
        assert_eq!(
            h1.arguments.get(key),
            Some(&value),
            "{key}: {:?}",
            h1.arguments
        );
    }
    assert!(!h1.arguments.contains_key("x-max-priority"));
    assert_eq!(api.queue(DLQ).await?.kind.as_deref(), Some("quorum"));

    // The subscriber as h1's own broker user: it may declare, consume and forward its held queue.
    env.use_host_users()?;
    let sub = env.subscriber("h1")?;
    let task = env.write(
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":1,"poke":2},"cmd":{"Bash":{"cmd":["exit 5"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    // Three more held at once, due one after the other: each is forwarded on its time, not when
    // something else comes.
    let mut others = Vec::new();
    for poke in [3, 4, 5] {
        let task = env.write(
            &format!("fail-{poke}.json"),
            &format!(
                r#"{{"mailing_to":[{{"unique_key":"h1"}}],"config":{{"retry":1,"poke":{poke}}},"cmd":{{"Bash":{{"cmd":["exit 5"]}}}}}}"#
            ),
        )?;
        others.push(env.publish(&task)?.remove(0));
    }
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 2).await?;
    for other in &others {
        env.wait_attempts(other, 30, |a| count_ended(a) == 2)
            .await?;
    }
    // The retry waited in the held queue, a quorum queue without a TTL or dead-lettering (the
    // subscriber forwards it when it is due), for its two seconds at least.
    let held = api.queue("h1.qwait").await?;
    assert_eq!(held.kind.as_deref(), Some("quorum"), "{:?}", held.arguments);
    for key in ["x-message-ttl", "x-expires", "x-dead-letter-exchange"] {
        assert!(!held.arguments.contains_key(key), "{:?}", held.arguments);
    }
    let failed_at = attempts[0].result.as_ref().context("first result")?.time;
    let retried_at = attempts[1].history.time;
    assert!(
        retried_at - failed_at >= chrono::Duration::milliseconds(1900),
        "retried {} after the failure",
        retried_at - failed_at
    );
    for _ in 0..4 {
        let dead = env.vhost.take(DLQ, 30).await?.context("the dead letter")?;
        let reason = pqx::mq::header_string(&dead.properties, pqx::mq::ERROR_HEADER);
        assert_eq!(
            reason.as_deref(),
            Some("failed on attempt 2: failed: exit code 5")
        );
    }
    // Held queues do not expire: rectifier removes them with the host queues.
    drop(sub);
    env.ok("rectifier", &["-o", "del_que"])?;
    assert!(
        api.queue("h1.qwait").await.is_err(),
        "rectifier left the held queue"
    );
    Ok(())
}

#[tokio::test]
async fn priorities_and_a_changed_queue_type_are_said_in_one_line() -> Result<()> {
    let _nodes = NODES.read().await;
    let env = cluster_env(DbKind::Sqlite, "queue_type: quorum\nmax_priority: 5\n").await?;
    let line = error_line(&env, "initiator", &["-o", "init"])?;
    assert_eq!(line, "initiator: error: init.yml: max_priority: 5: quorum queues have no priorities on RabbitMQ 3.10 (commands run in the order they came): leave max_priority out, or 0, with queue_type: quorum");
    // Laid out classic, then asked for quorum: left as it is, the fix named.
    env.write("init.yml", INIT_YML)?;
    env.init()?;
    env.write("init.yml", &format!("{INIT_YML}queue_type: quorum\n"))?;
    let out = env.ok("initiator", &["-o", "init"])?;
    assert!(out.contains("differs: queue h1: classic, not quorum as init.yml's queue_type says: left as it is (to change it, `rectifier -o del_que` drops it with its messages, then `initiator -o decl_x`)"), "{out}");
    assert!(out.contains(&format!("differs: queue {DLQ}: classic, not quorum as init.yml's queue_type says: left as it is (to change it, `rectifier -o del_que` drops it with its messages, then `initiator -o decl_dlx`)")), "{out}");
    // rectifier, then initiator: quorum.
    env.ok("rectifier", &["-o", "del_que"])?;
    env.ok("initiator", &["-o", "init"])?;
    let api = CLUSTER[0].api(&env.vhost.name)?;
    assert_eq!(api.queue("h1").await?.kind.as_deref(), Some("quorum"));
    Ok(())
}

#[tokio::test]
async fn a_node_that_does_not_answer_is_skipped_and_none_answering_is_said_naming_each(
) -> Result<()> {
    let _nodes = NODES.read().await;
    let env = cluster_env(DbKind::Sqlite, "queue_type: quorum\n").await?;
    let vhost = env.vhost.name.clone();
    let [dead, dead_api, dead2] = free_ports()?;
    let cluster = common::cluster_urls(&vhost);
    let conn = |urls: &[String], apis: &[String]| {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "mq:\n  urls: [{}]\nmq_api:\n  urls: [{}]\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\ndb:\n  url: \"{}\"\n",
            list(urls),
            list(apis),
            env.db.url
        )
    };
    let dead_url = format!("amqp://{MQ_USER}:{MQ_PASS}@127.0.0.1:{dead}/{vhost}");
    let mut urls = vec![dead_url.clone()];
    urls.extend(cluster.iter().cloned());
    let mut apis = vec![format!("http://127.0.0.1:{dead_api}/api")];
    apis.extend(
        CLUSTER
            .iter()
            .map(|n| format!("http://127.0.0.1:{}/api", n.api_port)),
    );
    env.write("conn.yml", &conn(&urls, &apis))?;

    // The first node named does not answer: initiator (AMQP and the API) and the publisher go on
    // with the next, and say so once.
    let out = env.run("initiator", &["-o", "init"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let skipped = format!("cannot reach this RabbitMQ node: trying the next node=amqp://{MQ_USER}:***@127.0.0.1:{dead}/{vhost}");
    assert_eq!(
        stderr.matches("cannot reach this RabbitMQ node").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&skipped), "{stderr}");
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;

    // None answers: one line naming each address, passwords redacted.
    let nowhere: Vec<String> = [dead, dead2]
        .iter()
        .map(|p| format!("amqp://{MQ_USER}:{MQ_PASS}@127.0.0.1:{p}/{vhost}"))
        .collect();
    env.write("conn.yml", &conn(&nowhere, &apis))?;
    let line = error_line(
        &env,
        "publisher",
        &[
            "-o",
            "pub",
            "-t",
            task.to_str().unwrap(),
            "--retry-for",
            "0",
        ],
    )?;
    for port in [dead, dead2] {
        assert!(
            line.contains(&format!(
                "RabbitMQ amqp://{MQ_USER}:***@127.0.0.1:{port}/{vhost}: "
            )),
            "{line}"
        );
    }
    assert!(
        line.starts_with("publisher: error: cannot reach any RabbitMQ node: "),
        "{line}"
    );
    assert!(!line.contains(&format!(":{MQ_PASS}@")), "{line}");

    // An empty list is named.
    env.write("conn.yml", &conn(&[], &apis))?;
    let line = error_line(
        &env,
        "publisher",
        &["-o", "pub", "-t", task.to_str().unwrap()],
    )?;
    assert_eq!(
        line,
        "publisher: error: conn.yml: mq.urls: empty: name at least one broker node"
    );
    Ok(())
}

#[tokio::test]
async fn a_subscriber_whose_node_goes_away_goes_on_on_another() -> Result<()> {
    let _nodes = NODES.write().await;
    let env = cluster_env(DbKind::Postgres, "queue_type: quorum\n").await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let node = connected_node(&sub.log()).context("the node it connected to")?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let before = env.publish(&task)?.remove(0);
    env.wait_attempts(&before, 30, |a| count_ended(a) == 1)
        .await?;

    cluster_ctl(node, "stop_app")?;
    let _again = StartAgain(node);
    let deadline = Deadline::after_secs(60);
    while connected_node(&sub.log()) == Some(node) {
        deadline
            .tick(|| format!("it did not move to another node: {}", sub.log()))
            .await?;
    }
    let moved = connected_node(&sub.log()).context("the node it moved to")?;
    assert_ne!(moved, node);
    sub.wait_ready(true, 60).await?;
    let after = env.publish(&task)?.remove(0);
    env.wait_attempts(&after, 60, |a| count_ended(a) == 1)
        .await?;
    assert_eq!(env.attempts(&before).await?.len(), 1, "nothing ran twice");
    Ok(())
}

#[tokio::test]
async fn a_command_that_keeps_killing_its_subscriber_ends_in_the_dead_letters() -> Result<()> {
    let _nodes = NODES.read().await;
    let env = cluster_env(DbKind::Sqlite, "queue_type: quorum\ndelivery_limit: 2\n").await?;
    env.init()?;
    // bash's parent is the subscriber. The second's wait lets the start, recorded while the
    // command starts, reach the records first, as it does for a tool that dies of its work.
    let task = env.write(
        "deadly.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 1; kill -9 $PPID"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let mut starts = 0;
    let mut logs = String::new();
    let dead = 'handed_out: loop {
        // Dead-lettering at least once happens on its own time: wait until the message is back in
        // h1 or in the dead letters before starting the next subscriber.
        let deadline = Deadline::after_secs(60);
        loop {
            if let Some(dead) = env.vhost.take(DLQ, 1).await? {
                break 'handed_out dead;
            }
            if env.vhost.queue_len("h1").await? == 1 {
                break;
            }
            deadline
                .tick(|| format!("after {starts} subscribers it is neither back nor dead: {logs}"))
                .await?;
        }
        assert!(
            starts < 5,
            "still handed out after {starts} subscribers: {logs}"
        );
        let mut sub = env.subscriber("h1")?;
        starts += 1;
        let _ = sub.wait_exit(20);
        logs.push_str(&sub.log());
    };
    assert_eq!(
        dead.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    let reason = pqx::mq::header_string(&dead.properties, "x-first-death-reason");
    assert_eq!(
        reason.as_deref(),
        Some("delivery_limit"),
        "{:?}",
        dead.properties.headers()
    );
    // Handed out once, then again as many times as the limit says (two): three subscribers
    // killed, no more.
    assert_eq!(starts, 3, "subscribers started: {logs}");
    assert_eq!(logs.matches("running queue=").count(), 3, "{logs}");
    // Every hand-out started the command and recorded its start; none has a result.
    let attempts = env.attempts(&id).await?;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(count_ended(&attempts), 0, "{attempts:?}");
    Ok(())
}

/// Restores the cluster even if the test fails half way.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = restore_cluster();
    }
}

#[tokio::test]
async fn a_waiting_retry_outlives_the_node_that_leads_its_queue() -> Result<()> {
    let _nodes = NODES.write().await;
    let env = cluster_env(DbKind::Sqlite, "queue_type: quorum\n").await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    // Fails the first time, succeeds the second; the retry waits ten seconds.
    let marker = env.dir.path().join("ran-once");
    let task = env.write(
        "flaky.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h1"}}],"config":{{"retry":1,"poke":10}},"cmd":{{"Bash":{{"cmd":["test -e {m} || {{ touch {m}; exit 3; }}"]}}}}}}"#,
            m = marker.display()
        ),
    )?;
    let id = env.publish(&task)?.remove(0);
    env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    let leader = leader_of(&env.vhost.name, "h1.qwait").await?;
    kill_node(leader)?;
    let _restore = Restore;
    let attempts = env.wait_attempts(&id, 120, |a| count_ended(a) == 2).await?;
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[1].result.as_ref().map(|r| r.exit_code), Some(0));
    restore_cluster()?;
    Ok(())
}
