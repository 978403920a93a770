//! `--json`: each view as one JSON document, for jq and scripts. The field names are stable (the
//! README's "Watching and steering" lists them); text is JSON-escaped, so what commands printed
//! cannot reach a terminal as control sequences.

use chrono::SecondsFormat;
use serde_json::{json, Value};

use crate::Attempt;

/// One attempt: its history row, how it stands and, once it ended, its result and output.
pub fn attempt(a: &Attempt) -> Value {
    let h = &a.history;
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let r = a.result.as_ref();
    json!({
        "id": h.id,
        "message_id": h.message_id,
        "queue": h.queue,
        "host": h.host,
        "attempt": h.attempt,
        "status": a.status(),
        "started": time(&h.time),
        "ended": r.map(|r| time(&r.time)),
        "exit_code": r.map(|r| r.exit_code),
        "result": r.map(|r| r.summary().into_owned()),
        "stdout": r.and_then(|r| r.stdout.clone()),
        "stderr": r.and_then(|r| r.stderr.clone()),
        "mailing_to": h.mailing_to,
        "cmd": h.cmd,
        "dedupe_key": h.dedupe_key,
    })
}

/// `{"attempts": [...]}`, newest first.
pub fn attempts(attempts: &[Attempt]) -> Value {
    json!({ "attempts": attempts.iter().map(attempt).collect::<Vec<_>>() })
}

/// `{"message_id": ID, "attempts": [...]}`, oldest first.
pub fn message(id: &str, attempts: &[Attempt]) -> Value {
    json!({"message_id": id, "attempts": attempts.iter().map(attempt).collect::<Vec<_>>()})
}

/// `{"hosts": [...]}`.
pub fn hosts(found: &[super::hosts::Host]) -> Value {
    json!({ "hosts": found })
}

/// `{"queue": DLQ, "total": N, "dead_letters": [...]}`, oldest first.
pub fn dead_letters(queue: &str, found: &[super::dlq::DeadLetter], total: u32) -> Value {
    json!({ "queue": queue, "total": total, "dead_letters": found })
}
