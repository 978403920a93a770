//! A published command runs on the queue it was mailed to, and every attempt is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::Result;
use common::{count_ended, ended, env, DbKind, Records, MQ_PASS, MQ_USER};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

async fn runs_and_records(db: DbKind) -> Result<()> {
    let env = env(db).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let task = env.write(
        "task.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],
            "config":{"retry":1,"poke":1,"waiting_timeout":60,"consuming_timeout":30},
            "cmd":{"Bash":{"cmd":["echo out-$0; echo err >&2; exit 0", "arg0"]}}}"#,
    )?;
    let ids = env.publish(&task)?;
    assert_eq!(ids.len(), 1);
    let attempts = env
        .wait_attempts(&ids[0], 30, |a| count_ended(a) == 1)
        .await?;
    let history = &attempts[0].history;
    let result = ended(&attempts[0]);
    assert_eq!(result.exit_code, 0);
    assert_eq!(result.summary(), "succeeded");
    assert_eq!(result.stdout.as_deref(), Some("out-arg0\n"));
    assert_eq!(result.stderr.as_deref(), Some("err\n"));
    assert_eq!(history.queue.as_deref(), Some("h1"));
    assert_eq!(history.attempt, Some(1));
    assert_eq!(history.retry, Some(1));
    assert_eq!(history.poke, Some(1));
    assert_eq!(history.waiting_timeout, Some(60));
    assert_eq!(history.consuming_timeout, Some(30));
    assert_eq!(history.message_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(
        history.mailing_to,
        serde_json::json!([{"unique_key": "h1"}])
    );
    assert!(
        history.cmd.to_string().contains("echo out-$0"),
        "{}",
        history.cmd
    );
    assert!(result.time >= history.time);
    assert!(
        sub.log().contains("out-arg0"),
        "output is streamed to the log: {}",
        sub.log()
    );
    assert_eq!(
        sub.stop()?,
        Some(0),
        "SIGTERM ends an idle subscriber with exit code 0"
    );

    let hist = env.ok("inspector", &["-o", "hist", "--message-id", &ids[0]])?;
    assert!(
        hist.contains("succeeded") && hist.contains(&ids[0]),
        "{hist}"
    );
    assert_eq!(
        env.vhost.queue_len("h1").await?,
        0,
        "the delivery was acknowledged"
    );
    Ok(())
}

#[tokio::test]
async fn runs_and_records_sqlite() -> Result<()> {
    runs_and_records(DbKind::Sqlite).await
}

#[tokio::test]
async fn runs_and_records_postgres() -> Result<()> {
    runs_and_records(DbKind::Postgres).await
}

#[tokio::test]
async fn empty_mailing_to_reaches_every_host_queue_once() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let task = env.write(
        "all.json",
        r#"{"mailing_to":[],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let ids = env.publish(&task)?;
    assert_eq!(ids.len(), 3, "one publish per host queue");
    for queue in ["h1", "h2", "h3"] {
        assert_eq!(env.vhost.queue_len(queue).await?, 1, "queue {queue}");
    }
    Ok(())
}

/// How conn.yml names the management API in a routing test.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    /// Its own `mq_api` section.
    Given,
    /// Not at all: it is the broker of `mq.url`, with the URL's user and vhost.
    FromUrl,
    /// On a port nobody listens on.
    Unreachable,
}

/// Rewrites conn.yml so that it names the management API as `api` says.
fn write_api(env: &common::Env, api: Api) -> Result<()> {
    match api {
        Api::Given => {}
        Api::FromUrl => {
            let conn = format!(
                "mq:\n  url: amqp://{MQ_USER}:{MQ_PASS}@{}:{}/{}\ndb:\n  url: \"{}\"\n",
                common::mq_host(),
                env.vhost.broker.amqp_port,
                env.vhost.name,
                env.db.url
            );
            env.write("conn.yml", &conn)?;
        }
        Api::Unreachable => {
            let conn = std::fs::read_to_string(env.path("conn.yml"))?;
            let api_port = format!("port: {}\n", env.vhost.broker.api_port);
            env.write("conn.yml", &conn.replace(&api_port, "port: 1\n"))?;
        }
    }
    Ok(())
}

/// The publisher routes from the exchange's own bindings, read from the management API, so a queue
/// bound by hand outside init.yml is reached too; without the API it publishes to the exchange,
/// which routes the same way.
async fn headers_route_by_any_and_all(api: Api) -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    write_api(&env, api)?;
    let with_api = api != Api::Unreachable;
    let amqp = env.vhost.connect().await?;
    let channel = amqp.create_channel().await?;
    channel
        .queue_declare(
            "extra".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert("x-match".into(), AMQPValue::LongString("any".into()));
    args.insert("common_key".into(), AMQPValue::LongString("dev".into()));
    channel
        .queue_bind(
            "extra".into(),
            "pqx.test".into(),
            "".into(),
            QueueBindOptions::default(),
            args,
        )
        .await?;

    // common_key=dev matches h1, h2 (any) and extra; h3 needs unique_key=h3 and zone=eu (all).
    let task = env.write(
        "dev.json",
        r#"{"mailing_to":[{"common_key":"dev"},{"unique_key":"h3","zone":"eu"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let ids = env.publish(&task)?;
    // A line per publish: one per queue with the API, one per entry through the exchange.
    assert_eq!(ids.len(), if with_api { 4 } else { 2 }, "{ids:?}");
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 2, "one message id per mailing_to entry");
    for queue in ["h1", "h2", "h3", "extra"] {
        assert_eq!(env.vhost.queue_len(queue).await?, 1, "queue {queue}");
    }

    let partial = env.write(
        "h3.json",
        r#"{"mailing_to":[{"common_key":"dev"},{"unique_key":"h3"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let out = env.run("publisher", &["-o", "pub", "-t", partial.to_str().unwrap()])?;
    assert!(!out.status.success(), "x-match all needs every pair");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no queue matches mailing_to {unique_key=h3} on pqx.test"),
        "{err}"
    );
    assert_eq!(env.vhost.queue_len("h3").await?, 1);
    // With the bindings, the unroutable entry is found before anything is published; through the
    // exchange, the entry before it went out.
    let h1 = env.vhost.queue_len("h1").await?;
    assert_eq!(h1, if with_api { 1 } else { 2 });
    let _ = amqp.close(200, "".into()).await;
    Ok(())
}

#[tokio::test]
async fn headers_route_by_any_and_all_from_the_bindings() -> Result<()> {
    headers_route_by_any_and_all(Api::Given).await
}

#[tokio::test]
async fn headers_route_from_the_bindings_of_the_url_broker() -> Result<()> {
    headers_route_by_any_and_all(Api::FromUrl).await
}

#[tokio::test]
async fn headers_route_by_any_and_all_through_the_exchange() -> Result<()> {
    headers_route_by_any_and_all(Api::Unreachable).await
}
