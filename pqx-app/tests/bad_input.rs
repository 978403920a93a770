//! Every way a user can get it wrong ends in one clear line on stderr that names the file, field,
//! host or queue, a non-zero exit, and nothing lost: a bad task file publishes nothing, a bad
//! message goes to the dead-letter queue and the subscriber goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;

use anyhow::Result;
use common::{count_ended, env, DbKind, Records, Subscriber, DLQ};
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;

/// The one error line of a failed run, checked for exit code and shape.
fn error_line(out: &Output, binary: &str, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("{binary}: error: ");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {stderr}");
    lines[0][prefix.len()..].to_owned()
}

#[tokio::test]
async fn bad_task_files_publish_nothing() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let cases = [
        ("syntax.json", r#"{"mailing_to":[{"unique_key":"h1"}], "cmd": "#, "EOF while parsing"),
        (
            "field.json",
            r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":1,"pokee":2},"cmd":{"Bash":{"cmd":["true"]}}}"#,
            "config.pokee: unknown field `pokee`, expected one of `retry`, `poke`, `waiting_timeout`, `consuming_timeout`",
        ),
        (
            "variant.json",
            r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bsh":{"cmd":["true"]}}}"#,
            "unknown variant `Bsh`, expected one of `Ping`, `Bash`",
        ),
        (
            "type.json",
            r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":-1},"cmd":{"Bash":{"cmd":["true"]}}}"#,
            "invalid value: integer `-1`, expected u8",
        ),
        (
            "empty.json",
            r#"{"mailing_to":[{"unique_key":"h1"},{}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
            "mailing_to[1]: is empty (give at least one pair",
        ),
        (
            "nocmd.json",
            r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":[]}}}"#,
            "cmd.Bash.cmd: must not be empty",
        ),
    ];
    for (name, json, expected) in cases {
        let task = env.write(name, json)?;
        let out = env.run("publisher", &["-o", "pub", "-t", task.to_str().unwrap()])?;
        let line = error_line(&out, "publisher", 1);
        assert!(
            line.starts_with(&format!("{}: ", task.display())),
            "{name}: {line}"
        );
        assert!(line.contains(expected), "{name}: {line}");
    }
    let out = env.run("publisher", &["-o", "pub", "-t", "missing.json"])?;
    assert!(error_line(&out, "publisher", 1).starts_with("missing.json: cannot read: No such file"));
    assert_eq!(env.vhost.queue_len("h1").await?, 0, "nothing was published");
    Ok(())
}

#[tokio::test]
async fn unroutable_and_undeclared_targets_are_errors() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"nobody"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let out = env.run("publisher", &["-o", "pub", "-t", task.to_str().unwrap()])?;
    let line = error_line(&out, "publisher", 1);
    assert!(line.contains("no exchange 'pqx.test'"), "{line}");
    assert!(line.contains("run `initiator -o init`"), "{line}");

    env.init()?;
    let out = env.run("publisher", &["-o", "pub", "-t", task.to_str().unwrap()])?;
    let line = error_line(&out, "publisher", 1);
    assert!(
        line.starts_with("no queue matches mailing_to {unique_key=nobody} on pqx.test"),
        "{line}"
    );
    Ok(())
}

#[tokio::test]
async fn options_and_config_files() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let out = env.run("initiator", &["-o", "frobnicate"])?;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'frobnicate' for '--option <OPTION>'"),
        "{err}"
    );
    assert!(
        err.contains("decl_x, decl_dx, decl_dlx, crt_tbl, init"),
        "{err}"
    );

    let out = env.run("rectifier", &[])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("choose what to do: -o <OPTION> or a subcommand"));

    let help = env.ok("initiator", &["init", "--help"])?;
    assert!(help.contains("--conn"), "{help}");

    let out = env.run("initiator", &["--conn", "nowhere/conn.yml", "-o", "init"])?;
    assert_eq!(
        error_line(&out, "initiator", 1),
        "cannot read nowhere/conn.yml: No such file or directory (os error 2)"
    );

    env.write(
        "bad-init.yml",
        "header_exchange: x\nheader_queues:\n  - {queue: h1, match_type: some, kv: {a: b}}\n",
    )?;
    let out = env.run("initiator", &["--init", "bad-init.yml", "-o", "decl_x"])?;
    let line = error_line(&out, "initiator", 1);
    assert!(line.starts_with("bad-init.yml: header_queues[0].match_type: unknown variant `some`, expected `any` or `all`"), "{line}");

    env.write("env-conn.yml", "mq:\n  pass: ${PQX_TEST_UNSET_SECRET}\n")?;
    let out = env.run("initiator", &["--conn", "env-conn.yml", "-o", "decl_x"])?;
    let line = error_line(&out, "initiator", 1);
    assert_eq!(
        line,
        "env-conn.yml: key mq.pass: environment variable PQX_TEST_UNSET_SECRET is not set"
    );

    env.write(
        "pg-conn.yml",
        "mq:\n  host: h\ndb:\n  protocol: postgres\n  host: h\n",
    )?;
    let out = env.run("initiator", &["--conn", "pg-conn.yml", "-o", "crt_tbl"])?;
    assert_eq!(
        error_line(&out, "initiator", 1),
        "pg-conn.yml: db.user: required with db.protocol postgres (or give db.url)"
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_broker_and_database() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.write(
        "conn.yml",
        "mq:\n  host: 127.0.0.1\n  port: 1\n  user: pqx\n  pass: s3cret\n  vhost: v\n\
         db:\n  url: postgres://pqx:s3cret@127.0.0.1:1/pqx\n",
    )?;
    let out = env.run("initiator", &["-o", "decl_x"])?;
    let line = error_line(&out, "initiator", 1);
    assert!(
        line.starts_with("RabbitMQ amqp://pqx:***@127.0.0.1:1/v: "),
        "{line}"
    );
    assert!(!line.contains("s3cret"));

    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let task = task.to_str().unwrap();
    let out = env.run("publisher", &["-o", "pub", "--retry-for", "0", "-t", task])?;
    assert!(error_line(&out, "publisher", 1).starts_with("RabbitMQ amqp://pqx:***@127.0.0.1:1/v: "));
    let out = env.run("publisher", &["-o", "pub", "--retry-for", "1", "-t", task])?;
    let line = error_line(&out, "publisher", 1);
    assert!(line.starts_with("gave up after "), "{line}");
    assert!(
        line.contains(" tries: RabbitMQ amqp://pqx:***@127.0.0.1:1/v: "),
        "{line}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach RabbitMQ: trying again"));

    let out = env.run("initiator", &["-o", "crt_tbl"])?;
    let line = error_line(&out, "initiator", 1);
    assert_eq!(
        line,
        "database postgres://pqx:***@127.0.0.1:1/pqx: cannot reach 127.0.0.1:1: Connection refused (os error 111)"
    );
    assert!(!line.contains("s3cret"));

    let out = env.run("subscriber", &["-q", "h1"])?;
    assert!(error_line(&out, "subscriber", 1)
        .starts_with("database postgres://pqx:***@127.0.0.1:1/pqx: "));
    Ok(())
}

#[tokio::test]
async fn subscriber_needs_its_queue_and_the_tables() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.ok("initiator", &["-o", "decl_dlx"])?;
    env.ok("initiator", &["-o", "decl_x"])?;
    let out = env.run("subscriber", &["-q", "h1"])?;
    let line = error_line(&out, "subscriber", 1);
    assert!(line.contains("do not exist in sqlite://"), "{line}");
    assert!(
        line.ends_with("run `initiator -o crt_tbl` (or `-o init`)"),
        "{line}"
    );

    env.init()?;
    let out = env.run("subscriber", &["-q", "nope"])?;
    assert_eq!(
        error_line(&out, "subscriber", 1),
        "queue nope does not exist: add it to header_queues in init.yml and run `initiator -o init`"
    );

    let ready = env.path("no-dir/ready");
    let out = env.run(
        "subscriber",
        &["-q", "h1", "--ready-file", ready.to_str().unwrap()],
    )?;
    let line = error_line(&out, "subscriber", 1);
    assert!(
        line.starts_with(&format!(
            "cannot write the ready file {}: ",
            ready.display()
        )),
        "{line}"
    );
    Ok(())
}

/// A host whose records go through the broker, with no recorder ever run on its vhost, says so and
/// stops; the binaries that need the database itself refuse such a conn.yml.
#[tokio::test]
async fn records_through_the_broker_need_a_recorder() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let conn = std::fs::read_to_string(env.path("conn.yml"))?;
    let db = conn.find("\ndb:\n").expect("a db section");
    env.write(
        "conn.yml",
        &format!("{}db:\n  protocol: broker\n", &conn[..=db]),
    )?;
    let out = env.run("subscriber", &["-q", "h1"])?;
    assert_eq!(
        error_line(&out, "subscriber", 1),
        "cannot check that the records can be written through the recorders: exchange \
         pqx.test.records does not exist: no recorder ran on this vhost yet (start `subscriber --recorder`)"
    );
    for (binary, args) in [
        ("inspector", ["-o", "hist"]),
        ("initiator", ["-o", "crt_tbl"]),
    ] {
        let out = env.run(binary, &args)?;
        let line = error_line(&out, binary, 1);
        assert!(
            line.starts_with("conn.yml's db.protocol is broker: "),
            "{line}"
        );
    }
    Ok(())
}

/// Started beside the initiator (as in docker-compose.yml), a subscriber waits for its tables and
/// its queue, and its ready file appears only once it consumes; a queue that never comes is still
/// refused.
#[tokio::test]
async fn subscriber_waits_for_init_when_told_to() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let ready = env.path("h1.ready");
    let mut command = env.command("subscriber");
    command.args(["-q", "h1", "--wait-for-init", "60", "--ready-file"]);
    command.arg(&ready);
    // Started without waiting for the ready file, which must not appear yet.
    let mut sub = Subscriber::start(command, env.path("h1.log"), None)?;
    sub.ready = Some(ready.clone());
    sub.wait_log("waiting for `initiator -o init`", 30).await?;
    env.ok("initiator", &["-o", "crt_tbl"])?;
    sub.wait_log("cannot subscribe: trying again", 30).await?;
    assert!(!sub.is_ready(), "ready before its queue exists");
    env.init()?;
    sub.wait_ready(true, 30).await?;
    let task = env.write(
        "task.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo waited"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(attempts[0].result.as_ref().unwrap().summary(), "succeeded");
    sub.stop()?;
    assert!(!ready.exists(), "the ready file outlived the subscriber");

    let out = env.run("subscriber", &["-q", "nope", "--wait-for-init", "1"])?;
    assert_eq!(
        error_line(&out, "subscriber", 1),
        "queue nope does not exist: add it to header_queues in init.yml and run `initiator -o init`"
    );
    Ok(())
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_subscriber_goes_on() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let conn = env.vhost.connect().await?;
    let channel = conn.create_channel().await?;
    let poison: [&[u8]; 3] = [
        b"not json at all",
        br#"{"mailing_to":[],"cmd":{"Teleport":{"to":"mars"}}}"#,
        b"\xff\xfe binary",
    ];
    for body in poison {
        channel
            .basic_publish(
                "".into(),
                "h1".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await?
            .await?;
    }
    let _ = conn.close(200, "".into()).await;
    let mut dead = Vec::new();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let message = env
            .vhost
            .take(DLQ, 30)
            .await?
            .expect("poison message dead-lettered");
        let reason = pqx::mq::header_string(&message.properties, pqx::mq::ERROR_HEADER);
        let queue = pqx::mq::header_string(&message.properties, pqx::mq::QUEUE_HEADER);
        assert_eq!(queue.as_deref(), Some("h1"));
        reasons.push(reason.expect("the dead letter says why"));
        dead.push(message.data);
    }
    assert_eq!(dead, poison.map(<[u8]>::to_vec).to_vec());
    assert!(
        reasons[0].starts_with("not a valid command: expected ident at line 1"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("unknown variant `Teleport`"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("not a valid command: body is not UTF-8"),
        "{reasons:?}"
    );
    assert!(
        env.vhost.take(DLQ, 1).await?.is_none(),
        "each was dead-lettered once"
    );
    let log = sub.log();
    assert!(
        log.contains("not a valid command: dead-lettering it"),
        "{log}"
    );
    assert!(log.contains("unknown variant `Teleport`"), "{log}");

    let good = env.write(
        "good.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let id = env.publish(&good)?.remove(0);
    env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    Ok(())
}

#[tokio::test]
async fn malformed_broker_settings_are_config_errors_at_once() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let task = task.to_str().unwrap();
    let db = format!("db:\n  url: \"{}\"\n", env.db.url);
    let cases = [
        (String::new(), "mq: missing"),
        (db.clone(), "mq: missing"),
        (
            format!("mq: {{}}\n{db}"),
            "mq.host: required without mq.url",
        ),
        (
            format!("mq:\n  url: \"amqp://pqx:pqx@127.0.0.1:99999/v\"\n{db}"),
            "mq.url: not an AMQP URL: invalid port number",
        ),
        (
            format!("mq:\n  url: \"amqp://pqx:pqx@127.0.0.1/v?heartbeat=abc\"\n{db}"),
            "mq.url: not an AMQP URL: ",
        ),
        (
            format!("mq:\n  url: \"127.0.0.1:5672\"\n{db}"),
            "mq.url: not an AMQP URL: ",
        ),
        (
            format!("mq:\n  host: h\nmq_api:\n  url: \"localhost:15672\"\n{db}"),
            "mq_api.url: expected http:// or https://",
        ),
        (
            "mq:\n  host: h\ndb:\n  url: \"mysql://u@h/d\"\n".to_owned(),
            "db.url: expected sqlite://FILE?mode=rwc or postgres://",
        ),
    ];
    let runs: [(&str, Vec<&str>); 5] = [
        ("initiator", vec!["-o", "init"]),
        ("inspector", vec!["-o", "insp"]),
        ("rectifier", vec!["-o", "del_que"]),
        ("publisher", vec!["-o", "pub", "-t", task]),
        ("subscriber", vec!["-q", "h1"]),
    ];
    for (conn, expected) in &cases {
        env.write("conn.yml", conn)?;
        for (binary, args) in &runs {
            let started = std::time::Instant::now();
            let out = env.run(binary, args)?;
            let line = error_line(&out, binary, 1);
            assert!(line.starts_with("conn.yml: "), "{binary} {conn}: {line}");
            assert!(line.contains(expected), "{binary} {conn}: {line}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "at once: {binary}"
            );
        }
    }
    Ok(())
}
