//! Running one process: stdout and stderr are read line by line as they come (and handed to the
//! caller, which logs them), the consuming timeout kills the whole process group so that children
//! the command started die with it, and the report says how the run ended.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::output::{LineSplitter, Tail};
use super::tree::kill_tree;
use super::ProcessSpec;

/// How long output is still read after the process ended, for lines a child that outlived it may
/// still hold in the pipe.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

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

/// Runs `spec` to its end, until `timeout`, or until `cancel` fires, calling `on_line` for each
/// output line.
///
/// The process gets its own process group and no stdin. Output that is not UTF-8 is passed on with
/// replacement characters. This never fails: a process that cannot start is a [`RunEnd::NotStarted`].
pub async fn run(
    spec: &ProcessSpec,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let started_at = SystemTime::now();
    let mut tails = [Tail::default(), Tail::default()];
    if let Some(dir) = &spec.dir {
        if !dir.is_dir() {
            let why = format!("directory {} does not exist", dir.display());
            return finish(RunEnd::NotStarted(why), started_at, tails);
        }
    }
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let why = format!("{} is not installed (not found on PATH)", spec.program);
            return finish(RunEnd::NotStarted(why), started_at, tails);
        }
        Err(e) => {
            let why = format!("{}: {e}", spec.program);
            return finish(RunEnd::NotStarted(why), started_at, tails);
        }
    };
    let root = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);

    let (tx, mut rx) = mpsc::channel::<(OutputStream, Vec<u8>)>(256);
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
    let mut pass_on = |stream: OutputStream, line: Vec<u8>| {
        on_line(stream, &String::from_utf8_lossy(&line));
        tails[stream as usize].push_line(&line);
    };

    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut output_open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if output_open => match line {
                Some((stream, line)) => pass_on(stream, line),
                None => output_open = false,
            },
            status = child.wait() => break Some(status),
            _ = sleep_until(deadline) => {
                if let Some(root) = root {
                    kill_tree(root);
                }
                let _ = child.wait().await;
                break None;
            }
            _ = cancel.cancelled() => {
                if let Some(root) = root {
                    kill_tree(root);
                }
                let _ = child.wait().await;
                drain(&mut rx, &mut pass_on).await;
                return finish(RunEnd::Interrupted, started_at, tails);
            }
        }
    };
    drain(&mut rx, &mut pass_on).await;
    for reader in readers {
        reader.abort();
    }
    let end = match status {
        None => RunEnd::TimedOut(timeout.unwrap_or_default()),
        Some(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => RunEnd::Exited(code),
            (None, Some(signal)) => RunEnd::Signaled(signal),
            (None, None) => RunEnd::NotStarted("no exit status".into()),
        },
        Some(Err(e)) => RunEnd::NotStarted(format!("waiting for {}: {e}", spec.program)),
    };
    finish(end, started_at, tails)
}

fn finish(end: RunEnd, started_at: SystemTime, tails: [Tail; 2]) -> RunReport {
    let [stdout, stderr] = tails;
    RunReport {
        end,
        started_at,
        ended_at: SystemTime::now(),
        stdout,
        stderr,
    }
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
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
    rx: &mut mpsc::Receiver<(OutputStream, Vec<u8>)>,
    pass_on: &mut impl FnMut(OutputStream, Vec<u8>),
) {
    let until = tokio::time::Instant::now() + DRAIN_GRACE;
    while let Ok(Some((stream, line))) = tokio::time::timeout_at(until, rx.recv()).await {
        pass_on(stream, line);
    }
}

async fn read_lines(
    mut pipe: impl AsyncRead + Unpin,
    stream: OutputStream,
    tx: mpsc::Sender<(OutputStream, Vec<u8>)>,
) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut lines = Vec::new();
        splitter.push(&buf[..n], |line| lines.push(line.to_vec()));
        for line in lines {
            if tx.send((stream, line)).await.is_err() {
                return;
            }
        }
    }
    let mut last = None;
    splitter.finish(|line| last = Some(line.to_vec()));
    if let Some(line) = last {
        let _ = tx.send((stream, line)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 5 s for `pid` to be gone (or a zombie, which init reaps).
    async fn assert_gone(pid: i32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.split_whitespace().nth(2) == Some("Z") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} still alive: {state}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn never() -> CancellationToken {
        CancellationToken::new()
    }

    #[tokio::test]
    async fn cancel_interrupts_and_kills() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            trigger.cancel();
        });
        let started = std::time::Instant::now();
        let report = run(&bash("echo started; sleep 30"), None, &cancel, |_, _| {}).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(report.end, RunEnd::Interrupted);
        assert_eq!(report.exit_code(), 130);
        assert_eq!(report.stdout.text(), "started\n");
    }

    fn bash(script: &str) -> ProcessSpec {
        ProcessSpec::new("bash").with_args(["-c", script])
    }

    #[tokio::test]
    async fn streams_lines_and_exit_code() {
        let mut lines = Vec::new();
        let report = run(
            &bash("echo out; echo err >&2; exit 3"),
            None,
            &never(),
            |s, l| lines.push((s, l.to_owned())),
        )
        .await;
        assert_eq!(report.end, RunEnd::Exited(3));
        assert_eq!(report.summary(), "failed: exit code 3: err");
        assert!(lines.contains(&(OutputStream::Stdout, "out".into())));
        assert!(lines.contains(&(OutputStream::Stderr, "err".into())));
    }

    /// Runs `<launch> sleep 30 &` under a 500 ms timeout and checks the sleep died with the run.
    async fn timeout_kills(launch: &str) {
        let dir = tempfile_dir(launch);
        let marker = dir.join("child.pid");
        let script = format!("{launch} sleep 30 & echo $! > {}; wait", marker.display());
        let limit = Duration::from_millis(500);
        let report = run(&bash(&script), Some(limit), &never(), |_, _| {}).await;
        assert_eq!(report.end, RunEnd::TimedOut(limit));
        assert_eq!(report.exit_code(), 124);
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_gone(pid).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(tag: &str) -> std::path::PathBuf {
        let tag = if tag.is_empty() { "group" } else { tag };
        let dir = std::env::temp_dir().join(format!("pqx-run-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        timeout_kills("").await;
    }

    #[tokio::test]
    async fn timeout_kills_children_in_other_sessions() {
        timeout_kills("setsid").await;
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let report = run(
            &ProcessSpec::new("pqx-no-such-program"),
            None,
            &never(),
            |_, _| {},
        )
        .await;
        assert_eq!(
            report.summary(),
            "failed: not started: pqx-no-such-program is not installed (not found on PATH)"
        );
        assert_eq!(report.exit_code(), 127);
    }

    #[tokio::test]
    async fn bad_dir_is_reported() {
        let spec = bash("true").with_dir("/nonexistent/pqx");
        let report = run(&spec, None, &never(), |_, _| {}).await;
        assert_eq!(
            report.summary(),
            "failed: not started: directory /nonexistent/pqx does not exist"
        );
    }

    #[tokio::test]
    async fn tails_keep_output_and_summary_names_the_last_error() {
        let script = "seq 1 100000; echo first >&2; echo 'the reason' >&2; exit 2";
        let report = run(&bash(script), None, &never(), |_, _| {}).await;
        assert!(report.stdout.truncated());
        assert!(report.stdout.text().ends_with("99999\n100000\n"));
        assert_eq!(report.stderr.text(), "first\nthe reason\n");
        assert_eq!(report.summary(), "failed: exit code 2: the reason");
    }

    #[tokio::test]
    async fn huge_line_and_binary_output_do_not_break_it() {
        let mut longest = 0;
        let script = r"head -c 3000000 /dev/zero | tr '\0' x; printf '\xff\xfe\n'";
        let report = run(&bash(script), None, &never(), |_, l| {
            longest = longest.max(l.len())
        })
        .await;
        assert!(report.success(), "{}", report.summary());
        assert_eq!(longest, crate::ec::MAX_LINE);
        assert!(report.stdout.text().ends_with("\u{fffd}\u{fffd}\n"));
    }
}
