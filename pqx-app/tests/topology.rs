//! initiator lays out exchanges, queues, bindings and tables, twice without harm; inspector shows
//! them; rectifier removes them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::Result;
use common::{env, DbKind, Records};

async fn lay_out_inspect_and_remove(db: DbKind) -> Result<()> {
    let env = env(db).await?;

    let before = env.ok("inspector", &["-o", "insp"])?;
    assert!(before.contains("tables: missing"), "{before}");

    let first = env.ok("initiator", &["-o", "init"])?;
    let second = env.ok("initiator", &["init"])?;
    assert_eq!(first, second, "running initiator twice must be harmless");
    assert!(
        first.contains("queue h3 bound to pqx.test (x-match all: unique_key=h3, zone=eu)"),
        "{first}"
    );

    let insp = env.ok("inspector", &["insp"])?;
    assert!(
        insp.contains("tables: message_history, message_result exist"),
        "{insp}"
    );
    for row in [
        &["│ pqx.test ", " headers "][..],
        &["│ pqx.test.delayed ", " direct "],
        &["│ pqx.test.dlx ", " fanout "],
        &[
            "│ h1 ",
            r#"{"x-dead-letter-exchange":"pqx.test.dlx","x-max-priority":9}"#,
        ],
        &["│ pqx.test.dlq ", r#"{"x-message-ttl":600000}"#],
        &[
            "│ pqx.test ",
            " queue h1 ",
            r#"{"common_key":"dev","unique_key":"h1","x-match":"any"}"#,
        ],
        &[
            "│ pqx.test ",
            " queue h3 ",
            r#"{"unique_key":"h3","x-match":"all","zone":"eu"}"#,
        ],
        &["│ pqx.test.dlx ", " queue pqx.test.dlq "],
    ] {
        let found = insp
            .lines()
            .any(|line| row.iter().all(|cell| line.contains(cell)));
        assert!(found, "inspector should show a row with {row:?}:\n{insp}");
    }
    assert!(
        !insp.contains("amq.direct"),
        "default exchanges are left out:\n{insp}"
    );

    let del_que = env.ok("rectifier", &["-o", "del_que"])?;
    assert!(del_que.contains("deleted queue h1"), "{del_que}");
    assert!(del_que.contains("deleted queue pqx.test.dlq"), "{del_que}");
    env.ok("rectifier", &["-o", "del_exg"])?;
    env.ok("rectifier", &["del_tbl"])?;
    let after = env.ok("inspector", &["-o", "insp"])?;
    assert!(after.contains("tables: missing"), "{after}");
    assert!(
        !after.contains("pqx.test"),
        "everything initiator made is gone:\n{after}"
    );

    // And it can all be laid out again.
    env.init()?;
    Ok(())
}

#[tokio::test]
async fn lay_out_inspect_and_remove_sqlite() -> Result<()> {
    lay_out_inspect_and_remove(DbKind::Sqlite).await
}

#[tokio::test]
async fn lay_out_inspect_and_remove_postgres() -> Result<()> {
    lay_out_inspect_and_remove(DbKind::Postgres).await
}

#[tokio::test]
async fn each_step_alone() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    assert!(env
        .ok("initiator", &["-o", "decl_dlx"])?
        .contains("queue pqx.test.dlq"));
    assert!(env
        .ok("initiator", &["-o", "decl_x"])?
        .contains("queue h1 bound to pqx.test"));
    assert!(env
        .ok("initiator", &["-o", "decl_dx"])?
        .contains("pqx.test.delayed"));
    assert!(env
        .ok("initiator", &["-o", "crt_tbl"])?
        .contains("tables message_history"));
    assert!(env.store().await?.tables_exist().await?);
    Ok(())
}

#[tokio::test]
async fn changed_queue_settings_are_left_and_the_fix_is_named() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let changed = common::INIT_YML.replace("dead_message_ttl: 10m", "dead_message_ttl: 60000");
    env.write("init.yml", &changed)?;
    let out = env.ok("initiator", &["-o", "decl_dlx"])?;
    assert!(
        out.contains("differs: queue pqx.test.dlq: dead letters kept 10m, not kept 1m as init.yml says: left as it is (to change it, `rectifier -o del_que` drops it with its dead letters, then `initiator -o decl_dlx`)"),
        "{out}"
    );
    assert!(
        out.contains(
            "exchange pqx.test.dlx (fanout) -> queue pqx.test.dlq (dead letters kept 10m)"
        ),
        "{out}"
    );
    Ok(())
}

#[tokio::test]
async fn postgres_from_the_original_keys() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    let url = url::Url::parse(&env.db.url)?;
    let conn = format!(
        "mq:\n  host: {}\n  user: {}\n  pass: {}\n  vhost: {}\n\
         db:\n  protocol: postgres\n  host: {}\n  port: {}\n  user: {}\n  pass: {}\n  db: {}\n",
        common::mq_host(),
        common::MQ_USER,
        common::MQ_PASS,
        env.vhost.name,
        url.host_str().unwrap(),
        url.port().unwrap_or(5432),
        url.username(),
        url.password().unwrap(),
        url.path().trim_start_matches('/'),
    );
    env.write("conn.yml", &conn)?;
    let out = env.ok("initiator", &["-o", "crt_tbl"])?;
    assert!(
        out.contains("tables message_history, message_result in postgres://"),
        "{out}"
    );
    assert!(env.store().await?.tables_exist().await?);
    Ok(())
}
