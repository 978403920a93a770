//! What may not leave the subscriber's machine or reach a person raw: secrets expanded on the
//! subscriber (Http URLs and headers), credentials in configs (in every form they can take),
//! literal `$` in passwords, and control characters a command prints; and records and logs are
//! their owner's only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use anyhow::Result;
use common::{count_ended, env, free_port, unique, DbKind, Env, Records, DLQ};

/// Everything of a test environment a person or another machine can see: the attempts' records,
/// the logs, and what the binaries printed.
async fn everything_shown(env: &Env, printed: &str) -> Result<String> {
    let mut shown = printed.to_owned();
    for attempt in env.store().await?.attempts(None, 1000).await? {
        shown.push_str(&format!("{attempt:?}"));
    }
    if let Ok(entries) = std::fs::read_dir(env.path("logs")) {
        for file in entries.flatten() {
            shown.push_str(&std::fs::read_to_string(file.path())?);
        }
    }
    for entry in std::fs::read_dir(env.dir.path())?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            shown.push_str(&std::fs::read_to_string(entry.path())?);
        }
    }
    Ok(shown)
}

#[tokio::test]
async fn http_secrets_stay_on_the_subscriber_machine() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let secret = unique("token-secret");
    let literal = unique("literal-secret");
    let sub = env.subscriber_with("h1", &[], &[("PQX_TEST_TOKEN", secret.as_str())])?;
    let port = free_port()?;
    let base = format!("127.0.0.1:{port}");
    let requests = [
        serde_json::json!({"method": "GET", "url": format!("http://{base}/x?token=${{PQX_TEST_TOKEN}}")}),
        serde_json::json!({"method": "GET", "url": format!("http://{base}/$PQX_TEST_TOKEN/x")}),
        serde_json::json!({"method": "GET", "url": format!("http://u:${{PQX_TEST_TOKEN}}@{base}/")}),
        serde_json::json!({"method": "POST", "url": format!("http://{base}/"),
            "headers": {"Authorization": "Bearer ${PQX_TEST_TOKEN}", "X-Api-Key": literal}}),
        serde_json::json!({"method": "GET", "url": format!("http://u:{literal}@{base}/?password={literal}")}),
    ];
    let mut printed = String::new();
    for request in &requests {
        let task =
            serde_json::json!({"mailing_to": [{"unique_key": "h1"}], "cmd": {"Http": request}});
        let path = env.write("http.json", &task.to_string())?;
        let out = env.run(
            "publisher",
            &["-o", "pub", "--wait", "30", "-t", path.to_str().unwrap()],
        )?;
        assert_eq!(out.status.code(), Some(1), "the request failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Connection refused"), "{stdout}");
        printed.push_str(&stdout);
        printed.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for _ in &requests {
        let dead = env.vhost.take(DLQ, 30).await?.expect("dead-lettered");
        let reason = pqx::mq::header_string(&dead.properties, pqx::mq::ERROR_HEADER).unwrap();
        assert!(reason.contains("failed: not started: "), "{reason}");
        printed.push_str(&reason);
    }
    printed.push_str(&sub.log());
    let shown = everything_shown(&env, &printed).await?;
    assert!(
        shown.contains("PQX_TEST_TOKEN"),
        "URLs are shown as written"
    );
    assert!(shown.contains("Authorization"), "the records were read");
    assert!(
        !shown.contains(&secret),
        "an expanded secret left the subscriber"
    );
    assert!(!shown.contains(&literal), "a literal credential is shown");
    Ok(())
}

#[tokio::test]
async fn config_credentials_never_reach_an_error_line() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let secret = unique("s3cret");
    let mq = format!(
        "mq:\n  host: {}\n  port: {}\n  user: pqx\n  pass: pqx\n  vhost: {}\n",
        common::mq_host(),
        env.vhost.broker.amqp_port,
        env.vhost.name
    );
    let cases = [
        (
            format!("{mq}db:\n  url: \"postgres://pqx@127.0.0.1:1/pqx?password={secret}&sslmode=disable\"\n"),
            &["-o", "crt_tbl"][..],
            "initiator",
        ),
        (
            format!("{mq}db:\n  url: \"postgres://pqx:{secret}@127.0.0.1:1/pqx\"\n"),
            &["-o", "crt_tbl"],
            "initiator",
        ),
        (
            format!("{mq}mq_api:\n  url: \"http://pqx:{secret}@127.0.0.1:1/api\"\n"),
            &["-o", "insp"],
            "inspector",
        ),
        (format!("mq:\n  url: \"amqp://pqx:{secret}@h:99999/v\"\n"), &["-o", "decl_x"], "initiator"),
        (format!("mq:\n  url: \"amqp://pqx:{secret}@127.0.0.1:1/v\"\n"), &["-o", "decl_x"], "initiator"),
        (format!("mq:\n  host: h\n  pass: \"pa$w{secret}\"\n"), &["-o", "decl_x"], "initiator"),
        (format!("mq:\n  host: h\n  pass: \"pa${{w{secret}\"\n"), &["-o", "decl_x"], "initiator"),
    ];
    for (conn, args, binary) in cases {
        env.write("conn.yml", &conn)?;
        let out = env.run(binary, args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{conn}: {stderr}");
        assert!(stderr.contains(&format!("{binary}: error: ")), "{stderr}");
        assert!(!stderr.contains(&secret), "{conn}: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn a_literal_dollar_is_written_twice() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    // A broker user whose password holds a `$`.
    let user = unique("dollar");
    let password = format!("pa$word{}", unique("x"));
    let api = pqx_util::MqApi::new(pqx_util::ApiEndpoint::new(
        &common::mq_host(),
        env.vhost.broker.api_port,
        common::MQ_USER,
        common::MQ_PASS,
        &env.vhost.name,
    ))?;
    api.put_user(&user, &password, &[]).await?;
    api.set_permissions(&user, ".*", ".*", ".*").await?;
    let escaped = password.replace('$', "$$");
    let conn = format!(
        "mq:\n  host: {}\n  port: {}\n  user: {user}\n  pass: \"{escaped}\"\n  vhost: {}\ndb:\n  url: \"{}\"\n",
        common::mq_host(),
        env.vhost.broker.amqp_port,
        env.vhost.name,
        env.db.url
    );
    env.write("conn.yml", &conn)?;
    let declared = env.run("initiator", &["-o", "decl_x"]);
    api.delete_user(&user).await?;
    let out = declared?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In a task, a bare `$` that names nothing set fails the attempt without showing the rest.
    env.write_conn(&env.db.url, env.vhost.broker.amqp_port)?;
    let _sub = env.subscriber("h1")?;
    let tail = unique("word");
    let task = format!(
        r#"{{"mailing_to":[{{"unique_key":"h1"}}],"cmd":{{"Sshpass":{{"ip":"127.0.0.1","user":"u","pass":"pa${tail}","cmd":["true"]}}}}}}"#
    );
    let id = env.publish(&env.write("ssh.json", &task)?)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    let result = &attempts[0].result.as_ref().unwrap().summary();
    assert_eq!(
        result,
        "failed: not started: cmd.Sshpass.pass: a $ is followed by a name that is not a set environment variable (write $$ for a literal $)"
    );
    let shown = everything_shown(&env, "").await?;
    assert!(!shown.contains(&tail), "{shown}");
    Ok(())
}

#[tokio::test]
async fn output_cannot_drive_an_operator_terminal() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    let hostile = r"printf '\033]0;owned\007\033[2J\rsucceeded\000 \302\233c\n'; printf '\033[31mdisk corrupted\rdisk ok\n' >&2; exit 1";
    let task = serde_json::json!({"mailing_to": [{"unique_key": "h1"}], "cmd": {"Bash": {"cmd": [hostile]}}});
    let path = env.write("hostile.json", &task.to_string())?;
    let out = env.run(
        "publisher",
        &["-o", "pub", "--wait", "30", "-t", path.to_str().unwrap()],
    )?;
    let wait = String::from_utf8(out.stdout)?;
    let id = wait.split_whitespace().nth(1).unwrap().to_owned();
    env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    let table = env.ok("inspector", &["-o", "hist", "--message-id", &id])?;
    let output = env.ok(
        "inspector",
        &["-o", "hist", "--message-id", &id, "--output"],
    )?;
    let mut logs = sub.log();
    for file in std::fs::read_dir(env.path("logs"))?.flatten() {
        logs.push_str(&std::fs::read_to_string(file.path())?);
    }
    for (what, text) in [
        ("--wait", &wait),
        ("hist", &table),
        ("--output", &output),
        ("logs", &logs),
    ] {
        let raw: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
            .collect();
        assert!(
            raw.is_empty(),
            "{what} shows raw control characters {raw:?}:\n{text}"
        );
    }
    assert!(
        output.contains(r"\x1b]0;owned\x07\x1b[2J\rsucceeded\0 \u{9b}c"),
        "{output}"
    );
    assert!(
        table.contains(r"\x1b[31mdisk corrupted\rdisk ok"),
        "{table}"
    );
    assert!(logs.contains(r"\x1b]0;owned"), "{logs}");
    Ok(())
}

#[tokio::test]
async fn records_and_logs_are_their_owners_only() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let _sub = env.subscriber("h1")?;
    let mode =
        |name: &str| std::fs::metadata(env.path(name)).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode("pqx.db")?, 0o600);
    assert_eq!(mode("logs")?, 0o700);
    Ok(())
}
