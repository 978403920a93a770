//! waiting_timeout expires a message nobody took to the dead-letter queue; consuming_timeout kills
//! a run that takes too long, with its whole process group, and the attempt fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use common::{count_ended, ended, env, wait_gone, DbKind, Records, DLQ};

#[tokio::test]
async fn waiting_timeout_expires_to_the_dead_letter_queue() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let task = env.write(
        "expire.json",
        r#"{"mailing_to":[{"unique_key":"h2"}],"config":{"waiting_timeout":1},"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let dead = env
        .vhost
        .take(DLQ, 30)
        .await?
        .expect("expired to the dead-letter queue");
    assert_eq!(
        dead.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    assert_eq!(env.vhost.queue_len("h2").await?, 0);
    // A subscriber started afterwards has nothing to run.
    let _sub = env.subscriber("h2")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.attempts(&id).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn consuming_timeout_kills_the_process_group() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    let pidfile = env.path("child.pid");
    let task = env.write(
        "slow.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h1"}}],"config":{{"consuming_timeout":1}},
                "cmd":{{"Bash":{{"cmd":["sleep 60 & echo $! > {}; wait"]}}}}}}"#,
            pidfile.display()
        ),
    )?;
    let started = Instant::now();
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert!(started.elapsed() < Duration::from_secs(30));
    let result = ended(&attempts[0]);
    assert_eq!(result.exit_code, 124);
    assert!(
        result.summary().contains("timed out after 1s"),
        "{}",
        result.summary()
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    wait_gone(pid, 10).await?;
    // No retries were asked for: the message is dead-lettered, and the subscriber goes on.
    assert!(env.vhost.take(DLQ, 30).await?.is_some());
    let quick = env.write(
        "quick.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let next = env.publish(&quick)?.remove(0);
    env.wait_attempts(&next, 30, |a| count_ended(a) == 1)
        .await?;
    Ok(())
}
