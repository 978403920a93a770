//! Nothing lost, nothing stuck: a subscriber killed or stopped mid-run, a broker restarted while a
//! subscriber idles or runs and while a publisher publishes, the database going away when an
//! attempt ends. The broker restarts happen on a second node of their own, one test at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{
    count_ended, ended, env, env_on, node2_ctl, DbKind, Deadline, Env, Records, TcpProxy, NODE2,
};
use nix::sys::signal::Signal;

/// The tests that stop the second node take turns.
static NODE2_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the second node's app again even if the test fails half way.
struct StartAgain;

impl Drop for StartAgain {
    fn drop(&mut self) {
        let _ = node2_ctl("start_app");
    }
}

const SLOW: &str =
    r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 3; echo finished"]}}}"#;
const QUICK: &str = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo quick"]}}}"#;
const LONG: &str = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 60"]}}}"#;

/// Publishes `task` (JSON) once; returns its message id.
fn publish(env: &Env, task: &str) -> Result<String> {
    let path = env.write(&common::unique("task"), task)?;
    Ok(env.publish(&path)?.remove(0))
}

#[tokio::test]
async fn sigkill_mid_run_runs_it_again_and_records_both_attempts() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let first = env.subscriber("h1")?;
    let id = publish(&env, SLOW)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    first.signal(Signal::SIGKILL)?;
    drop(first);
    let _second = env.subscriber("h1")?;
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(
        attempts[0].result.is_none(),
        "the killed attempt has no result"
    );
    assert_eq!(ended(&attempts[1]).summary(), "succeeded");
    assert_eq!(env.vhost.queue_len("h1").await?, 0);
    Ok(())
}

/// The processes whose command line holds `token`.
fn holding(token: &str) -> Vec<String> {
    common::all_cmdlines()
        .into_iter()
        .filter(|c| c.contains(token) && !c.contains("cargo") && !c.contains("faults"))
        .collect()
}

#[tokio::test]
async fn a_killed_subscriber_takes_its_commands_process_tree_with_it() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let first = env.subscriber("h1")?;
    let token = common::unique("pqx-tree");
    // Two children in the command's process group, one in a session of its own.
    let script = format!(
        "bash -c 'sleep 300; true' {token} & bash -c 'sleep 300; true' {token} & setsid bash -c 'sleep 300; true' {token} & wait"
    );
    let task = serde_json::json!({"mailing_to": [{"unique_key": "h1"}], "config": {"consuming_timeout": 600}, "cmd": {"Bash": {"cmd": [script]}}});
    let id = publish(&env, &task.to_string())?;
    let deadline = Deadline::after_secs(30);
    while holding(&token).len() < 4 {
        deadline
            .tick(|| format!("the command's tree did not start: {:?}", holding(&token)))
            .await?;
    }
    first.signal(Signal::SIGKILL)?;
    let killed = Instant::now();
    // Gone within a second: before the broker hands the message out again.
    while !holding(&token).is_empty() && killed.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = holding(&token);
    assert!(
        left.is_empty(),
        "left running a second after the SIGKILL: {left:#?}"
    );
    drop(first);
    // The next subscriber runs it again, alone on the host.
    let _second = env.subscriber("h1")?;
    env.wait_attempts(&id, 30, |a| a.len() == 2).await?;
    let deadline = Deadline::after_secs(30);
    while holding(&token).len() < 4 {
        deadline
            .tick(|| format!("the redelivered copy did not start: {:?}", holding(&token)))
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_the_running_command_then_exits_0() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let mut sub = env.subscriber("h1")?;
    let id = publish(&env, SLOW)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    sub.signal(Signal::SIGTERM)?;
    sub.wait_log("stopping after the running command", 10)
        .await?;
    // Published while it stops: it must stay in the queue.
    let later = publish(&env, QUICK)?;
    assert_eq!(sub.wait_exit(30)?, Some(0), "{}", sub.log());
    let attempts = env.attempts(&id).await?;
    assert_eq!(attempts.len(), 1);
    assert_eq!(ended(&attempts[0]).summary(), "succeeded");
    assert!(env.attempts(&later).await?.is_empty());
    assert_eq!(
        env.vhost.queue_len("h1").await?,
        1,
        "the later command waits for the next subscriber"
    );
    Ok(())
}

#[tokio::test]
async fn second_signal_interrupts_and_the_message_comes_back() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let mut sub = env.subscriber("h1")?;
    let id = publish(&env, LONG)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    let started = Instant::now();
    sub.signal(Signal::SIGTERM)?;
    sub.wait_log("stopping after the running command", 10)
        .await?;
    sub.signal(Signal::SIGINT)?;
    assert_eq!(sub.wait_exit(30)?, Some(130), "{}", sub.log());
    assert!(started.elapsed() < Duration::from_secs(20));
    let attempts = env.attempts(&id).await?;
    assert_eq!(ended(&attempts[0]).exit_code, 130);
    assert!(ended(&attempts[0]).summary().contains("interrupted"));
    assert_eq!(
        env.vhost.queue_len("h1").await?,
        1,
        "the message is back in the queue"
    );
    Ok(())
}

#[tokio::test]
async fn grace_period_bounds_the_wait() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let mut sub = env.subscriber_with("h1", &["--grace-period", "1"], &[])?;
    let id = publish(&env, LONG)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    let started = Instant::now();
    sub.signal(Signal::SIGTERM)?;
    assert_eq!(sub.wait_exit(30)?, Some(130), "{}", sub.log());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(sub.log().contains("grace period over"));
    assert_eq!(env.vhost.queue_len("h1").await?, 1);
    Ok(())
}

// Multi-threaded: the proxy's tasks must run while the test blocks on the subscriber's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_holds_the_delivery_until_the_record_is_written() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    env.init()?;
    let url = url::Url::parse(&env.db.url)?;
    let upstream = (
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(5432),
    );
    let proxy = TcpProxy::start(upstream).await?;
    let mut through = url.clone();
    through.set_port(Some(proxy.port)).unwrap();
    env.write_conn(through.as_str(), env.vhost.broker.amqp_port)?;
    let sub = env.subscriber("h1")?;
    let id = publish(&env, SLOW)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    proxy.cut();
    sub.wait_log("cannot record the result: holding the message", 30)
        .await?;
    assert_eq!(env.vhost.queue_len("h1").await?, 0, "held, not returned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 1).await?;
    assert_eq!(attempts.len(), 1, "recorded once: {attempts:#?}");
    assert_eq!(ended(&attempts[0]).summary(), "succeeded");
    sub.wait_log("the database answers again", 30).await?;
    let deadline = Deadline::after_secs(10);
    while env.vhost.queue_len("h1").await? != 0 {
        deadline
            .tick(|| "the held delivery was not settled".into())
            .await?;
    }
    Ok(())
}

/// A subscriber cut off from the broker lets its command finish and records it, while the broker
/// hands the message to the next subscriber at once: that one waits for the record instead of
/// running the command a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_waits_for_the_twin_still_running_it() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let proxy = TcpProxy::start((common::mq_host(), env.vhost.broker.amqp_port)).await?;
    let conn = std::fs::read_to_string(env.path("conn.yml"))?;
    let through = conn.replacen(
        &format!("port: {}\n", env.vhost.broker.amqp_port),
        &format!("port: {}\n", proxy.port),
        1,
    );
    assert_ne!(through, conn, "conn.yml names the broker's port");
    env.write("conn-proxied.yml", &through)?;
    let first = env.subscriber_with("h1", &["--conn", "conn-proxied.yml"], &[])?;
    let id = publish(&env, SLOW)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    let second = env.subscriber("h1")?;
    proxy.cut();
    second
        .wait_log("waiting for the subscriber that may still run it", 30)
        .await?;
    second
        .wait_log("already recorded: settling it from the record", 30)
        .await?;
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(attempts.len(), 1, "run once: {attempts:#?}");
    assert_eq!(ended(&attempts[0]).summary(), "succeeded");
    assert!(first.log().contains(&id), "the first one ran it");
    Ok(())
}

#[tokio::test]
async fn broker_restart_while_idle() -> Result<()> {
    let _turn = NODE2_TURN.lock().await;
    let env = env_on(NODE2, DbKind::Sqlite).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let _again = StartAgain;
    node2_ctl("stop_app")?;
    sub.wait_log("lost the connection to RabbitMQ: reconnecting", 30)
        .await?;
    sub.wait_log("cannot reach RabbitMQ: trying again", 30)
        .await?;
    assert!(
        !sub.is_ready(),
        "the ready file says consuming while cut off"
    );
    node2_ctl("start_app")?;
    sub.wait_log("reconnected to RabbitMQ", 60).await?;
    sub.wait_ready(true, 10).await?;
    let id = publish(&env, QUICK)?;
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(ended(&attempts[0]).summary(), "succeeded");
    Ok(())
}

#[tokio::test]
async fn broker_restart_while_running_records_the_attempt_once() -> Result<()> {
    let _turn = NODE2_TURN.lock().await;
    let env = env_on(NODE2, DbKind::Sqlite).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let _again = StartAgain;
    let task =
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 8; echo finished"]}}}"#;
    let id = publish(&env, task)?;
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    node2_ctl("stop_app")?;
    node2_ctl("start_app")?;
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 1).await?;
    assert_eq!(ended(&attempts[0]).summary(), "succeeded");
    sub.wait_log("reconnected to RabbitMQ", 60).await?;
    // The unacknowledged message came back and was settled from the record, not run again.
    sub.wait_log("already recorded: settling it from the record", 30)
        .await?;
    assert_eq!(env.attempts(&id).await?.len(), 1);
    assert_eq!(env.vhost.queue_len("h1").await?, 0);
    Ok(())
}

#[tokio::test]
async fn publisher_waits_for_the_broker_to_come_back() -> Result<()> {
    let _turn = NODE2_TURN.lock().await;
    let env = env_on(NODE2, DbKind::Sqlite).await?;
    env.init()?;
    let _again = StartAgain;
    node2_ctl("stop_app")?;
    let task = env.write("quick.json", QUICK)?;
    let publisher = env
        .command("publisher")
        .args(["-o", "pub", "--retry-for", "60", "-t"])
        .arg(&task)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    node2_ctl("start_app")?;
    let out = publisher.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot reach RabbitMQ: trying again"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("published "));
    assert_eq!(env.vhost.queue_len("h1").await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_copy_the_publisher_sent_again_runs_once() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let id = publish(&env, QUICK)?;
    let first = env.vhost.take("h1", 10).await?.expect("the command");
    // The broker took the first copy, but the publisher lost its confirm and sent it again.
    env.vhost
        .publish("h1", first.properties.clone(), &first.data)
        .await?;
    let again = pqx::mq::published_again(first.properties.clone());
    env.vhost.publish("h1", again, &first.data).await?;
    let sub = env.subscriber("h1")?;
    sub.wait_log(
        "a copy the publisher sent again, of an attempt already here: dropped",
        30,
    )
    .await?;
    let attempts = env.attempts(&id).await?;
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(env.vhost.queue_len("h1").await?, 0);
    Ok(())
}
