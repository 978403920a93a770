//! Hostile input must not stall a queue: a message too large for pqx's frames, output and fields
//! with NUL bytes, data the database refuses, a database the subscriber cannot write. Each is
//! dead-lettered or recorded once, and the next command runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::Result;
use common::{count_ended, ended, env, DbKind, Env, Records, DLQ};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

const QUICK: &str = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo next"]}}}"#;

/// Publishes `body` straight to `queue` with these headers.
async fn publish_raw(env: &Env, queue: &str, headers: FieldTable, body: &[u8]) -> Result<()> {
    let properties = BasicProperties::default()
        .with_message_id(common::unique("raw").as_str().into())
        .with_headers(headers);
    env.vhost.publish(queue, properties, body).await
}

fn headers(pairs: &[(&str, usize)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, bytes) in pairs {
        let value = "v".repeat(*bytes);
        table.insert((*key).into(), AMQPValue::LongString(value.as_str().into()));
    }
    table
}

/// Publishes a quick command and waits for it to end: the queue goes on.
async fn goes_on(env: &Env) -> Result<()> {
    let id = env.publish(&env.write("quick.json", QUICK)?)?.remove(0);
    let attempts = env.wait_attempts(&id, 60, |a| count_ended(a) == 1).await?;
    assert_eq!(ended(&attempts[0]).summary(), "succeeded");
    Ok(())
}

#[tokio::test]
async fn messages_too_large_for_the_frames_are_dead_lettered_once() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let command = br#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#;
    // One large header; many small ones; nearly as much as the broker's own frames carry.
    let cases = [
        headers(&[("big", 20_000)]),
        headers(
            &(0..100)
                .map(|i| (["k", &i.to_string()].concat(), 200))
                .collect::<Vec<_>>()
                .iter()
                .map(|(k, n)| (k.as_str(), *n))
                .collect::<Vec<_>>(),
        ),
        headers(&[("huge", 125_000)]),
        headers(&[("limit", 130_980)]),
    ];
    for table in cases {
        publish_raw(&env, "h1", table, command).await?;
    }
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let dead = env.vhost.take(DLQ, 60).await?.expect("dead-lettered");
        assert_eq!(dead.data, command.to_vec(), "the body is kept");
        reasons.push(pqx::mq::header_string(
            &dead.properties,
            pqx::mq::ERROR_HEADER,
        ));
    }
    for reason in &reasons {
        let reason = reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("its properties take "), "{reason}");
        assert!(
            reason.ends_with("more than fit in the 16 KiB frames pqx subscribers use"),
            "{reason}"
        );
    }
    // The last has no room for a reason: it was rejected, and the broker dead-lettered it itself
    // (too large now for any client to take, but parked, not looping).
    let deadline = common::Deadline::after_secs(30);
    while env.vhost.queue_len(DLQ).await? != 1 {
        deadline
            .tick(|| "the largest message in the dead-letter queue".into())
            .await?;
    }
    assert!(sub
        .log()
        .contains("does not fit in one frame with the headers pqx adds"));
    goes_on(&env).await?;
    let log = sub.log();
    let retakes = log.matches("taking it with large frames").count();
    assert_eq!(retakes, 4, "once per message, no loop:\n{log}");
    assert_eq!(env.vhost.queue_len("h1").await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_large_command_that_fails_is_retried_and_dead_lettered_with_its_reason() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    // Pairs just within the limit: retried (with the attempt header and the broker's x-death),
    // then dead-lettered with the reason and the queue.
    let pad = "p".repeat(pqx::mq::MAX_COMMAND_HEADERS_BYTES - 60);
    let task = serde_json::json!({
        "mailing_to": [{"unique_key": "h1", "pad": pad}],
        "config": {"retry": 1, "poke": 1},
        "cmd": {"Bash": {"cmd": ["head -c 5000 /dev/zero | tr '\\0' e >&2; exit 4"]}},
    });
    let id = env
        .publish(&env.write("large.json", &task.to_string())?)?
        .remove(0);
    env.wait_attempts(&id, 60, |a| count_ended(a) == 2).await?;
    let dead = env.vhost.take(DLQ, 30).await?.expect("dead-lettered");
    let reason = pqx::mq::header_string(&dead.properties, pqx::mq::ERROR_HEADER).unwrap();
    assert!(
        reason.starts_with("failed on attempt 2: failed: exit code 4: eeee"),
        "{reason}"
    );
    assert!(reason.len() <= 1000, "{}", reason.len());
    goes_on(&env).await
}

/// Runs statements on a test's database (constraints and triggers that refuse some data).
async fn sql(env: &Env, statements: &[&str]) -> Result<()> {
    use sea_orm::ConnectionTrait;
    let db = pqx_util::connect_db(&env.db.url).await?;
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

async fn nul_bytes_are_stored_escaped(db: DbKind) -> Result<()> {
    let env = env(db).await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    let task = r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"dedupe_key":"k\u0000ey"},
        "cmd":{"Bash":{"cmd":["printf 'a\\000b\\n'; printf 'e\\000r\\n' >&2"]}}}"#;
    let path = env.write("nul.json", task)?;
    let first = env.publish(&path)?.remove(0);
    let attempts = env
        .wait_attempts(&first, 30, |a| count_ended(a) == 1)
        .await?;
    let result = ended(&attempts[0]);
    assert_eq!(result.stdout.as_deref(), Some("a\\0b\n"));
    assert_eq!(result.stderr.as_deref(), Some("e\\0r\n"));
    assert_eq!(attempts[0].history.dedupe_key.as_deref(), Some("k\\0ey"));
    // The same key again: found, so skipped.
    let second = env.publish(&path)?.remove(0);
    let attempts = env
        .wait_attempts(&second, 30, |a| count_ended(a) == 1)
        .await?;
    assert!(
        ended(&attempts[0])
            .summary()
            .starts_with("skipped: dedupe_key"),
        "{}",
        ended(&attempts[0]).summary()
    );
    // A message id with a NUL in it, from a client other than pqx's.
    let command = br#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#;
    let url = env.vhost.url();
    let conn = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let properties = BasicProperties::default().with_message_id("id\0nul".into());
    channel
        .basic_publish(
            "".into(),
            "h1".into(),
            BasicPublishOptions::default(),
            command,
            properties,
        )
        .await?
        .await?;
    let attempts = env
        .wait_attempts("id\0nul", 30, |a| count_ended(a) == 1)
        .await?;
    assert_eq!(attempts[0].history.message_id.as_deref(), Some("id\\0nul"));
    goes_on(&env).await
}

#[tokio::test]
async fn nul_bytes_are_stored_escaped_sqlite() -> Result<()> {
    nul_bytes_are_stored_escaped(DbKind::Sqlite).await
}

#[tokio::test]
async fn nul_bytes_are_stored_escaped_postgres() -> Result<()> {
    nul_bytes_are_stored_escaped(DbKind::Postgres).await
}

/// Data the database always refuses (here by a constraint or trigger the test adds) is not held
/// for ever: a result without its output is recorded instead, and a start that cannot be recorded
/// sends the message to the dead letters without running it (its start is recorded before it
/// runs).
async fn refused_records_do_not_stall(db: DbKind) -> Result<()> {
    let env = env(db).await?;
    env.init()?;
    match db {
        DbKind::Postgres => {
            sql(&env, &[
                "ALTER TABLE message_result ADD CONSTRAINT refuse CHECK (stdout NOT LIKE '%refuse-me%')",
                "ALTER TABLE message_history ADD CONSTRAINT refuse CHECK (cmd::text NOT LIKE '%never-start%')",
            ])
            .await?
        }
        DbKind::Sqlite => {
            sql(&env, &[
                "CREATE TRIGGER refuse_result BEFORE INSERT ON message_result WHEN NEW.stdout LIKE '%refuse-me%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                "CREATE TRIGGER refuse_start BEFORE INSERT ON message_history WHEN NEW.cmd LIKE '%never-start%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            ])
            .await?
        }
    }
    let sub = env.subscriber("h1")?;
    let output =
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo refuse-me"]}}}"#;
    let id = env.publish(&env.write("output.json", output)?)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    let result = ended(&attempts[0]);
    assert_eq!(result.exit_code, 0);
    assert!(
        result
            .stdout
            .as_deref()
            .unwrap_or_default()
            .starts_with("[pqx: not stored, the database refused it: "),
        "{result:?}"
    );
    let start = r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo never-start > ran.txt"]}}}"#;
    env.publish(&env.write("start.json", start)?)?;
    let dead = env.vhost.take(DLQ, 30).await?.expect("dead-lettered");
    let reason = pqx::mq::header_string(&dead.properties, pqx::mq::ERROR_HEADER).unwrap();
    assert!(
        reason.starts_with("cannot record the attempt: "),
        "{reason}"
    );
    assert!(!env.path("ran.txt").exists(), "it did not run");
    goes_on(&env).await?;
    assert!(!sub.log().contains("holding the message"), "{}", sub.log());
    Ok(())
}

#[tokio::test]
async fn refused_records_do_not_stall_sqlite() -> Result<()> {
    refused_records_do_not_stall(DbKind::Sqlite).await
}

#[tokio::test]
async fn refused_records_do_not_stall_postgres() -> Result<()> {
    refused_records_do_not_stall(DbKind::Postgres).await
}

/// A subscriber that cannot write its records refuses to start, and runs nothing.
async fn refuses_to_start(env: &Env, out: std::process::Output) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("subscriber: error: database "))
        .unwrap_or_else(|| panic!("one clear line: {stderr}"));
    assert!(
        ["cannot write there", "unable to open", "readonly database"]
            .iter()
            .any(|why| line.contains(why)),
        "{line}"
    );
    assert!(!env.path("ran.txt").exists(), "nothing ran");
    assert_eq!(env.vhost.queue_len("h1").await?, 1, "the command waits");
    Ok(())
}

const MARK: &str =
    r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["touch ran.txt"]}}}"#;

#[tokio::test]
async fn a_read_only_database_is_refused_at_start() -> Result<()> {
    // SQLite opened read-only.
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    env.publish(&env.write("mark.json", MARK)?)?;
    let read_only = env.db.url.replace("mode=rwc", "mode=ro");
    env.write_conn(&read_only, env.vhost.broker.amqp_port)?;
    refuses_to_start(&env, env.run("subscriber", &["-q", "h1"])?).await?;

    // PostgreSQL whose transactions are read-only.
    let env = common::env(DbKind::Postgres).await?;
    env.init()?;
    env.publish(&env.write("mark.json", MARK)?)?;
    let name = env.db.url.rsplit('/').next().unwrap().to_owned();
    sql(
        &env,
        &[&format!(
            "ALTER DATABASE {name} SET default_transaction_read_only = on"
        )],
    )
    .await?;
    refuses_to_start(&env, env.run("subscriber", &["-q", "h1"])?).await?;
    Ok(())
}

#[tokio::test]
async fn a_directory_the_subscriber_cannot_write_is_refused_at_start() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    env.publish(&env.write("mark.json", MARK)?)?;
    // The subscriber runs as nobody: it may read its config and write the database file, but not
    // the directory SQLite keeps its journal in.
    let dir = env.dir.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    std::fs::set_permissions(dir.join("pqx.db"), std::fs::Permissions::from_mode(0o666))?;
    for wal in ["pqx.db-wal", "pqx.db-shm"] {
        let _ = std::fs::remove_file(dir.join(wal));
    }
    let subscriber = env.binary("subscriber");
    let args = ["--reuid=65534", "--regid=65534", "--clear-groups"].map(std::ffi::OsStr::new);
    let mut args = args.to_vec();
    args.push(subscriber.as_os_str());
    let out = env
        .command_as("setpriv", &args)
        .args(["-q", "h1"])
        .output()?;
    refuses_to_start(&env, out).await
}
