//! Running one process: stdout and stderr are read line by line as they come (and handed to the
//! caller, which logs them), the consuming timeout and a stopping subscriber kill the whole process
//! tree so that children the command started die with it, and the report says how the run ended.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::output::{LineSplitter, Tail};
use super::tree::kill_tree;
use super::{CannotStart, Guard, OutputStream, ProcessSpec, RunEnd, RunReport};

/// How long output is still read after the process ended, for lines a child that outlived it may
/// still hold in the pipe.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Runs `spec` to its end, until `timeout`, or until `cancel` fires, calling `on_line` for each
/// output line.
///
/// The process gets its own process group and no stdin. Output that is not UTF-8 is passed on with
/// replacement characters. This never fails: a process that cannot start is a [`RunEnd::NotStarted`].
pub async fn run(
    spec: &ProcessSpec,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    run_guarded(spec, None, timeout, cancel, on_line).await
}

/// [`run`], the process watched by `guard` while it runs, so that it dies if the subscriber does.
pub async fn run_guarded(
    spec: &ProcessSpec,
    guard: Option<&Guard>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let started_at = SystemTime::now();
    let child = match spawn(spec) {
        Ok(child) => child,
        Err(why) => return RunReport::not_started(why.0),
    };
    let pid = child.id();
    if let (Some(guard), Some(pid)) = (guard, pid) {
        guard.watch(pid);
    }
    let report = follow(spec, child, started_at, timeout, cancel, on_line).await;
    if let (Some(guard), Some(pid)) = (guard, pid) {
        guard.release(pid);
    }
    report
}

/// Follows a started process to its end.
async fn follow(
    spec: &ProcessSpec,
    mut child: Child,
    started_at: SystemTime,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
    mut on_line: impl FnMut(OutputStream, &str),
) -> RunReport {
    let mut output = Output::take(&mut child);
    let end = match output
        .follow(&mut child, timeout, cancel, &mut on_line)
        .await
    {
        Ok(status) => exit_end(status, &spec.program),
        Err(end) => {
            if let Some(root) = child.id().and_then(|id| i32::try_from(id).ok()) {
                kill_tree(Pid::from_raw(root));
            }
            let _ = child.wait().await;
            end
        }
    };
    output.drain(&mut on_line).await;
    let [stdout, stderr] = output.tails;
    RunReport::ended(end, started_at, stdout, stderr)
}

/// Starts the process in a group of its own, with piped output; why not, when it cannot start.
fn spawn(spec: &ProcessSpec) -> Result<Child, CannotStart> {
    if let Some(dir) = &spec.dir {
        if !dir.is_dir() {
            let why = format!("directory {} does not exist", dir.display());
            return Err(CannotStart(why));
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
    command.spawn().map_err(|e| {
        CannotStart(match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("{} is not installed (not found on PATH)", spec.program)
            }
            _ => format!("{}: {e}", spec.program),
        })
    })
}

/// How a process that exited by itself ended.
fn exit_end(status: std::io::Result<ExitStatus>, program: &str) -> RunEnd {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => RunEnd::Exited(code),
            (None, Some(signal)) => RunEnd::Signaled(signal),
            (None, None) => RunEnd::NotStarted("no exit status".into()),
        },
        Err(e) => RunEnd::NotStarted(format!("waiting for {program}: {e}")),
    }
}

/// A child's stdout and stderr, line by line as they come, and the tail of each for the record.
struct Output {
    lines: mpsc::Receiver<(OutputStream, Vec<u8>)>,
    readers: Vec<JoinHandle<()>>,
    tails: [Tail; 2],
}

impl Output {
    /// Starts reading the child's pipes.
    fn take(child: &mut Child) -> Self {
        let (tx, lines) = mpsc::channel(256);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(
                out,
                OutputStream::Stdout,
                tx.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(err, OutputStream::Stderr, tx)));
        }
        Self {
            lines,
            readers,
            tails: [Tail::default(), Tail::default()],
        }
    }

    fn pass_on(
        &mut self,
        stream: OutputStream,
        line: &[u8],
        on_line: &mut impl FnMut(OutputStream, &str),
    ) {
        on_line(stream, &String::from_utf8_lossy(line));
        self.tails[stream as usize].push_line(line);
    }

    /// Passes lines on until the child exits (its status), the timeout passes or `cancel` fires
    /// (the end to report once the tree is killed).
    async fn follow(
        &mut self,
        child: &mut Child,
        timeout: Option<Duration>,
        cancel: &CancellationToken,
        on_line: &mut impl FnMut(OutputStream, &str),
    ) -> Result<std::io::Result<ExitStatus>, RunEnd> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut open = true;
        loop {
            tokio::select! {
                line = self.lines.recv(), if open => match line {
                    Some((stream, line)) => self.pass_on(stream, &line, on_line),
                    None => open = false,
                },
                status = child.wait() => return Ok(status),
                _ = pqx_util::sleep_until(deadline) => {
                    return Err(RunEnd::TimedOut(timeout.unwrap_or_default()))
                }
                _ = cancel.cancelled() => return Err(RunEnd::Interrupted),
            }
        }
    }

    /// Passes on the lines still buffered, waiting a little for writers that outlived the process.
    async fn drain(&mut self, on_line: &mut impl FnMut(OutputStream, &str)) {
        let until = tokio::time::Instant::now() + DRAIN_GRACE;
        while let Ok(Some((stream, line))) = tokio::time::timeout_at(until, self.lines.recv()).await
        {
            self.pass_on(stream, &line, on_line);
        }
        for reader in &self.readers {
            reader.abort();
        }
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
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
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
        pqx_testkit::wait_gone(pid, 5).await.unwrap();
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
        assert_eq!(longest, crate::exec::MAX_LINE);
        assert!(report.stdout.text().ends_with("\u{fffd}\u{fffd}\n"));
    }
}
