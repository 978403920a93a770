//! Retry as the PQX README documents it, done right: `retry: N` more attempts `poke` seconds apart,
//! then the dead-letter queue; and a retry comes back only to the queue whose subscriber failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{count_ended, ended, Db, TestEnv};

async fn retries_then_dead_letters(db: Db) {
    let env = TestEnv::new(db).await;
    env.init();
    let _sub = env.subscriber("h1", &[]);
    let task = env.task(
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":2,"poke":1},"cmd":{"Bash":{"cmd":["exit 7"]}}}"#,
    );
    let id = env.publish(&task).remove(0);
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 3).await;
    let numbers: Vec<_> = attempts.iter().map(|a| a.0.attempt).collect();
    assert_eq!(numbers, vec![Some(1), Some(2), Some(3)]);
    for attempt in &attempts {
        assert_eq!(ended(attempt).exit_code, 7);
        assert_eq!(ended(attempt).result, "failed: exit code 7");
    }
    let gap = attempts[1].0.time - ended(&attempts[0]).time;
    assert!(
        gap >= chrono::Duration::milliseconds(900),
        "poke is respected: {gap}"
    );

    let dead = env
        .dead_letter(30)
        .await
        .expect("the message is dead-lettered after the last attempt");
    assert_eq!(
        dead.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    // Nothing more runs once it is dead-lettered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.attempts(&id).await.len(), 3);
}

#[tokio::test]
async fn retries_then_dead_letters_sqlite() {
    retries_then_dead_letters(Db::Sqlite).await;
}

#[tokio::test]
async fn retries_then_dead_letters_postgres() {
    retries_then_dead_letters(Db::Postgres).await;
}

#[tokio::test]
async fn retry_goes_back_only_to_the_failing_queue() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    // The same command fails on h1's machine only.
    let _h1 = env.subscriber("h1", &[("PQX_TEST_FAIL", "1")]);
    let _h2 = env.subscriber("h2", &[]);
    let task = env.task(
        "both.json",
        r#"{"mailing_to":[{"unique_key":"h1"},{"unique_key":"h2"}],"config":{"retry":2,"poke":1},
            "cmd":{"Bash":{"cmd":["test -z \"$PQX_TEST_FAIL\""]}}}"#,
    );
    let ids = env.publish(&task);
    assert_eq!(ids.len(), 2);
    let on_h1 = env
        .wait_attempts(&ids[0], 60, |a| count_ended(a) == 3)
        .await;
    assert!(on_h1.iter().all(|a| a.0.queue.as_deref() == Some("h1")));
    assert!(env.dead_letter(30).await.is_some());
    let on_h2 = env.attempts(&ids[1]).await;
    assert_eq!(on_h2.len(), 1, "h2 ran it exactly once: {on_h2:#?}");
    assert_eq!(on_h2[0].0.queue.as_deref(), Some("h2"));
    assert_eq!(ended(&on_h2[0]).exit_code, 0);
}

#[tokio::test]
async fn one_publish_to_two_queues_retries_on_the_failing_one_only() {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    let _h1 = env.subscriber("h1", &[("PQX_TEST_FAIL", "1")]);
    let _h2 = env.subscriber("h2", &[]);
    // common_key=dev reaches h1 and h2 with one publish: one message id, two queues.
    let task = env.task(
        "dev.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"config":{"retry":1,"poke":1},
            "cmd":{"Bash":{"cmd":["test -z \"$PQX_TEST_FAIL\""]}}}"#,
    );
    let id = env.publish(&task).remove(0);
    let attempts = env
        .wait_attempts(&id, 60, |a| {
            a.iter()
                .filter(|x| x.0.queue.as_deref() == Some("h1") && x.1.is_some())
                .count()
                == 2
        })
        .await;
    assert!(env.dead_letter(30).await.is_some());
    let attempts = if attempts.len() < 3 {
        env.attempts(&id).await
    } else {
        attempts
    };
    let on = |q: &str| {
        attempts
            .iter()
            .filter(|a| a.0.queue.as_deref() == Some(q))
            .count()
    };
    assert_eq!((on("h1"), on("h2")), (2, 1), "{attempts:#?}");
}
