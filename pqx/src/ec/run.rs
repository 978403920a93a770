//! Running one process: stdout and stderr are read line by line as they come (and handed to the
//! caller, which logs them), the consuming timeout kills the whole process group so that children
//! the command started die with it, and the report says how the run ended.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use super::ProcessSpec;

/// How long output is still read after the process ended, for lines a child that outlived it may
/// still hold in the pipe.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
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
    /// The process could not be started.
    NotStarted(String),
}

/// What a run did: how it ended and when.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub end: RunEnd,
    pub started_at: SystemTime,
    pub ended_at: SystemTime,
}

impl RunReport {
    /// The report of a command that could not be started, for `why`.
    pub fn not_started(why: impl Into<String>) -> Self {
        let now = SystemTime::now();
        Self {
            end: RunEnd::NotStarted(why.into()),
            started_at: now,
            ended_at: now,
        }
    }

    /// Whether the command succeeded (exit code 0).
    pub fn success(&self) -> bool {
        self.end == RunEnd::Exited(0)
    }

    /// An exit code in the shell's convention: the code, 128+signal, 124 for a timeout and 127 for a
    /// program that could not be started.
    pub fn exit_code(&self) -> i32 {
        match &self.end {
            RunEnd::Exited(code) => *code,
            RunEnd::Signaled(signal) => 128 + signal,
            RunEnd::TimedOut(_) => 124,
            RunEnd::NotStarted(_) => 127,
        }
    }

    /// One line saying how the run ended, for the record.
    pub fn summary(&self) -> String {
        match &self.end {
            RunEnd::Exited(0) => "succeeded".into(),
            RunEnd::Exited(code) => format!("failed: exit code {code}"),
            RunEnd::Signaled(signal) => format!("failed: killed by signal {signal}"),
            RunEnd::TimedOut(limit) => format!(
                "failed: timed out after {}s (consuming_timeout), process group killed",
                limit.as_secs()
            ),
            RunEnd::NotStarted(why) => format!("failed: not started: {why}"),
        }
    }
}

/// Runs `spec` to its end or until `timeout`, calling `on_line` for each output line.
///
/// The process gets its own process group and no stdin. Output that is not UTF-8 is passed on with
/// replacement characters. This never fails: a process that cannot start is a [`RunEnd::NotStarted`].
pub async fn run(
    spec: &ProcessSpec,
    timeout: Option<Duration>,
    mut on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let started_at = SystemTime::now();
    let report = |end| RunReport {
        end,
        started_at,
        ended_at: SystemTime::now(),
    };
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.dir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let place = match &spec.dir {
                Some(dir) => format!(" in {}", dir.display()),
                None => String::new(),
            };
            return report(RunEnd::NotStarted(format!("{}{place}: {e}", spec.program)));
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    let (tx, mut rx) = mpsc::channel::<(OutputStream, String)>(256);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(
            out,
            OutputStream::Stdout,
            tx.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(
            err,
            OutputStream::Stderr,
            tx.clone(),
        )));
    }
    drop(tx);

    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut output_open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if output_open => match line {
                Some((stream, line)) => on_line(stream, &line),
                None => output_open = false,
            },
            status = child.wait() => break status,
            _ = sleep_until(deadline) => {
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                let _ = child.wait().await;
                drain(&mut rx, &mut on_line).await;
                abort(readers);
                return report(RunEnd::TimedOut(timeout.unwrap_or_default()));
            }
        }
    };
    drain(&mut rx, &mut on_line).await;
    abort(readers);
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => report(RunEnd::Exited(code)),
            (None, Some(signal)) => report(RunEnd::Signaled(signal)),
            (None, None) => report(RunEnd::NotStarted("no exit status".into())),
        },
        Err(e) => report(RunEnd::NotStarted(format!(
            "waiting for {}: {e}",
            spec.program
        ))),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Passes on the lines still buffered, waiting a little for writers that outlived the process.
async fn drain(
    rx: &mut mpsc::Receiver<(OutputStream, String)>,
    on_line: &mut impl FnMut(OutputStream, &str),
) {
    let until = tokio::time::Instant::now() + DRAIN_GRACE;
    while let Ok(Some((stream, line))) = tokio::time::timeout_at(until, rx.recv()).await {
        on_line(stream, &line);
    }
}

fn abort(readers: Vec<tokio::task::JoinHandle<()>>) {
    for reader in readers {
        reader.abort();
    }
}

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    tx: mpsc::Sender<(OutputStream, String)>,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                let line = String::from_utf8_lossy(&buf).into_owned();
                if tx.send((stream, line)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bash(script: &str) -> ProcessSpec {
        ProcessSpec::new("bash").with_args(["-c", script])
    }

    #[tokio::test]
    async fn streams_lines_and_exit_code() {
        let mut lines = Vec::new();
        let report = run(&bash("echo out; echo err >&2; exit 3"), None, |s, l| {
            lines.push((s, l.to_owned()))
        })
        .await;
        assert_eq!(report.end, RunEnd::Exited(3));
        assert_eq!(report.summary(), "failed: exit code 3");
        assert!(lines.contains(&(OutputStream::Stdout, "out".into())));
        assert!(lines.contains(&(OutputStream::Stderr, "err".into())));
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        let dir = std::env::temp_dir().join(format!("pqx-run-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let report = run(&bash(&script), Some(Duration::from_millis(500)), |_, _| {}).await;
        assert_eq!(report.end, RunEnd::TimedOut(Duration::from_millis(500)));
        assert_eq!(report.exit_code(), 124);
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background child was in the group: it must be gone (reaped by init or a zombie).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let gone = state.is_empty() || state.split_whitespace().nth(2) == Some("Z");
            if gone {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "child {pid} still alive: {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let report = run(&ProcessSpec::new("pqx-no-such-program"), None, |_, _| {}).await;
        assert!(
            matches!(report.end, RunEnd::NotStarted(ref why) if why.contains("pqx-no-such-program"))
        );
        assert_eq!(report.exit_code(), 127);
    }

    #[tokio::test]
    async fn bad_dir_is_reported() {
        let spec = bash("true").with_dir("/nonexistent/pqx");
        let report = run(&spec, None, |_, _| {}).await;
        assert!(
            report.summary().contains("in /nonexistent/pqx"),
            "{}",
            report.summary()
        );
    }
}
