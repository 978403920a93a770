//! `inspector dlq`: what waits in the dead-letter queue, read without taking anything or
//! reordering it (`crate::dead_letters`); the messages are marked redelivered.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::dead_letters::{origin, reason, Taken};
use crate::{Command, Conn, InitConfig, Result};

/// How much of a command is shown in its one-line summary.
const SUMMARY_CHARS: usize = 120;

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub message_id: Option<String>,
    /// The host queue it was dead-lettered from.
    pub queue: Option<String>,
    /// Why: pqx's reason (`x-pqx-error`), else the broker's (`expired`, `rejected`, ...).
    pub reason: Option<String>,
    /// When it was published, and how long ago in seconds.
    pub published: Option<String>,
    pub age_secs: Option<i64>,
    /// Its command in one line (secrets redacted), or what the body is when it is none.
    pub command: String,
}

/// The dead letters, oldest first, at most `limit` of them; and how many the queue holds.
pub async fn read(conn: &Conn, init: &InitConfig, limit: u64) -> Result<(Vec<DeadLetter>, u32)> {
    let (connection, _) = pqx::mq::connect_any(&conn.mq, "pqx inspector", 0, None).await?;
    let taken = Taken::read(&connection, &init.dead_letter_queue(), limit).await?;
    let now = Utc::now();
    let found = taken
        .deliveries
        .iter()
        .map(|d| dead_letter(d, now))
        .collect();
    let total = taken.total;
    taken.give_back().await?;
    let _ = connection.close(200, "bye".into()).await;
    Ok((found, total))
}

fn dead_letter(delivery: &lapin::message::Delivery, now: DateTime<Utc>) -> DeadLetter {
    let properties = &delivery.properties;
    let published = properties
        .timestamp()
        .and_then(|t| DateTime::<Utc>::from_timestamp(i64::try_from(t).ok()?, 0));
    DeadLetter {
        message_id: properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned()),
        queue: origin(delivery),
        reason: reason(delivery),
        published: published.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        age_secs: published.map(|t| (now - t).num_seconds()),
        command: summary(&delivery.data),
    }
}

/// A command's kind and JSON, secrets redacted, in one line; what a body that is no command is.
fn summary(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = match Command::from_json(&text) {
        Ok(command) => format!("{} {}", command.cmd.kind(), command.redacted_cmd_json()),
        Err(_) => format!("not a command: {}", text.trim()),
    };
    let mut shown: String = line.chars().take(SUMMARY_CHARS).collect();
    if line.chars().count() > SUMMARY_CHARS {
        shown.push_str("...");
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_one_redacted_line() {
        let s = summary(br#"{"mailing_to":[],"cmd":{"Sshpass":{"ip":"127.0.0.1","user":"u","pass":"hunter2","cmd":["true"]}}}"#);
        assert!(s.starts_with("Sshpass {"), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
        assert_eq!(summary(b"oops"), "not a command: oops");
        assert!(summary(&[b'x'; 500]).ends_with("..."));
    }
}
