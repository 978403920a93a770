//! A published command runs on the queue it was mailed to, and every attempt is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{count_ended, ended, Db, TestEnv, MQ_PASS, MQ_USER};
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

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

/// The publisher routes from the exchange's own bindings, read from the management API, so a queue
/// bound by hand outside init.yml is reached too; without the API it publishes to the exchange,
/// which routes the same way.
async fn headers_route_by_any_and_all(api: Api) {
    let env = TestEnv::new(Db::Sqlite).await;
    env.init();
    match api {
        Api::Given => {}
        Api::FromUrl => {
            let conn = format!(
                "mq:\n  url: amqp://{MQ_USER}:{MQ_PASS}@{}:{}/{}\ndb:\n  url: \"{}\"\n",
                common::mq_host(),
                env.broker.amqp_port,
                env.vhost,
                env.db_url
            );
            std::fs::write(env.path("conn.yml"), conn).unwrap();
        }
        Api::Unreachable => {
            let conn = std::fs::read_to_string(env.path("conn.yml")).unwrap();
            let api_port = format!("port: {}\n", env.broker.api_port);
            std::fs::write(env.path("conn.yml"), conn.replace(&api_port, "port: 1\n")).unwrap();
        }
    }
    let with_api = api != Api::Unreachable;
    let amqp = env.amqp().await;
    let channel = amqp.create_channel().await.unwrap();
    channel
        .queue_declare(
            "extra".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
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
        .await
        .unwrap();

    // common_key=dev matches h1, h2 (any) and extra; h3 needs unique_key=h3 and zone=eu (all).
    let task = env.task(
        "dev.json",
        r#"{"mailing_to":[{"common_key":"dev"},{"unique_key":"h3","zone":"eu"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    );
    let ids = env.publish(&task);
    // A line per publish: one per queue with the API, one per entry through the exchange.
    assert_eq!(ids.len(), if with_api { 4 } else { 2 }, "{ids:?}");
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 2, "one message id per mailing_to entry");
    for queue in ["h1", "h2", "h3", "extra"] {
        assert_eq!(env.queue_len(queue).await, 1, "queue {queue}");
    }

    let partial = env.task(
        "h3.json",
        r#"{"mailing_to":[{"common_key":"dev"},{"unique_key":"h3"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    );
    let out = env.run("publisher", &["-o", "pub", "-t", partial.to_str().unwrap()]);
    assert!(!out.status.success(), "x-match all needs every pair");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no queue matches mailing_to {unique_key=h3} on pqx.test"),
        "{err}"
    );
    assert_eq!(env.queue_len("h3").await, 1);
    if with_api {
        assert_eq!(
            env.queue_len("h1").await,
            1,
            "the unroutable entry is found before anything is published"
        );
    }
    let _ = amqp.close(200, "".into()).await;
}

#[tokio::test]
async fn headers_route_by_any_and_all_from_the_bindings() {
    headers_route_by_any_and_all(Api::Given).await;
}

#[tokio::test]
async fn headers_route_from_the_bindings_of_the_url_broker() {
    headers_route_by_any_and_all(Api::FromUrl).await;
}

#[tokio::test]
async fn headers_route_by_any_and_all_through_the_exchange() {
    headers_route_by_any_and_all(Api::Unreachable).await;
}
