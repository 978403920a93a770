//! Nothing lost, nothing stuck: a subscriber killed or stopped mid-run, a broker restarted while a
//! subscriber idles or runs and while a publisher publishes, the database going away when an
//! attempt ends. The broker restarts happen on a second node of their own, one test at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{count_ended, ended, node2_ctl, Db, TcpProxy, TestEnv, NODE2};
use nix::sys::signal::Signal;

/// The tests that stop the second node take turns.
static NODE2_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the second node's app again even if the test fails half way.
struct StartAgain;

impl Drop for StartAgain {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "-n", &common::node2_name(), "start_app"])
            .status();
    }
}

const SLOW: &str =
    r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 3; echo finished"]}}}"#;
const QUICK: &str = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo quick"]}}}"#;

#[tokio::test]
async fn sigkill_mid_run_runs_it_again_and_records_both_attempts() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let first = env.subscriber("h1", &[]);
    let id = env.publish(&env.task("slow.json", SLOW)).remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await;
    first.signal(Signal::SIGKILL);
    drop(first);
    let _second = env.subscriber("h1", &[]);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await;
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(attempts[0].1.is_none(), "the killed attempt has no result");
    assert_eq!(ended(&attempts[1]).result, "succeeded");
    assert_eq!(env.queue_len("h1").await, 0);
}

#[tokio::test]
async fn sigterm_finishes_the_running_command_then_exits_0() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let mut sub = env.subscriber("h1", &[]);
    let id = env.publish(&env.task("slow.json", SLOW)).remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await;
    sub.signal(Signal::SIGTERM);
    sub.wait_log("stopping after the running command", 10).await;
    // Published while it stops: it must stay in the queue.
    let later = env.publish(&env.task("quick.json", QUICK)).remove(0);
    assert_eq!(sub.wait_exit(30), Some(0), "{}", sub.log());
    let attempts = env.attempts(&id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(ended(&attempts[0]).result, "succeeded");
    assert!(env.attempts(&later).await.is_empty());
    assert_eq!(
        env.queue_len("h1").await,
        1,
        "the later command waits for the next subscriber"
    );
}

#[tokio::test]
async fn second_signal_interrupts_and_the_message_comes_back() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let mut sub = env.subscriber("h1", &[]);
    let task = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 60"]}}}"#;
    let id = env.publish(&env.task("long.json", task)).remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await;
    let started = Instant::now();
    sub.signal(Signal::SIGTERM);
    sub.wait_log("stopping after the running command", 10).await;
    sub.signal(Signal::SIGINT);
    assert_eq!(sub.wait_exit(30), Some(130), "{}", sub.log());
    assert!(started.elapsed() < Duration::from_secs(20));
    let attempts = env.attempts(&id).await;
    assert_eq!(ended(&attempts[0]).exit_code, 130);
    assert!(ended(&attempts[0]).result.contains("interrupted"));
    assert_eq!(
        env.queue_len("h1").await,
        1,
        "the message is back in the queue"
    );
}

#[tokio::test]
async fn grace_period_bounds_the_wait() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let mut sub = {
        let log = env.path("grace.log");
        let child = env
            .command("subscriber")
            .args(["-q", "h1", "--grace-period", "1"])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        common::Subscriber { child, log }
    };
    sub.wait_log("subscribed", 30).await;
    let task = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 60"]}}}"#;
    let id = env.publish(&env.task("long.json", task)).remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await;
    sub.signal(Signal::SIGTERM);
    assert_eq!(sub.wait_exit(30), Some(130), "{}", sub.log());
    assert!(sub.log().contains("grace period over"));
    assert_eq!(env.queue_len("h1").await, 1);
}

// Multi-threaded: the proxy's tasks must run while the test blocks on the subscriber's start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_holds_the_delivery_until_the_record_is_written() {
    let env = TestEnv::new(Db::Postgres).await;
    env.init();
    let url = url::Url::parse(&env.db_url).unwrap();
    let proxy = TcpProxy::start((
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(5432),
    ))
    .await;
    let mut through = url.clone();
    through.set_port(Some(proxy.port)).unwrap();
    env.write_conn(through.as_str(), env.broker.amqp_port);
    let sub = env.subscriber("h1", &[]);
    let id = env.publish(&env.task("slow.json", SLOW)).remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await;
    proxy.cut();
    sub.wait_log("cannot record the result: holding the message", 30)
        .await;
    assert_eq!(env.queue_len("h1").await, 0, "held, not returned");
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 1).await;
    assert_eq!(attempts.len(), 1, "recorded once: {attempts:#?}");
    assert_eq!(ended(&attempts[0]).result, "succeeded");
    sub.wait_log("the database answers again", 30).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.queue_len("h1").await != 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn broker_restart_while_idle() {
    let _turn = NODE2_TURN.lock().await;
    let env = TestEnv::on(NODE2, Db::Sqlite).await;
    env.init();
    let sub = env.subscriber("h1", &[]);
    let _again = StartAgain;
    node2_ctl("stop_app");
    sub.wait_log("lost the connection to RabbitMQ: reconnecting", 30)
        .await;
    sub.wait_log("cannot reach RabbitMQ: trying again", 30)
        .await;
    node2_ctl("start_app");
    sub.wait_log("reconnected to RabbitMQ", 60).await;
    let id = env.publish(&env.task("quick.json", QUICK)).remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await;
    assert_eq!(ended(&attempts[0]).result, "succeeded");
}

#[tokio::test]
async fn broker_restart_while_running_records_the_attempt_once() {
    let _turn = NODE2_TURN.lock().await;
    let env = TestEnv::on(NODE2, Db::Sqlite).await;
    env.init();
    let sub = env.subscriber("h1", &[]);
    let _again = StartAgain;
    let task =
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["sleep 8; echo finished"]}}}"#;
    let id = env.publish(&env.task("slow.json", task)).remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await;
    node2_ctl("stop_app");
    node2_ctl("start_app");
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 1).await;
    assert_eq!(ended(&attempts[0]).result, "succeeded");
    sub.wait_log("reconnected to RabbitMQ", 60).await;
    // The unacknowledged message came back and was settled from the record, not run again.
    sub.wait_log("already recorded: settling it from the record", 30)
        .await;
    assert_eq!(env.attempts(&id).await.len(), 1);
    assert_eq!(env.queue_len("h1").await, 0);
}

#[tokio::test]
async fn publisher_waits_for_the_broker_to_come_back() {
    let _turn = NODE2_TURN.lock().await;
    let env = TestEnv::on(NODE2, Db::Sqlite).await;
    env.init();
    let _again = StartAgain;
    node2_ctl("stop_app");
    let task = env.task("quick.json", QUICK);
    let publisher = env
        .command("publisher")
        .args([
            "-o",
            "pub",
            "--retry-for",
            "60",
            "-t",
            task.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    node2_ctl("start_app");
    let out = publisher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot reach RabbitMQ: trying again"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("published "));
    assert_eq!(env.queue_len("h1").await, 1);
}
