//! `inspector show ID`: every attempt of one message on every queue, oldest first, with what each
//! printed. `--follow` waits for the attempts still running to end (asking the records every half
//! second), prints them as they end, and exits with the status of the last one to end, as
//! `st2 execution tail` does; on a message whose attempts all ended it prints them and exits so
//! at once. Output is shown when an attempt ends: it is not streamed line by line yet.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::SecondsFormat;
use pqx_util::{escape_control, escape_control_lines};

use crate::{Attempt, Error, Result, Status, Store, Wanted};

/// How often `--follow` asks the records.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// The attempts of message `id`, oldest first; an error when none is recorded.
pub async fn attempts_of(store: &Store, id: &str) -> Result<Vec<Attempt>> {
    let wanted = Wanted {
        message_id: Some(id.to_owned()),
        ..Wanted::default()
    };
    let mut found = store.find(&wanted, 100_000).await?;
    if found.is_empty() {
        return Err(Error::NoSuchMessage {
            message_id: id.to_owned(),
            url: store.url().to_owned(),
        });
    }
    found.reverse();
    Ok(found)
}

/// One attempt as text: a line saying where and how it went, then its output.
pub fn text(a: &Attempt) -> String {
    let h = &a.history;
    let time = |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let how = match &a.result {
        Some(r) => format!("ended {}: {}", time(&r.time), r.summary()),
        None => "no result yet: running, or its subscriber was stopped before it ended".into(),
    };
    let mut out = format!(
        "attempt {} on queue {} (host {}), started {}, {how}\n",
        h.attempt.unwrap_or(1),
        h.queue.as_deref().unwrap_or("?"),
        h.host.as_deref().unwrap_or("?"),
        time(&h.time),
    );
    out = escape_control(&out).into_owned();
    if let Some(r) = &a.result {
        for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            let text = text.as_deref().unwrap_or_default();
            if text.is_empty() {
                continue;
            }
            out.push_str(&format!("--- {name}\n{}", escape_control_lines(text)));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

/// Prints the attempts of `id` that ended, then each running one as it ends; returns the exit
/// status of the last attempt to end (0 for a success or a skip, its exit code else, 1 when that
/// does not fit).
pub async fn follow(store: &Store, id: &str) -> Result<u8> {
    let mut shown = BTreeSet::new();
    loop {
        let attempts = attempts_of(store, id).await?;
        for a in attempts.iter().filter(|a| a.result.is_some()) {
            if shown.insert(a.history.id) {
                print!("{}", text(a));
            }
        }
        let running = attempts.iter().any(|a| a.status() == Status::Running);
        // A later attempt is the one that counts: one cut off earlier is not waited for.
        let last = attempts.last();
        if !running || last.is_some_and(|a| a.result.is_some()) {
            let code = last
                .and_then(|a| a.result.as_ref())
                .map_or(0, |r| r.exit_code);
            return Ok(u8::try_from(code).unwrap_or(1));
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}
