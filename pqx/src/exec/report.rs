//! How a run ended, as the caller of [`crate::exec::execute`] gets it: the end (exit code, signal,
//! timeout, not started, HTTP status, interrupted), when it started and ended, the tails of its
//! output, and the one-line summary and shell-style exit code the records keep.

use std::time::{Duration, SystemTime};

use super::output::Tail;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout = 0,
    Stderr = 1,
}

impl OutputStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The process exited with this code.
    Exited(i32),
    /// The process was killed by this signal (not by pqx).
    Signaled(i32),
    /// The consuming timeout passed; the process group was killed.
    TimedOut(Duration),
    /// The process could not be started (or, for HTTP, the request could not be sent).
    NotStarted(String),
    /// An HTTP request got this response status.
    Http { status: u16, reason: String },
    /// The run was stopped before its end because the subscriber was stopping.
    Interrupted,
}

/// What a run did: how it ended, when, and the end of its output.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub end: RunEnd,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
    /// The last part of stdout (for HTTP, of the response body).
    pub stdout: Tail,
    /// The last part of stderr.
    pub stderr: Tail,
}

impl RunReport {
    /// The report of a run that started at `started_at` and ended now, as `end`.
    pub fn ended(end: RunEnd, started_at: SystemTime, stdout: Tail, stderr: Tail) -> Self {
        Self {
            end,
            started_at,
            ended_at: SystemTime::now(),
            stdout,
            stderr,
        }
    }

    /// The report of a command that could not be started, for `why`.
    pub fn not_started(why: impl Into<String>) -> Self {
        let now = SystemTime::now();
        Self {
            end: RunEnd::NotStarted(why.into()),
            started_at: now,
            ended_at: now,
            stdout: Tail::default(),
            stderr: Tail::default(),
        }
    }

    /// Whether the command succeeded: exit code 0, or an HTTP 2xx status.
    pub fn success(&self) -> bool {
        match &self.end {
            RunEnd::Exited(code) => *code == 0,
            RunEnd::Http { status, .. } => (200..300).contains(status),
            _ => false,
        }
    }

    /// An exit code in the shell's convention: the code, 128+signal, 124 for a timeout and 127 for a
    /// program that could not be started.
    pub fn exit_code(&self) -> i32 {
        match &self.end {
            RunEnd::Exited(code) => *code,
            RunEnd::Signaled(signal) => 128 + signal,
            RunEnd::TimedOut(_) => 124,
            RunEnd::NotStarted(_) => 127,
            RunEnd::Interrupted => 130,
            RunEnd::Http { status, .. } if (200..300).contains(status) => 0,
            RunEnd::Http { status, .. } => i32::from(*status),
        }
    }

    /// One line saying how the run ended, for the record; a failure ends with the last line the
    /// command wrote to stderr, which usually says why.
    pub fn summary(&self) -> String {
        let summary = match &self.end {
            RunEnd::Exited(0) => return "succeeded".into(),
            RunEnd::Http { status, reason } if self.success() => {
                return format!("succeeded: HTTP {status} {reason}")
            }
            RunEnd::Http { status, reason } => format!("failed: HTTP {status} {reason}"),
            RunEnd::Exited(code) => format!("failed: exit code {code}"),
            RunEnd::Signaled(signal) => format!("failed: killed by signal {signal}"),
            RunEnd::TimedOut(limit) => format!(
                "failed: timed out after {}s (consuming_timeout), process tree killed",
                limit.as_secs()
            ),
            RunEnd::NotStarted(why) => return format!("failed: not started: {why}"),
            RunEnd::Interrupted => {
                return "failed: interrupted, the subscriber was stopping; process tree killed"
                    .into()
            }
        };
        match self.stderr.last_line() {
            Some(line) => format!("{summary}: {}", shorten(&line, 200)),
            None => summary,
        }
    }
}

/// `text` cut to `max` characters, with `...` where it was cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(end: RunEnd, stderr: &[&str]) -> RunReport {
        let mut tail = Tail::default();
        for line in stderr {
            tail.push_line(line.as_bytes());
        }
        RunReport::ended(end, SystemTime::now(), Tail::default(), tail)
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let cases = [
            (RunEnd::Exited(3), 3, false),
            (RunEnd::Exited(0), 0, true),
            (RunEnd::Signaled(9), 137, false),
            (RunEnd::TimedOut(Duration::from_secs(1)), 124, false),
            (RunEnd::NotStarted("x".into()), 127, false),
            (RunEnd::Interrupted, 130, false),
            (
                RunEnd::Http {
                    status: 204,
                    reason: "No Content".into(),
                },
                0,
                true,
            ),
            (
                RunEnd::Http {
                    status: 503,
                    reason: "Service Unavailable".into(),
                },
                503,
                false,
            ),
        ];
        for (end, code, success) in cases {
            let r = report(end.clone(), &[]);
            assert_eq!((r.exit_code(), r.success()), (code, success), "{end:?}");
        }
    }

    #[test]
    fn summary_ends_with_the_last_error_line_cut_short() {
        let long = "e".repeat(300);
        let r = report(RunEnd::Exited(2), &["first", &long, ""]);
        assert_eq!(
            r.summary(),
            format!("failed: exit code 2: {}...", "e".repeat(200))
        );
        let r = report(RunEnd::NotStarted("no such program".into()), &["ignored"]);
        assert_eq!(r.summary(), "failed: not started: no such program");
        assert_eq!(
            report(RunEnd::Exited(0), &["warning"]).summary(),
            "succeeded"
        );
    }
}
