//! What signed commands cost: signing and verifying one command in process (the CPU each takes),
//! and commands completed end to end and published in bulk with and without signing, taken in
//! turns in the same run.

use std::time::Instant;

use anyhow::{Context, Result};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use pqx_app::signing::{unseal, OperatorKey, Signed, TrustedKey};
use pqx_testkit::{DbKind, Env};

use crate::env::env;

/// Median microseconds to sign, and to verify, one command of `body` (`ops` each).
pub fn sign_and_verify_us(ops: usize) -> Result<(f64, f64)> {
    let dir = tempfile_dir()?;
    let path = dir.join("bench.key");
    let trusted = OperatorKey::generate(&path)?;
    let key = OperatorKey::read(&path)?;
    let body = serde_json::to_vec(&serde_json::json!({
        "mailing_to": [{"unique_key": "q0"}],
        "cmd": {"Bash": {"cmd": ["true"]}},
    }))?;
    let trusted: [TrustedKey; 1] = [trusted];
    let mut sign = Vec::with_capacity(ops);
    let mut verify = Vec::with_capacity(ops);
    for i in 0..ops {
        let id = format!("bench-{i}");
        let signed = Signed {
            message_id: &id,
            signed_at_ms: chrono::Utc::now().timestamp_millis(),
            signed_for: Some("q0"),
            reply_to: None,
            body: &body,
        };
        let mut headers = FieldTable::default();
        let started = Instant::now();
        key.seal(&mut headers, &signed);
        sign.push(started.elapsed().as_secs_f64() * 1e6);
        let properties = BasicProperties::default()
            .with_message_id(id.as_str().into())
            .with_headers(headers);
        let started = Instant::now();
        unseal(&trusted, &properties, &body).context("a seal that does not check out")?;
        verify.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((crate::report::median(&sign), crate::report::median(&verify)))
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("pqx-bench-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A bench environment whose publisher signs (a key from `publisher keygen`) and whose
/// subscribers trust that key.
pub async fn signed_env(db: DbKind) -> Result<Env> {
    let env = env(db, 1).await?;
    let out = env.ok("publisher", &["keygen", "--out", "bench.key"])?;
    let entry = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("- \""))
        .context("keygen's trusted-keys line")?
        .trim_end_matches('"')
        .to_owned();
    let conn = std::fs::read_to_string(env.path("conn.yml"))?;
    env.write(
        "conn.yml",
        &format!("{conn}signing:\n  key: bench.key\n  trusted_keys: [\"{entry}\"]\n"),
    )?;
    Ok(env)
}
