//! pqx as a drop-in for a running original PQX: it adopts the original's broker layout and its
//! PostgreSQL tables in place, runs beside original subscribers in both directions (commands,
//! retries and dead letters from either kind reach where they should, nothing is lost), and never
//! acknowledges a dead letter no queue took. The original is reproduced from its source in
//! `legacy.rs`; the delayed-message plugin is on the second node (`scripts/services.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;
mod legacy;

use anyhow::{Context, Result};
use common::{count_ended, env, env_on, DbKind, Deadline, Env, Records, DLQ, NODE2};
use lapin::types::AMQPValue;
use legacy::{Original, Settled, DELAYED, HEADERS};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::json;

/// An environment on the second node with the original's layout and tables, or `None` (having
/// said so) where the node has no delayed-message plugin.
async fn original_env(test: &str) -> Result<Option<(Env, Original, DatabaseConnection)>> {
    if !NODE2.delayed_plugin(test).await? {
        return Ok(None);
    }
    let mut env = env_on(NODE2, DbKind::Postgres).await?;
    env.vhost.keep_on_drop();
    env.write("init.yml", legacy::INIT_YML)?;
    let original = Original::connect(&env.vhost).await?;
    original.lay_out().await?;
    let db = pqx_util::connect_db(&env.db.url).await?;
    legacy::create_tables(&db).await?;
    Ok(Some((env, original, db)))
}

/// `publisher -o pub conn.yml task.json`, the original's command line; the message ids it printed.
fn publish_the_original_way(env: &Env, task: &serde_json::Value) -> Result<Vec<String>> {
    env.write("task.json", &task.to_string())?;
    env.publish_with(&["-o", "pub", "conn.yml", "task.json"])
}

/// One number from a query.
async fn count(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql,
        ))
        .await?
        .context("a row")?;
    Ok(row.try_get_by_index(0)?)
}

/// Waits until `sql` counts `n`.
async fn wait_count(db: &DatabaseConnection, sql: &str, n: i64, secs: u64) -> Result<()> {
    let deadline = Deadline::after_secs(secs);
    loop {
        let got = count(db, sql).await?;
        if got == n {
            return Ok(());
        }
        deadline
            .tick(|| format!("{sql}: {got}, expected {n}"))
            .await?;
    }
}

/// Which queue each of `n` dead letters came from: pqx's say so in `x-pqx-queue`, the broker's
/// in `x-death`.
async fn dead_letters_from(env: &Env, queue: &str, n: usize) -> Result<Vec<String>> {
    let mut from = Vec::new();
    for _ in 0..n {
        let dead = env
            .vhost
            .take(queue, 30)
            .await?
            .with_context(|| format!("a dead letter in {queue} (got {from:?})"))?;
        from.push(match legacy::header(&dead, pqx::mq::QUEUE_HEADER) {
            Some(q) => format!("pqx from {q}"),
            None => {
                let deaths = legacy::death_queues(&dead);
                format!("broker from {}", deaths.first().map_or("?", |q| q.as_str()))
            }
        });
    }
    from.sort();
    assert_eq!(env.vhost.queue_len(queue).await?, 0, "no more dead letters");
    Ok(from)
}

#[tokio::test]
async fn initiator_adopts_an_original_layout_and_its_records_in_place() -> Result<()> {
    let Some((env, original, db)) = original_env("adopting an original layout").await? else {
        return Ok(());
    };
    // Records and a waiting command from before the switch.
    let ok = json!({"mailing_to": [{"unique_key": "h1"}], "cmd": {"Bash": {"cmd": ["true"]}}});
    legacy::record(&db, &ok, 0).await?;
    let failed = json!({"mailing_to": [{"unique_key": "h2"}], "config": {"retry": 1},
        "cmd": {"Bash": {"cmd": ["exit 1"]}}});
    legacy::record(&db, &failed, 1).await?;
    original.publish(HEADERS, &ok.to_string()).await?;

    let first = env.ok("initiator", &["-o", "init"])?;
    for line in [
        "differs: exchange orig.hdr: not durable (as the original PQX declares it): pqx works with it",
        "differs: exchange orig.dlx: direct, not fanout (as the original PQX declares it): pqx works with it",
        "differs: queue h1: x-dead-routing-key (the original PQX's misspelling of x-dead-letter-routing-key), which RabbitMQ ignores: pqx works with it",
        "differs: queue h2: no x-max-priority: pqx works with it",
        "exchange orig.dlx (direct) -> queue orig.dlq (dead letters kept 12h)",
        "queue h1 bound to orig.hdr (x-match any: common_key=dev, unique_key=h1)",
        "exchange orig.delayed (x-delayed-message, headers): retries come back through it to h1, h2",
        "tables message_history, message_result in postgres://",
    ] {
        assert!(first.contains(line), "{line}\nnot in:\n{first}");
    }
    assert_eq!(
        first,
        env.ok("initiator", &["init"])?,
        "adopting twice is harmless"
    );

    // Kept as the original declared it, with its messages; only bindings added.
    let api = NODE2.api(&env.vhost.name)?;
    for (name, kind) in [
        (HEADERS, "headers"),
        (legacy::DLX, "direct"),
        (DELAYED, "x-delayed-message"),
    ] {
        let found = api.exchange(name).await?;
        assert_eq!(
            (found.kind.as_str(), found.durable),
            (kind, false),
            "{name}"
        );
    }
    let h1 = api.queue("h1").await?;
    assert!(!h1.durable && h1.arguments.contains_key("x-dead-routing-key"));
    assert_eq!(env.vhost.queue_len("h1").await?, 1);
    let dlq = api.queue(legacy::DLQ).await?;
    assert_eq!(
        dlq.arguments["x-message-ttl"],
        json!(legacy::DEAD_MESSAGE_TTL_MS)
    );
    let delayed = api.bindings_from(DELAYED).await?;
    for queue in ["h1", "h2"] {
        let by_name = delayed.iter().any(|b| {
            b.destination == queue && b.arguments.get("pqx-retry-queue") == Some(&json!(queue))
        });
        assert!(by_name, "{queue} bound for its own retries: {delayed:?}");
    }

    // The rows are kept, pqx's columns added, the original's types and nullability kept.
    assert_eq!(count(&db, "SELECT count(*) FROM message_history").await?, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'message_history' AND column_name IN ('message_id', 'queue', 'host', 'attempt', 'dedupe_key')").await?, 5);
    assert_eq!(count(&db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'message_history' AND column_name IN ('mailing_to', 'cmd') AND data_type = 'json'").await?, 2);
    assert_eq!(count(&db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'message_result' AND column_name = 'result' AND is_nullable = 'YES'").await?, 1);
    let hist = env.ok("inspector", &["-o", "hist"])?;
    let rows: Vec<&str> = hist.lines().filter(|l| l.contains("│ ")).collect();
    assert!(
        rows.iter()
            .any(|r| r.contains(" 0 ") && r.contains(" succeeded ")),
        "{hist}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(" 1 ") && r.contains("ExitStatus(unix_wait_status(256))")),
        "{hist}"
    );
    Ok(())
}

#[tokio::test]
async fn a_layout_pqx_cannot_use_is_left_untouched() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let original = Original::connect(&env.vhost).await?;
    let options = lapin::options::ExchangeDeclareOptions::default();
    let topic = lapin::ExchangeKind::Topic;
    let args = lapin::types::FieldTable::default();
    original
        .channel()
        .exchange_declare("pqx.test".into(), topic, options, args)
        .await?;
    let out = env.run("initiator", &["-o", "init"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("initiator: cannot work with: exchange pqx.test: topic, not headers: commands could not reach their hosts by their pairs"), "{err}");
    assert!(
        err.contains("initiator changed nothing: 1 of the exchanges and queues"),
        "{err}"
    );
    let api = env.vhost.broker.api(&env.vhost.name)?;
    assert!(
        api.exchange("pqx.test.dlx").await.is_err(),
        "nothing declared"
    );
    assert!(api.queue("h1").await.is_err(), "nothing declared");
    assert!(!env.store().await?.tables_exist().await?);
    Ok(())
}

#[tokio::test]
async fn dead_message_ttl_keeps_the_original_meaning() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let init = common::INIT_YML.replace("dead_message_ttl: 10m", "dead_message_ttl: 43200000");
    env.write("init.yml", &init)?;
    let out = env.ok("initiator", &["decl_dlx"])?;
    assert!(out.contains("(dead letters kept 12h)"), "{out}");
    let api = env.vhost.broker.api(&env.vhost.name)?;
    let dlq = api.queue(DLQ).await?;
    assert_eq!(dlq.arguments["x-message-ttl"], json!(43_200_000));
    Ok(())
}

#[tokio::test]
async fn a_mixed_fleet_on_the_original_layout_loses_nothing() -> Result<()> {
    let Some((env, original, db)) = original_env("a mixed fleet on an original layout").await?
    else {
        return Ok(());
    };
    env.init()?;
    let sub = env.subscriber("h1")?;
    sub.wait_log("route=DelayedExchange", 10).await?;

    // pqx's publisher, the original's command line, to pqx on h1 and an original on h2: one
    // retry each (pqx: 2 runs; the original: max(retry, 1) = 1 run), then the dead letters.
    let both = json!({"mailing_to": [{"unique_key": "h1"}, {"unique_key": "h2"}],
        "config": {"retry": 1, "poke": 1}, "cmd": {"Bash": {"cmd": ["exit 3"]}}});
    let ids = publish_the_original_way(&env, &both)?;
    let on_h2 = original.receive("h2", 30).await?;
    legacy::record(&db, &both, 3).await?;
    assert_eq!(original.fail(&on_h2, DELAYED).await?, Settled::DeadLettered);
    let attempts = env
        .wait_attempts(&ids[0], 30, |a| count_ended(a) == 2)
        .await?;
    let numbers: Vec<_> = attempts
        .iter()
        .map(|a| (a.history.queue.clone(), a.history.attempt))
        .collect();
    assert_eq!(
        numbers,
        [(Some("h1".into()), Some(1)), (Some("h1".into()), Some(2))]
    );
    assert_eq!(
        dead_letters_from(&env, legacy::DLQ, 2).await?,
        ["broker from h2", "pqx from h1"]
    );

    // The original's publisher to pqx on h1: retry 2 is 3 runs, through the delayed exchange.
    let from_original = json!({"mailing_to": [{"unique_key": "h1"}],
        "config": {"retry": 2, "poke": 1}, "cmd": {"Bash": {"cmd": ["echo orig-b; exit 4"]}}});
    original
        .publish(HEADERS, &from_original.to_string())
        .await?;
    let runs =
        "SELECT count(*) FROM message_history h JOIN message_result r ON r.history_id = h.id \
        WHERE h.queue = 'h1' AND h.message_id IS NULL AND h.cmd::text LIKE '%orig-b%'";
    wait_count(&db, runs, 3, 30).await?;
    assert_eq!(
        dead_letters_from(&env, legacy::DLQ, 1).await?,
        ["pqx from h1"]
    );
    let last = format!("{runs} AND h.attempt = 3");
    assert_eq!(count(&db, &last).await?, 1);

    // An original subscriber's own retry comes back through the plugin after its x-delay.
    let on_h2_only = json!({"mailing_to": [{"unique_key": "h2"}],
        "config": {"retry": 2, "poke": 200}, "cmd": {"Bash": {"cmd": ["exit 5"]}}});
    publish_the_original_way(&env, &on_h2_only)?;
    let first = original.receive("h2", 30).await?;
    assert_eq!(original.fail(&first, DELAYED).await?, Settled::Retried(1));
    let again = original.receive("h2", 30).await?;
    let left = again
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-retries").cloned());
    assert_eq!(left, Some(AMQPValue::ShortInt(1)));
    assert_eq!(original.fail(&again, DELAYED).await?, Settled::DeadLettered);
    assert_eq!(
        dead_letters_from(&env, legacy::DLQ, 1).await?,
        ["broker from h2"]
    );
    assert_eq!(
        env.vhost.queue_len("h1").await?,
        0,
        "the original's retry went to h2 only"
    );
    sub.stop()?;
    Ok(())
}

#[tokio::test]
async fn original_subscribers_work_on_the_layout_and_tables_pqx_makes() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    env.init()?;
    let original = Original::connect(&env.vhost).await?;
    let db = pqx_util::connect_db(&env.db.url).await?;
    let delayed = "pqx.test.delayed";

    // No plugin: the original's retry waits in the queue pqx made for it, then comes back.
    let task = json!({"mailing_to": [{"unique_key": "h2"}], "config": {"retry": 2},
        "cmd": {"Bash": {"cmd": ["exit 6"]}}});
    publish_the_original_way(&env, &task)?;
    let first = original.receive("h2", 30).await?;
    legacy::record(&db, &task, 6).await?;
    assert_eq!(original.fail(&first, delayed).await?, Settled::Retried(1));
    let again = original.receive("h2", 40).await?;
    legacy::record(&db, &task, 6).await?;
    assert_eq!(original.fail(&again, delayed).await?, Settled::DeadLettered);
    let dead = env.vhost.take(DLQ, 30).await?.context("the dead letter")?;
    let deaths = legacy::death_queues(&dead);
    assert_eq!(
        deaths,
        ["h2", "pqx.test.delayed.original-retries"],
        "rejected on h2 after a wait"
    );

    // Its records go into pqx's tables, a success without a result; pqx reads them.
    let ok = json!({"mailing_to": [{"unique_key": "h2"}], "cmd": {"Bash": {"cmd": ["true"]}}});
    legacy::record(&db, &ok, 0).await?;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM message_result WHERE result IS NULL"
        )
        .await?,
        1
    );
    let hist = env.ok("inspector", &["-o", "hist"])?;
    let rows: Vec<&str> = hist.lines().filter(|l| l.contains("│ ")).collect();
    assert_eq!(
        rows.iter().filter(|r| r.contains(" 6 ")).count(),
        2,
        "{hist}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(" 0 ") && r.contains(" succeeded ")),
        "{hist}"
    );
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_no_queue_takes_is_never_acknowledged() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let original = Original::connect(&env.vhost).await?;
    let args = lapin::types::FieldTable::default();
    original
        .channel()
        .queue_unbind(DLQ.into(), "pqx.test.dlx".into(), "".into(), args)
        .await?;
    let sub = env.subscriber("h1")?;
    let task = env.write(
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["exit 9"]}}}"#,
    )?;

    // The exchange routes nothing: straight to the dead-letter queue.
    env.publish(&task)?;
    let dead = env.vhost.take(DLQ, 30).await?.context("the dead letter")?;
    let reason = pqx::mq::header_string(&dead.properties, pqx::mq::ERROR_HEADER);
    assert_eq!(
        reason.as_deref(),
        Some("failed on attempt 1: failed: exit code 9")
    );
    sub.wait_log(
        "the dead-letter exchange routes nothing: publishing to the dead-letter queue itself",
        10,
    )
    .await?;

    // No dead-letter queue at all: the message stays in its queue, and nothing runs twice.
    pqx::mq::delete_queue(original.channel(), DLQ).await?;
    let id = env.publish(&task)?.remove(0);
    sub.wait_log("cannot dead-letter it: handing it back to the queue", 30)
        .await?;
    sub.stop()?;
    assert_eq!(env.vhost.queue_len("h1").await?, 1);
    assert_eq!(env.attempts(&id).await?.len(), 1);
    Ok(())
}
