//! What a subscriber that trusts keys (conn.yml `signing.trusted_keys`) checks before it runs a
//! command. A command is refused (dead-lettered with the reason, logged, recorded as refused, never
//! run) unless:
//!
//! - one of the trusted keys signed it, and nothing it signed changed since (`crate::signing`);
//! - it was signed for this queue, or, sent through the headers exchange, its signed `mailing_to`
//!   reaches this queue by the pairs init.yml binds it with (an empty one reaches every queue), and
//!   the routing headers it carries are those of one of its entries: a signed command taken from
//!   one host's queue cannot be made to run on another's;
//! - it was signed no later than a minute from now by this machine's clock;
//! - it is fresh: signed within `signing.max_age`, unless it is a retry of an attempt recorded
//!   here (a retry waits its turn) or a redelivery of one that started here;
//! - it has not run here before: no attempt of its message id succeeded on this queue, and none of
//!   the same or a later attempt number was recorded (a redelivery of an attempt that was cut off
//!   runs again, as without signing).
//!
//! The first three need only the message (checked when it is decoded); the last two ask the
//! records.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::types::AMQPValue;
use lapin::BasicProperties;
use pqx::mq::{HeadersBinding, RETRY_QUEUE_HEADER};

use super::incoming::Envelope;
use crate::signing::{unseal, Seal, SealError, TrustedKey};
use crate::{Command, Signing};

/// How far in the future a signature may be dated: clocks differ by that much between machines.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The keys a subscriber trusts, and what it checks with them.
#[derive(Debug, Clone)]
pub struct Trust {
    keys: Vec<TrustedKey>,
    max_age: Duration,
    /// This queue and how it is bound: what a signed `mailing_to` must reach.
    binding: HeadersBinding,
}

/// Why a command is not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Seal(SealError),
    #[error("signed for queue {0}, not for {1}")]
    ForAnotherQueue(String, String),
    #[error("its signed mailing_to does not reach queue {0}")]
    NotAddressed(String),
    #[error("its routing headers are not those of its signed mailing_to")]
    HeadersChanged,
    #[error(
        "signed {0} in the future: this machine's clock and the publisher's differ by that much"
    )]
    FromTheFuture(String),
    #[error("signed {age} ago, longer ago than signing.max_age ({max}), and not a retry of an attempt recorded here")]
    TooOld { age: String, max: String },
    #[error("already succeeded on queue {0} (a replay)")]
    Completed(String),
    #[error("attempt {attempt} already ran on queue {queue} (a replay)")]
    Replayed { attempt: u32, queue: String },
}

/// One recorded attempt of a message on this queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub attempt: u32,
    /// Its exit code, once it ended.
    pub exit_code: Option<i32>,
}

impl Trust {
    /// The trust of a subscriber of `binding`'s queue with `signing`; `None` without trusted keys.
    pub fn new(signing: &Signing, binding: HeadersBinding) -> Option<Self> {
        (!signing.trusted.is_empty()).then(|| Self {
            keys: signing.trusted.clone(),
            max_age: signing.max_age,
            binding,
        })
    }

    /// Checks the signature of a message (`properties`, `body`), before its body is read as a
    /// command.
    pub fn unseal(&self, properties: &BasicProperties, body: &[u8]) -> Result<Seal, Refusal> {
        let seal = unseal(&self.keys, properties, body).map_err(Refusal::Seal)?;
        let queue = &self.binding.queue;
        match &seal.signed_for {
            Some(other) if other != queue => Err(Refusal::ForAnotherQueue(
                pqx_util::escape_control(other).into_owned(),
                queue.clone(),
            )),
            _ => Ok(seal),
        }
    }

    /// Checks what a signed `command` says against this queue and the clock: addressed here, the
    /// headers its own, not signed in the future.
    pub fn check(
        &self,
        command: &Command,
        properties: &BasicProperties,
        seal: &Seal,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let queue = &self.binding.queue;
        let reached = command.mailing_to.is_empty()
            || command.mailing_to.iter().any(|e| self.binding.matches(e));
        if !reached {
            return Err(Refusal::NotAddressed(queue.clone()));
        }
        let headers = routing_headers(properties).ok_or(Refusal::HeadersChanged)?;
        let signed_pairs = match command.mailing_to.is_empty() {
            true => std::slice::from_ref(&self.binding.pairs),
            false => command.mailing_to.as_slice(),
        };
        if !headers.is_empty() && !signed_pairs.contains(&headers) {
            return Err(Refusal::HeadersChanged);
        }
        let ahead = seal.signed_at_ms.saturating_sub(now_ms);
        if ahead > millis(CLOCK_SKEW) {
            return Err(Refusal::FromTheFuture(shown_ms(ahead)));
        }
        Ok(())
    }

    /// Whether `seal` is within `max_age`: then whether the message ran here before is checked
    /// as its start is recorded (`Store::record_start_unless_ran`), with no look-up before.
    pub fn is_fresh(&self, seal: &Seal, now_ms: i64) -> bool {
        now_ms.saturating_sub(seal.signed_at_ms) <= millis(self.max_age)
    }

    /// Checks a message against what the records hold of its message id on this queue: not run
    /// before, and fresh unless a retry or redelivery of an attempt recorded here.
    pub fn check_records(
        &self,
        envelope: &Envelope,
        seal: &Seal,
        recorded: &[Recorded],
        now_ms: i64,
    ) -> Result<(), Refusal> {
        let queue = &self.binding.queue;
        let attempt = envelope.attempt;
        if recorded.iter().any(|r| r.exit_code == Some(0)) {
            return Err(Refusal::Completed(queue.clone()));
        }
        let cut_off_here = |r: &Recorded| r.attempt == attempt && r.exit_code.is_none();
        let replayed = recorded.iter().any(|r| {
            r.attempt > attempt
                || (r.attempt == attempt && !(envelope.redelivered && cut_off_here(r)))
        });
        if replayed {
            return Err(Refusal::Replayed {
                attempt,
                queue: queue.clone(),
            });
        }
        let age = now_ms.saturating_sub(seal.signed_at_ms);
        if age <= millis(self.max_age) {
            return Ok(());
        }
        let retry_of_recorded = recorded
            .iter()
            .any(|r| r.attempt + 1 == attempt && r.exit_code.is_some());
        let redelivered_here = envelope.redelivered && recorded.iter().any(cut_off_here);
        if retry_of_recorded || redelivered_here {
            return Ok(());
        }
        Err(Refusal::TooOld {
            age: shown_ms(age),
            max: humantime::format_duration(self.max_age).to_string(),
        })
    }
}

/// The routing pairs a message carries: its headers but pqx's own (`x-` ones, and the header a
/// retry through a delayed-message exchange is routed by); `None` when one is not a string.
fn routing_headers(properties: &BasicProperties) -> Option<BTreeMap<String, String>> {
    let Some(headers) = properties.headers() else {
        return Some(BTreeMap::new());
    };
    let mut pairs = BTreeMap::new();
    for (key, value) in headers.inner() {
        let key = key.as_str();
        if key.starts_with("x-") || key == RETRY_QUEUE_HEADER {
            continue;
        }
        let value = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_owned(),
            _ => return None,
        };
        pairs.insert(key.to_owned(), value);
    }
    Some(pairs)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A span of milliseconds as people read it (whole seconds once it is a few seconds long).
fn shown_ms(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or_default();
    let rounded = if ms >= 10_000 { ms / 1000 * 1000 } else { ms };
    humantime::format_duration(Duration::from_millis(rounded)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldTable;
    use pqx::mq::MatchType;

    fn trust() -> Trust {
        let pairs = BTreeMap::from([
            ("unique_key".to_owned(), "h1".to_owned()),
            ("common_key".to_owned(), "dev".to_owned()),
        ]);
        Trust {
            keys: Vec::new(),
            max_age: Duration::from_secs(3600),
            binding: HeadersBinding::new("h1", MatchType::Any, pairs),
        }
    }

    fn command(mailing_to: &str) -> Command {
        Command::from_json(&format!(
            r#"{{"mailing_to":{mailing_to},"cmd":{{"Bash":{{"cmd":["true"]}}}}}}"#
        ))
        .unwrap()
    }

    fn with_headers(pairs: &[(&str, &str)]) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (k, v) in pairs {
            headers.insert((*k).into(), AMQPValue::LongString((*v).into()));
        }
        headers.insert("x-pqx-attempt".into(), AMQPValue::LongLongInt(2));
        BasicProperties::default().with_headers(headers)
    }

    fn seal_at(signed_at_ms: i64) -> Seal {
        Seal {
            key: "k".into(),
            signed_at_ms,
            signed_for: None,
        }
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_command_must_be_addressed_here_with_its_own_headers() {
        let t = trust();
        let seal = seal_at(NOW);
        let to_h1 = command(r#"[{"unique_key":"h1"}]"#);
        let ok = |c: &Command, p: &BasicProperties| t.check(c, p, &seal, NOW);
        assert_eq!(ok(&to_h1, &with_headers(&[("unique_key", "h1")])), Ok(()));
        // A retry through the plugin's exchange carries no routing pairs.
        assert_eq!(ok(&to_h1, &with_headers(&[])), Ok(()));
        let to_h2 = command(r#"[{"unique_key":"h2"}]"#);
        assert_eq!(
            ok(&to_h2, &with_headers(&[("unique_key", "h2")])),
            Err(Refusal::NotAddressed("h1".into()))
        );
        // mailing_to reaches h1 but the headers were changed to reach more.
        assert_eq!(
            ok(&to_h1, &with_headers(&[("common_key", "dev")])),
            Err(Refusal::HeadersChanged)
        );
        // A broadcast carries this queue's own pairs.
        let all = command("[]");
        let own = with_headers(&[("unique_key", "h1"), ("common_key", "dev")]);
        assert_eq!(ok(&all, &own), Ok(()));
        assert_eq!(
            ok(&all, &with_headers(&[("unique_key", "h1")])),
            Err(Refusal::HeadersChanged)
        );
    }

    #[test]
    fn a_clock_far_off_is_named_with_the_offset() {
        let t = trust();
        let c = command(r#"[{"unique_key":"h1"}]"#);
        let p = with_headers(&[("unique_key", "h1")]);
        assert_eq!(t.check(&c, &p, &seal_at(NOW + 59_000), NOW), Ok(()));
        assert_eq!(
            t.check(&c, &p, &seal_at(NOW + 3_600_000), NOW),
            Err(Refusal::FromTheFuture("1h".into()))
        );
    }

    fn envelope(attempt: u32, redelivered: bool) -> Envelope {
        Envelope {
            message_id: Some("m".into()),
            attempt,
            redelivered,
            published_again: false,
            reply_to: None,
            correlation_id: None,
        }
    }

    fn ran(attempt: u32, exit_code: Option<i32>) -> Recorded {
        Recorded { attempt, exit_code }
    }

    #[test]
    fn what_ran_here_does_not_run_again_but_a_cut_off_attempt_does() {
        let t = trust();
        let fresh = seal_at(NOW - 1000);
        let check = |e: Envelope, r: &[Recorded]| t.check_records(&e, &fresh, r, NOW);
        assert_eq!(check(envelope(1, false), &[]), Ok(()));
        assert_eq!(
            check(envelope(1, false), &[ran(1, Some(0))]),
            Err(Refusal::Completed("h1".into()))
        );
        let replay = Err(Refusal::Replayed {
            attempt: 1,
            queue: "h1".into(),
        });
        assert_eq!(check(envelope(1, false), &[ran(1, Some(3))]), replay);
        assert_eq!(check(envelope(1, false), &[ran(1, None)]), replay);
        assert_eq!(check(envelope(1, true), &[ran(1, None)]), Ok(()));
        assert_eq!(
            check(envelope(1, false), &[ran(1, Some(3)), ran(2, Some(3))]),
            replay
        );
        assert_eq!(check(envelope(2, false), &[ran(1, Some(3))]), Ok(()));
    }

    #[test]
    fn an_old_signature_is_taken_only_for_a_retry_or_redelivery_of_what_ran_here() {
        let t = trust();
        let old = seal_at(NOW - 2 * 3_600_000);
        let check = |e: Envelope, r: &[Recorded]| t.check_records(&e, &old, r, NOW);
        assert_eq!(
            check(envelope(1, false), &[]),
            Err(Refusal::TooOld {
                age: "2h".into(),
                max: "1h".into()
            })
        );
        assert_eq!(check(envelope(2, false), &[ran(1, Some(1))]), Ok(()));
        assert!(check(envelope(3, false), &[ran(1, Some(1))]).is_err());
        assert_eq!(check(envelope(1, true), &[ran(1, None)]), Ok(()));
    }
}
