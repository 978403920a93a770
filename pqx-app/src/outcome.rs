//! How an attempt ended, as the records keep it and as a caller that asked for it (`reply_to`,
//! `publisher --wait`) receives it.

use chrono::{DateTime, Utc};
use pqx::exec::RunReport;
use serde::{Deserialize, Serialize};

use crate::entities::message_result;

/// The exit code recorded for a refused command.
pub const REFUSED_EXIT_CODE: i32 = 126;
/// The exit code recorded for a cancelled command.
pub const CANCELLED_EXIT_CODE: i32 = 130;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub success: bool,
    /// In the shell's convention: 124 timed out, 127 not started, 128+N killed by signal N.
    pub exit_code: i32,
    /// One line saying how it ended (the record's `result`).
    pub summary: String,
    /// The last 64 KiB of stdout and stderr.
    pub stdout: String,
    pub stderr: String,
    pub ended_at: DateTime<Utc>,
}

impl Outcome {
    /// How a run ended.
    pub fn of_run(report: &RunReport) -> Self {
        Self {
            success: report.success(),
            exit_code: report.exit_code(),
            summary: report.summary(),
            stdout: report.stdout.text(),
            stderr: report.stderr.text(),
            ended_at: report.ended_at.into(),
        }
    }

    /// A command that was not run because its `dedupe_key` already succeeded on `queue` in the
    /// attempt with history id `earlier`.
    pub fn skipped(dedupe_key: &str, queue: &str, earlier: i64) -> Self {
        Self::without_output(
            true,
            0,
            format!(
                "{}dedupe_key {dedupe_key:?} already succeeded on queue {queue} (attempt id {earlier})",
                crate::records::SKIPPED_PREFIX
            ),
        )
    }

    /// A command a subscriber that trusts keys does not run (exit code 126, as a program that
    /// may not be run).
    pub fn refused(reason: &str) -> Self {
        Self::without_output(false, REFUSED_EXIT_CODE, format!("refused: {reason}"))
    }

    /// A command an operator cancelled (`publisher cancel`) at `at`: not run when it arrived, or
    /// killed while it ran (`ran`: what it printed until then). Exit code 130, as a shell reports
    /// a command its user interrupted.
    pub fn cancelled(at: DateTime<Utc>, ran: Option<&RunReport>) -> Self {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let summary = match ran {
            Some(_) => format!(
                "{}killed: publisher cancel at {at}",
                crate::records::CANCELLED_PREFIX
            ),
            None => format!(
                "{}not run: publisher cancel at {at}",
                crate::records::CANCELLED_PREFIX
            ),
        };
        let mut outcome = Self::without_output(false, CANCELLED_EXIT_CODE, summary);
        if let Some(report) = ran {
            outcome.stdout = report.stdout.text();
            outcome.stderr = report.stderr.text();
        }
        outcome
    }

    /// A message that is not a command (exit code 127, as a program that could not start).
    pub fn rejected(reason: &str) -> Self {
        Self::without_output(false, 127, format!("failed: not started: {reason}"))
    }

    /// An attempt's outcome as it was recorded.
    pub fn from_record(result: message_result::Model) -> Self {
        Self {
            success: result.exit_code == 0,
            exit_code: result.exit_code,
            summary: result.summary().into_owned(),
            stdout: result.stdout.unwrap_or_default(),
            stderr: result.stderr.unwrap_or_default(),
            ended_at: result.time,
        }
    }

    fn without_output(success: bool, exit_code: i32, summary: String) -> Self {
        Self {
            success,
            exit_code,
            summary,
            stdout: String::new(),
            stderr: String::new(),
            ended_at: Utc::now(),
        }
    }
}

/// The final result of a command on one queue, as JSON on the wire to `reply_to`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reply {
    pub message_id: Option<String>,
    pub queue: String,
    pub host: String,
    pub attempt: u32,
    pub success: bool,
    pub exit_code: i32,
    pub result: String,
    pub stdout: String,
    pub stderr: String,
}

impl Reply {
    /// The reply for attempt `attempt` of `message_id` on `queue` of `host` that ended as `outcome`.
    pub fn new(
        message_id: Option<&str>,
        queue: &str,
        host: &str,
        attempt: u32,
        outcome: &Outcome,
    ) -> Self {
        Self {
            message_id: message_id.map(str::to_owned),
            queue: queue.to_owned(),
            host: host.to_owned(),
            attempt,
            success: outcome.success,
            exit_code: outcome.exit_code,
            result: outcome.summary.clone(),
            stdout: outcome.stdout.clone(),
            stderr: outcome.stderr.clone(),
        }
    }
}
