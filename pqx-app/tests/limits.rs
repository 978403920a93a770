//! No panic reachable from input, and every limit named where it is met: names of the lengths the
//! broker takes (and those pqx derives from them), numbers at and beyond every option's range, TTLs
//! the broker takes, and task and config files of any size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::Result;
use common::{env, DbKind, Env, INIT_YML};

/// The one error line of a run that must fail with `code`; never a panic (exit code 101).
fn refused(out: &Output, binary: &str, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    if code == 2 {
        return stderr; // clap's usage error
    }
    let prefix = format!("{binary}: error: ");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
    assert_eq!(lines.len(), 1, "one error line: {stderr}");
    lines[0][prefix.len()..].to_owned()
}

fn init_with_queue(env: &Env, queue: &str) -> Result<()> {
    let yml = format!(
        "header_exchange: pqx.test\ndead_letter_queue: pqx.test.dlq\nheader_queues:\n  - {{queue: \"{queue}\", kv: {{unique_key: h1}}}}\n"
    );
    env.write("init.yml", &yml).map(|_| ())
}

#[tokio::test]
async fn names_are_checked_against_what_the_broker_takes() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    // Host queues: up to 238 bytes (their wait queues add .retry.<10 digits>).
    for (len, ok) in [
        (238, true),
        (239, false),
        (243, false),
        (255, false),
        (256, false),
        (1000, false),
    ] {
        init_with_queue(&env, &"q".repeat(len))?;
        let out = env.run("initiator", &["-o", "init"])?;
        if ok {
            assert!(
                out.status.success(),
                "{len}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let line = refused(&out, "initiator", 1);
            assert!(
                line.ends_with(&format!(
                    "header_queues[0].queue: {}... is {len} bytes long: at most 238",
                    "q".repeat(40)
                )),
                "{len}: {line}"
            );
        }
    }
    // Exchanges, and the names derived from them.
    for (yml, field) in [
        (
            format!("header_exchange: {}\n", "x".repeat(256)),
            "header_exchange",
        ),
        (
            format!("header_exchange: {}\n", "x".repeat(250)),
            "delayed_exchange",
        ),
        (
            format!(
                "header_exchange: x\ndead_letter_queue: {}\n",
                "d".repeat(256)
            ),
            "dead_letter_queue",
        ),
        (
            "header_exchange: \"x\\u001b[2J\"\n".to_owned(),
            "header_exchange",
        ),
    ] {
        env.write("init.yml", &yml)?;
        let line = refused(&env.run("initiator", &["-o", "decl_x"])?, "initiator", 1);
        assert!(line.contains(&format!("init.yml: {field}: ")), "{line}");
    }
    // The queue a subscriber is told to consume.
    env.write("init.yml", INIT_YML)?;
    for len in [239, 243, 255, 300] {
        let out = env.run("subscriber", &["-q", &"q".repeat(len)])?;
        let usage = refused(&out, "subscriber", 2);
        assert!(
            usage.contains(&format!("is {len} bytes long: at most 238")),
            "{usage}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn task_names_and_values_are_checked_before_publishing() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let task = |mailing_to: serde_json::Value, config: serde_json::Value| {
        serde_json::json!({"mailing_to": mailing_to, "config": config, "cmd": {"Bash": {"cmd": ["true"]}}}).to_string()
    };
    let max_expiration = pqx::mq::MAX_TTL_MS / 1000;
    let cases = [
        (task(serde_json::json!([{"k".repeat(256): "v"}]), serde_json::json!({})), "mailing_to[0]: a key of 256 bytes is too long: at most 255"),
        (task(serde_json::json!([{"unique_key": "h1", "pad": "v".repeat(16_200)}]), serde_json::json!({})), "mailing_to[0]: its pairs take 16231 bytes as message headers: at most 8192 fit (half of the 16 KiB frames pqx uses)"),
        (task(serde_json::json!([{"unique_key": "h1", "a": "v".repeat(4000), "b": "v".repeat(4200)}]), serde_json::json!({})), "as message headers: at most 8192 fit"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"reply_to": "r".repeat(256)})), "config.reply_to: 256 bytes is too long: at most 255"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"dedupe_key": "k".repeat(300)})), "config.dedupe_key: 300 bytes is too long: at most 255"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"waiting_timeout": max_expiration + 1})), "config.waiting_timeout: 4294968 is out of range: expected 1 to 4294967 seconds"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"waiting_timeout": u32::MAX})), "config.waiting_timeout: 4294967295 is out of range"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"retry": 256})), "config.retry: invalid value: integer `256`, expected u8"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"poke": 65536})), "config.poke: invalid value: integer `65536`, expected u16"),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"max_poke": 4294967296u64})), "config.max_poke: invalid value"),
        (
            r#"{"mailing_to":[{"unique_key":"h1"}],"config":{"backoff":1e309},"cmd":{"Bash":{"cmd":["true"]}}}"#.to_owned(),
            "number out of range",
        ),
        (task(serde_json::json!([{"unique_key": "h1"}]), serde_json::json!({"priority": -1})), "config.priority: invalid value: integer `-1`, expected u8"),
    ];
    for (json, expected) in cases {
        let path = env.write("t.json", &json)?;
        let line = refused(
            &env.run("publisher", &["-o", "pub", "-t", path.to_str().unwrap()])?,
            "publisher",
            1,
        );
        assert!(line.contains(expected), "{expected}: {line}");
    }
    assert_eq!(env.vhost.queue_len("h1").await?, 0, "nothing was published");
    // The largest values are taken, by pqx and by the broker.
    let largest = task(
        serde_json::json!([{"unique_key": "h1"}]),
        serde_json::json!({"retry": 255, "poke": 65535, "max_poke": u32::MAX, "backoff": 100,
            "waiting_timeout": max_expiration, "consuming_timeout": u32::MAX, "priority": 9}),
    );
    env.publish(&env.write("largest.json", &largest)?)?;
    assert_eq!(env.vhost.queue_len("h1").await?, 1);
    Ok(())
}

#[tokio::test]
async fn ttls_are_checked_and_the_rectifier_hint_is_given_only_for_differing_arguments(
) -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    let max = pqx::mq::MAX_TTL_MS;
    for ttl in [(max + 1).to_string(), "50d".to_owned()] {
        env.write(
            "init.yml",
            &INIT_YML.replace("dead_message_ttl: 10m", &format!("dead_message_ttl: {ttl}")),
        )?;
        let line = refused(&env.run("initiator", &["-o", "decl_dlx"])?, "initiator", 1);
        assert!(line.contains(&format!("dead_message_ttl: {ttl} is out of range: at most {max} ms (49.7 days, the broker's longest TTL)")), "{line}");
        assert!(!line.contains("rectifier"), "{line}");
    }
    env.write(
        "init.yml",
        &INIT_YML.replace("dead_message_ttl: 10m", &format!("dead_message_ttl: {max}")),
    )?;
    env.ok("initiator", &["-o", "decl_dlx"])?;
    Ok(())
}

/// A numeric option: the binary and the arguments it needs, and values it takes and refuses.
struct Numeric<'a> {
    binary: &'a str,
    base: &'a [&'a str],
    flag: &'a str,
    ok: &'a [&'a str],
    out_of_range: &'a [&'a str],
}

impl<'a> Numeric<'a> {
    fn new(
        binary: &'a str,
        base: &'a [&'a str],
        flag: &'a str,
        ok: &'a [&'a str],
        out_of_range: &'a [&'a str],
    ) -> Self {
        Self {
            binary,
            base,
            flag,
            ok,
            out_of_range,
        }
    }
}

#[tokio::test]
async fn every_numeric_option_at_and_beyond_its_bounds() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let task = env.write(
        "t.json",
        r#"{"mailing_to":[{"unique_key":"h1"}],"cmd":{"Bash":{"cmd":["true"]}}}"#,
    )?;
    let task = task.to_str().unwrap();
    let beyond = [
        "-1",
        "abc",
        "18446744073709551616",
        "9223372036854775808",
        "1e3",
        "",
    ];
    let publish = ["-o", "pub", "-t", task];
    let options = [
        Numeric::new(
            "inspector",
            &["-o", "hist"],
            "--limit",
            &["1", "1000000"],
            &["0", "1000001"],
        ),
        Numeric::new(
            "subscriber",
            &["-q", "h1"],
            "--grace-period",
            &[],
            &["604801"],
        ),
        Numeric::new(
            "subscriber",
            &["-q", "h1"],
            "--concurrency",
            &[],
            &["0", "257"],
        ),
        Numeric::new(
            "publisher",
            &publish,
            "--retry-for",
            &["0", "604800"],
            &["604801"],
        ),
        Numeric::new("publisher", &publish, "--wait", &[], &["0", "604801"]),
    ];
    for Numeric {
        binary,
        base,
        flag,
        ok,
        out_of_range,
    } in options
    {
        for value in ok {
            let mut args = base.to_vec();
            args.extend([flag, value]);
            let out = env.run(binary, &args)?;
            assert!(
                out.status.success(),
                "{binary} {flag} {value}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for value in out_of_range.iter().chain(&beyond) {
            let mut args = base.to_vec();
            let given = format!("{flag}={value}");
            args.push(&given);
            let usage = refused(&env.run(binary, &args)?, binary, 2);
            assert!(usage.contains(flag), "{binary} {flag} {value}: {usage}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn endless_and_huge_inputs_are_refused_with_the_limit_named() -> Result<()> {
    let env = env(DbKind::Sqlite).await?;
    env.init()?;
    let started = Instant::now();
    for args in [
        &["-o", "pub", "-t", "/dev/zero"][..],
        &["-o", "pub", "--lines", "-t", "/dev/zero"],
    ] {
        let line = refused(&env.run("publisher", args)?, "publisher", 1);
        assert_eq!(
            line,
            "/dev/zero: cannot read: larger than 128 MiB (not read)"
        );
    }
    // From standard input too.
    let out = env
        .command("publisher")
        .args(["-o", "pub", "-t", "-"])
        .stdin(std::fs::File::open("/dev/zero")?)
        .output()?;
    assert_eq!(
        refused(&out, "publisher", 1),
        "-: cannot read: larger than 128 MiB (not read)"
    );
    for config in ["--conn", "--init"] {
        let line = refused(
            &env.run("initiator", &[config, "/dev/zero", "-o", "init"])?,
            "initiator",
            1,
        );
        assert_eq!(line, "cannot read /dev/zero: larger than 16 MiB (not read)");
    }
    let line = refused(
        &env.run("initiator", &["--init", "/dev/urandom", "-o", "init"])?,
        "initiator",
        1,
    );
    assert!(line.starts_with("cannot read /dev/urandom: "), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded reads are quick"
    );
    Ok(())
}
