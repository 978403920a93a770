//! Retry as the PQX README documents it, done right: `retry: N` more attempts `poke` seconds apart,
//! then the dead-letter queue; and a retry comes back only to the queue whose subscriber failed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{count_ended, ended, env, ready_env, As, DbKind, Records, DLQ};

async fn retries_then_dead_letters(db: DbKind, who: As) -> Result<()> {
    let env = ready_env(db, who).await?;
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":2,"poke":1},"cmd":{"Bash":{"cmd":["exit 7"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 3).await?;
    let numbers: Vec<_> = attempts.iter().map(|a| a.history.attempt).collect();
    assert_eq!(numbers, vec![Some(1), Some(2), Some(3)]);
    for attempt in &attempts {
        assert_eq!(ended(attempt).exit_code, 7);
        assert_eq!(ended(attempt).summary(), "failed: exit code 7");
    }
    let gap = attempts[1].history.time - ended(&attempts[0]).time;
    assert!(
        gap >= chrono::Duration::milliseconds(900),
        "poke is respected: {gap}"
    );
    // The retries waited in h1's own wait queue, bound to h1's own retry exchange: the route that
    // needs no right on the default exchange.
    let api = env.vhost.broker.api(&env.vhost.name)?;
    let queues: Vec<String> = api.queues().await?.into_iter().map(|q| q.name).collect();
    assert!(queues.contains(&"h1.wait.1000".to_owned()), "{queues:?}");
    assert!(!queues.contains(&"h1.retry.1000".to_owned()), "{queues:?}");
    let bindings = api.bindings_from("h1.retry").await?;
    let mut bound: Vec<(String, String)> = bindings
        .into_iter()
        .map(|b| (b.destination, b.routing_key))
        .collect();
    bound.sort();
    assert_eq!(
        bound,
        [
            ("h1".to_owned(), "h1".to_owned()),
            ("h1.wait.1000".to_owned(), "h1.wait.1000".to_owned())
        ]
    );

    let dead = env
        .vhost
        .take(DLQ, 30)
        .await?
        .expect("the message is dead-lettered after the last attempt");
    assert_eq!(
        dead.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    // The broker vouches for which user dead-lettered it.
    let expected = match who {
        As::Admin => common::MQ_USER.to_owned(),
        As::HostUsers => format!("h1@{}", env.vhost.name),
    };
    let sender = dead.properties.user_id().as_ref().map(|u| u.to_string());
    assert_eq!(sender.as_deref(), Some(expected.as_str()));
    let reason = pqx::mq::header_string(&dead.properties, pqx::mq::ERROR_HEADER);
    assert_eq!(
        reason.as_deref(),
        Some("failed on attempt 3: failed: exit code 7")
    );
    // Nothing more runs once it is dead-lettered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.attempts(&id).await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn retries_then_dead_letters_sqlite() -> Result<()> {
    retries_then_dead_letters(DbKind::Sqlite, As::Admin).await
}

#[tokio::test]
async fn retries_then_dead_letters_postgres() -> Result<()> {
    retries_then_dead_letters(DbKind::Postgres, As::Admin).await
}

#[tokio::test]
async fn retries_then_dead_letters_as_host_users() -> Result<()> {
    retries_then_dead_letters(DbKind::Postgres, As::HostUsers).await
}

#[tokio::test]
async fn retry_goes_back_only_to_the_failing_queue() -> Result<()> {
    retry_only_on_the_failing_queue(As::Admin).await
}

#[tokio::test]
async fn retry_goes_back_only_to_the_failing_queue_as_host_users() -> Result<()> {
    retry_only_on_the_failing_queue(As::HostUsers).await
}

async fn retry_only_on_the_failing_queue(who: As) -> Result<()> {
    let env = ready_env(DbKind::Sqlite, who).await?;
    // The same command fails on h1's machine only.
    let _h1 = env.subscriber_with("h1", &[], &[("PQX_TEST_FAIL", "1")])?;
    let _h2 = env.subscriber("h2")?;
    let task = env.write(
        "both.json",
        r#"{"mailing_to":[{"unique_key":"h1"},{"unique_key":"h2"}],"config":{"retry":2,"poke":1},
            "cmd":{"Bash":{"cmd":["test -z \"$PQX_TEST_FAIL\""]}}}"#,
    )?;
    let ids = env.publish(&task)?;
    assert_eq!(ids.len(), 2);
    let on_h1 = env
        .wait_attempts(&ids[0], 60, |a| count_ended(a) == 3)
        .await?;
    assert!(on_h1
        .iter()
        .all(|a| a.history.queue.as_deref() == Some("h1")));
    assert!(env.vhost.take(DLQ, 30).await?.is_some());
    let on_h2 = env.attempts(&ids[1]).await?;
    assert_eq!(on_h2.len(), 1, "h2 ran it exactly once: {on_h2:#?}");
    assert_eq!(on_h2[0].history.queue.as_deref(), Some("h2"));
    assert_eq!(ended(&on_h2[0]).exit_code, 0);
    Ok(())
}

#[tokio::test]
async fn one_publish_to_two_queues_retries_on_the_failing_one_only() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let _h1 = env.subscriber_with("h1", &[], &[("PQX_TEST_FAIL", "1")])?;
    let _h2 = env.subscriber("h2")?;
    // common_key=dev reaches h1 and h2 with one publish: one message id, two queues.
    let task = env.write(
        "dev.json",
        r#"{"mailing_to":[{"common_key":"dev"}],"config":{"retry":1,"poke":1},
            "cmd":{"Bash":{"cmd":["test -z \"$PQX_TEST_FAIL\""]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let on = |attempts: &[pqx_app::Attempt], queue: &str| {
        attempts
            .iter()
            .filter(|a| a.history.queue.as_deref() == Some(queue) && a.result.is_some())
            .count()
    };
    let attempts = env
        .wait_attempts(&id, 60, |a| on(a, "h1") == 2 && on(a, "h2") == 1)
        .await?;
    assert!(env.vhost.take(DLQ, 30).await?.is_some());
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    // Nothing more runs on either queue.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.attempts(&id).await?.len(), 3);
    Ok(())
}
