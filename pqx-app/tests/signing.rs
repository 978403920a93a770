//! Signed commands on the real broker: a key made by `publisher keygen`, a publisher that signs, a
//! subscriber that trusts the key and runs only what it signed, unchanged, for its queue, fresh and
//! not before; everything else dead-lettered with the reason, logged and recorded as refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use common::{count_ended, env, DbKind, Deadline, Env, Records, DLQ};
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use pqx::mq::{header_string, ERROR_HEADER};
use pqx_app::signing::{OperatorKey, Signed, SIGNED_AT_HEADER};

/// The header each tampered copy is told apart by: `x-`, so neither routing nor signature covers
/// it.
const CASE: &str = "x-test-case";

/// Makes a key with `publisher keygen` in the test's directory; returns its trusted-keys entry.
fn keygen(env: &Env, file: &str) -> Result<String> {
    let out = env.ok("publisher", &["keygen", "--out", file])?;
    let entry = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("- \""))
        .context("the trusted-keys line")?
        .trim_end_matches('"')
        .to_owned();
    Ok(entry)
}

/// conn.yml with a `signing` section.
fn write_signing(env: &Env, signing: &str) -> Result<()> {
    env.write_conn(&env.db.url, env.vhost.broker.amqp_port)?;
    let conn = std::fs::read_to_string(env.path("conn.yml"))?;
    env.write("conn.yml", &format!("{conn}signing:\n{signing}"))?;
    Ok(())
}

/// Publishes `body` with `properties` straight to `queue`, confirmed.
async fn send(env: &Env, queue: &str, properties: BasicProperties, body: &[u8]) -> Result<()> {
    env.vhost.publish(queue, properties, body).await
}

/// `properties` with one header set (or removed, for `None`), and the case named.
fn with(
    properties: &BasicProperties,
    case: &str,
    key: &str,
    value: Option<AMQPValue>,
) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    let mut inner: BTreeMap<_, _> = headers.inner().clone();
    match value {
        Some(value) => {
            inner.insert(key.into(), value);
        }
        None => {
            inner.remove(key);
        }
    }
    headers = FieldTable::from(inner);
    headers.insert(CASE.into(), AMQPValue::LongString(case.into()));
    properties.clone().with_headers(headers)
}

/// A command the operator's key signs by hand, as a publisher would but with the parts a test
/// needs to be odd (a signing time, a body the publisher would refuse to send).
fn hand_signed(
    key: &OperatorKey,
    case: &str,
    body: &[u8],
    signed_at_ms: i64,
    signed_for: Option<&str>,
) -> BasicProperties {
    let id = format!("hand-{case}");
    let mut headers = FieldTable::default();
    headers.insert("unique_key".into(), AMQPValue::LongString("h1".into()));
    key.seal(
        &mut headers,
        &Signed {
            message_id: &id,
            signed_at_ms,
            signed_for,
            reply_to: None,
            body,
        },
    );
    headers.insert(CASE.into(), AMQPValue::LongString(case.into()));
    BasicProperties::default()
        .with_message_id(id.as_str().into())
        .with_headers(headers)
}

fn task(marker: &Path, to: &str) -> String {
    format!(
        r#"{{"mailing_to":[{{"unique_key":"{to}"}}],"cmd":{{"Bash":{{"cmd":["echo ran >> {}"]}}}}}}"#,
        marker.display()
    )
}

async fn take(env: &Env, queue: &str) -> Result<Delivery> {
    env.vhost
        .take(queue, 10)
        .await?
        .with_context(|| format!("a message in {queue}"))
}

#[tokio::test]
async fn a_subscriber_runs_only_what_a_trusted_key_signed_unchanged_fresh_and_once() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let trusted = keygen(&env, "op.key")?;
    assert_eq!(
        std::fs::metadata(env.path("op.key"))?.permissions().mode() & 0o777,
        0o600
    );
    let untrusted = keygen(&env, "other.key")?;
    assert_ne!(trusted, untrusted);
    write_signing(
        &env,
        &format!("  key: op.key\n  trusted_keys: [\"{trusted}\"]\n  max_age: 1h\n"),
    )?;

    // Genuine signed copies, taken off the queues before any subscriber runs them.
    let marker = env.path("ran");
    let to_h1 = env.write("h1.json", &task(&marker, "h1"))?;
    let to_h2 = env.write("h2.json", &task(&marker, "h2"))?;
    env.publish(&to_h1)?;
    env.publish(&to_h2)?;
    let for_h1 = take(&env, "h1").await?;
    let for_h2 = take(&env, "h2").await?;
    let signed_at = match for_h1
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(SIGNED_AT_HEADER).cloned())
    {
        Some(AMQPValue::LongLongInt(ms)) => ms,
        other => panic!("no signing time: {other:?}"),
    };

    let sub = env.subscriber("h1")?;
    assert!(
        sub.log()
            .contains("runs only commands signed by a trusted key"),
        "{}",
        sub.log()
    );
    // The genuine one runs.
    send(&env, "h1", for_h1.properties.clone(), &for_h1.data).await?;
    let id = for_h1.properties.message_id().as_ref().unwrap().to_string();
    env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(std::fs::read_to_string(&marker)?, "ran\n");

    let key = OperatorKey::read(&env.path("op.key"))?;
    let other_key = OperatorKey::read(&env.path("other.key"))?;
    let now = chrono::Utc::now().timestamp_millis();
    let h1_body = for_h1.data.clone();
    let props = &for_h1.properties;
    let mut evil_body = String::from_utf8(h1_body.clone())?;
    evil_body = evil_body.replace("echo ran", "echo evil");
    let unsigned = with(
        &BasicProperties::default().with_message_id("plain".into()),
        "unsigned",
        "unique_key",
        Some(AMQPValue::LongString("h1".into())),
    );
    let untrusted_reason = format!(
        "refused: signed by key {}, which is not among this subscriber's trusted keys",
        other_key.id
    );
    let cases: Vec<(&str, BasicProperties, Vec<u8>, &str)> = vec![
        (
            "unsigned",
            unsigned,
            h1_body.clone(),
            "refused: unsigned (no x-pqx-signature header)",
        ),
        (
            "body",
            with(props, "body", "x", None),
            evil_body.into_bytes(),
            "refused: its signature does not match",
        ),
        (
            "message id",
            with(
                &props.clone().with_message_id("another".into()),
                "message id",
                "x",
                None,
            ),
            h1_body.clone(),
            "refused: its signature does not match",
        ),
        (
            "signing time",
            with(
                props,
                "signing time",
                SIGNED_AT_HEADER,
                Some(AMQPValue::LongLongInt(signed_at + 1)),
            ),
            h1_body.clone(),
            "refused: its signature does not match",
        ),
        (
            "routing headers",
            with(
                props,
                "routing headers",
                "common_key",
                Some(AMQPValue::LongString("dev".into())),
            ),
            h1_body.clone(),
            "refused: its routing headers are not those of its signed mailing_to",
        ),
        (
            "another queue's copy",
            with(&for_h2.properties, "another queue's copy", "x", None),
            for_h2.data.clone(),
            "refused: signed for queue h2, not for h1",
        ),
        (
            "replay",
            with(props, "replay", "x", None),
            h1_body.clone(),
            "refused: already succeeded on queue h1 (a replay)",
        ),
        (
            "untrusted key",
            hand_signed(&other_key, "untrusted key", &h1_body, now, Some("h1")),
            h1_body.clone(),
            &untrusted_reason,
        ),
        (
            "not addressed",
            hand_signed(
                &key,
                "not addressed",
                task(&marker, "h2").as_bytes(),
                now,
                None,
            ),
            task(&marker, "h2").into_bytes(),
            "refused: its signed mailing_to does not reach queue h1",
        ),
        (
            "too old",
            hand_signed(&key, "too old", &h1_body, now - 2 * 3_600_000, Some("h1")),
            h1_body.clone(),
            "refused: signed 2h",
        ),
        (
            "future",
            hand_signed(&key, "future", &h1_body, now + 3_600_000, Some("h1")),
            h1_body.clone(),
            "refused: signed 59m 59s in the future: this machine's clock and the publisher's differ by that much",
        ),
        (
            "invalid JSON",
            hand_signed(&key, "invalid JSON", b"{\"mailing_to\":", now, Some("h1")),
            b"{\"mailing_to\":".to_vec(),
            "not a valid command: ",
        ),
    ];
    let expected: BTreeMap<String, String> = cases
        .iter()
        .map(|(c, _, _, why)| (c.to_string(), why.to_string()))
        .collect();
    for (_, properties, body, _) in cases {
        send(&env, "h1", properties, &body).await?;
    }

    // Each is dead-lettered with its reason, and none ran.
    let mut reasons = BTreeMap::new();
    let deadline = Deadline::after_secs(30);
    while reasons.len() < expected.len() {
        match env.vhost.take(DLQ, 1).await? {
            Some(dead) => {
                let case = header_string(&dead.properties, CASE).unwrap_or_default();
                let reason = header_string(&dead.properties, ERROR_HEADER).unwrap_or_default();
                reasons.insert(case, reason);
            }
            None => {
                deadline
                    .tick(|| format!("dead letters so far: {reasons:#?}\n{}", sub.log()))
                    .await?
            }
        }
    }
    for (case, want) in &expected {
        let got = &reasons[case];
        if case == "future" {
            // The offset is shown to the second, less the moments between signing and checking.
            let (_, tail) = want.split_once(" in the future").unwrap();
            assert!(
                (got.starts_with("refused: signed 59m 59")
                    || got.starts_with("refused: signed 1h in"))
                    && got.ends_with(tail),
                "{got}"
            );
            continue;
        }
        assert!(got.starts_with(want.as_str()), "{case}: {got}");
    }
    assert_eq!(
        std::fs::read_to_string(&marker)?,
        "ran\n",
        "nothing else ran"
    );
    let log = sub.log();
    assert!(log.contains("not run: dead-lettering it"), "{log}");

    // Recorded as refused (exit code 126), with the command where there is one.
    let refused = env.store().await?.attempts(None, 100).await?;
    let refusals: Vec<_> = refused
        .iter()
        .filter_map(|a| a.result.as_ref())
        .filter(|r| r.exit_code == 126)
        .collect();
    assert_eq!(
        refusals.len(),
        expected.len() - 1,
        "all but the invalid JSON: {refused:#?}"
    );
    assert!(refusals
        .iter()
        .all(|r| r.summary().starts_with("refused: ")));
    let evil = refused
        .iter()
        .find(|a| a.history.cmd.to_string().contains("echo evil"));
    assert!(
        evil.is_some(),
        "the tampered command is in the records, not run"
    );
    Ok(())
}

#[tokio::test]
async fn a_signed_retry_runs_after_max_age_because_its_first_attempt_is_recorded() -> Result<()> {
    let env = env(DbKind::Postgres).await?;
    env.init()?;
    let trusted = keygen(&env, "op.key")?;
    write_signing(
        &env,
        &format!("  key: op.key\n  trusted_keys: [\"{trusted}\"]\n  max_age: 1s\n"),
    )?;
    let _sub = env.subscriber("h1")?;
    let failing = env.write(
        "fail.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"retry":1,"poke":2},"cmd":{"Bash":{"cmd":["exit 3"]}}}"#,
    )?;
    let id = env.publish(&failing)?.remove(0);
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 2).await?;
    let codes: Vec<i32> = attempts
        .iter()
        .filter_map(|a| a.result.as_ref())
        .map(|r| r.exit_code)
        .collect();
    assert_eq!(codes, [3, 3], "both attempts ran: {attempts:#?}");
    let dead = take(&env, DLQ).await?;
    let reason = header_string(&dead.properties, ERROR_HEADER).unwrap_or_default();
    assert_eq!(reason, "failed on attempt 2: failed: exit code 3");
    Ok(())
}

#[tokio::test]
async fn without_trusted_keys_a_subscriber_says_it_runs_unsigned_commands() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let sub = env.subscriber("h1")?;
    assert!(
        sub.log().contains("conn.yml has no signing.trusted_keys: this subscriber runs every command that reaches its queue, signed or not"),
        "{}",
        sub.log()
    );
    Ok(())
}

#[tokio::test]
async fn bad_keys_and_settings_are_named() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let trusted = keygen(&env, "op.key")?;
    let error_of = |binary: &str, args: &[&str]| -> Result<String> {
        let out = env.run(binary, args)?;
        assert_eq!(out.status.code(), Some(1), "{binary} {args:?}");
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    };
    let task = env.write("t.json", &task(&env.path("x"), "h1"))?;
    let task = task.to_str().unwrap();

    // A missing key file, one others can read, one of another kind.
    let err = error_of(
        "publisher",
        &["pub", "-t", task, "--sign-key", "missing.key"],
    )?;
    assert!(
        err.starts_with("publisher: error: missing.key: cannot read"),
        "{err}"
    );
    std::fs::set_permissions(env.path("op.key"), std::fs::Permissions::from_mode(0o640))?;
    let err = error_of("publisher", &["pub", "-t", task, "--sign-key", "op.key"])?;
    assert_eq!(err, "publisher: error: op.key: is readable by others (mode 0640): a private key must be its owner's only (chmod 600 op.key)");
    std::fs::set_permissions(env.path("op.key"), std::fs::Permissions::from_mode(0o600))?;
    let rsa = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ])
        .arg(env.path("rsa.key"))
        .output()?;
    assert!(
        rsa.status.success(),
        "{}",
        String::from_utf8_lossy(&rsa.stderr)
    );
    std::fs::set_permissions(env.path("rsa.key"), std::fs::Permissions::from_mode(0o600))?;
    let err = error_of("publisher", &["pub", "-t", task, "--sign-key", "rsa.key"])?;
    assert_eq!(err, "publisher: error: rsa.key: an RSA key, not Ed25519");
    assert_eq!(env.vhost.queue_len("h1").await?, 0, "nothing was published");

    // A trusted-keys entry that does not parse, named by its position.
    write_signing(
        &env,
        &format!("  trusted_keys: [\"{trusted}\", \"ed25519:AAAA\"]\n"),
    )?;
    let err = error_of("subscriber", &["-q", "h1"])?;
    assert_eq!(err, format!("subscriber: error: conn.yml: signing.trusted_keys[1]: \"ed25519:AAAA\": 3 bytes: an Ed25519 public key is 32"));

    // Trusted keys, but the queue is not in init.yml: it could not check what is addressed to it.
    write_signing(&env, &format!("  trusted_keys: [\"{trusted}\"]\n"))?;
    env.write(
        "init.yml",
        &common::INIT_YML.replace(
            "  - queue: h3\n    match_type: all\n    kv: { unique_key: h3, zone: eu }\n",
            "",
        ),
    )?;
    let err = error_of("subscriber", &["-q", "h3"])?;
    assert!(
        err.contains("init.yml has no header_queues entry for queue h3"),
        "{err}"
    );

    // keygen refuses to overwrite a key.
    let err = error_of("publisher", &["keygen", "--out", "op.key"])?;
    assert!(
        err.ends_with("op.key: exists: remove it first or name another file"),
        "{err}"
    );

    // The private key's content is in no log.
    let key_text = std::fs::read_to_string(env.path("op.key"))?;
    let secret_line = key_text.lines().nth(1).context("the key's base64")?;
    for entry in std::fs::read_dir(env.path("logs"))? {
        let log = std::fs::read_to_string(entry?.path())?;
        assert!(!log.contains(secret_line));
    }
    Ok(())
}

#[tokio::test]
async fn a_signed_command_cut_off_by_a_killed_subscriber_runs_again_when_redelivered() -> Result<()>
{
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let trusted = keygen(&env, "op.key")?;
    write_signing(
        &env,
        &format!("  key: op.key\n  trusted_keys: [\"{trusted}\"]\n"),
    )?;
    let mut sub = env.subscriber("h1")?;
    let marker = env.path("ended");
    let task = env.write(
        "slow.json",
        &format!(
            r#"{{"mailing_to":[{{"unique_key":"h1"}}],"cmd":{{"Bash":{{"cmd":["sleep 2; echo done >> {}"]}}}}}}"#,
            marker.display()
        ),
    )?;
    let id = env.publish(&task)?.remove(0);
    env.wait_attempts(&id, 30, |a| a.len() == 1).await?;
    sub.signal(nix::sys::signal::Signal::SIGKILL)?;
    sub.wait_exit(10)?;
    let _again = env.subscriber("h1")?;
    let attempts = env.wait_attempts(&id, 30, |a| count_ended(a) == 1).await?;
    assert_eq!(
        attempts.len(),
        2,
        "the cut-off start and the run to the end: {attempts:#?}"
    );
    let result = attempts[1]
        .result
        .as_ref()
        .context("the second run ended")?;
    assert_eq!(result.exit_code, 0, "{result:?}");
    Ok(())
}
