//! TLS for real: the broker over `amqps://` (its TLS listener, the CA `scripts/services.sh --tls`
//! made, a client certificate), the management API over HTTPS, PostgreSQL with
//! `sslmode=verify-full`; and a wrong CA, a wrong host name or a plain port refused at once with
//! one line, password redacted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use anyhow::Result;
use common::{
    count_ended, env, tls_dir, DbKind, Env, Records, AMQPS_PORT, API_TLS_PORT, MQ_PASS, MQ_USER,
};

/// conn.yml reaching the broker at `host:port` over TLS with `ca` (a file of the test CA's
/// directory), the management API over HTTPS, and `db_url`.
fn write_tls_conn(
    env: &Env,
    host: &str,
    port: u16,
    ca: &str,
    client_cert: bool,
    db_url: &str,
) -> Result<()> {
    let dir = tls_dir();
    let client = match client_cert {
        true => format!(
            "    cert_file: {}\n    key_file: {}\n",
            dir.join("client.pem").display(),
            dir.join("client.key").display()
        ),
        false => String::new(),
    };
    let conn = format!(
        "mq:\n  url: \"amqps://{MQ_USER}:{MQ_PASS}@{host}:{port}/{vhost}\"\n  tls:\n    ca_file: {ca}\n{client}\
         mq_api:\n  url: https://127.0.0.1:{API_TLS_PORT}/api\n  user: {MQ_USER}\n  pass: {MQ_PASS}\n  vhost: {vhost}\n  ca_file: {ca}\n\
         db:\n  url: \"{db_url}\"\n",
        vhost = env.vhost.name,
        ca = dir.join(ca).display(),
    );
    env.write("conn.yml", &conn)?;
    Ok(())
}

/// The test database's URL with PostgreSQL's TLS checks against `ca`, reached as `host`.
fn pg_tls_url(env: &Env, host: &str, ca: &str) -> String {
    let url = env.db.url.replace("@127.0.0.1:", &format!("@{host}:"));
    format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        tls_dir().join(ca).display()
    )
}

fn one_line_error(env: &Env, binary: &str, args: &[&str]) -> Result<String> {
    let out = env.run(binary, args)?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{binary}: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("{binary}: error: ")))
        .unwrap_or_else(|| panic!("no error line: {stderr}"))
        .to_owned();
    assert!(
        !stderr.contains(&format!(":{MQ_PASS}@")),
        "the password is redacted: {stderr}"
    );
    Ok(line)
}

#[tokio::test]
async fn commands_run_and_are_recorded_over_tls_end_to_end() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    let db_url = pg_tls_url(&env, "127.0.0.1", "ca.pem");
    write_tls_conn(&env, "127.0.0.1", AMQPS_PORT, "ca.pem", true, &db_url)?;
    env.init()?;
    let insp = env.ok("inspector", &["-o", "insp"])?;
    assert!(
        insp.contains("h1.retry"),
        "the management API over HTTPS: {insp}"
    );
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["echo over tls"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    env.write_conn(&env.db.url, env.vhost.broker.amqp_port)?;
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(
        attempts[0].result.as_ref().unwrap().stdout.as_deref(),
        Some("over tls\n")
    );

    // The broker says the subscriber's connection is TLS and shows the client certificate.
    let api = env.vhost.broker.api(&env.vhost.name)?;
    let deadline = common::Deadline::after_secs(10);
    // The management API's connection list lags the broker by a few seconds.
    let subscriber = loop {
        let connections = api.connections().await?;
        let named = |c: &&pqx_util::MqConnection| {
            c.name()
                .is_some_and(|n| n.starts_with("pqx subscriber h1 on "))
        };
        if let Some(c) = connections.iter().find(named) {
            break c.clone();
        }
        deadline
            .tick(|| "the subscriber's connection is not listed".into())
            .await?;
    };
    assert!(subscriber.ssl, "{subscriber:?}");
    assert!(
        subscriber
            .peer_cert_subject
            .as_deref()
            .is_some_and(|s| s.contains("CN=pqx-test-client")),
        "{subscriber:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_ca_host_name_or_port_is_refused_with_one_line() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let db_url = env.db.url.clone();
    let cases = [
        ("127.0.0.1", AMQPS_PORT, "wrong-ca.pem", "TLS: the broker's certificate is not signed by a trusted CA (mq.tls.ca_file, or the system's CAs without one)"),
        ("localhost", AMQPS_PORT, "ca.pem", "TLS: the broker's certificate is not valid for the host name \"localhost\" the URL names"),
        ("127.0.0.1", env.vhost.broker.amqp_port, "ca.pem", "TLS: the broker did not answer in TLS (is the port its TLS port, such as 5671?)"),
    ];
    for (host, port, ca, why) in cases {
        write_tls_conn(&env, host, port, ca, false, &db_url)?;
        let broker = format!(
            "RabbitMQ amqps://{MQ_USER}:***@{host}:{port}/{}",
            env.vhost.name
        );
        let line = one_line_error(&env, "subscriber", &["-q", "h1"])?;
        assert_eq!(line, format!("subscriber: error: {broker}: {why}"));
        let task = env.write(
            "t.json",
            r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
        )?;
        let line = one_line_error(
            &env,
            "publisher",
            &[
                "-o",
                "pub",
                "-t",
                task.to_str().unwrap(),
                "--retry-for",
                "0",
            ],
        )?;
        assert_eq!(line, format!("publisher: error: {broker}: {why}"));
    }
    Ok(())
}

#[tokio::test]
async fn postgres_with_a_wrong_ca_or_host_name_is_refused_with_one_line() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    env.init()?;
    for (host, ca, why) in [
        (
            "127.0.0.1",
            "wrong-ca.pem",
            "TLS: the server's certificate is not signed by the CA in sslrootcert",
        ),
        (
            "localhost",
            "ca.pem",
            "TLS: the server's certificate is not valid for the host name \"localhost\"",
        ),
    ] {
        let url = pg_tls_url(&env, host, ca);
        env.write_conn(&url, env.vhost.broker.amqp_port)?;
        let line = one_line_error(&env, "initiator", &["-o", "crt_tbl"])?;
        assert!(line.contains(why), "{line}");
        assert!(
            line.contains(&format!("postgres://{MQ_USER}:***@{host}:")),
            "{line}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn tls_files_that_cannot_be_used_are_named() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let conn = |tls: &str| {
        format!(
            "mq:\n  url: \"amqps://u:p@127.0.0.1:{AMQPS_PORT}/v\"\n  tls:\n{tls}db:\n  url: \"{}\"\n",
            env.db.url
        )
    };
    let missing = env.path("nowhere.pem");
    for (tls, want) in [
        (
            format!("    ca_file: {}\n", missing.display()),
            format!("conn.yml: mq.tls.ca_file: {}: cannot read", missing.display()),
        ),
        (
            format!("    cert_file: {}\n", tls_dir().join("client.pem").display()),
            "conn.yml: mq.tls.key_file: missing: a client certificate (mq.tls.cert_file) needs its key".to_owned(),
        ),
    ] {
        env.write("conn.yml", &conn(&tls))?;
        let line = one_line_error(&env, "subscriber", &["-q", "h1"])?;
        assert!(line.starts_with(&format!("subscriber: error: {want}")), "{line}");
    }
    Ok(())
}

#[tokio::test]
async fn host_users_reach_the_broker_over_tls_with_the_files_decl_users_wrote() -> Result<()> {
    let mut env = env(DbKind::Sqlite).await?;
    let db_url = env.db.url.clone();
    write_tls_conn(&env, "127.0.0.1", AMQPS_PORT, "ca.pem", false, &db_url)?;
    env.init()?;
    env.use_host_users()?;
    let h1 = std::fs::read_to_string(env.path("hosts/h1/conn.yml"))?;
    assert!(
        h1.contains(&format!("port: {AMQPS_PORT}")) && h1.contains("ca_file:"),
        "{h1}"
    );
    let _sub = env.subscriber("h1")?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":1,"poke":1},"cmd":{"Bash":{"cmd":["exit 4"]}}}"#,
    )?;
    let id = env.publish(&task)?.remove(0);
    env.wait_attempts(&id, 30, |a| count_ended(a) == 2).await?;
    Ok(())
}
