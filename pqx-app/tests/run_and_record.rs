//! A published command runs on the queue it was mailed to, and every attempt is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{count_ended, ended, Db, TestEnv};

async fn runs_and_records(db: Db) {
    let env = TestEnv::new(db).await;
    env.init();
    let sub = env.subscriber("h1", &[]);
    let task = env.task(
        "task.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],
            "config":{"retry":1,"poke":1,"waiting_timeout":60,"consuming_timeout":30},
            "cmd":{"Bash":{"cmd":["echo out-$0; echo err >&2; exit 0", "arg0"]}}}"#,
    );
    let ids = env.publish(&task);
    assert_eq!(ids.len(), 1);
    let attempts = env
        .wait_attempts(&ids[0], 30, |a| count_ended(a) == 1)
        .await;
    let (history, _) = &attempts[0];
    let result = ended(&attempts[0]);
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.result, "succeeded");
    assert_eq!(history.queue.as_deref(), Some("h1"));
    assert_eq!(history.attempt, Some(1));
    assert_eq!(history.retry, Some(1));
    assert_eq!(history.consuming_timeout, Some(30));
    assert_eq!(history.mailing_to, r#"[{"unique_key":"h1"}]"#);
    assert!(history.cmd.contains("echo out-$0"), "{}", history.cmd);
    assert!(result.time >= history.time);
    assert!(
        sub.log().contains("out-arg0"),
        "output is streamed to the log: {}",
        sub.log()
    );
    assert!(
        sub.stop(),
        "SIGTERM ends an idle subscriber with exit code 0"
    );

    let hist = env.ok("inspector", &["-o", "hist", "--message-id", &ids[0]]);
    assert!(
        hist.contains("succeeded") && hist.contains(&ids[0]),
        "{hist}"
    );
    assert_eq!(
        env.queue_len("h1").await,
        0,
        "the delivery was acknowledged"
    );
}

#[tokio::test]
async fn runs_and_records_sqlite() {
    runs_and_records(Db::Sqlite).await;
}

#[tokio::test]
async fn runs_and_records_postgres() {
    runs_and_records(Db::Postgres).await;
}

#[tokio::test]
async fn empty_mailing_to_reaches_every_host_queue_once() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let task = env.task(
        "all.json",
        r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    );
    let ids = env.publish(&task);
    assert_eq!(ids.len(), 3, "one publish per host queue");
    for queue in ["h1", "h2", "h3"] {
        assert_eq!(env.queue_len(queue).await, 1, "queue {queue}");
    }
}

#[tokio::test]
async fn headers_route_by_any_and_all() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    // common_key=dev matches h1 and h2 (any); h3 needs both unique_key=h3 and zone=eu (all).
    let task = env.task(
        "dev.json",
        r#"{"mailing_to":[{"common_key":"dev"},{"unique_key":"h3","zone":"eu"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    );
    assert_eq!(env.publish(&task).len(), 2);
    assert_eq!(env.queue_len("h1").await, 1);
    assert_eq!(env.queue_len("h2").await, 1);
    assert_eq!(env.queue_len("h3").await, 1);

    let partial = env.task(
        "h3.json",
        r#"{"mailing_to":[{"unique_key":"h3"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    );
    let out = env.run("publisher", &["-o", "pub", "-t", partial.to_str().unwrap()]);
    assert!(!out.status.success(), "x-match all needs every pair");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no queue matches mailing_to {unique_key=h3} on pqx.test"),
        "{err}"
    );
    assert_eq!(env.queue_len("h3").await, 1);
}
